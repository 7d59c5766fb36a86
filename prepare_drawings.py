"""Precomputes the input drawings of a folder of tagged colour images, once, before training.

    python prepare_drawings.py my_images -o my_set            # line art (dilate-and-difference)
    python prepare_drawings.py my_images -o my_set --drawing grey --short-side 286
    python train_facade_text.py -i my_set

Writes the paired layout PaintsChainer used, which TaggedImageDataset reads:
ROOT/color/X (the colour image, hard-linked, or copied where links fail) and
ROOT/line/X.png (the drawing), the same relative names, sidecar tags (X.txt) and the
tags.tsv / tags.json files beside them. A source with train/ and test/ folders gives
ROOT/train/{color,line} and ROOT/test/{color,line}; a source already paired gets its
drawings made anew from its color/ folder. --short-side N stores the colour
images shrunk to that short side instead (the example trains on 286 for 256 crops),
so that large pictures are not decoded at full size every epoch.

Files that cannot be read are skipped and named; drawings newer than their colour
image are kept (--force redoes them), so an interrupted run continues where it stopped.
"""
import argparse
import multiprocessing
import os
import shutil
import sys


import dataset

TAG_FILES = ('tags.tsv', 'tags.json')
SAVE_OPTIONS = {'.jpg': dict(quality=95), '.jpeg': dict(quality=95), '.webp': dict(quality=95)}


def parse_args(argv):
    parser = argparse.ArgumentParser(description='Precompute input drawings into ROOT/color + ROOT/line')
    parser.add_argument('source', help='Folder of tagged colour images (searched recursively)')
    parser.add_argument('--out', '-o', required=True, help='Dataset folder to write (ROOT)')
    parser.add_argument('--drawing', choices=dataset.DRAWINGS, default='line',
                        help='line: line art (dilate-and-difference); grey: monochrome')
    parser.add_argument('--short-side', type=int, default=None,
                        help='Store colour images shrunk to this short side (default: as they are)')
    parser.add_argument('--jobs', '-j', type=int, default=os.cpu_count() or 1, help='Worker processes')
    parser.add_argument('--force', action='store_true', help='Redo drawings that are up to date')
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error('--jobs must be positive')
    if args.short_side is not None and args.short_side < 1:
        parser.error('--short-side must be positive')
    return args


def splits_of(source, out):
    """(source folder, output root) pairs: train/ and test/ separately when present."""
    if os.path.isdir(os.path.join(source, 'train')):
        return [(os.path.join(source, name), os.path.join(out, name))
                for name in ('train', 'test') if os.path.isdir(os.path.join(source, name))]
    return [(source, out)]


def link_or_copy(source, target):
    if os.path.exists(target):
        os.remove(target)
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target)


def shrunk(image, short_side):
    w, h = image.size
    scale = short_side / min(w, h)
    return dataset.resized(image, (max(1, round(w * scale)), max(1, round(h * scale))))


def prepare_one(task):
    """Writes one image's colour and drawing; returns (status, relative name, reason)."""
    path, source, out, drawing, short_side, force = task
    relative = os.path.relpath(path, source)
    colour_out = os.path.join(out, 'color', relative)
    line_out = os.path.splitext(os.path.join(out, 'line', relative))[0] + '.png'
    if (not force and os.path.exists(colour_out) and os.path.exists(line_out)
            and os.path.getmtime(line_out) >= os.path.getmtime(path)):
        return 'kept', relative, None
    try:
        colour = dataset.load_image(path, short_side)
    except dataset.ImageError as error:
        return 'skipped', relative, str(error).split(': ', 1)[-1]
    os.makedirs(os.path.dirname(colour_out), exist_ok=True)
    os.makedirs(os.path.dirname(line_out), exist_ok=True)
    if short_side and min(colour.size) > short_side:
        colour = shrunk(colour, short_side)
        colour.save(colour_out, **SAVE_OPTIONS.get(os.path.splitext(path)[1].lower(), {}))
    else:
        link_or_copy(path, colour_out)
    sidecar = os.path.splitext(path)[0] + '.txt'
    if os.path.exists(sidecar):
        link_or_copy(sidecar, os.path.splitext(colour_out)[0] + '.txt')
    # Written under a temporary name: an interrupted run leaves no half-written drawing.
    dataset.make_drawing(colour, drawing).save(line_out + '.tmp', 'PNG')
    os.replace(line_out + '.tmp', line_out)
    return 'written', relative, None


