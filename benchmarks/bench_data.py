"""Measures the training data pipeline at the post's scale: memory and images per second.

    python benchmarks/bench_data.py --n 20000 --json
    python benchmarks/bench_data.py --n 200 --loaderjob 0 --batchsize 8
    python benchmarks/bench_data.py --dataset my_set              # your own folder, as training reads it

Writes N tagged colour images with paired line art (ROOT/train/color/img_K.png + .txt
tags, ROOT/train/line/img_K.png) into a temporary folder, or into --data DIR where they
are kept and reused by the next run with the same settings. The images are the default
data generator's drawings: 64 distinct renders (the generator takes about 20 ms
a picture), each file a variant of one of them (shifted, possibly mirrored,
colour channels permuted), so every file is distinct and is decoded in full; the tags
are the render's. Then, as train_facade_text.py does: the dataset scan, word2vec on
the tags, the iterator (--loaderjob worker processes), and K batches drawn and
converted to arrays (no network step; --step-ms sleeps that long per batch in its place).

Prints one JSON object (--json) or a summary: n, size, loaderjob, images_per_s (after
the first batch, which starts the workers), loader_cpu_ms_per_image (CPU time the
loading processes spent per image: what images_per_s would be on idle cores, less
affected by other programs than the rate itself), peak_rss_mb (the sum of each process's
peak resident memory, parent and loader workers: an upper bound of the tree's peak,
counting the pages that forked workers share with the parent once per process),
peak_pss_mb (the tree's proportional set size sampled every 0.1 s: shared pages
counted once), and what the example's in-memory float32 copies would take.
"""
import argparse
import json
import math
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
from PIL import Image

# The project's modules live one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import compat  # noqa: F401,E402  (Chainer shims; must precede chainer)
import chainer

import dataset
import make_default_data
import tag_vectorizer

FORMATS = {'png': ('.png', {}), 'jpeg': ('.jpg', dict(quality=90)), 'webp': ('.webp', dict(quality=90))}
CHANNEL_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
RENDERS_PER_CHARACTER = 8


def parse_args(argv):
    parser = argparse.ArgumentParser(description='Data pipeline benchmark (memory, images/s)')
    parser.add_argument('--n', type=int, default=200, help='Number of training images to write')
    parser.add_argument('--size', type=int, default=256, help='Training crop side in pixels')
    parser.add_argument('--image-size', type=int, default=256, help='Side of the written images')
    parser.add_argument('--format', choices=sorted(FORMATS), default='png',
                        help='Format of the colour images')
    parser.add_argument('--batchsize', '-b', type=int, default=1, help='Images per batch (the post: 1)')
    parser.add_argument('--loaderjob', '-j', type=int, default=2, help='Loader worker processes (0: none)')
    parser.add_argument('--batches', type=int, default=None,
                        help='Batches drawn after the first (default: 400 images\' worth, '
                             'at least 20 a worker)')
    parser.add_argument('--step-ms', type=float, default=0.0,
                        help='Sleep this long per batch, standing in for a GPU training step (the '
                             'target: 70 images/s at batch 1 is about 14 ms) to see whether loading keeps up')
    parser.add_argument('--tag-dropout', type=float, default=0.0, help='As train_facade_text.py')
    parser.add_argument('--flip', action='store_true', help='As train_facade_text.py')
    parser.add_argument('--no-tag', action='store_true', help='No word2vec, zero tag plane')
    parser.add_argument('--data', default=None, help='Keep the written images here (reused when they match)')
    parser.add_argument('--dataset', '-i', default=None,
                        help='Measure this existing dataset folder instead (as train_facade_text.py -i); '
                             '--n, --image-size and --format are then ignored')
    parser.add_argument('--write-jobs', type=int, default=os.cpu_count() or 1,
                        help='Processes writing the images')
    parser.add_argument('--seed', type=int, default=0, help='Random seed')
    parser.add_argument('--json', action='store_true', help='Print one JSON object')
    args = parser.parse_args(argv)
    if args.n < 1 or args.batchsize < 1 or args.loaderjob < 0 or args.write_jobs < 1 or args.step_ms < 0:
        parser.error('--n, --batchsize and --write-jobs must be positive, --loaderjob and --step-ms '
                     'not negative')
    if args.size <= 0 or args.size % 128:
        parser.error('--size must be a positive multiple of 128 (as in training)')
    if args.image_size < 32:
        parser.error('--image-size must be at least 32')
    if args.batches is None:
        args.batches = max(math.ceil(400 / args.batchsize), 20 * args.loaderjob)
    if args.batches < 1:
        parser.error('--batches must be positive')
    return args


