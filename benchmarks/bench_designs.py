"""CPU time per training update of the tag designs, at the demo's size (width 16, 128 px,
batch 1), interleaved in one process so that a shared machine's load falls on every
design alike; process time, so other processes' load does not count.

    python benchmarks/bench_designs.py                     # the default data, 6 blocks of 50 updates
    python benchmarks/bench_designs.py --blocks 3 --block 20 --json
    python benchmarks/bench_designs.py --colour-loss       # the blank examples' colour loss alone

Prints ms per update, updates/s and the ratio to the post's design for each; with
--colour-loss, the ms of one forward and backward pass of updater.colour_distribution_loss
on a 3x128x128 example, over every pixel and over updater.COLOUR_PIXELS sampled ones.
"""
import argparse
import json
import os
import random
import sys
import time

import numpy as np

# The project's modules live one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import compat  # noqa: E402,F401  (Chainer shims; must precede chainer)
import chainer  # noqa: E402

import dataset  # noqa: E402
import net  # noqa: E402
import train_facade_text  # noqa: E402
import train_extensions  # noqa: E402
import updater as updater_module  # noqa: E402
from updater import TextPix2pixUpdater, make_optimizer  # noqa: E402

DESIGNS = {
    "post (the post's design)": [],
    'film': ['--tag-design', 'film', '--blank-fraction', '0.3', '--blank-loss', 'colours',
             '--ema-decay', '0.999'],
    'film, no weight average': ['--tag-design', 'film', '--blank-fraction', '0.3', '--blank-loss', 'colours'],
    'film, mean layout, no gate': ['--tag-design', 'film', '--tag-layout', 'mean', '--gate', 'none'],
    'no tag': ['--no-tag'],
}


def make_step(argv, tag_lists, train_dir):
    """One training update of the demo preset with these training flags, as
    train_facade_text.main builds it, and with --ema-decay the weight average's step."""
    args = train_facade_text.parse_args(['--demo', '-i', train_dir] + argv)
    data = dataset.TaggedImageDataset(train_dir, None, args.size, blank_fraction=args.blank_fraction)
    data.vectorizer = train_facade_text.make_vectorizer(args, tag_lists)
    design = train_facade_text.tag_design_of(args)
    models = (net.Encoder(4, args.width, design), net.Decoder(3, args.width, design),
              net.Discriminator(4, 3, args.width, design))
    updater = TextPix2pixUpdater(
        models=models, iterator={'main': dataset.make_iterator(data, 1)},
        optimizer={name: make_optimizer(m, args.lr) for name, m in zip(('enc', 'dec', 'dis'), models)},
        device=chainer.get_device('@numpy'), gate_weight=args.gate_loss if design else 0,
        blank_loss=args.blank_loss)
    if not args.ema_decay:
        return updater.update
    average = train_extensions.WeightAverage(models[:2], models[:2], args.ema_decay)

    def step():
        updater.update()
        average(None)
    return step


def time_colour_loss(repeats=20):
    """ms per forward and backward pass of the colour loss, all pixels vs the sampled ones."""
    rng = np.random.RandomState(0)
    output = chainer.Variable(rng.uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32))
    target = rng.uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
    for pixels in (None, updater_module.COLOUR_PIXELS):
        start = time.process_time()
        for _ in range(repeats):
            output.cleargrad()
            updater_module.colour_distribution_loss(output, target, pixels).backward()
        ms = 1000 * (time.process_time() - start) / repeats
        print('colour loss, {:>13s}: {:5.1f} ms per blank example'.format(
            'all pixels' if pixels is None else '{} pixels'.format(pixels), ms))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', default='data/default', help='default data (make_default_data.py)')
    parser.add_argument('--blocks', type=int, default=6, help='rounds over the designs')
    parser.add_argument('--block', type=int, default=50, help='updates per design and round')
    parser.add_argument('--json', action='store_true', help='one JSON object per design')
    parser.add_argument('--colour-loss', action='store_true', help='time the colour loss alone')
    args = parser.parse_args(argv)
    if args.colour_loss:
        time_colour_loss()
        return 0
    np.random.seed(0)
    random.seed(0)
    train_dir = os.path.join(args.data, 'train')
    tag_lists = dataset.TaggedImageDataset(train_dir, None, 128).tags
    steps = {name: make_step(flags, tag_lists, train_dir) for name, flags in DESIGNS.items()}
    times = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        for _ in range(5):
            step()
    for _ in range(args.blocks):
        for name, step in steps.items():
            start = time.process_time()
            for _ in range(args.block):
                step()
            times[name].append((time.process_time() - start) / args.block)
    post = np.median(times["post (the post's design)"])
    for name, values in times.items():
        ms = 1000 * float(np.median(values))
        if args.json:
            print(json.dumps(dict(design=name, ms_per_update=round(ms, 1),
                                  ratio_vs_post=round(ms / 1000 / post, 3), flags=DESIGNS[name],
                                  blocks=args.blocks, block=args.block), ensure_ascii=False))
        else:
            print('{:28s} {:6.1f} ms/update  {:5.2f} updates/s  {:4.2f}x the post\'s'.format(
                name, ms, 1000 / ms, ms / 1000 / post))
    return 0


if __name__ == '__main__':
    sys.exit(main())
