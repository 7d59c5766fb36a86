"""Colours a drawing with a trained model, one picture per tag set.

    python colorize.py -i line.png -t 初音ミク
    python colorize.py -i line.png -t 響 -t 暁 -o hibiki_vs_akatsuki.png
    python colorize.py --blank 256 -t 初音ミク -o miku.png     # no drawing: tags alone
    python colorize.py --model STAGE1 --refine STAGE2 -i big_line.png -t 初音ミク   # two stages
    python colorize.py -i pages/ -o coloured/ --tags-from-files     # a whole folder

Each ``-t`` is one tag set (tags separated by commas, e.g. ``-t 響,銀髪``); several give
one picture each and a side-by-side sheet; none colours with no tag (the post's Fig. 5).
The output has the input's size. ``--blank SIZE`` colours white paper from the tags
alone. The model folder is what train_facade_text.py writes; ``--refine DIR`` adds a
stage-2 model (docs/hires.md). Every output path is checked before the model runs, and
every picture is written whole or not at all (atomic.py), never onto the input.

``-i DIR -o OUTDIR`` colours every image under DIR into the same sub-folders of OUTDIR
(NAME.png, or NAME_1_TAG.png ... for several tag sets), loading the model once. A drawing
whose outputs are all there is skipped (``--overwrite`` redoes it), so a run that was
stopped carries on where it stopped when started again.
"""
import argparse
import collections
import datetime
import os
import sys
import time
import warnings

from PIL import Image

import atomic
from colour_model import BLANK_GUIDANCE, DEFAULT_MODEL, ModelError, load_model
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
# In a folder, NAME.hints.png beside NAME.png holds that drawing's hints.
HINTS_SUFFIX = '.hints.png'


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
    source.add_argument('--input', '-i',
                        help='drawing (PNG, JPEG or WebP; any size and mode), or a folder of them')
    source.add_argument('--blank', type=compat.number(int, 1, MAX_SIDE), metavar='SIZE',
                        help='no drawing: colour blank paper of SIZE x SIZE pixels from the tags alone')
    parser.add_argument('--guidance', type=compat.number(float, 1, 10), default=None, metavar='W',
                        help='with --blank: how far the colouring with the tags is pushed from the one with '
                             'none (1: not at all; default {})'.format(BLANK_GUIDANCE))
    parser.add_argument('--tag', '-t', action='append', default=[],
                        help='tags for one output, comma-separated; repeat for several outputs')
    parser.add_argument('--out', '-o', default=None,
                        help='output image (.png; .jpg and .webp also work; default colorized.png); its '
                             'folder must exist. For a folder of drawings: the output folder')
    parser.add_argument('--tags-from-files', action='store_true',
                        help="for a folder: each drawing's own tags, from NAME.txt beside it or the "
                             "folder's tags.tsv / tags.json (as training reads them), instead of -t")
    parser.add_argument('--overwrite', action='store_true',
                        help='for a folder: colour again the drawings whose outputs are already there')
    parser.add_argument('--model', default=DEFAULT_MODEL, help='model folder written by training')
    parser.add_argument('--refine', default=None, metavar='DIR',
                        help='a stage-2 model (train_facade_text.py --stage 2) that refines the colouring '
                             'at up to its size')
    parser.add_argument('--shading', default=None, metavar='DIR',
                        help='a shading model (train_facade_text.py --stage 2 --shading) that shades the '
                             'flat colours under the kept lines, colour hints included')
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
    parser.add_argument('--hint', action='append', default=[], metavar='X,Y,#RRGGBB',
                        help='a colour hint: the region of the drawing at X,Y (pixels from the top left) '
                             'and the regions the network colours as the same part take this colour; '
                             'repeatable')
    parser.add_argument('--hints', metavar='FILE',
                        help="a transparent PNG of the drawing's size with dots or strokes of colour, as "
                             "PaintsChainer's; in a folder, NAME.hints.png beside a drawing is its hints")
    parser.add_argument('--layers', action='store_true',
                        help='with --lines keep, also write the flat colours (_flat) and the lines '
                             '(_lines, transparent PNG) as layers for a paint program')
    args = parser.parse_args(argv)
    folder = args.input is not None and os.path.isdir(args.input)
    if folder and args.out is None:
        parser.error('a folder of drawings needs an output folder: -o OUTDIR')
    if (args.tags_from_files or args.overwrite) and not folder:
        parser.error('--tags-from-files and --overwrite are for a folder of drawings (-i DIR)')
    if args.tags_from_files and args.tag:
        parser.error("--tags-from-files takes each drawing's tags from its files: give no -t")
    args.out = args.out or 'colorized.png'
    args.lines = args.lines or ('network' if args.blank or args.drawing == 'grey' else 'keep')
    if args.guidance is not None and not args.blank:
        parser.error('--guidance is for --blank paper')
    args.guidance = args.guidance or BLANK_GUIDANCE
    if args.blank and args.lines == 'keep':
        parser.error('--lines keep needs a drawing of lines, not --blank paper')
    if args.layers and args.lines != 'keep':
        parser.error('--layers comes with --lines keep, on a drawing of lines')
    if args.shading and args.lines != 'keep':
        parser.error('--shading shades the flat colours of a drawing of lines: it comes with --lines keep')
    if (args.hint or args.hints) and args.lines != 'keep':
        parser.error('hints colour the regions of a drawing of lines: they come with --lines keep')
    try:
        args.dots = [flatting.parse_hint(text) for text in args.hint]
    except flatting.HintError as error:
        parser.error(str(error))

    if args.size is not None and args.size % 128:
        parser.error('--size must be a multiple of 128')
    tag_sets = [dataset.parse_tags(t.replace('、', ',')) for t in args.tag] or [[]]
    if folder:
        return colour_folder(args, tag_sets)
    paths, sheet_path = output_paths(args.out, tag_sets)
    outputs = paths + [sheet_path] * bool(sheet_path) + layer_paths(args, args.out, paths)
    problems = [problem for problem in (output_problem(path, args.input) for path in outputs) if problem]
    if problems:
        print('error: {}'.format(problems[0]), file=sys.stderr)
        return 1
    try:
        drawing = (Image.new('L', (args.blank, args.blank), 255) if args.blank
                   else drawing_of(args.input, args.drawing, print_note))
        hints = hints_for(drawing, args.dots, args.hints)
        model = load_model(args.model, args.refine, compat.device_of(args), args.shading)
    except (dataset.ImageError, ModelError, compat.DeviceError, flatting.HintError) as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    warn_if_tags_ignored(model, tag_sets, args)
    try:
        failed, outputs = colour_all(model, drawing, tag_sets, args.out, args, set(), print, hints)
        if sheet_path:
            atomic.remove_stale_of(sheet_path)
        if sheet_path and outputs:
            shown = drawing if hints is None else flatting.with_hints_shown(drawing, hints)
            labels = ['drawing' if hints is None else 'drawing and hints'] + [t for t, _ in outputs]
            sheet = sheets.grid([[shown] + [r for _, r in outputs]], labels,
                                cell=min(SHEET_CELL, max(drawing.size)))
            atomic.write_image(sheet, sheet_path)
            print('wrote {}'.format(sheet_path))
        return 1 if failed else 0
    except OSError as error:
        print('error: cannot write {} ({})'.format(error.filename, error.strerror), file=sys.stderr)
        return 1


