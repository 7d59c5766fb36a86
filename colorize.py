"""Colours a drawing with a trained model, one picture per tag set.

    python colorize.py -i line.png -t 初音ミク
    python colorize.py -i line.png -t 響 -t 暁 -o hibiki_vs_akatsuki.png
    python colorize.py --blank 256 -t 初音ミク -o miku.png     # no drawing: tags alone
    python colorize.py --model STAGE1 --refine STAGE2 -i big_line.png -t 初音ミク   # two stages

Each ``-t`` is one tag set (several tags separated by commas, e.g. ``-t 響,銀髪``);
several ``-t`` give one image per tag set and a side-by-side sheet, so the effect of
the tag can be seen. No ``-t`` colours without a tag (a zero tag plane, the post's
Fig. 5). The output has the input's size. ``--blank SIZE`` colours white paper of that
size instead of a drawing: text to image, the post's next step (a model trained with
``--blank-fraction`` has learnt it). The model folder is what
train_facade_text.py writes (model.json, enc.npz, dec.npz, tag_vectors.txt).
``--refine DIR`` adds a stage-2 model (``--stage 2``): stage 1 colours at its size, stage
2 redraws that colouring with the drawing at up to its own size (512 px), and the result
has the input's size.

Every output path is checked before the model runs (its folder exists and can be
written, it is not a folder, it ends in an image extension), and every picture is
written whole or not at all (atomic.py). A damaged model file is named with what is
wrong with it.
"""
import argparse
import json
import math
import os
import sys
import warnings
import zipfile
import zlib

from PIL import Image

import compat
import chainer

import atomic
import dataset
import net
import sheets
import tag_vectorizer

DEFAULT_MODEL = os.path.join('result', 'demo')


class ModelError(RuntimeError):
    """The model folder (or a snapshot) is missing, incomplete or damaged; the message is
    one line naming the file."""


def load_npz(path, target):
    """chainer.serializers.load_npz(path, target), checked: every member's checksum is
    tested first, and a missing, truncated or damaged file, or one of another network,
    is a ModelError naming it and what is wrong."""
    if not os.path.isfile(path):
        raise ModelError('{} is missing'.format(path))
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged:
            raise ModelError('{} is damaged ({} fails its checksum)'.format(path, damaged))
        chainer.serializers.load_npz(path, target)
    except zipfile.BadZipFile as error:
        raise ModelError('{} is not a complete .npz file ({})'.format(path, error)) from None
    except (zlib.error, EOFError, OSError) as error:
        raise ModelError('{} is damaged ({})'.format(path, error)) from None
    except (KeyError, ValueError) as error:
        raise ModelError('{} does not fit this network ({})'.format(path, str(error).strip('"\''))) from None


