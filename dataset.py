"""Reads tagged colour images and makes the network's (input, target) pairs.

A dataset folder holds colour images (PNG, JPEG, WebP, found recursively) and their
tags, from a sidecar ``NAME.txt`` beside each image (comma- or whitespace-separated)
or from one ``tags.tsv`` (``NAME<TAB>tag,tag``) / ``tags.json`` (``{"NAME": [tags]}``)
at the folder's top, NAME being the image's path relative to that folder, with or
without its extension.

The input drawing is either read from a paired folder (``ROOT/color/X.png`` with
``ROOT/line/X.png``, the layout PaintsChainer used; the default data is made so,
because line art derived from a colour image leaks its colours, REFERENCE §6) or made
from the colour image on the fly: ``line`` (dilate-and-difference) or ``grey``.

Images are decoded when an example is asked for and never kept, so memory does not
grow with the number of images. Pixel values enter and leave the networks through
``to_unit`` / ``to_uint8`` (the example's x/128 - 1), the one place of that scaling.
"""
import json
import os
import random

import numpy as np
from PIL import Image, ImageFilter, ImageOps

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer

import tag_vectorizer

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp')
DRAWINGS = ('line', 'grey')


class ImageError(ValueError):
    """An image file cannot be used; the message is one line naming the file."""


def to_unit(pixels):
    """uint8 pixels (H, W) or (H, W, C) -> float32 (C, H, W) in [-1, 1), as x/128 - 1."""
    pixels = np.asarray(pixels, np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return pixels.transpose(2, 0, 1) / 128.0 - 1.0


def to_uint8(array):
    """The inverse of to_unit for a (C, H, W) network output: uint8 (H, W, C)."""
    pixels = (np.asarray(array, np.float32) + 1.0) * 128.0
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def load_image(path):
    """Any PNG/JPEG/WebP in any mode -> an RGB image; transparency is laid on white,
    16-bit grey is scaled to 8 bits. Raises ImageError with a one-line reason."""
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError:
        raise ImageError('{}: no such file'.format(path)) from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError('{}: not a readable image ({})'.format(path, error)) from None
    if image.mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I'):
        maximum = 65535.0 if image.mode.startswith('I;16') else max(1.0, float(np.max(image)))
        grey = np.asarray(image, np.float64) * (255.0 / maximum)
        image = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), 'L')
    elif image.mode == 'F':
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), 'L')
    if image.mode == 'P' or image.mode in ('LA', 'PA', 'RGBa', 'La') or 'A' in image.getbands():
        rgba = image.convert('RGBA')
        white = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert('RGB')


def make_drawing(image, kind):
    """The network's input drawing made from a colour image: 'line' art or 'grey'."""
    grey = image.convert('L')
    if kind == 'grey':
        return grey
    if kind != 'line':
        raise ValueError('drawing must be one of {}, not {!r}'.format(DRAWINGS, kind))
    # Dilate-and-difference (as PaintsChainer): edges are where a 3x3 max differs.
    edges = np.asarray(grey.filter(ImageFilter.MaxFilter(3)), np.int16) - np.asarray(grey, np.int16)
    return Image.fromarray(np.clip(255 - 2 * edges, 0, 255).astype(np.uint8), 'L')


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
    """The tags.tsv or tags.json mapping at the folder's top, as {name: [tags]}."""
    tsv, js = os.path.join(root, 'tags.tsv'), os.path.join(root, 'tags.json')
    table = {}
    if os.path.exists(tsv):
        with open(tsv, encoding='utf-8') as f:
            for line in f:
                if line.strip():
                    name, _, text = line.rstrip('\n').partition('\t')
                    table[name.strip()] = parse_tags(text)
    if os.path.exists(js):
        with open(js, encoding='utf-8') as f:
            for name, tags in json.load(f).items():
                table[name] = parse_tags(tags) if isinstance(tags, str) else list(tags)
    return table


def tags_for(image_path, colour_root, table):
    """An image's tags: its sidecar NAME.txt, else its entry in the mapping file."""
    sidecar = os.path.splitext(image_path)[0] + '.txt'
    if os.path.exists(sidecar):
        with open(sidecar, encoding='utf-8') as f:
            return parse_tags(f.read())
    relative = os.path.relpath(image_path, colour_root).replace(os.sep, '/')
    for key in (relative, os.path.splitext(relative)[0], os.path.basename(relative),
                os.path.splitext(os.path.basename(relative))[0]):
        if key in table:
            return table[key]
    return []


