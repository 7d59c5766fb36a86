"""Tags alone, drawn: each tag's figure as the training pictures carrying it hold it.

A network colouring blank paper from the tags alone gives one colour per pixel, and a
per-pixel loss over many poses is least at a blend of them: a pale figure, or a strip
of the character's colours (docs/design.md, "Tags alone"). Here the colours are counted
instead, as Zhang, Isola and Efros (2016, arXiv:1603.08511) classify each pixel's colour
rather than regress it:

1. a palette of PALETTE_SIZE colours: k-means in CIELAB over the training pictures;
2. for each tag, how often each place of its pictures (their central squares at up to
   SIDE px) holds each palette colour; and the same over all the pictures (the figure
   common to every tag set);
3. a tag set's canvas: at each place the palette colour with the highest score: the
   common figure's log-frequency, plus ``guidance`` times the sum over the tags of
   their log-frequency less the common one (each tag's evidence added, as naive Bayes
   adds it; the push, as classifier-free guidance gives it: Ho and Salimans 2022,
   arXiv:2207.12598). The scores are enlarged bilinearly to the canvas's side before
   the choice, so that a large canvas gets smooth edges rather than blocks.

The most frequent colour at each place, not a mean, so the canvas is in the character's
real colours where its poses agree; the guidance takes the places where the character
differs from the others' common figure. What this file writes is train_facade_text.py's
figure_prior.npz; colour_model.py colours blank paper from it.
"""
import collections
import zipfile
import zlib

import numpy as np
from PIL import Image
from scipy.cluster.vq import kmeans2

from colour_space import srgb_to_lab
import dataset

PALETTE_SIZE = 32
# The side the frequencies are counted at (a model trained larger is counted at this):
# one tag's counts take SIDE x SIDE x PALETTE_SIZE x 2 bytes (1 MiB at 128).
SIDE = 128
# At most this many tags (the most frequent) get counts of their own; the others are
# left to the network.
MOST_TAGS = 64
# Added to every count of the common figure: a colour never seen at a place is unlikely
# there, not impossible; and the common figure's weight, in pictures, in each tag's.
PSEUDO_COUNT = 0.5
TAG_PRIOR = 1.0
# The palette is fitted on this many pixels, drawn from this many pictures; the counts
# are taken over at most COUNTED_PICTURES pictures drawn at random (about a minute's
# reading), plenty for the frequencies of any tag that many pictures carry.
PALETTE_PIXELS = 100000
PALETTE_PICTURES = 256
COUNTED_PICTURES = 5000


class PriorError(ValueError):
    """A figure_prior.npz that cannot be used; the message is one line."""


