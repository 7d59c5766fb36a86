"""Colours a drawing with a trained model, one picture per tag set.

    python colorize.py -i line.png -t 初音ミク
    python colorize.py -i line.png -t 響 -t 暁 -o hibiki_vs_akatsuki.png
    python colorize.py --blank 256 -t 初音ミク -o miku.png     # no drawing: tags alone
    python colorize.py --model STAGE1 --refine STAGE2 -i big_line.png -t 初音ミク   # two stages

Each ``-t`` is one tag set (tags separated by commas, e.g. ``-t 響,銀髪``); several give
one picture each and a side-by-side sheet; none colours with no tag (the post's Fig. 5).
The output has the input's size. ``--blank SIZE`` colours white paper from the tags
alone. The model folder is what train_facade_text.py writes; ``--refine DIR`` adds a
stage-2 model (docs/hires.md). Every output path is checked before the model runs, and
every picture is written whole or not at all (atomic.py), never onto the input.
"""
import argparse
import os
import sys
import time
import warnings

from PIL import Image

import atomic
from colour_model import DEFAULT_MODEL, ModelError, load_model
import compat
import dataset
import flatting
import sheets
import tag_vectorizer

# The largest side --size and --blank take: a 4096-px square already needs gigabytes of
# feature maps at the example's width.
MAX_SIDE = 4096
# A drawing with a side over this is large: what its colouring did is said.
LARGE = 1024
# The largest cell of a sheet, so that a large drawing's sheet stays a sensible size.
SHEET_CELL = 1024


def output_paths(out, tag_sets):
    """out.png for one tag set; out_1_響.png, out_2_暁.png ... and out_sheet.png for more."""
    if len(tag_sets) <= 1:
        return [out], None
    stem, ext = os.path.splitext(out)

    def safe(text):
        return ''.join(c if c.isalnum() or c in '-_' else '_' for c in text)[:40]

    return (['{}_{}_{}{}'.format(stem, i + 1, safe('+'.join(tags) or 'notag'), ext)
             for i, tags in enumerate(tag_sets)], '{}_sheet{}'.format(stem, ext))


