"""Reads tagged colour images and makes the network's (input, target) pairs.

A dataset folder holds colour images (PNG, JPEG, WebP, found recursively) and their
tags, from a sidecar ``NAME.txt`` beside each image (comma- or whitespace-separated)
or from one ``tags.tsv`` (``NAME<TAB>tag,tag``) / ``tags.json`` (``{"NAME": [tags]}``)
at the folder's top, NAME being the image's path relative to that folder, with or
without its extension.

The input drawing is either read from a paired folder (``ROOT/color/X.png`` with
``ROOT/line/X.png``, the layout PaintsChainer used; ``line/X.png`` also pairs with
``color/X.jpg``; prepare_drawings.py writes it, and the default data is made so) or
made from the colour image on the fly: ``line`` (dilate-and-difference) or ``grey``.
Line art made from a colour image leaks its colours: a navy fill leaves stronger
edges than a white one, so twins' drawings differ and a network reads the colour from
the drawing, never from the tag (make_default_data.py draws its line art from the
geometry for that reason).

Memory stays flat in the number of images (the post's 20,000 filled 30 GB as the
example's float32 arrays): only the file list and the tags are kept; images are decoded
when an example is asked for (tag_vectorizer caches the vector of each distinct tag set).
Real folders: the scan reads every file's header and skips (with a warning naming
them) files that are not images, colour images without their paired drawing, and
images whose short side is under a quarter of the crop; smaller ones are upscaled
like any other (the example's short side to size*286/256). Tag files and entries that
cannot be read (not UTF-8, tags.json that is not an object of names to tags) are
skipped with a warning naming the file (and line): their images train without those
tags. A file that fails later (a truncated body) is replaced by another example with a
warning, so training neither dies on one bad file nor trains on it. Forked loader
workers (MultiprocessIterator) reseed their random states, so their crops, flips and tag
dropouts differ.

Pixel values enter and leave the networks through ``to_unit`` / ``to_uint8`` (the
example's x/128 - 1), the one place of that scaling.
"""
import json
import math
import os
import random
import sys
import warnings

import numpy as np
from PIL import Image, ImageFilter, ImageOps

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer

from colour_space import LAYOUT_CELLS, layout_cells, layout_distance
import flatting
import tag_vectorizer

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp')
DRAWINGS = ('line', 'grey')
BLANK_TRUTHS = ('own', 'prototype')
# Images whose short side is under size / MIN_SIDE_DIVISOR are skipped at the scan:
# enlarged more than about 4.5 times to the example's 286 they are blur, not pictures.
MIN_SIDE_DIVISOR = 4
# How many unreadable examples in a row get_example tries to replace before giving up.
SUBSTITUTE_TRIES = 20
# --blank-truth prototype picks a tag set's prototype on thumbnails of this side: the
# layout cells (colour_space.LAYOUT_CELLS) need no more.
PROTOTYPE_THUMBNAIL = 32
# Resizing down by more than this factor first reduces by whole pixels (Pillow's
# reducing_gap: as good as the full filter, much faster on large images).
REDUCING_GAP = 3.0
# Skipped files named in the scan's warning (all of them are in .skipped).
NAMES_IN_WARNING = 10
UTF8_BOM = b'\xef\xbb\xbf'


class ImageError(ValueError):
    """An image file cannot be used; the message is one line naming the file."""


class DataWarning(UserWarning):
    """Images skipped, replaced or without tags: named so that they can be fixed."""