def read_settings(path):
    """model.json, checked: ModelError naming it when it is not what training writes."""
    try:
        with open(path, 'rb') as f:
            settings = json.loads(f.read().decode('utf-8'))
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelError('{} is not a readable model description ({})'.format(path, error)) from None
    if not isinstance(settings, dict):
        raise ModelError('{} is not a model description (a JSON object)'.format(path))
    for key in ('in_ch', 'out_ch', 'width', 'size'):
        value = settings.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ModelError('{}: "{}" must be a positive whole number, not {}'.format(
                path, key, json.dumps(value)))
    if not isinstance(settings.get('tag_vectors'), (str, type(None))):
        raise ModelError('{}: "tag_vectors" must be a file name or null'.format(path))
    tags = settings.get('tags', [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ModelError('{}: "tags" must be a list of tags'.format(path))
    design = settings.get('tag_design')
    if design is not None and (not isinstance(design, dict) or set(design) != set(net.film_design())):
        raise ModelError('{}: "tag_design" must be null or the film design\'s settings ({})'.format(
            path, ', '.join(sorted(net.film_design()))))
    return settings


class ColorModel:
    """A generator (encoder + decoder) with its tag vectors, ready to colour drawings:
    one being trained (the training previews) or one loaded from a model folder."""

    def __init__(self, enc, dec, vectorizer, size, settings=None):
        self.enc, self.dec, self.vectorizer, self.size = enc, dec, vectorizer, size
        self.settings = settings or {}
        self.device = chainer.backend.get_device_from_array(enc.c0.W.array)
        self.refiner = None  # a stage-2 ColorModel that refine()s this one's colourings

    @property
    def stage(self):
        return self.settings.get('stage', 1)

    @classmethod
    def load(cls, model_dir, device):
        """The model train_facade_text.py wrote to model_dir, on device."""
        settings_path = os.path.join(model_dir, 'model.json')
        if not os.path.exists(settings_path):
            raise ModelError('no trained model in {} (model.json missing): train one with '
                             'train_facade_text.py, or pass --model DIR'.format(model_dir))
        settings = read_settings(settings_path)
        design = settings.get('tag_design')
        enc = net.Encoder(in_ch=settings['in_ch'], width=settings['width'], design=design)
        dec = net.Decoder(out_ch=settings['out_ch'], width=settings['width'], design=design)
        for name, link in (('enc.npz', enc), ('dec.npz', dec)):
            path = os.path.join(model_dir, name)
            if not os.path.exists(path):
                raise ModelError('{} is missing: the model in {} has no saved weights yet'.format(path, model_dir))
            load_npz(path, link)
        vectorizer = None
        if settings.get('tag_vectors'):
            try:
                vectorizer = tag_vectorizer.TagVectorizer.load(os.path.join(model_dir, settings['tag_vectors']))
                if design:
                    vectorizer.set_layout(design['layout'], design['slots'])
            except tag_vectorizer.VectorsError as error:
                raise ModelError(str(error)) from None
        enc.to_device(device)
        dec.to_device(device)
        return cls(enc, dec, vectorizer, settings['size'], settings)

    @property
    def tags(self):
        """The tags the model was trained on, most frequent first (for suggestions); models
        from before model.json listed them give their whole vocabulary."""
        if self.vectorizer is None:
            return []
        return self.settings.get('tags') or list(self.vectorizer.kv.index_to_key)

    def unknown_tags(self, tags):
        unknown = [] if self.vectorizer is None else self.vectorizer.unknown(tags)
        if self.refiner is not None:
            unknown += [tag for tag in self.refiner.unknown_tags(tags) if tag not in unknown]
        return unknown

    def colorize(self, drawing, tags, size=None):
        """Colours an 'L' drawing of any size: it is fitted into a size x size square
        (white margins), coloured at batch 1, cut out and resized back; with a refiner,
        stage 2 refines that colouring at up to its own size instead."""
        square, box = fitted_square(drawing, size or self.size)
        x_in = dataset.network_input(square, self.vectorizer, tags)[None]
        coloured = self.generate(x_in).crop(box)
        if self.refiner is not None:
            return self.refiner.refine(drawing, coloured, tags)
        return coloured.resize(drawing.size, Image.BICUBIC)

    def refine(self, drawing, coarse, tags, size=None):
        """Stage 2: the drawing at up to this model's size (refine_side) with a coarse
        colouring of the same picture at any size (stage 1's, enlarged here) -> the
        colour image at the drawing's size."""
        size = size or self.refine_side(drawing.size)
        square, box = fitted_square(drawing, size)
        coarse_square = Image.new('RGB', (size, size), 'white')
        coarse_square.paste(coarse.convert('RGB').resize((box[2] - box[0], box[3] - box[1]), Image.BICUBIC),
                            box[:2])
        x_in = dataset.refinement_input(square, coarse_square, self.vectorizer, tags)[None]
        return self.generate(x_in).crop(box).resize(drawing.size, Image.BICUBIC)

    def refine_side(self, drawing_size):
        """The side stage 2 runs at: the drawing's long side rounded up to a multiple of
        128 (what the encoder needs), at most the training size."""
        return min(self.size, 128 * math.ceil(max(drawing_size) / 128))

    def generate(self, x_in):
        """The generator's output for one input (1, C, S, S), as an RGB image."""
        with net.generating():
            x_out = self.dec(self.enc(self.device.send(x_in)))
        return Image.fromarray(dataset.to_uint8(chainer.backend.CpuDevice().send(x_out.array)[0]))


def load_model(model_dir, refine_dir, device):
    """The stage-1 model in model_dir with, given refine_dir, the stage-2 model there as its
    refiner (README "Higher resolution"); ModelError when either is of the other stage."""
    model = ColorModel.load(model_dir, device)
    if model.stage != 1:
        raise ModelError('{} holds a stage-2 model: give it with --refine, and a stage-1 model with '
                         '--model'.format(model_dir))
    if refine_dir:
        refiner = ColorModel.load(refine_dir, device)
        if refiner.stage != 2:
            raise ModelError('--refine {} holds a stage-1 model: train stage 2 with train_facade_text.py '
                             '--stage 2'.format(refine_dir))
        model.refiner = refiner
    return model


def fitted_square(drawing, size):
    """The drawing fitted into a size x size square of white paper, centred, and the box
    (left, top, right, bottom) it takes there."""
    w, h = drawing.size
    scale = size / max(w, h)
    fitted = drawing.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
    square = Image.new('L', (size, size), 255)
    offset = ((size - fitted.size[0]) // 2, (size - fitted.size[1]) // 2)
    square.paste(fitted, offset)
    return square, (offset[0], offset[1], offset[0] + fitted.size[0], offset[1] + fitted.size[1])


def output_paths(out, tag_sets):
    """out.png for one tag set; out_1_響.png, out_2_暁.png ... and out_sheet.png for more."""
    if len(tag_sets) <= 1:
        return [out], None
    stem, ext = os.path.splitext(out)
    safe = lambda text: ''.join(c if c.isalnum() or c in '-_' else '_' for c in text)[:40]
    return (['{}_{}_{}{}'.format(stem, i + 1, safe('+'.join(tags) or 'notag'), ext)
             for i, tags in enumerate(tag_sets)], '{}_sheet{}'.format(stem, ext))


def output_problem(path):
    """Why a picture cannot be written to path, or None; checked before the model runs."""
    extension = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        return '{} is a folder: give a file name, such as {}'.format(path, os.path.join(path, 'colorized.png'))
    if extension not in dataset.IMAGE_EXTENSIONS:
        return '{}: the output needs an image extension ({})'.format(path, ', '.join(dataset.IMAGE_EXTENSIONS))
    folder = os.path.dirname(path) or '.'
    if not os.path.isdir(folder):
        return 'the output folder {} does not exist'.format(folder)
    try:
        atomic.check_writable(folder)
    except OSError as error:
        return 'cannot write to the output folder {} ({})'.format(folder, error.strerror or error)
    return None


def save_image(image, path):
    """Writes image whole or not at all, in the format its extension names."""
    image_format = Image.registered_extensions()[os.path.splitext(path)[1].lower()]
    atomic.write_file(path, lambda temp: image.save(temp, format=image_format))


def main(argv=None):
    parser = argparse.ArgumentParser(description='Colour a drawing with a pix2pix-with-text model')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--input', '-i', help='drawing (PNG, JPEG or WebP; any size and mode)')
    source.add_argument('--blank', type=int, metavar='SIZE',
                        help='no drawing: colour blank paper of SIZE x SIZE pixels from the tags alone')
    parser.add_argument('--tag', '-t', action='append', default=[],
                        help='tags for one output, comma-separated; repeat for several outputs')
    parser.add_argument('--out', '-o', default='colorized.png',
                        help='output image (.png; .jpg and .webp also work); its folder must exist')
    parser.add_argument('--model', default=DEFAULT_MODEL, help='model folder written by training')
    parser.add_argument('--refine', default=None, metavar='DIR',
                        help='a stage-2 model (train_facade_text.py --stage 2) that refines the colouring '
                             'at up to its size')
    compat.add_device_arguments(parser)
    parser.add_argument('--size', type=int, default=None,
                        help='side in pixels the network runs at (a multiple of 128; default: the training size)')
    parser.add_argument('--drawing', choices=('asis',) + dataset.DRAWINGS, default='asis',
                        help='use the input as the drawing (asis), or make line art / grey from a colour picture')
    args = parser.parse_args(argv)

    if args.size is not None and (args.size <= 0 or args.size % 128):
        parser.error('--size must be a positive multiple of 128')
    if args.blank is not None and not 0 < args.blank <= 4096:
        parser.error('--blank takes a side from 1 to 4096 pixels')
    tag_sets = [dataset.parse_tags(t.replace('、', ',')) for t in args.tag] or [[]]
    paths, sheet_path = output_paths(args.out, tag_sets)
    problems = [problem for problem in map(output_problem, paths + ([sheet_path] if sheet_path else []))
                if problem]
    if problems:
        print('error: {}'.format(problems[0]), file=sys.stderr)
        return 1
    try:
        if args.blank:
            image = drawing = Image.new('L', (args.blank, args.blank), 255)
        else:
            image = dataset.load_image(args.input)
            drawing = image.convert('L') if args.drawing == 'asis' else dataset.make_drawing(image, args.drawing)
        model = load_model(args.model, args.refine, compat.device_of(args))
    except (dataset.ImageError, ModelError, compat.DeviceError) as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    if model.vectorizer is None and any(tag_sets):
        print('warning: the model in {} was trained without tags (--no-tag); the tags are '
              'ignored'.format(args.model), file=sys.stderr)
    failed = False
    outputs = []
    for tags, path in zip(tag_sets, paths):
        unknown = model.unknown_tags(tags)
        if unknown:
            print('error: unknown tag {} (not in the model\'s vocabulary, nor any of its words); no image '
                  'for that tag set'.format(', '.join(map(tag_vectorizer.shorten, unknown))), file=sys.stderr)
            failed = True
            continue
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', tag_vectorizer.UnknownTagWarning)
            result = model.colorize(drawing, tags, args.size)
        save_image(result, path)
        outputs.append((','.join(tags) or '(no tag)', result))
        print('wrote {}'.format(path))
    if sheet_path and outputs:
        sheet = sheets.grid([[image] + [r for _, r in outputs]], ['input'] + [t for t, _ in outputs])
        save_image(sheet, sheet_path)
        print('wrote {}'.format(sheet_path))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