def hints_for(drawing, dots, hints_file):
    """The RGBA hints picture of --hint dots and a --hints file, or None for neither."""
    if not dots and not hints_file:
        return None
    picture = dataset.load_image(hints_file, mode='RGBA') if hints_file else None
    return flatting.hints_of(drawing.size, dots, picture)


def print_note(text):
    print('note: {}'.format(text), file=sys.stderr)


def drawing_of(path, kind, note):
    """The 'L' drawing the network reads from the image at path: as it is, or line art
    (the default for a colour picture, said through ``note``) or grey made from it."""
    image = dataset.load_image(path)
    chosen = kind or ('line' if dataset.is_colour_picture(image) else 'asis')
    if chosen != (kind or 'asis'):
        note('{} is a colour picture: colouring line art made from it (--drawing line; '
             '--drawing asis uses it as it is)'.format(path))
    return dataset.make_drawing(image, chosen)


def warn_if_tags_ignored(model, tag_sets, args):
    if model.vectorizer is None and (any(tag_sets) or args.tags_from_files):
        print('warning: the model in {} was trained without tags (--no-tag); the tags are '
              'ignored'.format(args.model), file=sys.stderr)


def layer_path(path, layer):
    """NAME_flat.png, NAME_lines.png: a layer of the picture written to NAME.EXT."""
    return '{}_{}.png'.format(os.path.splitext(path)[0], layer)


def layer_paths(args, out, paths):
    """With --layers, each picture's flat layer and the drawing's one line layer, last."""
    return [layer_path(path, 'flat') for path in paths] + [layer_path(out, 'lines')] if args.layers else []


