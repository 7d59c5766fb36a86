"""A trained model: its folder loaded and checked, and drawings coloured with it.

``load_model`` reads what train_facade_text.py writes (model.json, enc.npz, dec.npz,
tag_vectors.txt, figure_prior.npz), with an optional stage-2 model as the refiner;
``ColourModel.colour`` colours one drawing with one tag set, and blank paper from the
tags' figure prior (figure_prior.py) where the model has one. Training (the previews),
colorize.py, server.py, evaluate.py and the benchmarks all colour through this module. A missing or damaged
file is a ModelError whose message is one line naming it.
"""
import json
import math
import os
import zipfile
import zlib

from PIL import Image

import numpy as np

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer

from colour_space import ciede2000, srgb_to_lab
import dataset
import figure_prior
import flatting
import net
import tag_vectorizer

# The model folder the commands read when none is given: the demo's (run.sh demo).
DEFAULT_MODEL = os.path.join('result', 'demo')
# Colour hints spread to the regions the network colours as one part (flatting.py); the
# network's colourings under this many other tags, as unlike each other as can be,
# tell those parts apart where one colouring does not (暁's navy hair beside her navy
# uniform is coloured teal and grey under 初音ミク).
PROBES = 8
# The side of the thumbnails the probes are chosen on.
PROBE_SIDE = 32
# Blank paper gives nothing but the tags. As in classifier-free guidance (Ho and Salimans
# 2022, arXiv:2207.12598), the tags' figure is pushed this far from the figure common to
# every tag set (the figure prior's scores; the network's colouring with no tag, for a
# model without a prior), which keeps each character's own colours from being washed
# towards the others'; 1 turns it off.
BLANK_GUIDANCE = 1.5
# The weights of R, G and B in a pixel's luma (ITU-R BT.601), relit's lightness.
LUMA = np.array([0.299, 0.587, 0.114])
# On a region a colour hint recolours, the part of the shading's lightness change that
# is kept (1: all of it): deep shadows otherwise take a hint of a colour the character
# never has too far off it. Chosen on seed 0's test drawings from 1, 0.75 and 0.5
# (docs/hires.md).
HINT_LIGHTNESS = 0.75
# model.json's whole numbers and the ranges training writes them in (its flags' ranges).
WHOLE_NUMBERS = {'in_ch': (1, 16), 'out_ch': (3, 3), 'width': (2, 1024), 'size': (128, 4096)}
DESIGN_NUMBERS = {'dim': (1, 4096), 'slots': (1, 256), 'hidden': (1, 4096)}

class ModelError(RuntimeError):
    """The model folder (or a snapshot) is missing, incomplete or damaged; the message is
    one line naming the file."""


def load_npz(path, target):
    """chainer.serializers.load_npz(path, target), checked: every member's checksum is
    tested first, and a missing, truncated or damaged file, one of another network, or
    one that holds Python objects is a ModelError naming it and what is wrong.

    Chainer's load_npz reads with allow_pickle=True, so an object array in a model or
    snapshot file (files that users share) would be unpickled, which can run any code.
    Here every member's header is read first and such a file is refused; the arrays are
    then read with pickles off."""
    if not os.path.isfile(path):
        raise ModelError('{} is missing'.format(path))
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            if damaged:
                raise ModelError('{} is damaged ({} fails its checksum)'.format(path, damaged))
            holding_objects = [name for name in archive.namelist() if holds_objects(archive, name)]
        if holding_objects:
            raise ModelError('{} holds pickled Python objects ({}), which are never loaded: they could run '
                             'code'.format(path, holding_objects[0]))
        with np.load(path, allow_pickle=False) as arrays:
            chainer.serializers.NpzDeserializer(arrays).load(target)
    except zipfile.BadZipFile as error:
        raise ModelError('{} is not a complete .npz file ({})'.format(path, error)) from None
    except (zlib.error, EOFError, OSError) as error:
        raise ModelError('{} is damaged ({})'.format(path, error)) from None
    except (KeyError, ValueError) as error:
        raise ModelError('{} does not fit this network ({})'.format(path, str(error).strip('"\''))) from None