def to_unit(pixels, out=None):
    """uint8 pixels (H, W) or (H, W, C) -> float32 (C, H, W) in [-1, 1), as x/128 - 1.

    ``out``: a float32 (C, H, W) array to write into instead of a new one."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    pixels = pixels.transpose(2, 0, 1)
    if out is None:
        out = np.empty(pixels.shape, np.float32)
    # x * 2**-7 is x / 128 exactly, without a float copy of the pixels first.
    np.multiply(pixels, np.float32(1.0 / 128.0), out=out, dtype=np.float32)
    return np.subtract(out, np.float32(1.0), out=out)


def to_uint8(array):
    """The inverse of to_unit for a (C, H, W) network output: uint8 (H, W, C)."""
    pixels = (np.asarray(array, np.float32) + 1.0) * 128.0
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def drawing_planes(drawing, out):
    """Writes an 'L' drawing into out's three planes (as the example's RGB), on [-1, 1]."""
    to_unit(np.asarray(drawing), out=out[:1])
    out[1] = out[2] = out[0]


def network_input(drawing, vectorizer, tags):
    """The generator's input (4, H, W) for an 'L' drawing and a tag set: the drawing in
    three planes (as the example's RGB) and the tag plane (tag_vectorizer.tag_plane)."""
    width, height = drawing.size
    if width != height:
        raise ValueError('the network input is square, not {}x{}'.format(width, height))
    x_in = np.empty((4, height, width), np.float32)
    drawing_planes(drawing, x_in[:3])
    x_in[3] = tag_vectorizer.tag_plane(vectorizer, tags, width)
    return x_in


def _open_error(path, error):
    if isinstance(error, FileNotFoundError):
        return ImageError('{}: no such file'.format(path))
    return ImageError('{}: not a readable image ({})'.format(path, error))


# What Pillow raises for files that are not images, truncated or damaged.
_UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def image_size(path):
    """(width, height) from the file's header alone; ImageError if it is no image."""
    try:
        with Image.open(path) as image:
            return image.size
    except _UNREADABLE as error:
        raise _open_error(path, error) from None


def load_image(path, min_side=None, mode='RGB'):
    """Any PNG/JPEG/WebP in any mode -> an RGB image; transparency is laid on white,
    16-bit grey is scaled to 8 bits, an EXIF orientation is applied. Raises ImageError with a
    one-line reason.

    ``min_side``: the short side the caller will resize to; a JPEG at least twice as
    large is decoded at a reduced scale (still at least that large), much faster.
    ``mode='L'`` gives the grey of that RGB image (a grey file without a detour);
    ``mode='RGBA'`` keeps the transparency."""
    try:
        with Image.open(path) as image:
            if min_side and image.format == 'JPEG' and min(image.size) >= 2 * min_side:
                scale = min_side / min(image.size)
                image.draft(None, tuple(math.ceil(side * scale) for side in image.size))
            image.load()
            # A phone photo of a drawing is stored sideways with an EXIF orientation tag that
            # viewers apply: apply it too, or the drawing is coloured turned.
            ImageOps.exif_transpose(image, in_place=True)
    except _UNREADABLE as error:
        raise _open_error(path, error) from None
    if image.mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I'):
        maximum = 65535.0 if image.mode.startswith('I;16') else max(1.0, float(np.max(image)))
        grey = np.asarray(image, np.float64) * (255.0 / maximum)
        image = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), 'L')
    elif image.mode == 'F':
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), 'L')
    if mode == 'RGBA':  # a hints layer (flatting.py): its transparency is what it says
        return image.convert('RGBA')
    if image.mode == 'P' or image.mode in ('LA', 'PA', 'RGBa', 'La') or 'A' in image.getbands():
        rgba = image.convert('RGBA')
        white = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode != mode:
        image = image.convert('RGB')
    return image if image.mode == mode else image.convert(mode)


def is_colour_picture(image, spread=40, share=0.02):
    """Whether an RGB image is a colour picture rather than line art or grey: more than
    ``share`` of its pixels have channels ``spread`` levels apart or more (a grey
    scan's or a JPEG's noise stays well under that)."""
    pixels = np.asarray(image.convert('RGB'), np.int16)
    return float(((pixels.max(axis=2) - pixels.min(axis=2)) >= spread).mean()) > share


def make_drawing(image, kind):
    """The network's input drawing made from a colour image: 'line' art or 'grey' ('asis':
    the image is the drawing already, read as grey)."""
    grey = image.convert('L')
    if kind in ('grey', 'asis'):
        return grey
    if kind != 'line':
        raise ValueError('drawing must be one of {}, not {!r}'.format(DRAWINGS, kind))
    # Dilate-and-difference (as PaintsChainer): edges are where a 3x3 max differs.
    edges = np.asarray(grey.filter(ImageFilter.MaxFilter(3)), np.int16) - np.asarray(grey, np.int16)
    return Image.fromarray(np.clip(255 - 2 * edges, 0, 255).astype(np.uint8), 'L')


def resized(image, size):
    """Bicubic resize to size (w, h), reducing by whole pixels first when shrinking a lot."""
    # deviation from the example: bicubic, not bilinear. Drawings are thin dark lines on
    # white, and bicubic keeps them sharper than bilinear when the example's 286 px short
    # side enlarges a small picture.
    return image.resize(size, Image.BICUBIC, reducing_gap=REDUCING_GAP)


