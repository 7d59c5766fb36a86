"""Kept lines against the network's own (flatting.py): scores at 512 px and a large drawing's time.

    python benchmarks/bench_lines.py --model result/demo
    python benchmarks/bench_lines.py --model result/demo --data /tmp/d512 --side 3000 4000
    python benchmarks/bench_lines.py --model result/demo --shading result/demo-shading

Scores the test drawings of the default data drawn at 512 px (made in --data with
make_default_data.py when that folder has none) coloured by --model, as the network
draws them (its 128-px colouring enlarged) and with the drawing's lines kept over flat
colours, as evaluate.py's ``lines_kept`` scores them (PSNR, edge sharpness, region
ΔE00, the twins' hair, the monochrome chroma). Then times a colour hint on one 512-px
test drawing (the probe colourings, made once per drawing and tag set, and the regions
and the spread, what each dot on the web page costs: the median of DOT_REPEATS; with
--shading, the shaded picture too, the one without the dot kept as the server keeps
it), and
colours one test drawing enlarged to --side and prints the time of each step and the
process's peak resident memory.
"""
import argparse
import os
import resource
import statistics
import sys
import time

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import compat  # noqa: E402
import colour_model  # noqa: E402
import dataset  # noqa: E402
import evaluate  # noqa: E402
import flatting  # noqa: E402
import make_default_data  # noqa: E402

DOT_REPEATS = 5


def main(argv=None):
    parser = argparse.ArgumentParser(description='Kept lines against the network\'s own')
    parser.add_argument('--model', default=colour_model.DEFAULT_MODEL, help='a stage-1 model folder')
    parser.add_argument('--data', default=os.path.join('data', 'default512-lines'),
                        help='the default data at 512 px (made here if missing)')
    parser.add_argument('--shading', default=None, metavar='DIR',
                        help='a shading model (colorize.py --shading)')
    parser.add_argument('--side', type=int, nargs=2, default=(3000, 4000), metavar=('W', 'H'),
                        help='the large drawing timed')
    args = parser.parse_args(argv)
    try:
        model = colour_model.load_model(args.model, None, compat.get_device(-1), args.shading)
    except colour_model.ModelError as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    if not os.path.isdir(os.path.join(args.data, 'test', 'line')):
        make_default_data.generate(args.data, train_per_char=1, test_per_char=3, size=512, seed=0)
    description = evaluate.read_description(args.data)
    side = dataset.image_size(os.path.join(args.data, 'test', 'line', 'hibiki_0000.png'))[0]
    scores, _ = evaluate.kept_line_scores(model, evaluate.load_test_images(args.data, description, side),
                                          description)
    print('| {} px, {} test drawings | PSNR dB | edge sharpness | region ΔE00 | twins\' hair right | '
          'monochrome chroma with / without its tags |\n|---|---|---|---|---|---|'.format(side, scores['n']))
    for label in ('network', 'kept_lines'):
        row = scores[label]
        print('| {} | {:.2f} | {:.3f} | {:.2f} | {:.3f} | {:.2f} / {:.2f} |'.format(
            label.replace('_', ' '), row['psnr'], row['edge_sharpness'], row['region_delta_e'],
            row['ambiguous_hair_accuracy'],
            row['mono_chroma_with_tag'], row['mono_chroma_without_tag']))
    drawing = Image.open(os.path.join(args.data, 'test', 'line', 'hibiki_0000.png')).convert('L')
    time_a_dot(model, drawing)
    drawing = drawing.resize(tuple(args.side), Image.BICUBIC)
    start = time.perf_counter()
    network = model.colour(drawing, ['響'])
    coloured = time.perf_counter()
    model.compose(network, drawing, ['響'])
    done = time.perf_counter()
    print('{}x{} drawing: network {:.2f} s, kept lines {:.2f} s, in all {:.2f} s; peak resident memory '
          '{:.0f} MB'.format(*args.side, coloured - start, done - coloured, done - start,
                             resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    return 0


def time_a_dot(model, drawing):
    """Prints the time of the probe colourings and of one dot's regions and spread."""
    network = model.colour(drawing, ['響'])
    start = time.perf_counter()
    probes = model.probe_colourings(drawing, network)
    probed = time.perf_counter() - start
    unhinted = model.unhinted_shading(network, drawing, ['響']) if model.shader else None
    dot = flatting.hint_picture(drawing.size, [(drawing.width // 2, drawing.height // 4, (220, 30, 40))])
    times = []
    for _ in range(DOT_REPEATS):
        start = time.perf_counter()
        model.compose(network, drawing, ['響'], dot, probes=probes, unhinted=unhinted)
        times.append(time.perf_counter() - start)
    print('a dot on the {}x{} drawing: {} probe colourings {:.2f} s (once per drawing and tags), then the '
          'regions and the spread{} {:.3f} s (median of {})'.format(
              *drawing.size, len(probes), probed, ' and the shading' * bool(model.shader),
              statistics.median(times), DOT_REPEATS))


if __name__ == '__main__':
    sys.exit(main())
