"""What a tags-alone canvas could score: evaluate.py's two text-only scores for pictures
made from the training split, no network involved.

    python benchmarks/text_only_references.py --data data/default

For each character, five canvases stand in for the network's colouring of blank paper
with its tag: the mean of its training pictures (what a squared error over every pose
asks for), their per-pixel median (what L1 asks for), a mosaic of them (each pixel from
one of them at random: the mean's layout in real colours), its prototype
(``dataset.TaggedImageDataset.prototype``: the picture of the character's tag nearest
their mean layout, what ``--blank-truth prototype`` trains towards), and a white page.
Each is scored as evaluate.py scores the canvases, against the test split: the palette
(``text_only_palette_accuracy``) and the layout (``text_only_layout_accuracy``,
``text_only_layout_distance``), and the characters it misses are named (the one whose
mean it is nearest instead). A last row scores the colour test pictures themselves,
each against the means of the pictures it is one of: how often a real picture of the
character is nearest its own character's mean, and how far from it, beside which the
canvases' layout scores can be read.
"""
import argparse
import os
import sys
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import compat  # noqa: E402,F401  (Chainer shims; must precede chainer)
import dataset  # noqa: E402
import evaluate  # noqa: E402


def reference_canvases(train, tags, size, seed=0):
    """{'mean': {tag: picture}, 'median': {...}, 'mosaic': {...}, 'prototype': {...},
    'white': {...}} for these tags, uint8 RGB. The median is per pixel and channel (what
    L1 over the poses asks for); the mosaic takes each pixel from one of the tag's
    training pictures drawn at random (``seed``): the mean's layout in real colours."""
    canvases = {'mean': {}, 'median': {}, 'mosaic': {}, 'prototype': {}, 'white': {}}
    random = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:size, 0:size]
    for tag in tags:
        pictures = np.stack([np.asarray(dataset.central_square(dataset.load_image(path), size))
                             for path, own in zip(train.paths, train.tags) if tag in own])
        canvases['mean'][tag] = pictures.mean(axis=0).round().astype(np.uint8)
        canvases['median'][tag] = np.median(pictures, axis=0).round().astype(np.uint8)
        canvases['mosaic'][tag] = pictures[random.integers(0, len(pictures), (size, size)), rows, columns]
        canvases['prototype'][tag] = np.asarray(train.prototype_picture([tag]))
        canvases['white'][tag] = np.full((size, size, 3), 255, np.uint8)
    return canvases


def misses(nearest, shown=3):
    """'〔オルタ〕→響, ...': the characters whose canvas is nearest another's mean (the
    first ``shown`` of them, then how many more)."""
    missed = ['{}→{}'.format(tag, other) for tag, other in nearest.items() if tag != other]
    more = ['{} more'.format(len(missed) - shown)] if len(missed) > shown else []
    return ', '.join(missed[:shown] + more) or '-'


def share_nearest_own_mean(scored, describe, distance):
    """The share of the colour test pictures nearest (describe(), distance(), as the
    text-only scores measure) their own character's mean: how often a real picture of
    the character passes the test its canvas is put to."""
    truth, means = evaluate.described_test_pictures(scored, describe)
    return float(np.mean([min(means, key=lambda other: distance(picture, means[other])) == tag
                          for tag, pictures in truth.items() for picture in pictures]))


def main(argv=None):
    parser = argparse.ArgumentParser(description='Text-only scores of reference canvases')
    parser.add_argument('--data', default=os.path.join('data', 'default'), help='the default data')
    parser.add_argument('--size', type=int, default=128, help='the side scored at (the demo: 128)')
    args = parser.parse_args(argv)
    try:
        description = evaluate.read_description(args.data)
        test = evaluate.load_test_images(args.data, description, args.size)
        train = dataset.TaggedImageDataset(os.path.join(args.data, 'train'), None, args.size,
                                           blank_fraction=1.0, blank_truth='prototype')
    except (evaluate.DataError, ValueError, OSError) as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    scored = types.SimpleNamespace(images=test, size=args.size)  # what the scores read of a model
    tags = sorted({image.character['tag'] for image in test if not image.mono})
    print('| canvas ({} px, {} characters) | palette right | layout right | layout distance | palette misses '
          '| layout misses |\n|---|---|---|---|---|---|'.format(args.size, len(tags)))
    for label, canvases in reference_canvases(train, tags, args.size).items():
        palette = evaluate.text_only_scores(scored, canvases)
        layout = evaluate.text_only_layout_scores(scored, canvases)
        print('| {} | {:.3f} | {:.3f} | {:.2f} | {} | {} |'.format(
            label, palette['accuracy'], layout['accuracy'], layout['distance'], misses(palette['nearest']),
            misses(layout['nearest'])))
    print('| the test pictures themselves | {:.3f} | {:.3f} | {:.2f} | | |'.format(
        share_nearest_own_mean(scored, evaluate.palette, evaluate.palette_distance),
        share_nearest_own_mean(scored, evaluate.layout_cells, evaluate.layout_distance),
        layout['truth_distance']))  # the test pictures' own, whatever the canvases
    return 0


if __name__ == '__main__':
    sys.exit(main())
