"""How far a stage-1 colouring is from the truth, against the degradation stage 2 trains on.

    python benchmarks/degradation.py --model result/stage1 --data data/default512/train

Stage 2 (docs/hires.md) trains without a stage-1 model: its coarse input is
the truth degraded by dataset.coarse_colouring (shrunk to the stage-1 size, blurred,
colour-jittered, enlarged). Its bounds (dataset.BLUR_RADIUS, COLOUR_GAIN, COLOUR_OFFSET,
FIELD_OFFSET) should cover what stage 1 really does; this script prints both side by
side, per picture at the data's size (mean and 10th/50th/90th percentiles):

* sharpness: evaluate.edge_sharpness (1: as sharp as the truth on its edges);
* global offset: the mean signed difference of a channel over the picture, its size in
  levels (averaged over the channels);
* local offset: the mean difference in each block of a FIELD_GRID x FIELD_GRID grid
  over the picture (the jitter field's scale) less the global offset, its standard
  deviation over the blocks, in levels (averaged over the channels);
* L1: the mean absolute difference, in levels.

Calibrate on the training split (the test split scores the result).
"""
import argparse
import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import compat  # noqa: E402
import colour_model  # noqa: E402
import dataset  # noqa: E402
import evaluate  # noqa: E402


def statistics(output, truth):
    """The four numbers of one picture (uint8 RGB arrays of one size)."""
    difference = output.astype(np.float32) - truth.astype(np.float32)
    offset = difference.mean(axis=(0, 1))
    grid = dataset.FIELD_GRID
    height, width = (side // grid * grid for side in difference.shape[:2])
    blocks = (difference[:height, :width].reshape(grid, height // grid, grid, width // grid, 3)
              .mean(axis=(1, 3)))
    return dict(sharpness=evaluate.edge_sharpness(output, truth), global_offset=np.abs(offset).mean(),
                local_offset=(blocks - offset).std(axis=(0, 1)).mean(), l1=np.abs(difference).mean())


def summary(rows):
    lines = []
    for key in rows[0]:
        values = np.array([row[key] for row in rows], np.float64)
        lines.append('  {:14s} mean {:7.3f}   p10 {:7.3f}   p50 {:7.3f}   p90 {:7.3f}'.format(
            key, values.mean(), *np.percentile(values, (10, 50, 90))))
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='the stage-1 model')
    parser.add_argument('--data', required=True, help='a paired folder (color/, line/) at the stage-2 size')
    parser.add_argument('--coarse-size', type=int, default=None, help='default: the model\'s size')
    parser.add_argument('--n', type=int, default=64, help='pictures (every k-th of the folder)')
    parser.add_argument('--draws', type=int, default=4, help='random degradations per picture')
    parser.add_argument('--coarse-jitter', type=float, default=1.0,
                        help="train_facade_text.py's: the jitter's scale")
    args = parser.parse_args(argv)
    try:
        model = colour_model.load_model(args.model, None, compat.get_device(-1))
        pictures = dataset.TaggedImageDataset(args.data, model.vectorizer, augment=False)
    except (colour_model.ModelError, ValueError, FileNotFoundError) as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    coarse_size = args.coarse_size or model.size
    rng = random.Random(0)
    indices = np.linspace(0, len(pictures) - 1, min(args.n, len(pictures))).round().astype(int)
    stage1, degraded, mean = [], [], []
    for i in indices:
        truth_image = dataset.load_image(pictures.paths[i])
        truth = np.asarray(truth_image)
        factor = max(truth_image.size) / coarse_size
        stage1.append(statistics(np.asarray(model.colour(pictures.drawing_of(i), pictures.tags[i])), truth))
        mean.append(statistics(np.asarray(dataset.coarse_colouring(truth_image, factor)), truth))
        degraded.extend(statistics(np.asarray(dataset.coarse_colouring(truth_image, factor, rng,
                                                                       args.coarse_jitter)),
                                   truth)
                        for _ in range(args.draws))
    print('{} pictures of {} at {} px; stage 1 ({}) at {} px, enlarged bicubically:'.format(
        len(indices), args.data, truth.shape[1], args.model, model.size))
    print(summary(stage1))
    print('the truth shrunk to {} px and enlarged, mean blur (radius {}), no jitter:'.format(
        coarse_size, sum(dataset.BLUR_RADIUS) / 2))
    print(summary(mean))
    jitter = args.coarse_jitter
    print('coarse_colouring as stage 2 trains on it ({} draws per picture; blur {}, gain ±{:g}, '
          'offset ±{:g}, field ±{:g}):'.format(args.draws, dataset.BLUR_RADIUS, jitter * dataset.COLOUR_GAIN,
                                              jitter * dataset.COLOUR_OFFSET, jitter * dataset.FIELD_OFFSET))
    print(summary(degraded))
    return 0


if __name__ == '__main__':
    sys.exit(main())