# ---------------------------------------------------------------- writing the images
def shifted(pixels, dx, dy, fill=255):
    """pixels moved by (dx, dy) on a canvas of fill, same size."""
    out = np.full_like(pixels, fill)
    h, w = pixels.shape[:2]
    out[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = \
        pixels[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    return out


def write_variant(task):
    """Writes file number k: render k % count, shifted, maybe mirrored, channels permuted."""
    k, base, names, image_size, fmt, seed, out = task
    name = names[k % len(names)]
    rng = np.random.default_rng([seed, k])
    dx, dy = (int(v) for v in rng.integers(-image_size // 8, image_size // 8 + 1, 2))
    mirror = rng.random() < 0.5
    order = CHANNEL_ORDERS[int(rng.integers(len(CHANNEL_ORDERS)))]
    colour = np.asarray(Image.open(os.path.join(base, 'color', name + '.png')).convert('RGB'))
    line = np.asarray(Image.open(os.path.join(base, 'line', name + '.png')).convert('L'))
    colour, line = shifted(colour, dx, dy)[:, :, order], shifted(line, dx, dy)
    if mirror:
        colour, line = colour[:, ::-1], line[:, ::-1]
    stem = 'img_{:06d}'.format(k)
    extension, options = FORMATS[fmt]
    Image.fromarray(np.ascontiguousarray(colour), 'RGB').save(
        os.path.join(out, 'color', stem + extension), **options)
    Image.fromarray(np.ascontiguousarray(line), 'L').save(os.path.join(out, 'line', stem + '.png'))
    shutil.copyfile(os.path.join(base, 'color', name + '.txt'), os.path.join(out, 'color', stem + '.txt'))


def write_images(root, n, image_size, fmt, seed, jobs):
    """ROOT/train/{color,line} with n images; returns seconds taken (0 when reused)."""
    settings = dict(n=n, image_size=image_size, format=fmt, seed=seed)
    marker = os.path.join(root, 'bench.json')
    if os.path.exists(marker):
        with open(marker, encoding='utf-8') as f:
            if json.load(f) == settings:
                return 0.0
    if not os.path.exists(marker) and os.path.isdir(root) and os.listdir(root):
        # Never overwrite a folder the benchmark did not write (a real dataset, say).
        raise FileExistsError('{} holds other files than the benchmark\'s; give an empty or new '
                              'folder (or measure a dataset with --dataset)'.format(root))
    started = time.perf_counter()
    base = os.path.join(root, 'renders')
    train = os.path.join(root, 'train')
    shutil.rmtree(train, ignore_errors=True)
    for kind in ('color', 'line'):
        os.makedirs(os.path.join(train, kind))
    # Forked writers: the measured process itself never holds the renders.
    with multiprocessing.get_context('fork').Pool(jobs) as pool:
        pool.apply(make_default_data.generate, (base, RENDERS_PER_CHARACTER, 0, image_size, seed))
        base_train = os.path.join(base, 'train')
        names = sorted(name[:-4] for name in os.listdir(os.path.join(base_train, 'color'))
                       if name.endswith('.png'))
        tasks = ((k, base_train, names, image_size, fmt, seed, train) for k in range(n))
        for _ in pool.imap_unordered(write_variant, tasks, chunksize=64):
            pass
    shutil.rmtree(base)
    with open(marker, 'w', encoding='utf-8') as f:
        json.dump(settings, f)
    return time.perf_counter() - started


# ---------------------------------------------------------------- measuring memory
def children(pid):
    """All descendants of pid (from /proc/PID/task/TID/children)."""
    found = []
    try:
        tasks = os.listdir('/proc/{}/task'.format(pid))
    except OSError:
        return found
    for tid in tasks:
        try:
            with open('/proc/{}/task/{}/children'.format(pid, tid)) as f:
                kids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            found.append(kid)
            found.extend(children(kid))
    return found


def proc_fields(pid, name, fields):
    """{field: kB} from /proc/PID/NAME lines 'Field:  N kB'; {} if the process is gone."""
    values = {}
    try:
        with open('/proc/{}/{}'.format(pid, name)) as f:
            for line in f:
                key, _, rest = line.partition(':')
                if key in fields:
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return {}
    return values


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    try:
        with open('/proc/{}/stat'.format(pid)) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def bytes_read(pid):
    """Bytes the process has read (files and pipes): grows only in workers given tasks."""
    return proc_fields(pid, 'io', ('rchar',)).get('rchar', 0)


class TreeMemory:
    """Samples the proportional set size of this process and its descendants."""

    def __init__(self, interval=0.1):
        self.interval = interval
        self.peak_pss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        pids = [os.getpid()] + children(os.getpid())
        pss = sum(proc_fields(pid, 'smaps_rollup', ('Pss',)).get('Pss', 0) for pid in pids)
        self.peak_pss_kb = max(self.peak_pss_kb, pss)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


# ---------------------------------------------------------------- the benchmark
def float32_footprint_mb(n, size):
    """What keeping every example as float32 would take: 4 input + 3 target planes."""
    return n * 7 * size * size * 4 / 2 ** 20


def measure(root, args):
    """Builds the dataset and iterator as training does and draws the batches."""
    np.random.seed(args.seed)
    random.seed(args.seed)
    started = time.perf_counter()
    train_dir, _ = dataset.split_folders(root)
    train_set = dataset.TaggedImageDataset(train_dir, None, args.size, 'line', augment=True,
                                           flip=args.flip, tag_dropout=args.tag_dropout)
    scan_s = time.perf_counter() - started
    started = time.perf_counter()
    if not args.no_tag:
        train_set.vectorizer = tag_vectorizer.TagVectorizer.train(train_set.tags, seed=args.seed)
    vectorizer_s = time.perf_counter() - started

    iterator = dataset.make_iterator(train_set, args.batchsize, args.loaderjob)
    try:
        started = time.perf_counter()
        chainer.dataset.concat_examples(iterator.next(), -1)
        first_batch_s = time.perf_counter() - started
        workers = children(os.getpid())
        read_before = {pid: bytes_read(pid) for pid in workers}
        # Whoever loads: the workers, or this process when there are none.
        loaders = workers or [os.getpid()]
        cpu_before = sum(cpu_seconds(pid) for pid in loaders)
        started = time.perf_counter()
        for _ in range(args.batches):
            chainer.dataset.concat_examples(iterator.next(), -1)
            if args.step_ms:
                time.sleep(args.step_ms / 1000)
        elapsed = time.perf_counter() - started
        loader_cpu = sum(cpu_seconds(pid) for pid in loaders) - cpu_before
        worker_hwm = [proc_fields(pid, 'status', ('VmHWM',)).get('VmHWM', 0) for pid in workers]
        workers_used = sum(1 for pid in workers if bytes_read(pid) > read_before[pid])
    finally:
        if hasattr(iterator, 'finalize'):
            iterator.finalize()
    parent_hwm = proc_fields(os.getpid(), 'status', ('VmHWM',)).get('VmHWM', 0)
    return dict(images=len(train_set), skipped=len(train_set.skipped), untagged=train_set.untagged,
                distinct_tag_sets=len({tuple(t) for t in train_set.tags}),
                scan_s=round(scan_s, 2), vectorizer_s=round(vectorizer_s, 2),
                first_batch_s=round(first_batch_s, 2),
                images_per_s=round(args.batches * args.batchsize / elapsed, 1),
                loader_cpu_ms_per_image=round(1000 * loader_cpu / (args.batches * args.batchsize), 2),
                peak_rss_mb=round((parent_hwm + sum(worker_hwm)) / 1024, 1),
                parent_peak_rss_mb=round(parent_hwm / 1024, 1),
                worker_peak_rss_mb=[round(kb / 1024, 1) for kb in worker_hwm],
                workers_used=workers_used)


def run(args):
    """The benchmark; returns the result dict."""
    keep = args.data is not None or args.dataset is not None
    root = args.dataset or args.data or tempfile.mkdtemp(prefix='bench_data_')
    try:
        if args.dataset:
            if not os.path.isdir(args.dataset):
                raise FileNotFoundError('dataset folder {} does not exist'.format(args.dataset))
            write_s = 0.0
        else:
            write_s = write_images(root, args.n, args.image_size, args.format, args.seed, args.write_jobs)
        with TreeMemory() as memory:
            result = measure(root, args)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.dataset:
        args.n, args.image_size, args.format = result['images'] + result['skipped'], None, None
    result = dict(n=args.n, size=args.size, image_size=args.image_size, format=args.format,
                  batchsize=args.batchsize, loaderjob=args.loaderjob, batches=args.batches,
                  step_ms=args.step_ms,
                  **result, peak_pss_mb=round(memory.peak_pss_kb / 1024, 1),
                  float32_examples_mb=round(float32_footprint_mb(args.n, args.size), 1),
                  write_s=round(write_s, 1), load_average=[round(v, 2) for v in os.getloadavg()],
                  cpus=os.cpu_count())
    return result


def main(argv=None):
    args = parse_args(argv)
    try:
        result = run(args)
    except (OSError, ValueError) as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print('{n} images, {size}px crops, batch {batchsize}, {loaderjob} loader workers: '
              '{images_per_s} images/s; peak RSS {peak_rss_mb} MB (PSS {peak_pss_mb} MB; the '
              'example\'s float32 copies would take {float32_examples_mb} MB)'.format(**result))
        for key, value in result.items():
            print('  {}: {}'.format(key, value))
    return 0


if __name__ == '__main__':
    sys.exit(main())