def central_square(image, side):
    """The image's central square, resized to side x side."""
    width, height = image.size
    short = min(width, height)
    left, top = (width - short) // 2, (height - short) // 2
    return resized(image.crop((left, top, left + short, top + short)), (side, side))


def read_central_square(path, side):
    """The picture's central square at side x side (uint8 RGB array), or None when it cannot
    be read."""
    try:
        return np.asarray(central_square(load_image(path, side), side))
    except ImageError:
        return None


def parse_tags(text):
    """'響, 艦これ' or '響 艦これ' -> ['響', '艦これ'] (commas win when present)."""
    parts = text.split(',') if ',' in text else text.split()
    return [tag.strip() for tag in parts if tag.strip()]


def find_images(folder):
    """Image paths under folder, recursively, in a fixed order."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(os.path.join(parent, name) for name in sorted(files)
                     if name.lower().endswith(IMAGE_EXTENSIONS))
    return found


def read_tag_table(root):
    """The tags.tsv or tags.json mapping at the folder's top, as ({name: [tags]}, problems).
    What cannot be read (a line or a file that is not UTF-8, JSON that is not an object of
    names to tags) is left out and listed in problems as (file or file:line, reason)."""
    table, problems = {}, []
    tsv, js = os.path.join(root, 'tags.tsv'), os.path.join(root, 'tags.json')
    if os.path.exists(tsv):
        try:
            with open(tsv, 'rb') as f:
                lines = f.read().removeprefix(UTF8_BOM).splitlines()
        except OSError as error:
            problems.append((tsv, error.strerror or str(error)))
            lines = []
        for number, line in enumerate(lines, 1):
            try:
                name, _, text = line.decode('utf-8').partition('\t')
            except UnicodeDecodeError as error:
                problems.append(('{}:{}'.format(tsv, number), not_utf8(error)))
                continue
            if name.strip():
                table[name.strip()] = parse_tags(text)
    if os.path.exists(js):
        try:
            mapping = json.loads(read_tag_file(js))
        except TagFileError as error:
            problems.append((js, str(error)))
        except json.JSONDecodeError as error:
            problems.append(('{}:{}'.format(js, error.lineno), 'not JSON ({})'.format(error.msg)))
        else:
            problems.extend(add_json_tags(table, mapping, js))
    return table, problems


def add_json_tags(table, mapping, path):
    """Adds tags.json's {"NAME": ["tag", ...] or "tag, tag"} to table; returns the problems."""
    if not isinstance(mapping, dict):
        return [(path, 'a JSON {}, not an object {{"NAME": ["tag", ...]}}'.format(type(mapping).__name__))]
    problems = []
    for name, tags in mapping.items():
        if isinstance(tags, str):
            table[name] = parse_tags(tags)
        elif isinstance(tags, list) and all(isinstance(tag, str) for tag in tags):
            table[name] = [tag.strip() for tag in tags if tag.strip()]
        else:
            problems.append(('{} "{}"'.format(path, tag_vectorizer.shorten(name)),
                             'tags must be a string or a list of strings, not {}'.format(
                                 json.dumps(tags, ensure_ascii=False)[:60])))
    return problems


class TagFileError(ValueError):
    """A tag file cannot be read; the message says why (the caller names the file)."""


def not_utf8(error):
    return 'not UTF-8 text (byte 0x{:02x} at position {})'.format(error.object[error.start], error.start)