def blank_note(prior, tags):
    """What blank paper's canvas leaves out of a tag set: the tags the model's figure prior
    has not counted (none of the training pictures carries them, or they are past its
    figure_prior.MOST_TAGS most frequent); None when it has counted them all."""
    counted = prior.knows(tags)
    left_out = [tag for tag in tags if tag not in counted]
    if not left_out:
        return None
    names = ', '.join(map(tag_vectorizer.shorten, left_out))
    if len(left_out) == len(tags):
        return 'the figure prior has not counted {}: the network colours the blank paper'.format(names)
    return 'the figure prior has not counted {}: the figure is drawn from the other tags'.format(names)


def colour_all(model, drawing, tag_sets, out, args, said, say, hints=None):
    """Colours the drawing with each tag set into its path of output_paths(out) (and, with
    --layers, its flat layer and the line layer); returns whether a tag set failed, and
    the (label, picture) pairs made. ``said`` holds the notes already printed, so that a folder's run names a
    tag known in part once; ``say`` prints what was written; ``hints``: an RGBA hints
    picture (flatting.py) for the flat colours."""
    paths, _ = output_paths(out, tag_sets)
    for path in paths + layer_paths(args, out, paths):
        atomic.remove_stale_of(path)  # what a colorize.py killed inside a write left
    if args.layers:
        atomic.write_image(flatting.line_layer(drawing), layer_path(out, 'lines'))
    failed, outputs = False, []
    for tags, path in zip(tag_sets, paths):
        problem = model.tag_problem(tags)
        if problem:
            print('error: {}; no image for that tag set'.format(problem), file=sys.stderr)
            failed = True
            continue
        for tag, known, unknown in model.vectorizer.known_in_part(tags) if model.vectorizer else []:
            note = '{} is not in the model\'s vocabulary: coloured by its words {} ({} unknown)'.format(
                *(tag_vectorizer.shorten(text) for text in (tag, ' '.join(known), ' '.join(unknown))))
            if note not in said:
                said.add(note)
                print_note(note)
        note = blank_note(model.prior, tags) if args.blank and model.prior is not None and tags else None
        if note:
            print_note(note)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', tag_vectorizer.UnknownTagWarning)
            result = model.colour(drawing, tags, args.size, args.guidance)
        if args.lines == 'keep':
            notes = []
            probes = model.probe_colourings(drawing, result) if hints is not None else ()
            result, flat = model.compose(result, drawing, tags, hints, notes, probes)
            for note in notes:
                print_note(note)
            if args.layers:
                atomic.write_image(flat, layer_path(path, 'flat'))
        atomic.write_image(result, path)
        outputs.append((','.join(tags) or '(no tag)', result))
        said_size = ': a {}x{} drawing coloured at {} px{}, in {:.1f} s'.format(
            *drawing.size, args.size or model.size, ', its lines kept at full size' * (args.lines == 'keep'),
            time.perf_counter() - start) if max(drawing.size) > LARGE else ''
        say('wrote {}{}'.format(path, said_size))
    return failed, outputs


def folder_jobs(folder, out):
    """(drawing, output) paths for every image under folder, the output mirroring its
    place as NAME.png in out; what lies in out, when out is inside folder, is left out.
    Two drawings of one name (a.png, a.jpg) keep their extension in it (a_png.png)."""
    out_root = os.path.abspath(out)
    jobs = []
    for path in dataset.find_images(folder):
        if os.path.commonpath([os.path.abspath(path), out_root]) == out_root or path.endswith(HINTS_SUFFIX):
            continue
        stem = os.path.splitext(os.path.relpath(path, folder))[0]
        jobs.append((path, os.path.join(out, stem)))
    repeated = collections.Counter(stem for _, stem in jobs)
    return [(path, '{}{}.png'.format(stem, '_' + os.path.splitext(path)[1][1:].lower()
                                     if repeated[stem] > 1 else ''))
            for path, stem in jobs]


def file_tags(path, folder, table, model, said):
    """A drawing's own tags (--tags-from-files), less those the model knows no word of:
    the pixiv tags of a real page hold many such, and each is named once."""
    tags = dataset.tags_for(path, folder, table)
    unknown = set(model.unknown_tags(tags)) if model.vectorizer else set()
    for tag in sorted(unknown - said):
        said.add(tag)
        print_note('tag {} is not in the model\'s vocabulary: left out (first in {})'.format(
            tag_vectorizer.shorten(tag), path))
    return [tag for tag in tags if tag not in unknown]


