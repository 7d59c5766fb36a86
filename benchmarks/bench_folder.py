"""A folder of drawings coloured by colorize.py, killed halfway and started again.

    python benchmarks/bench_folder.py --model result/demo
    python benchmarks/bench_folder.py --model result/demo --count 100 --size 512

Draws --count test drawings of the default data at --size px (make_default_data.py,
each with its sidecar tags), runs ``colorize.py -i DIR -o OUT --tags-from-files`` and
kills it (SIGKILL, no chance to tidy up) once half the drawings are done, then runs the
same command again. Prints the images per second of each run, the peak resident memory,
whether the second run coloured only the rest, whether any half-written or hidden
temporary file was left, and whether every picture decodes whole.
"""
import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import make_default_data  # noqa: E402


def make_folder(folder, count, size, seed):
    """count line drawings with their tags, taken from the default data's test split."""
    characters = len(make_default_data.CHARACTERS)
    data = os.path.join(folder, 'data')
    make_default_data.generate(data, train_per_char=1, test_per_char=-(-count // characters), size=size,
                               seed=seed)
    drawings = os.path.join(folder, 'drawings')
    os.makedirs(drawings)
    names = sorted(os.listdir(os.path.join(data, 'test', 'line')))[:count]
    for name in names:
        stem = os.path.splitext(name)[0]
        shutil.copy(os.path.join(data, 'test', 'line', name), drawings)
        shutil.copy(os.path.join(data, 'test', 'color', stem + '.txt'), drawings)
    return drawings


def run(command, kill_after=None):
    """(progress lines, last line, seconds); killed with SIGKILL after kill_after lines."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               cwd=ROOT)
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip('\n'))
        if kill_after and sum(line.startswith('[') for line in lines) >= kill_after:
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    return lines, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default=os.path.join('result', 'demo'))
    parser.add_argument('--count', type=int, default=100)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix='bench_folder_')
    try:
        drawings = make_folder(work, args.count, args.size, args.seed)
        out = os.path.join(work, 'coloured')
        command = [sys.executable, 'colorize.py', '--model', os.path.abspath(args.model), '-i', drawings,
                   '-o', out, '--tags-from-files']
        half = args.count // 2
        first, first_seconds = run(command, kill_after=half)
        written = sorted(os.listdir(out))
        second, second_seconds = run(command)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        summary = second[-1]
        left = [name for name in os.listdir(out) if name.startswith('.')]
        whole = 0
        for name in os.listdir(out):
            if not name.startswith('.'):
                with Image.open(os.path.join(out, name)) as picture:
                    picture.load()
                whole += 1
        print('{} drawings of {} px, {} CPU cores'.format(args.count, args.size, os.cpu_count()))
        print('first run killed (SIGKILL) after {} drawings, {} pictures on disk; {:.1f} s'.format(
            sum(line.startswith('[') for line in first), len(written), first_seconds))
        print('second run: {}; {:.1f} s, {}'.format(summary, second_seconds,
                                                  second[-2].split(' · ')[1] if ' · ' in second[-2] else ''))
        print('coloured only the rest: {}'.format(summary.startswith('{} done, {} skipped'.format(
            args.count - len(written), len(written)))))
        print('hidden temporary files left: {}; pictures that decode whole: {} of {}'.format(
            len(left), whole, args.count))
        print('peak resident memory of a colorize.py run: {:.0f} MB'.format(peak))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