class TaggedImageDataset(chainer.dataset.DatasetMixin):
    """(input, target) pairs: input = drawing (3 planes) + tag plane, target = colour.

    ``augment`` does the example's short side to size*286/256 and random size x size
    crop (``flip`` adds a random horizontal flip); without it images are resized to
    size x size. ``vectorizer=None`` gives the zero tag plane (``--no-tag``).
    ``tag_dropout`` leaves each tag out with that probability per example, so the
    network also learns from partial tag sets such as the single tag a user types.
    """

    def __init__(self, root, vectorizer=None, size=256, drawing='line', augment=True,
                 flip=False, tag_dropout=0.0):
        if not os.path.isdir(root):
            raise FileNotFoundError('dataset folder {} does not exist'.format(root))
        self.root = root
        paired = os.path.isdir(os.path.join(root, 'color')) and os.path.isdir(os.path.join(root, 'line'))
        self.colour_root = os.path.join(root, 'color') if paired else root
        self.line_root = os.path.join(root, 'line') if paired else None
        self.paths = find_images(self.colour_root)
        if not paired:
            skip = {os.path.join(root, name) for name in ('line', 'mask')}
            self.paths = [p for p in self.paths if os.path.dirname(p) not in skip]
        if not self.paths:
            raise ValueError('no images ({}) under {}'.format(', '.join(IMAGE_EXTENSIONS), root))
        table = read_tag_table(root)
        self.tags = [tags_for(p, self.colour_root, table) for p in self.paths]
        self.vectorizer = vectorizer
        self.size = size
        self.drawing = drawing
        self.augment = augment
        self.flip = flip
        self.tag_dropout = tag_dropout
        if drawing not in DRAWINGS:
            raise ValueError('drawing must be one of {}, not {!r}'.format(DRAWINGS, drawing))

    def __len__(self):
        return len(self.paths)

    def drawing_of(self, i):
        """The input drawing of example i at its stored size, as an 'L' image."""
        if self.line_root is not None:
            relative = os.path.relpath(self.paths[i], self.colour_root)
            return load_image(os.path.join(self.line_root, relative)).convert('L')
        return make_drawing(load_image(self.paths[i]), self.drawing)

    def tag_plane(self, tags):
        if self.vectorizer is None:
            return np.zeros((self.size, self.size), np.float32)
        return tag_vectorizer.plane(self.vectorizer.vector(tags), self.size)

    def sampled_tags(self, i):
        tags = self.tags[i]
        if self.augment and self.tag_dropout > 0:
            tags = [t for t in tags if random.random() >= self.tag_dropout]
        return tags

    def get_example(self, i):
        colour = load_image(self.paths[i])
        drawing = self.drawing_of(i)
        if drawing.size != colour.size:
            drawing = drawing.resize(colour.size, Image.BICUBIC)
        colour, drawing = self.resize_and_crop(colour, drawing)
        x_in = np.concatenate([to_unit(np.asarray(drawing.convert('RGB'))),
                               self.tag_plane(self.sampled_tags(i))[None]])
        return x_in, to_unit(np.asarray(colour))

    def resize_and_crop(self, colour, drawing):
        size = self.size
        if not self.augment:
            return (colour.resize((size, size), Image.BICUBIC),
                    drawing.resize((size, size), Image.BICUBIC))
        short = round(size * 286 / 256)
        w, h = colour.size
        scale = short / min(w, h)
        new_size = (max(size, round(w * scale)), max(size, round(h * scale)))
        colour = colour.resize(new_size, Image.BICUBIC)
        drawing = drawing.resize(new_size, Image.BICUBIC)
        left = random.randint(0, new_size[0] - size)
        top = random.randint(0, new_size[1] - size)
        box = (left, top, left + size, top + size)
        colour, drawing = colour.crop(box), drawing.crop(box)
        if self.flip and random.random() < 0.5:
            colour, drawing = ImageOps.mirror(colour), ImageOps.mirror(drawing)
        return colour, drawing