def colour_folder(args, tag_sets):
    """Colours every drawing under args.input into args.out, the model loaded once: a
    progress line per drawing with the rate and the time left, one error line per file
    that fails (the rest go on), and a summary; the exit code (1 if any failed)."""
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        print('error: {} is a file: for a folder of drawings -o names a folder'.format(args.out),
              file=sys.stderr)
        return 1
    if os.path.isdir(args.out) and os.path.samefile(args.out, args.input):
        print('error: -o is the input folder: give another folder, so that no drawing is '
              'written over', file=sys.stderr)
        return 1
    jobs = folder_jobs(args.input, args.out)
    if not jobs:
        print('error: no images ({}) under {}'.format(', '.join(dataset.IMAGE_EXTENSIONS), args.input),
              file=sys.stderr)
        return 1
    table, problems = dataset.read_tag_table(args.input) if args.tags_from_files else ({}, [])
    for where, reason in problems:
        print('warning: {}: {}; left out'.format(where, reason), file=sys.stderr)
    try:
        model = load_model(args.model, args.refine, compat.device_of(args), args.shading)
    except (ModelError, compat.DeviceError) as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    warn_if_tags_ignored(model, tag_sets, args)
    said, counts = set(), collections.Counter()

    def tag_sets_of(path):
        return [file_tags(path, args.input, table, model, said)] if args.tags_from_files else tag_sets

    start, coloured_time = time.perf_counter(), 0.0
    try:
        for number, (path, out) in enumerate(jobs, 1):
            began = time.perf_counter()
            outcome, remark = colour_one_file(model, path, out, tag_sets_of, args, said)
            counts[outcome] += 1
            if outcome != 'skipped':
                coloured_time += time.perf_counter() - began
            name = os.path.relpath(path, args.input)
            print(progress_line(number, len(jobs), name, outcome + remark, counts, coloured_time), flush=True)
    except KeyboardInterrupt:
        print('stopped: run the same command again to colour the rest', file=sys.stderr)
        print(summary(counts, time.perf_counter() - start))
        return 130
    print(summary(counts, time.perf_counter() - start))
    return 1 if counts['failed'] else 0


def colour_one_file(model, path, out, tag_sets_of, args, said):
    """('done' | 'skipped' (its outputs are there) | 'failed' (said in one line), a remark)."""
    remark = []
    try:
        tag_sets = tag_sets_of(path)
        paths, _ = output_paths(out, tag_sets)
        if not args.overwrite and all(os.path.exists(p) for p in paths + layer_paths(args, out, paths)):
            return 'skipped', ''
        os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
        drawing = drawing_of(path, args.drawing, remark.append)
        hints_file = os.path.splitext(path)[0] + HINTS_SUFFIX
        hints = hints_for(drawing, args.dots, hints_file if os.path.exists(hints_file) else args.hints)
        failed, _ = colour_all(model, drawing, tag_sets, out, args, said, lambda text: None, hints)
        made_lines = ' (a colour picture: coloured as line art made from it)' * bool(remark)
        return ('failed' if failed else 'done'), made_lines
    except dataset.ImageError as error:
        print('error: {}'.format(error), file=sys.stderr)
    except flatting.HintError as error:
        print('error: {}: {}'.format(path, error), file=sys.stderr)
    except dataset.TagFileError as error:
        print('error: {}.txt: {}'.format(os.path.splitext(path)[0], error), file=sys.stderr)
    except OSError as error:
        print('error: cannot write {} ({})'.format(error.filename, error.strerror), file=sys.stderr)
    return 'failed', ''


def progress_line(number, total, path, outcome, counts, coloured_time):
    """'[ 12/100] a/b.png done · 2.41 images/s · 0:00:36 left', the time left reckoned as if
    every drawing still to come were coloured."""
    coloured = counts['done'] + counts['failed']
    rate = coloured / coloured_time if coloured_time else None
    left = '{} left'.format(datetime.timedelta(seconds=round((total - number) / rate))) if rate else ''
    return '[{:>{width}}/{}] {} {}{}'.format(
        number, total, path, outcome,
        ' · {:.2f} images/s · {}'.format(rate, left) if rate else '', width=len(str(total)))


def summary(counts, seconds):
    return '{} done, {} skipped (there already), {} failed, in {}'.format(
        counts['done'], counts['skipped'], counts['failed'], datetime.timedelta(seconds=round(seconds)))


if __name__ == '__main__':
    sys.exit(main())