def output_problem(path, drawing=None):
    """Why a picture cannot be written to path, or None; checked before the model runs.
    ``drawing``: the input's path, which an output must never replace."""
    if drawing and os.path.exists(path) and os.path.exists(drawing) and os.path.samefile(path, drawing):
        return '{} is the input drawing: give the output another name (-o)'.format(path)
    if not os.path.isdir(path) and os.path.splitext(path)[1].lower() not in dataset.IMAGE_EXTENSIONS:
        return '{}: the output needs an image extension ({})'.format(
            path, ', '.join(dataset.IMAGE_EXTENSIONS))
    return atomic.path_problem(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Colour a drawing with a pix2pix-with-text model')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--input', '-i', help='drawing (PNG, JPEG or WebP; any size and mode)')
    source.add_argument('--blank', type=compat.number(int, 1, MAX_SIDE), metavar='SIZE',
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
    parser.add_argument('--size', type=compat.number(int, 1, MAX_SIDE), default=None,
                        help='side in pixels the network runs at (a multiple of 128; '
                             'default: the training size)')
    parser.add_argument('--drawing', choices=('asis',) + dataset.DRAWINGS, default=None,
                        help='use the input as the drawing (asis), or make line art / grey from a '
                             'colour picture (default: line for a colour picture, else asis)')
    parser.add_argument('--lines', choices=('keep', 'network'), default=None,
                        help="keep: the drawing's own lines over flat colours, at its full size (the "
                             'default for line art); network: the colouring as the network draws it')
    parser.add_argument('--layers', action='store_true',
                        help='with --lines keep, also write the flat colours (_flat) and the lines '
                             '(_lines, transparent PNG) as layers for a paint program')
    args = parser.parse_args(argv)
    args.lines = args.lines or ('network' if args.blank or args.drawing == 'grey' else 'keep')
    if args.blank and args.lines == 'keep':
        parser.error('--lines keep needs a drawing of lines, not --blank paper')
    if args.layers and args.lines != 'keep':
        parser.error('--layers comes with --lines keep, on a drawing of lines')

    if args.size is not None and args.size % 128:
        parser.error('--size must be a multiple of 128')
    tag_sets = [dataset.parse_tags(t.replace('、', ',')) for t in args.tag] or [[]]
    paths, sheet_path = output_paths(args.out, tag_sets)
    layers = ([layer_path(path, 'flat') for path in paths] + [layer_path(args.out, 'lines')]
              if args.layers else [])
    outputs = paths + [sheet_path] * bool(sheet_path) + layers
    problems = [problem for problem in (output_problem(path, args.input) for path in outputs) if problem]
    if problems:
        print('error: {}'.format(problems[0]), file=sys.stderr)
        return 1
    try:
        if args.blank:
            drawing = Image.new('L', (args.blank, args.blank), 255)
        else:
            image = dataset.load_image(args.input)
            kind = args.drawing or ('line' if dataset.is_colour_picture(image) else 'asis')
            if kind != (args.drawing or 'asis'):
                print('note: {} is a colour picture: colouring line art made from it (--drawing line; '
                      '--drawing asis uses it as it is)'.format(args.input), file=sys.stderr)
            drawing = dataset.make_drawing(image, kind)
        model = load_model(args.model, args.refine, compat.device_of(args))
    except (dataset.ImageError, ModelError, compat.DeviceError) as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    if model.vectorizer is None and any(tag_sets):
        print('warning: the model in {} was trained without tags (--no-tag); the tags are '
              'ignored'.format(args.model), file=sys.stderr)
    try:
        for path in outputs:
            atomic.remove_stale_of(path)  # what a colorize.py killed inside a write left
        if args.layers:
            atomic.write_image(flatting.line_layer(drawing), layers[-1])
        return colour_all(model, drawing, tag_sets, paths, sheet_path, args)
    except OSError as error:
        print('error: cannot write {} ({})'.format(error.filename, error.strerror), file=sys.stderr)
        return 1


def layer_path(path, layer):
    """NAME_flat.png, NAME_lines.png: a layer of the picture written to NAME.EXT."""
    return '{}_{}.png'.format(os.path.splitext(path)[0], layer)


def colour_all(model, drawing, tag_sets, paths, sheet_path, args):
    """Colours the drawing with each tag set into its path (and its flat layer), and the
    sheet, whose first column is the drawing the network read; the exit code."""
    failed = False
    outputs = []
    for tags, path in zip(tag_sets, paths):
        problem = model.tag_problem(tags)
        if problem:
            print('error: {}; no image for that tag set'.format(problem), file=sys.stderr)
            failed = True
            continue
        for tag, known, unknown in model.vectorizer.known_in_part(tags) if model.vectorizer else []:
            print('note: {} is not in the model\'s vocabulary: coloured by its words {} ({} unknown)'.format(
                *(tag_vectorizer.shorten(text) for text in (tag, ' '.join(known), ' '.join(unknown)))),
                file=sys.stderr)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', tag_vectorizer.UnknownTagWarning)
            result = model.colour(drawing, tags, args.size)
        if args.lines == 'keep':
            result, flat = flatting.compose(result, drawing)
            if args.layers:
                atomic.write_image(flat, layer_path(path, 'flat'))
        atomic.write_image(result, path)
        outputs.append((','.join(tags) or '(no tag)', result))
        said = ': a {}x{} drawing coloured at {} px{}, in {:.1f} s'.format(
            *drawing.size, args.size or model.size, ', its lines kept at full size' * (args.lines == 'keep'),
            time.perf_counter() - start) if max(drawing.size) > LARGE else ''
        print('wrote {}{}'.format(path, said))
    if sheet_path and outputs:
        sheet = sheets.grid([[drawing] + [r for _, r in outputs]], ['drawing'] + [t for t, _ in outputs],
                            cell=min(SHEET_CELL, max(drawing.size)))
        atomic.write_image(sheet, sheet_path)
        print('wrote {}'.format(sheet_path))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