def colour_images(source, out):
    """The colour images of a folder, as TaggedImageDataset finds them: those in
    SOURCE/color if there is one (drawings are then made anew), else all but those in
    SOURCE/line and SOURCE/mask; never any under out."""
    if os.path.isdir(os.path.join(source, 'color')):
        return os.path.join(source, 'color'), dataset.find_images(os.path.join(source, 'color'))
    skip = {os.path.join(source, name) for name in ('line', 'mask')}
    out = os.path.abspath(out)
    return source, [p for p in dataset.find_images(source) if os.path.dirname(p) not in skip
                    and os.path.commonpath([os.path.abspath(p), out]) != out]


def without_name_clashes(images, root):
    """The images less those whose name another image in the same folder has with another
    extension (a.png, a.jpg): both would make line/a.png and share a.txt. The first, in
    name order, is kept; the others come back as (relative name, reason) to report."""
    kept, clashes, first = [], [], {}
    for path in images:
        stem = os.path.splitext(path)[0]
        if stem in first:
            name = os.path.basename(stem)
            clashes.append((os.path.relpath(path, root), 'the same name as {}: both would be line/{}.png '
                            'with the tags of {}.txt; rename one'.format(os.path.basename(first[stem]), name,
                                                                         name)))
        else:
            first[stem] = path
            kept.append(path)
    return kept, clashes


def prepare(source, out, drawing, short_side, jobs, force):
    """Processes one folder; returns {'written': n, 'kept': n, 'skipped': [(name, reason)]}."""
    colour_root, images = colour_images(source, out)
    images, clashes = without_name_clashes(images, colour_root)
    os.makedirs(os.path.join(out, 'color'), exist_ok=True)
    os.makedirs(os.path.join(out, 'line'), exist_ok=True)
    for name in TAG_FILES:
        if os.path.exists(os.path.join(source, name)):
            shutil.copyfile(os.path.join(source, name), os.path.join(out, name))
    counts = {'written': 0, 'kept': 0, 'skipped': clashes}
    tasks = [(p, colour_root, out, drawing, short_side, force) for p in images]
    with multiprocessing.Pool(jobs) as pool:
        for status, relative, reason in pool.imap(prepare_one, tasks, chunksize=16):
            if status == 'skipped':
                counts['skipped'].append((relative, reason))
            else:
                counts[status] += 1
    return counts


def main(argv=None):
    args = parse_args(argv)
    source, out = os.path.abspath(args.source), os.path.abspath(args.out)
    if not os.path.isdir(source):
        print('error: source folder {} does not exist'.format(args.source), file=sys.stderr)
        return 1
    if source == out:
        print('error: --out must be another folder than the source', file=sys.stderr)
        return 1
    usable = 0
    for split_source, split_out in splits_of(source, out):
        try:
            counts = prepare(split_source, split_out, args.drawing, args.short_side, args.jobs, args.force)
        except OSError as error:
            print('error: {}'.format(error), file=sys.stderr)
            return 1
        for relative, reason in counts['skipped']:
            print('skipped {}: {}'.format(relative, reason), file=sys.stderr)
        print('{}: {} drawings written, {} up to date, {} files skipped -> {}'.format(
            split_source, counts['written'], counts['kept'], len(counts['skipped']), split_out))
        usable += counts['written'] + counts['kept']
    if not usable:
        print('error: no readable images ({}) under {}'.format(
            ', '.join(dataset.IMAGE_EXTENSIONS), args.source), file=sys.stderr)
        return 1
    print('train with: python train_facade_text.py -i {}'.format(args.out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