def holds_objects(archive, name):
    """Whether the .npy member ``name`` of an open .npz archive is an array of Python
    objects (stored as a pickle), read from its header alone."""
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        return read_header(member)[2].hasobject


def read_settings(path):
    """model.json, checked: ModelError naming it when it is not what training writes."""
    try:
        with open(path, 'rb') as f:
            settings = json.loads(f.read().decode('utf-8'))
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelError('{} is not a readable model description ({})'.format(path, error)) from None
    if not isinstance(settings, dict):
        raise ModelError('{} is not a model description (a JSON object)'.format(path))
    for key, (low, high) in WHOLE_NUMBERS.items():
        check_whole_number(path, key, settings.get(key), low, high)
    if settings['width'] % 2 or settings['size'] % 128:
        raise ModelError('{}: "width" must be even and "size" a multiple of 128'.format(path))
    if settings.get('tag_dim') is not None:
        check_whole_number(path, 'tag_dim', settings['tag_dim'], 1, 4096)
    for key in ('tag_vectors', 'figure_prior'):
        name = settings.get(key)
        if not (name is None or isinstance(name, str) and name == os.path.basename(name) and name):
            raise ModelError('{}: "{}" must be a file name in the model\'s folder or null'.format(path, key))
    tags = settings.get('tags', [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ModelError('{}: "tags" must be a list of tags'.format(path))
    design = settings.get('tag_design')
    if design is not None:
        check_design(path, design)
    return settings


def check_whole_number(path, key, value, low, high):
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ModelError('{}: "{}" must be a whole number from {} to {}, not {}'.format(
            path, key, low, high, json.dumps(value)))


def check_design(path, design):
    """model.json's tag_design: the film design's settings (net.film_design), each of a
    value that training can write."""
    if not isinstance(design, dict) or set(design) != set(net.film_design()):
        raise ModelError('{}: "tag_design" must be null or the film design\'s settings ({})'.format(
            path, ', '.join(sorted(net.film_design()))))
    for key, (low, high) in DESIGN_NUMBERS.items():
        check_whole_number(path, 'tag_design.' + key, design[key], low, high)
    gain = design['gate_gain']
    if (design['layout'] not in tag_vectorizer.LAYOUTS or design['gate'] not in (None, 'per_tag', 'per_set')
            or not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain <= 0
            or not all(isinstance(design[key], bool) for key in ('projection', 'coords'))):
        raise ModelError('{}: "tag_design" holds a value training does not write ({})'.format(
            path, json.dumps(design, ensure_ascii=False)[:200]))


def check_finite(path, link):
    """ModelError when a weight of link (loaded from path) is NaN or infinite: the training
    that wrote it diverged, and it would colour every drawing black."""
    for name, param in link.namedparams():
        if param.array is not None and not link.xp.isfinite(param.array).all():
            raise ModelError('{} holds weights that are not finite ({}): the training that wrote it '
                             'diverged'.format(path, name))


class ColourModel:
    """A generator (encoder + decoder) with its tag vectors, ready to colour drawings:
    one being trained (the training previews) or one loaded from a model folder."""

    def __init__(self, enc, dec, vectorizer, size, settings=None, prior=None):
        self.enc, self.dec, self.vectorizer, self.size = enc, dec, vectorizer, size
        self.settings = settings or {}
        self.prior = prior  # a figure_prior.FigurePrior: blank paper's canvases
        self.device = chainer.backend.get_device_from_array(enc.c0.W.array)
        self.refiner = None  # a stage-2 ColourModel that refine()s this one's colourings
        self.shader = None  # a stage-2 shading ColourModel that shade()s this one's flat colours
        # The last drawing's colourings under each tag of the vocabulary, which every tag
        # set's probes are chosen from: ((drawing's bytes, size), pictures).
        self._tag_colourings = (None, [])

    @property
    def stage(self):
        return self.settings.get('stage', 1)

    @property
    def shading(self):
        """Whether this is a shading model (train_facade_text.py --stage 2 --shading)."""
        return self.stage == 2 and bool(self.settings.get('shading'))

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
                raise ModelError('{} is missing: the model in {} has no saved weights yet'.format(
                    path, model_dir))
            load_npz(path, link)
            check_finite(path, link)
        vectorizer = None
        if settings.get('tag_vectors'):
            try:
                vectors = os.path.join(model_dir, settings['tag_vectors'])
                vectorizer = tag_vectorizer.TagVectorizer.load(vectors)
                reads = design['dim'] if design else settings.get('tag_dim')  # None: a model from before
                if reads is not None and vectorizer.dim != reads:
                    raise ModelError('{}: vectors of {} values, but the model reads {}'.format(
                        vectors, vectorizer.dim, reads))
                if design:
                    vectorizer.set_layout(design['layout'], design['slots'])
            except tag_vectorizer.VectorsError as error:
                raise ModelError(str(error)) from None
        prior = None
        if settings.get('figure_prior'):
            path = os.path.join(model_dir, settings['figure_prior'])
            if not os.path.exists(path):
                raise ModelError('{} is missing: the model in {} has no figure prior for blank paper'.format(
                    path, model_dir))
            try:
                prior = figure_prior.FigurePrior.load(path)
            except figure_prior.PriorError as error:
                raise ModelError(str(error)) from None
        enc.to_device(device)
        dec.to_device(device)
        return cls(enc, dec, vectorizer, settings['size'], settings, prior)

    @property
    def tags(self):
        """The tags the model was trained on, most frequent first (for suggestions); models
        from before model.json listed them give their whole vocabulary."""
        if self.vectorizer is None:
            return []
        return self.settings.get('tags') or list(self.vectorizer.kv.index_to_key)

    def unknown_tags(self, tags):
        unknown = [] if self.vectorizer is None else self.vectorizer.unknown(tags)
        for helper in (self.refiner, self.shader):
            if helper is not None:
                unknown += [tag for tag in helper.unknown_tags(tags) if tag not in unknown]
        return unknown

    def tag_problem(self, tags):
        """Why this tag set cannot be coloured as typed, or None: a tag unknown even by its
        words, or more tags than the plane has slots for."""
        unknown = self.unknown_tags(tags)
        if unknown:
            return 'unknown tag {} (not in the model\'s vocabulary, nor any of its words)'.format(
                ', '.join(map(tag_vectorizer.shorten, unknown)))
        if self.most_tags and len(tags) > self.most_tags:
            return '{} tags in one set, but this model reads at most {}'.format(len(tags), self.most_tags)
        return None

    @property
    def most_tags(self):
        """The most tags a set may hold here (a slots plane's slots), or None for any number:
        the plane has no room for more."""
        vectorizers = [model.vectorizer for model in (self, self.refiner, self.shader) if model is not None]
        limits = [v.slots for v in vectorizers if v is not None and v.layout == 'slots']
        return min(limits) if limits else None

    def colour(self, drawing, tags, size=None, guidance=BLANK_GUIDANCE, use_prior=True):
        """Colours an 'L' drawing of any size: it is fitted into a size x size square
        (white margins), coloured at batch 1, cut out and resized back; with a refiner,
        stage 2 refines that colouring at up to its own size instead. Blank paper with
        tags is the figure prior's canvas at the paper's size, where the prior has counts
        for any of them (else, or without ``use_prior``, the network's colouring), guided
        by ``guidance``."""
        if use_prior and tags and self.prior is not None and is_blank(drawing) and self.prior.knows(tags):
            square, box = fitted_square(drawing, max(drawing.size))
            return self.prior.canvas(tags, square.size[0], guidance).crop(box)
        square, box = fitted_square(drawing, size or self.size)
        output = self.generate(dataset.network_input(square, self.vectorizer, tags)[None])
        if tags and guidance != 1 and is_blank(drawing):
            untagged = self.generate(dataset.network_input(square, self.vectorizer, [])[None])
            output = untagged + guidance * (output - untagged)
        coloured = Image.fromarray(dataset.to_uint8(output)).crop(box)
        if self.refiner is not None:
            return self.refiner.refine(drawing, coloured, tags)
        return coloured.resize(drawing.size, Image.BICUBIC)

    def probe_colourings(self, drawing, colouring):
        """PROBES colourings of the drawing under single tags of the vocabulary, chosen
        one by one as the furthest (mean ΔE00 over PROBE_SIDE-px thumbnails) from
        ``colouring`` and from those already chosen; none for a model without tags."""
        def thumbnail(picture):
            return srgb_to_lab(np.asarray(picture.convert('RGB').resize((PROBE_SIDE, PROBE_SIDE), Image.BOX),
                                          np.float64))
        candidates = self.tag_colourings(drawing)
        if len(candidates) <= PROBES:
            return candidates
        thumbnails = [thumbnail(picture) for picture in candidates]
        reference = thumbnail(colouring)
        distance = np.array([ciede2000(t, reference).mean() for t in thumbnails])
        chosen = []
        for _ in range(PROBES):
            best = int(np.argmax(distance))
            chosen.append(candidates[best])
            distance = np.minimum(distance, [ciede2000(t, thumbnails[best]).mean() for t in thumbnails])
        return chosen

    def tag_colourings(self, drawing):
        """The drawing coloured under each tag of the vocabulary alone, kept for the last
        drawing: the probes of its next tag set are chosen from the same pictures."""
        key = (drawing.tobytes(), drawing.size)
        if self._tag_colourings[0] != key:
            self._tag_colourings = (key, [self.colour(drawing, [tag]) for tag in self.tags])
        return self._tag_colourings[1]

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
        refined = Image.fromarray(dataset.to_uint8(self.generate(x_in)))
        return refined.crop(box).resize(drawing.size, Image.BICUBIC)

    def compose(self, colouring, drawing, tags, hints=None, notes=None, probes=(), unhinted=None):
        """--lines keep: the drawing's lines over the flat colours of ``colouring``
        (flatting.compose: ``hints``, ``notes`` and ``probes`` as it takes them), and with
        a shading model the shading it puts on them; -> (picture, flat colours).
        ``unhinted``: what unhinted_shading gives for the same colouring, kept by the
        caller (the server, the scores), so that a moved dot does not make it again."""
        picture, flat = flatting.compose(colouring, drawing, hints, notes, probes)
        if self.shader is None:
            return picture, flat
        if hints is None:
            return (unhinted[1] if unhinted else self.shader.shade(drawing, flat, tags)), flat
        unhinted_flat, shaded = unhinted or self.unhinted_shading(colouring, drawing, tags)
        shaded = np.asarray(shaded)
        recoloured = (np.asarray(flat) != np.asarray(unhinted_flat)).any(axis=-1)
        if recoloured.any():
            # The regions no hint recoloured keep their shading without hints. Those a
            # hint recolours take the hint's colour, made lighter or darker by
            # HINT_LIGHTNESS of the shading there without hints: the artist's hue and
            # chroma kept exactly, and no pass of the shading model for a dot.
            flat_picture = np.asarray(picture, np.float64)  # the drawing's lines over the flats
            lit = relit(np.asarray(flat, np.float64), np.asarray(unhinted_flat, np.float64),
                        np.asarray(shaded, np.float64))
            toned = flat_picture + HINT_LIGHTNESS * (lit - flat_picture)
            shaded = np.where(recoloured[..., None], np.clip(np.rint(toned), 0, 255).astype(np.uint8), shaded)
        return Image.fromarray(shaded, 'RGB'), flat

    def unhinted_shading(self, colouring, drawing, tags):
        """The flat colours of ``colouring`` without hints, and the shading model's picture
        of them (compose's ``unhinted``)."""
        flat = flatting.flat_colours(colouring, drawing)
        return flat, self.shader.shade(drawing, flat, tags)

    def shade(self, drawing, flat, tags):
        """A shading model: the drawing's lines over ``flat`` (RGB flat colours of the
        drawing's size) with the shading this model puts on them, worked out at up to its
        own size (refine_side) and enlarged to the drawing's."""
        side = self.refine_side(drawing.size)
        square, box = fitted_square(drawing, side)
        flat_square = Image.new('RGB', (side, side), 'white')
        flat_square.paste(flat.resize((box[2] - box[0], box[3] - box[1]), Image.BICUBIC), box[:2])
        x_in = dataset.refinement_input(square, flat_square, self.vectorizer, tags)[None]
        shading = self.generate(x_in)[:, box[1]:box[3], box[0]:box[2]]
        if shading.shape[1:] != drawing.size[::-1]:
            shading = np.stack([np.asarray(Image.fromarray(plane, 'F').resize(drawing.size, Image.BILINEAR))
                                for plane in shading])
        shaded = dataset.with_shading(dataset.to_unit(np.asarray(flat)), shading)
        shaded = Image.fromarray(dataset.to_uint8(shaded), 'RGB')
        # The model draws the lines too, but at its own size: the drawing's own go on top.
        return flatting.with_lines(shaded, drawing)

    def refine_side(self, drawing_size):
        """The side stage 2 runs at: the drawing's long side rounded up to a multiple of
        128 (what the encoder needs), at most the training size."""
        return min(self.size, 128 * math.ceil(max(drawing_size) / 128))

    def generate(self, x_in):
        """The generator's output for one input (1, C, S, S): (3, S, S) on [-1, 1], on the CPU."""
        with net.generating():
            x_out = self.dec(self.enc(self.device.send(x_in)))
        return chainer.backend.CpuDevice().send(x_out.array)[0]


def relit(colours, flat, shaded):
    """RGB ``colours`` (0..255) scaled pixel by pixel by how much lighter or darker the
    ``shaded`` picture is than the ``flat`` colours it shades (their lumas' ratio, Rec.
    601 weights): that lightness, the colours' own hue and saturation."""
    ratio = (shaded @ LUMA) / np.maximum(flat @ LUMA, 1.0)
    return np.clip(colours * ratio[..., None], 0, 255)


def load_model(model_dir, refine_dir, device, shading_dir=None):
    """The stage-1 model in model_dir with, given refine_dir, the stage-2 model there as its
    refiner (docs/hires.md), and given shading_dir, the shading model there as its shader;
    ModelError when one is of another kind."""
    model = ColourModel.load(model_dir, device)
    if model.stage != 1:
        raise ModelError('{} holds a stage-2 model: give it with --refine or --shading, and a stage-1 model '
                         'with --model'.format(model_dir))
    if refine_dir:
        refiner = ColourModel.load(refine_dir, device)
        if refiner.stage != 2 or refiner.shading:
            kind = 'shading model (give it with --shading)' if refiner.shading else 'stage-1 model'
            raise ModelError('--refine {} holds a {}: train stage 2 with train_facade_text.py '
                             '--stage 2'.format(refine_dir, kind))
        model.refiner = refiner
    if shading_dir:
        shader = ColourModel.load(shading_dir, device)
        if not shader.shading:
            raise ModelError('--shading {} holds no shading model: train one with train_facade_text.py '
                             '--stage 2 --shading'.format(shading_dir))
        model.shader = shader
    return model


def is_blank(drawing):
    """Whether an 'L' drawing is white paper and nothing else (colorize.py --blank's)."""
    return bool(np.asarray(drawing).min() == 255)


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