def read_tag_file(path):
    """A tag file's text: UTF-8, with or without a byte-order mark."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as error:
        raise TagFileError(error.strerror or str(error)) from None
    try:
        return data.removeprefix(UTF8_BOM).decode('utf-8')
    except UnicodeDecodeError as error:
        raise TagFileError(not_utf8(error)) from None


def tags_for(image_path, colour_root, table):
    """An image's tags: its sidecar NAME.txt, else its entry in the mapping file.
    TagFileError if the sidecar cannot be read."""
    sidecar = os.path.splitext(image_path)[0] + '.txt'
    if os.path.exists(sidecar):
        return parse_tags(read_tag_file(sidecar))
    relative = os.path.relpath(image_path, colour_root).replace(os.sep, '/')
    for key in (relative, os.path.splitext(relative)[0], os.path.basename(relative),
                os.path.splitext(os.path.basename(relative))[0]):
        if key in table:
            return table[key]
    return []


def paired_drawing(colour_path, colour_root, line_root):
    """line/X.ext for color/X.ext, else line/X.png (prepare_drawings' output), else None."""
    same = os.path.join(line_root, os.path.relpath(colour_path, colour_root))
    if os.path.exists(same):
        return same
    png = os.path.splitext(same)[0] + '.png'
    return png if os.path.exists(png) else None


def split_folders(root):
    """(train, test) folders: ROOT/train and ROOT/test when present, else (ROOT, None)."""
    train, test = os.path.join(root, 'train'), os.path.join(root, 'test')
    if os.path.isdir(train):
        return train, (test if os.path.isdir(test) else None)
    return root, None


def examples(args, folder, vectorizer, augment, stage1=None):
    """The examples in folder as train_facade_text.py's flags (``args``) ask: stage 1's
    TaggedImageDataset, or stage 2's RefinementDataset (on ``stage1``'s colourings, a
    colour_model.ColourModel, with --coarse-model)."""
    if args.stage == 2:
        return RefinementDataset(folder, vectorizer, args.size, args.coarse_size, args.crop, args.drawing,
                                 augment=augment, flip=args.flip, tag_dropout=args.tag_dropout,
                                 jitter=args.coarse_jitter, stage1=stage1, shading=args.shading)
    return TaggedImageDataset(folder, vectorizer, args.size, args.drawing, augment=augment, flip=args.flip,
                              tag_dropout=args.tag_dropout, blank_fraction=args.blank_fraction,
                              blank_tag_keep=args.blank_tag_keep, blank_truth=args.blank_truth)


def make_iterator(data, batchsize, loaderjob=0, shuffle=True):
    """The training iterator: ``loaderjob`` > 0 loads in that many worker processes
    (Chainer's MultiprocessIterator), 0 in the training process (runs then repeat
    exactly from a seed and resume exactly from a snapshot)."""
    if loaderjob > 0:
        return chainer.iterators.MultiprocessIterator(data, batchsize, shuffle=shuffle,
                                                      n_processes=loaderjob)
    return chainer.iterators.SerialIterator(data, batchsize, shuffle=shuffle)


def describe(names_and_reasons, limit=NAMES_IN_WARNING):
    shown = ['{} ({})'.format(name, reason) for name, reason in names_and_reasons[:limit]]
    if len(names_and_reasons) > limit:
        shown.append('and {} more'.format(len(names_and_reasons) - limit))
    return '; '.join(shown)


class TaggedImageDataset(chainer.dataset.DatasetMixin):
    """(input, target) pairs: input = drawing (3 planes) + tag plane, target = colour.

    ``augment`` does the example's short side to size*286/256 and random size x size
    crop (``flip`` adds a random horizontal flip); without it images are resized to
    size x size. ``vectorizer=None`` gives the zero tag plane (``--no-tag``).
    ``tag_dropout`` leaves each tag out with that probability per example, so the
    network also learns from partial tag sets such as the single tag a user types.
    ``blank_fraction`` replaces the drawing by white paper in that share of examples, so
    the network also learns to paint from the tags alone (the post's text-to-image step);
    ``blank_tag_keep`` keeps each of a blank example's tags with that probability (at
    least one), so that the one or two tags a user types for a blank canvas are sets
    that training saw, not a fraction of the 3-7 tags each picture carries.
    ``blank_truth`` is what a blank example is scored against: its own picture (``'own'``,
    cropped as a drawn example's), or its tag set's prototype (``'prototype'``): of the
    pictures that carry every one of the example's kept tags, the one nearest their mean
    layout (colour_space.layout_cells), whole. A tag set then has one truth, a picture in
    one pose, where its own pictures in every pose ask for their mean: blurred colours,
    whose palette is no character's (docs/design.md, "Tags alone as a figure").

    After the scan, ``skipped`` lists (path, reason) of the files left out,
    ``tag_problems`` (file, reason) of the tag files or entries that could not be read
    (skipped), and ``untagged`` counts the images without tags; ``unreadable`` holds the indices that
    failed at load time in this process.
    """

    def __init__(self, root, vectorizer=None, size=256, drawing='line', augment=True,
                 flip=False, tag_dropout=0.0, blank_fraction=0.0, blank_tag_keep=0.5, blank_truth='own'):
        if not os.path.isdir(root):
            raise FileNotFoundError('dataset folder {} does not exist'.format(root))
        if drawing not in DRAWINGS:
            raise ValueError('drawing must be one of {}, not {!r}'.format(DRAWINGS, drawing))
        self.root = root
        paired = os.path.isdir(os.path.join(root, 'color')) and os.path.isdir(os.path.join(root, 'line'))
        self.colour_root = os.path.join(root, 'color') if paired else root
        self.line_root = os.path.join(root, 'line') if paired else None
        self.size = size
        self.drawing = drawing
        self.augment = augment
        self.flip = flip
        self.tag_dropout = tag_dropout
        self.blank_fraction = blank_fraction
        self.blank_tag_keep = blank_tag_keep
        if blank_truth not in BLANK_TRUTHS:
            raise ValueError('blank_truth must be one of {}, not {!r}'.format(BLANK_TRUTHS, blank_truth))
        self.blank_truth = blank_truth
        self.vectorizer = vectorizer
        self.unreadable = set()
        self._pid = os.getpid()
        self.scan()
        if blank_truth == 'prototype' and blank_fraction > 0 and augment:
            self.layouts = self.read_layouts()  # before a loader forks, so its workers share them
            self._prototypes, self._prototype_pictures = {}, {}

    def scan(self):
        """Finds the usable images and their tags; warns about what it leaves out."""
        found = find_images(self.colour_root)
        if self.line_root is None:
            skip = {os.path.join(self.root, name) for name in ('line', 'mask')}
            found = [p for p in found if os.path.dirname(p) not in skip]
        if not found:
            raise ValueError('no images ({}) under {}'.format(', '.join(IMAGE_EXTENSIONS), self.root))
        min_side = max(1, self.size // MIN_SIDE_DIVISOR)
        self.paths, self.line_paths, self.skipped = [], [] if self.line_root else None, []
        for path in found:
            try:
                short = min(image_size(path))
            except ImageError as error:
                self.skipped.append((path, str(error).split(': ', 1)[-1]))
                continue
            if short < min_side:
                self.skipped.append((path, 'short side {} px, under {} px for {} px crops'.format(
                    short, min_side, self.size)))
                continue
            if self.line_root:
                line = paired_drawing(path, self.colour_root, self.line_root)
                if line is None:
                    self.skipped.append((path, 'no drawing in {}'.format(self.line_root)))
                    continue
                self.line_paths.append(line)
            self.paths.append(path)
        if self.skipped:
            warnings.warn('skipped {} of {} images under {}: {}'.format(
                len(self.skipped), len(found), self.root, describe(self.skipped)), DataWarning)
        if not self.paths:
            raise ValueError('no usable images under {}: all {} were skipped'.format(self.root, len(found)))
        self.tags, self.tag_problems = self.read_tags()
        self.untagged = sum(1 for tags in self.tags if not tags)
        if self.untagged:
            warnings.warn('{} of {} images under {} have no tags (they train with the zero tag '
                          'plane), e.g. {}'.format(self.untagged, len(self.paths), self.root, next(
                              p for p, tags in zip(self.paths, self.tags) if not tags)), DataWarning)

    def read_tags(self):
        """Every image's tags, and (file, reason) of the tag files or entries that could
        not be read: those are skipped, with a warning, and never stop training."""
        table, problems = read_tag_table(self.root)
        tags = []
        for path in self.paths:
            try:
                image_tags = tags_for(path, self.colour_root, table)
            except TagFileError as error:
                problems.append((os.path.splitext(path)[0] + '.txt', str(error)))
                image_tags = []
            # One string object per distinct tag, however many images carry it.
            tags.append([sys.intern(tag) for tag in image_tags])
        if problems:
            warnings.warn('skipped {} unreadable tag files or entries under {} (their images train '
                          'without those tags): {}'.format(len(problems), self.root, describe(problems)),
                          DataWarning)
        return tags, problems

    def read_layouts(self):
        """Every picture's layout_cells on a PROTOTYPE_THUMBNAIL thumbnail of its central
        square (NaN for one that cannot be read: it is nobody's prototype)."""
        side = PROTOTYPE_THUMBNAIL
        layouts = np.full((len(self.paths), LAYOUT_CELLS, LAYOUT_CELLS, 3), np.nan)
        for i, path in enumerate(self.paths):
            picture = read_central_square(path, side)
            if picture is not None:
                layouts[i] = layout_cells(picture)
        return layouts

    def prototype(self, tags):
        """The index of the tag set's prototype: of the pictures carrying every tag, the one
        whose layout is nearest their mean layout (ties: the first); None if none could be read."""
        key = frozenset(tags)
        if key not in self._prototypes:
            members = [i for i, own in enumerate(self.tags)
                       if key <= set(own) and not np.isnan(self.layouts[i]).any()]
            mean = self.layouts[members].mean(axis=0) if members else None
            self._prototypes[key] = min(members, key=lambda i: layout_distance(self.layouts[i], mean),
                                        default=None)
        return self._prototypes[key]

    def prototype_picture(self, tags):
        """The tag set's prototype, size x size (its central square), as a blank example's
        truth; None if no picture of the set could be read."""
        i = self.prototype(tags)
        if i is not None and i not in self._prototype_pictures:
            self._prototype_pictures[i] = central_square(load_image(self.paths[i], self.size), self.size)
        return self._prototype_pictures.get(i)

    def __len__(self):
        return len(self.paths)

    def drawing_of(self, i):
        """The input drawing of example i at its stored size, as an 'L' image."""
        return self._drawing(i, None)

    def _drawing(self, i, colour, min_side=None):
        if self.line_paths is not None:
            return load_image(self.line_paths[i], min_side, 'L')
        if colour is None:
            colour = load_image(self.paths[i], min_side)
        return make_drawing(colour, self.drawing)

    def sampled_tags(self, i):
        tags = self.tags[i]
        if self.augment and self.tag_dropout > 0:
            tags = [t for t in tags if random.random() >= self.tag_dropout]
        return tags

    def blank_tags(self, i):
        """A blank example's tags: each kept with probability blank_tag_keep, at least one."""
        tags = self.tags[i]
        if self.blank_tag_keep >= 1 or not tags:
            return self.sampled_tags(i)
        kept = [t for t in tags if random.random() < self.blank_tag_keep]
        return kept or [random.choice(tags)]

    def get_example(self, i):
        self._reseed_if_forked()
        for _ in range(SUBSTITUTE_TRIES):
            if i not in self.unreadable:
                try:
                    return self.make_example(i)
                except ImageError as error:
                    self.unreadable.add(i)
                    warnings.warn('{}; trained on another image instead ({} unreadable so far in '
                                  'process {})'.format(error, len(self.unreadable), os.getpid()), DataWarning)
            i = random.randrange(len(self.paths))
        raise ImageError('{} images in a row under {} could not be read; last: {}'.format(
            SUBSTITUTE_TRIES, self.root, self.paths[i]))

    def __setstate__(self, state):
        # Unpickled in another process: the file list chainermn.scatter_dataset sends to
        # every MPI rank (train_facade_text.py --communicator). That process seeded its
        # own random states; only a forked loader worker must reseed (below).
        self.__dict__.update(state)
        self._pid = os.getpid()

    def _reseed_if_forked(self):
        # A forked loader worker starts with its parent's random states; without fresh
        # seeds, workers would repeat each other's crops, flips and tag dropouts.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            random.seed()
            np.random.seed()

    @property
    def short_side(self):
        """The short side the example resizes to before its random crop: size*286/256."""
        return round(self.size * 286 / 256)

    def make_example(self, i):
        """Example i without replacement of unreadable files (ImageError instead)."""
        min_side = self.short_side if self.augment else self.size
        colour = load_image(self.paths[i], min_side)
        drawing = self._drawing(i, colour, min_side)
        colour, drawing = self.resize_and_crop(colour, drawing)
        # Drawn only when asked for, so that runs without it keep their random sequence.
        if self.augment and self.blank_fraction > 0 and random.random() < self.blank_fraction:
            drawing = Image.new('L', drawing.size, 255)
            tags = self.blank_tags(i)
            prototype = self.prototype_picture(tags) if self.blank_truth == 'prototype' else None
            colour = colour if prototype is None else prototype
        else:
            tags = self.sampled_tags(i)
        return network_input(drawing, self.vectorizer, tags), to_unit(np.asarray(colour))

    def resize_and_crop(self, colour, drawing):
        """Both images resized (each from its own size, so a drawing stored at another
        size than its colour image is resampled once) and cropped alike."""
        size = self.size
        if not self.augment:
            return resized(colour, (size, size)), resized(drawing, (size, size))
        w, h = colour.size
        scale = self.short_side / min(w, h)
        new_size = (max(size, round(w * scale)), max(size, round(h * scale)))
        colour = resized(colour, new_size)
        drawing = resized(drawing, new_size)
        # deviation from the example: Python's random.randint includes its end, where the
        # example's np.random.randint(0, w - 256) leaves out the last offset and fails on
        # a side of exactly 256. Python's generator also keeps the crops apart from the
        # dropout masks, which draw from NumPy's.
        left = random.randint(0, new_size[0] - size)
        top = random.randint(0, new_size[1] - size)
        box = (left, top, left + size, top + size)
        colour, drawing = colour.crop(box), drawing.crop(box)
        if self.flip and random.random() < 0.5:
            colour, drawing = ImageOps.mirror(colour), ImageOps.mirror(drawing)
        return colour, drawing


# ---------------------------------------------------------------- stage 2 (refinement)
# Stage 2 (docs/hires.md) refines a stage-1 colouring enlarged to its size.
# Its input planes, in this order: the drawing (3, as network_input's), the coarse
# colouring (3), the tag plane (1).
REFINE_PLANES = 7
# The degradation that stands in for stage 1 while stage 2 trains (coarse_colouring):
# a Gaussian blur of this radius, in stage-1 pixels, drawn uniformly; per channel a gain
# and an offset (levels of 0..255); and a smooth offset field, a FIELD_GRID x FIELD_GRID
# grid of offsets per channel enlarged over the picture. The bounds come from stage 1's
# own errors on the training split (docs/hires.md, "What stage 2 trains on": how they were
# chosen).
BLUR_RADIUS = (0.0, 0.5)
COLOUR_GAIN = 0.02
COLOUR_OFFSET = 3.0
FIELD_OFFSET = 20.0
FIELD_GRID = 4
# A shading model's output (on the generator's tanh, -1..1) times this is the shading on
# the [-1, 1] scale: the colour image less its flat colours spans -2..2.
SHADING_SCALE = 2.0


def input_planes(stage):
    """The generator's input planes: the drawing's 3 and the tag plane (network_input), and in
    stage 2 a coarse colouring's 3 (refinement_input)."""
    return REFINE_PLANES if stage == 2 else 4


def refinement_input(drawing, coarse, vectorizer, tags):
    """Stage 2's input (7, H, W) for an 'L' drawing and an RGB coarse colouring of the
    same size: the drawing in three planes, the coarse colouring's three, the tag plane
    (tag_plane of the square on the long side, cut to H x W, so that a crop of the input
    holds the same part of the plane as the whole picture does)."""
    width, height = drawing.size
    if coarse.size != drawing.size:
        raise ValueError('the coarse colouring is {}x{}, the drawing {}x{}'.format(
            *coarse.size, width, height))
    x_in = np.empty((REFINE_PLANES, height, width), np.float32)
    drawing_planes(drawing, x_in[:3])
    to_unit(np.asarray(coarse.convert('RGB')), out=x_in[3:6])
    x_in[6] = tag_vectorizer.tag_plane(vectorizer, tags, max(width, height))[:height, :width]
    return x_in


def shading_target(colour, flat):
    """What a shading model (--stage 2 --shading) learns to output: the colour image (C, H,
    W on [-1, 1]) less its flat colours (on the same scale), divided by SHADING_SCALE so
    that it fits the generator's tanh."""
    return (colour - flat) / SHADING_SCALE


def with_shading(flat, output):
    """The inverse of shading_target: the flat colours with a shading model's output on them."""
    return np.clip(flat + SHADING_SCALE * output, -1, 1)


def coarse_colouring(colour, factor, rng=None, jitter=1.0):
    """What stage 2 trains on in place of a stage-1 colouring: the colour image shrunk by
    ``factor`` (to the stage-1 size), blurred and colour-jittered there, and enlarged back
    (bicubic), as colorize.py enlarges stage 1's output. ``rng`` (a random.Random or the
    random module) draws the blur and the jitter; None gives the mean blur without jitter.
    ``jitter`` scales the colour jitter's bounds (a stage 1 with smaller colour errors)."""
    width, height = colour.size
    small = resized(colour, (max(1, round(width / factor)), max(1, round(height / factor))))
    if rng is None:
        radius = sum(BLUR_RADIUS) / 2
    else:
        radius = rng.uniform(*BLUR_RADIUS)
    small = small.filter(ImageFilter.GaussianBlur(radius))
    if rng is not None:
        small = Image.fromarray(jittered(np.asarray(small), rng, jitter))
    return resized(small, (width, height))


def jittered(pixels, rng, scale=1.0):
    """uint8 RGB pixels with a random gain and offset per channel and a smooth offset field,
    within ``scale`` times the bounds above."""
    height, width, _ = pixels.shape
    gain_bound, offset_bound, field_bound = scale * COLOUR_GAIN, scale * COLOUR_OFFSET, scale * FIELD_OFFSET
    gain = np.array([rng.uniform(1 - gain_bound, 1 + gain_bound) for _ in range(3)], np.float32)
    offset = np.array([rng.uniform(-offset_bound, offset_bound) for _ in range(3)], np.float32)
    grid = np.array([rng.uniform(-field_bound, field_bound) for _ in range(3 * FIELD_GRID ** 2)],
                    np.float32).reshape(3, FIELD_GRID, FIELD_GRID)
    field = np.stack([np.asarray(Image.fromarray(plane, 'F').resize((width, height), Image.BICUBIC))
                      for plane in grid], axis=-1)
    field = np.clip(field, -field_bound, field_bound)  # bicubic overshoots its grid a little
    result = pixels.astype(np.float32) * gain + offset + field
    return np.clip(np.rint(result), 0, 255).astype(np.uint8)


class RefinementDataset(TaggedImageDataset):
    """Stage 2's (input, target) pairs: input = refinement_input(drawing, coarse colouring,
    tags) at ``size``, target = the colour image. The coarse colouring is the colour image
    degraded by coarse_colouring to ``coarse_size`` (the stage-1 size), so that training
    needs no stage-1 model. With ``augment``: the short side resized to ``size``, a random
    degradation, then a random ``crop`` x ``crop`` square of input and target alike (and
    a flip with ``flip``); without: size x size and the mean degradation. ``jitter``:
    coarse_colouring's. ``stage1`` (a colour_model.ColourModel) replaces the degradation by
    that model's colouring of the drawing with the example's tags, enlarged: stage 2 then
    learns to refine the errors that stage 1 makes. ``shading``: the coarse colouring is
    the colour image's flat colours (flatting.flat_colours) instead, and the target the
    shading on them (shading_target): what colour hints recolour stays flat, and the
    model puts back the shading."""

    def __init__(self, root, vectorizer=None, size=512, coarse_size=128, crop=None, drawing='line',
                 augment=True, flip=False, tag_dropout=0.0, jitter=1.0, stage1=None, shading=False):
        self.shading = shading
        self.coarse_size = coarse_size
        self.jitter = jitter
        self.stage1 = stage1
        self.crop = crop or size
        super().__init__(root, vectorizer, size, drawing, augment, flip, tag_dropout)

    @property
    def factor(self):
        return self.size / self.coarse_size

    def make_example(self, i):
        colour = load_image(self.paths[i], self.size)
        drawing = self._drawing(i, colour, self.size)
        new_size = (self.size, self.size)
        if self.augment:
            scale = self.size / min(colour.size)
            new_size = tuple(max(self.size, round(side * scale)) for side in colour.size)
        colour, drawing = resized(colour, new_size), resized(drawing, new_size)
        tags = self.sampled_tags(i)
        if self.shading:
            coarse = flatting.flat_colours(colour, drawing)
        elif self.stage1 is not None:
            coarse = self.stage1.colour(drawing, tags)
        else:
            coarse = coarse_colouring(colour, self.factor, random if self.augment else None, self.jitter)
        x_in = refinement_input(drawing, coarse, self.vectorizer, tags)
        t_out = to_unit(np.asarray(colour))
        if self.shading:
            t_out = shading_target(t_out, x_in[3:6])
        if self.augment:
            left = random.randint(0, new_size[0] - self.crop)
            top = random.randint(0, new_size[1] - self.crop)
            x_in = x_in[:, top:top + self.crop, left:left + self.crop]
            t_out = t_out[:, top:top + self.crop, left:left + self.crop]
            if self.vectorizer is not None and self.vectorizer.layout == 'slots':
                # The film design reads its slots at the cells of the whole plane, which a
                # crop would cut: each crop gets the whole plane, as a colouring does.
                x_in[6] = tag_vectorizer.tag_plane(self.vectorizer, tags, self.crop)
            if self.flip and random.random() < 0.5:  # the pictures, not the tag plane's layout
                x_in = np.concatenate([x_in[:6, :, ::-1], x_in[6:]])
                t_out = t_out[:, :, ::-1]
        return np.ascontiguousarray(x_in), np.ascontiguousarray(t_out)