class FigurePrior:
    """The palette (K, 3) uint8, the tags counted, and the counts: (tags + 1, S, S, K)
    uint16, the last row over all the pictures."""

    def __init__(self, palette, tags, counts):
        self.palette, self.tags, self.counts = palette, list(tags), counts
        self.index = {tag: i for i, tag in enumerate(self.tags)}
        common = counts[-1].astype(np.float32) + PSEUDO_COUNT
        self.common = common / common.sum(axis=-1, keepdims=True)  # every tag's frequencies lean on it

    def knows(self, tags):
        """The tags of a set that have counts here."""
        return [tag for tag in tags if tag in self.index]

    def frequencies(self, tag=None):
        """(S, S, K): how often each place holds each colour, over the tag's pictures (a
        tag) or all of them (None). The common figure's counts get PSEUDO_COUNT each; a
        tag's get TAG_PRIOR pictures' worth of the common figure, so that a colour its
        pictures never show at a place is as rare there as it is everywhere, not as
        likely as any."""
        if tag is None:
            return self.common
        counts = self.counts[self.index[tag]].astype(np.float32) + TAG_PRIOR * self.common
        return counts / counts.sum(axis=-1, keepdims=True)

    def canvas(self, tags, side, guidance=1.0):
        """The tag set's canvas, side x side RGB (uint8); None when no tag has counts."""
        known = self.knows(tags)
        if not known:
            return None
        common = np.log(self.frequencies())
        score = common + guidance * sum(np.log(self.frequencies(tag)) - common for tag in known)
        if side != score.shape[0]:
            score = np.stack([np.asarray(Image.fromarray(plane).resize((side, side), Image.BILINEAR))
                              for plane in np.moveaxis(score, -1, 0)], axis=-1)
        return Image.fromarray(self.palette[score.argmax(axis=-1)], 'RGB')

    def save(self, path):
        with open(path, 'wb') as handle:
            np.savez_compressed(handle, palette=self.palette, tags=np.array(self.tags, dtype=np.str_),
                                counts=self.counts)

    @classmethod
    def load(cls, path):
        """The prior saved at path; PriorError (one line) for a damaged or foreign file.
        Read with pickles off: a model folder is something users share."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                palette, tags, counts = archive['palette'], archive['tags'], archive['counts']
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            reason = (str(error).splitlines() or [type(error).__name__])[0]
            raise PriorError('{} cannot be read ({})'.format(path, reason)) from None
        if palette.dtype != np.uint8 or palette.ndim != 2 or palette.shape[1] != 3 or tags.ndim != 1 or \
                counts.dtype != np.uint16 or counts.ndim != 4 or counts.shape[0] != len(tags) + 1 or \
                counts.shape[1] != counts.shape[2] or counts.shape[3] != len(palette):
            raise PriorError('{} is not a figure prior (palette {} {}, {} tags, counts {} {})'.format(
                path, palette.dtype, palette.shape, len(tags), counts.dtype, counts.shape))
        return cls(palette, [str(tag) for tag in tags], counts)


def estimate(paths, tags_of, side, seed=0):
    """The prior of these pictures (each central square at ``side`` px) and their tags
    (``tags_of[i]`` for ``paths[i]``); pictures that cannot be read are left out. Up to
    COUNTED_PICTURES of them, drawn at random, are read one at a time and counted, so
    that a large data set is never held whole (and every count fits in 16 bits)."""
    random = np.random.default_rng(seed)
    if len(paths) > COUNTED_PICTURES:
        chosen = sorted(random.choice(len(paths), COUNTED_PICTURES, replace=False))
        paths, tags_of = [paths[i] for i in chosen], [tags_of[i] for i in chosen]
    frequency = collections.Counter(tag for tags in tags_of for tag in tags)
    counted = sorted(frequency, key=lambda tag: (-frequency[tag], tag))[:MOST_TAGS]
    row_of = {tag: i for i, tag in enumerate(counted)}
    centres = fit_palette(paths, side, random, seed)
    counts = np.zeros((len(counted) + 1, side * side, len(centres)), np.uint16)
    palette_sums = np.zeros((len(centres), 3))
    places = np.arange(side * side)
    for path, tags in zip(paths, tags_of):
        picture = dataset.read_central_square(path, side)
        if picture is None:
            continue
        flat = picture.reshape(-1, 3)
        nearest = nearest_centre(srgb_to_lab(flat.astype(np.float64)), centres)
        for row in [row_of[tag] for tag in tags if tag in row_of] + [-1]:
            counts[row, places, nearest] += 1
        np.add.at(palette_sums, nearest, flat)
    members = counts[-1].sum(axis=0, dtype=np.int64)
    palette = np.where(members[:, None] > 0, palette_sums / np.maximum(members, 1)[:, None], 255)
    return FigurePrior(np.round(palette).astype(np.uint8), counted,
                       counts.reshape(len(counted) + 1, side, side, len(centres)))


def fit_palette(paths, side, random, seed):
    """(K, 3) CIELAB centres: k-means over PALETTE_PIXELS pixels of PALETTE_PICTURES of the
    pictures, both drawn with ``random``."""
    chosen = random.permutation(len(paths))[:PALETTE_PICTURES]
    pictures = (dataset.read_central_square(paths[i], side) for i in chosen)
    pixels = [picture.reshape(-1, 3) for picture in pictures if picture is not None]
    if not pixels:
        raise PriorError('no readable picture to fit a palette on')
    pixels = np.concatenate(pixels)
    sample = srgb_to_lab(pixels[random.integers(0, len(pixels), min(len(pixels), PALETTE_PIXELS))]
                         .astype(np.float64))
    centres, _ = kmeans2(sample, min(PALETTE_SIZE, len(np.unique(sample, axis=0))), minit='++', seed=seed)
    return centres


def nearest_centre(lab, centres):
    """Each (N, 3) CIELAB colour's nearest centre (Euclidean)."""
    return ((lab[:, None, :] - centres[None]) ** 2).sum(axis=-1).argmin(axis=1)
