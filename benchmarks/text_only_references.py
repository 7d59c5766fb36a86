"""What a tags-alone canvas could score: evaluate.py's two text-only scores for pictures
made from the training split, no network involved.

    python benchmarks/text_only_references.py --data data/default

For each character, three canvases stand in for the network's colouring of blank paper
with its tag: the mean of its training pictures (what a pixel loss over every pose asks
for), its prototype (``dataset.TaggedImageDataset.prototype``: the picture of the
character's tag nearest their mean layout, what ``--blank-truth prototype`` trains
towards), and a white page. Each is scored as evaluate.py scores the canvases, against
the test split: the palette (``text_only_palette_accuracy``) and the layout
(``text_only_layout_accuracy``, ``text_only_layout_distance``).
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


def reference_canvases(train, tags, size):
    """{'mean': {tag: picture}, 'prototype': {...}, 'white': {...}} for these tags, uint8 RGB."""
    canvases = {'mean': {}, 'prototype': {}, 'white': {}}
    for tag in tags:
        pictures = [np.asarray(dataset.central_square(dataset.load_image(path), size), np.float64)
                    for path, own in zip(train.paths, train.tags) if tag in own]
        canvases['mean'][tag] = np.mean(pictures, axis=0).round().astype(np.uint8)
        canvases['prototype'][tag] = np.asarray(train.prototype_picture([tag]))
        canvases['white'][tag] = np.full((size, size, 3), 255, np.uint8)
    return canvases


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
    print('| canvas ({} px, {} characters) | palette right | layout right | layout distance |\n'
          '|---|---|---|---|'.format(args.size, len(tags)))
    for label, canvases in reference_canvases(train, tags, args.size).items():
        palette = evaluate.text_only_scores(scored, canvases)
        layout = evaluate.text_only_layout_scores(scored, canvases)
        print('| {} | {:.3f} | {:.3f} | {:.2f} |'.format(label, palette['accuracy'], layout['accuracy'],
                                                      layout['distance']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
