"""Times the training step and colourisation of the port, against PyTorch in the same run.

    python benchmarks/bench.py                                    # CPU: 256 px, width 64, batch 1
    python benchmarks/bench.py --size 128 --width 16 --task train  # the CPU demo's network
    python benchmarks/bench.py -g 0 --batch 1 8 --json             # GPU, one JSON line per result
    CUPY_TF32=1 python benchmarks/bench.py -g 0 --precision tf32   # CuPy reads CUPY_TF32 at import
    python benchmarks/bench.py -g 0 --check                        # the faster paths against Chainer's
    python benchmarks/bench.py -g 0 --check --fast all --fused all  # the same with speed/fused.py's functions
    python benchmarks/bench.py -g 0 --quality 200 --precision fp32 mixed16   # L1 after 200 steps
    python benchmarks/bench.py -g 0 --quality 200 --graph        # the same, the step recorded as a CUDA graph
    python benchmarks/bench.py -g 0 --design film --batch 1 8      # the demo's film design, both sides

What is timed is the project's own code: a training step is
``TextPix2pixUpdater.update()`` with the networks of net.py and the optimizers of
updater.make_optimizer, on a fixed in-memory batch (the converter still sends
it to the device every step, as in training); colourisation is one
``net.generating()`` forward at batch 1, from a host array to a host array. The
implementations:

* ``chainer``: the port with speed/fast_conv.py's faster paths (as ``--fast`` says) and
  without speed/fused.py (``user_fused='off'``): how the port runs on the CPU;
* ``chainer-plain``: the same with ``user_fast_paths='off'``: Chainer's own functions
  and full backward passes, i.e. the port before the speed-ups;
* ``chainer-fused``: ``chainer`` with speed/fused.py's batch norm + activation and Adam +
  weight decay (``user_fused='all'``);
* ``chainer-graph``: ``chainer-fused`` with the step recorded once as a CUDA graph and
  replayed (speed/cuda_graph.py; its rows say ``graph``: how the steps ran, e.g. why not
  recorded);
* ``torch``: bench_torch.py, the same networks, losses and optimizer in PyTorch eager
  (only when PyTorch is installed: benchmarks/requirements-bench.txt);
* ``torch-graph``: the same recorded as a CUDA graph by PyTorch itself (GPU only: the
  whole-network recipe of torch.cuda.graphs, Adam with ``capturable=True``), the second
  reference for ``chainer-graph``.

``--design film`` times the demo's film design instead of the post's (``FILM_FLAGS``,
run.sh's: FiLM after every batch norm, the saturation gate and its loss, the projection
discriminator, the colour loss on blank drawings, the weight average), on both sides:
the Chainer step is the updater train_facade_text.py builds for those flags plus the
weight average's update, the PyTorch one bench_torch.FilmTrainer. The batches cycle
through ``film_examples`` (3 blank drawings in 10, as --blank-fraction 0.3), both sides
in the same order, so that the colour loss's share of the work is the demo's.
Colourisation colours the first example, a drawn one.

Each configuration runs the implementations interleaved: warm-up steps, then
``--repeats`` rounds of ``--steps`` timed steps, one implementation after another in
every round, so that load from other processes hits all of them alike. The step time is
the median over the rounds (each round's total over its steps, with the device
synchronised before the clock is read). ``ratio_vs_torch`` is images/s over PyTorch's.
``peak_mem_mb``: the growth over the implementation's set-up and warm-up of, on a GPU,
the memory its allocator held (CuPy's pool, PyTorch's reserved memory), on the CPU, the
process's peak resident size.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

# The project's modules live one folder up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRECISIONS = ('fp32', 'tf32', 'mixed16')
IMPLS = ('chainer', 'chainer-plain', 'chainer-fused', 'chainer-graph', 'torch', 'torch-graph')
FUSED_MODES = ('off', 'cpu', 'gpu', 'all')
LOSS_SCALE = 64.0  # default static loss scale for mixed16 (Chainer's and PyTorch's alike)
DESIGNS = ('post', 'film')
# run.sh's film demo's training flags (--demo's width, size and learning rate aside: bench.py sets those).
FILM_FLAGS = ['--tag-design', 'film', '--blank-fraction', '0.3', '--blank-loss', 'colours',
              '--ema-decay', '0.999']
# The film design's batches cycle through FILM_EXAMPLES examples (or a multiple, for larger
# batches), those in FILM_BLANK blank paper (--blank-fraction 0.3): at batch 1, 3 steps in
# 10 colour a blank drawing.
FILM_EXAMPLES = 10
FILM_BLANK = (2, 5, 8)


def parse_args(argv):
    parser = argparse.ArgumentParser(description='Training and colourisation speed: Chainer port vs PyTorch')
    parser.add_argument('--gpu', '-g', type=int, default=-1, help='GPU ID (negative value indicates CPU)')
    parser.add_argument('--task', nargs='+', choices=('train', 'colorize'), default=['train', 'colorize'])
    parser.add_argument('--design', choices=DESIGNS, default='post',
                        help="The networks and losses timed: the post's, or the film demo's (FILM_FLAGS)")
    parser.add_argument('--size', type=int, nargs='+', default=[256], help='Image side in pixels')
    parser.add_argument('--width', type=int, nargs='+', default=[64], help='Network width (the example: 64)')
    parser.add_argument('--batch', type=int, nargs='+', default=[1], help='Training batch sizes')
    parser.add_argument('--precision', nargs='+', choices=PRECISIONS, default=['fp32'])
    parser.add_argument('--impl', nargs='+', choices=IMPLS, default=None,
                        help='Default: chainer, and torch when PyTorch is installed')
    parser.add_argument('--fast', choices=('off', 'cpu', 'all'), default=None,
                        help="fast_conv.py's user_fast_paths for the chainer implementation "
                             "(default: fast_conv.py's, 'all')")
    parser.add_argument('--fused', choices=FUSED_MODES, default='off',
                        help="fused.py's user_fused for --check and --quality (chainer-fused always "
                             "runs with 'all')")
    parser.add_argument('--graph', action='store_true',
                        help='--quality with the step recorded as a CUDA graph (cuda_graph.py; implies '
                             "--fused all)")
    parser.add_argument('--loss-scale', type=float, default=LOSS_SCALE,
                        help='Static loss scale of the mixed16 runs (1024 overflows float16 gradients '
                             'of this network)')
    parser.add_argument('--warmup', type=int, default=2, help='Untimed steps first')
    parser.add_argument('--steps', type=int, default=5, help='Timed steps per round')
    parser.add_argument('--repeats', type=int, default=3, help='Rounds; the median is reported')
    parser.add_argument('--threads', type=int, default=None,
                        help="PyTorch's CPU threads (default: all cores). NumPy's BLAS threads "
                             'follow OMP_NUM_THREADS / OPENBLAS_NUM_THREADS, set before start')
    parser.add_argument('--json', action='store_true', help='Also print one JSON object per result')
    parser.add_argument('--check', action='store_true',
                        help='Only check that the faster paths compute what Chainer computes, on -g')
    parser.add_argument('--profile', action='store_true',
                        help="Only print where the chainer implementations' time goes "
                             "(chainer.function_hooks.TimerHook, ms per step)")
    parser.add_argument('--quality', type=int, metavar='STEPS', default=0,
                        help='Only train STEPS steps on a fixed batch per precision and print the L1')
    args = parser.parse_args(argv)
    for name in ('size', 'width', 'batch'):
        if min(getattr(args, name)) <= 0:
            parser.error('--{} must be positive'.format(name))
    if any(s % 128 for s in args.size):
        parser.error('--size must be a multiple of 128 (the encoder halves it 7 times)')
    if any(w % 2 for w in args.width):
        parser.error('--width must be even (the discriminator splits it in two)')
    if args.steps <= 0 or args.repeats <= 0 or args.warmup < 0:
        parser.error('--steps and --repeats must be positive, --warmup not negative')
    if args.gpu < 0 and set(args.precision) - {'fp32', 'mixed16'}:
        parser.error('--precision tf32 needs a GPU (-g)')
    tf32_env = os.environ.get('CUPY_TF32') == '1'
    if args.gpu >= 0 and tf32_env != ('tf32' in args.precision):
        parser.error('CuPy reads CUPY_TF32 when it is imported: run tf32 alone with CUPY_TF32=1 in '
                     'the environment, and fp32/mixed16 without it')
    if 'tf32' in args.precision and len(args.precision) > 1:
        parser.error('run --precision tf32 on its own (with CUPY_TF32=1)')
    if args.design == 'film':
        if 'mixed16' in args.precision:
            parser.error('--design film: fp32 or tf32 (bench_torch.FilmTrainer has no mixed16 step)')
        if args.check:
            parser.error("--check compares the faster paths on the post's design only")
        if args.impl and 'torch-graph' in args.impl:
            parser.error('--design film: no torch-graph (the step asks the host which drawings are '
                         'blank, which a CUDA graph cannot record)')
    return args


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def fixed_mmap_threshold():
    """glibc keeps freed large blocks for reuse once its mmap threshold has grown, so a run
    that reuses an earlier run's memory shows no growth of the resident size. A fixed
    threshold (this call) maps every block over 128 KiB anew and unmaps it when freed."""
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


class Clock:
    """Wall time with the device synchronised first, and the peak memory of a run."""

    def __init__(self, device):
        self.device = device
        self.gpu = device.xp is not np
        if not self.gpu:
            fixed_mmap_threshold()

    def sync(self, torch_device=None):
        if self.gpu:
            import cupy
            cupy.cuda.Device().synchronize()
            if torch_device is not None:
                import torch
                torch.cuda.synchronize(torch_device)

    def now(self, torch_device=None):
        self.sync(torch_device)
        return time.perf_counter()

    def start_memory(self, impl):
        """What is held now (earlier implementations' models stay alive), in bytes."""
        if self.gpu:
            if impl.startswith('torch'):
                import torch
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                return torch.cuda.memory_reserved()
            import cupy
            cupy.get_default_memory_pool().free_all_blocks()
            return chainer_gpu_bytes()
        try:  # Linux: reset the peak resident size to the current one
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
        except OSError:
            pass
        rss = resident_kb('VmRSS')
        return None if rss is None else rss * 1024

    def peak_memory_mb(self, impl, start):
        """Growth over ``start`` of what the allocator held (GPU) or of the peak resident
        size (CPU): CuPy's pool never gives memory back unless asked, so what it holds
        after the warm-up is its peak."""
        if self.gpu:
            if impl.startswith('torch'):
                import torch
                peak = torch.cuda.max_memory_reserved()
            else:
                peak = chainer_gpu_bytes()
        else:
            peak_kb = resident_kb('VmHWM')
            peak = None if peak_kb is None else peak_kb * 1024
        return None if peak is None or start is None else (peak - start) / 2 ** 20


def chainer_gpu_bytes():
    """What CuPy's default pool holds, and the pools chainer-graph's steps allocate from."""
    import cupy
    from speed import cuda_graph
    return cupy.get_default_memory_pool().total_bytes() + cuda_graph.held_bytes()


def resident_kb(field):
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fixed_batch(batch, size, seed=0):
    """A drawing-like input (3 planes + tag plane) and a target derived from it."""
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, (batch, 4, size, size)).astype(np.float32)
    t = np.tanh(x[:, :3] * 2 + x[:, 3:]).astype(np.float32)
    return x, t


def film_examples(size, batch=1, dim=16, slots=16, seed=0):
    """The inputs the film design's batches cycle through, and their targets: the fewest
    multiple of FILM_EXAMPLES that holds a batch (a batch then never takes an example
    twice, as SerialIterator would not), drawing-like planes and a slots tag plane
    (tag_vectorizer.py's layout: 2 to 6 tags, each a vector of ``dim`` values in [-1, 1],
    the standardised vectors' range, in its own slot); the examples at FILM_BLANK in each
    FILM_EXAMPLES have blank paper for a drawing (updater.PAPER), their targets in colour."""
    import plane_layout
    count = FILM_EXAMPLES * -(-batch // FILM_EXAMPLES)
    blank = [i for i in range(count) if i % FILM_EXAMPLES in FILM_BLANK]
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, (count, 4, size, size)).astype(np.float32)
    for plane in x[:, 3]:
        values = np.zeros(slots * dim, np.float32)
        tags = rng.randint(2, 7)
        values[:tags * dim] = rng.uniform(-1, 1, tags * dim)
        plane[...] = plane_layout.lay_out(values, size)
    t = np.tanh(x[:, :3] * 2 + x[:, 3:]).astype(np.float32)
    x[blank, :3] = 255 / 128 - 1
    return x, t


def batch_indices(step, batch, count):
    """The examples of step ``step`` (from 0) when batches of ``batch`` cycle through
    ``count`` examples in order, as chainer.iterators.SerialIterator(shuffle=False) takes them."""
    return (np.arange(batch) + step * batch) % count


# ---------------------------------------------------------------- Chainer


def film_training():
    """FILM_FLAGS as train_facade_text.py parses them: the film design's settings
    (net.film_design), the gate loss's weight, the blank examples' loss and the average."""
    import train_facade_text
    return train_facade_text.parse_args(FILM_FLAGS)


def film_design_of(film):
    """net.film_design's settings (model.json's tag_design) for film_training()'s flags."""
    import train_facade_text
    return train_facade_text.tag_design_of(film)


class ChainerRunner:
    """The port's own networks, optimizers and updater on one device; with design 'film',
    train_facade_text.py's for FILM_FLAGS, and its weight average."""

    def __init__(self, device, width, batch, size, precision, fast, seed=0, loss_scale=LOSS_SCALE,
                 fused='off', graph=False, design='post'):
        import chainer
        from chainer.dataset import concat_examples
        import net
        from updater import TextPix2pixUpdater, blank_loss_options, make_optimizer
        self.chainer, self.net, self.fast, self.fused = chainer, net, fast, fused
        self.dtype = {'mixed16': np.float16, 'fp64': np.float64}.get(precision, np.float32)
        film = film_training() if design == 'film' else None
        tag_design = film_design_of(film) if film else None
        with self.config():
            np.random.seed(seed)
            self.enc = net.Encoder(4, width=width, design=tag_design)
            self.dec = net.Decoder(3, width=width, design=tag_design)
            self.dis = net.Discriminator(4, 3, width=width, design=tag_design)
        for link in (self.enc, self.dec, self.dis):
            link.to_device(device)
        optimizers = {}
        for name, link in (('enc', self.enc), ('dec', self.dec), ('dis', self.dis)):
            optimizers[name] = make_optimizer(link, 2e-4)
            if precision == 'mixed16':
                optimizers[name].use_fp32_update()
        x, t = film_examples(size, batch, seed=seed) if film else fixed_batch(batch, size, seed)
        examples = [(x[i], t[i]) for i in range(len(x))]
        iterator = chainer.iterators.SerialIterator(examples, batch, shuffle=False)
        dtype = self.dtype

        def converter(batch, device):
            return tuple(device.send(a.astype(dtype, copy=False)) for a in concat_examples(batch))

        film_losses = dict(gate_weight=film.gate_loss, **blank_loss_options(film)) if film else {}
        self.updater = TextPix2pixUpdater(
            models=(self.enc, self.dec, self.dis), iterator={'main': iterator}, optimizer=optimizers,
            converter=converter, device=device,
            loss_scale=loss_scale if precision == 'mixed16' else None, cuda_graph=graph, **film_losses)
        self.average = None
        if film and film.ema_decay:
            import train_extensions
            self.average = train_extensions.WeightAverage((self.enc, self.dec), (self.enc, self.dec),
                                                          film.ema_decay)
        self.device = device
        self.colour_input = x[:1].astype(self.dtype)
        # chainer-graph colours through a recorded forward pass as well (no optimizers)
        from speed import cuda_graph
        self.colour_graph = cuda_graph.StepGraph([]) if graph else None

    def config(self):
        import contextlib
        stack = contextlib.ExitStack()
        stack.enter_context(self.chainer.using_config('user_fast_paths', self.fast))
        stack.enter_context(self.chainer.using_config('user_fused', self.fused))
        if self.dtype != np.float32:
            stack.enter_context(self.chainer.using_config(
                'dtype', self.chainer.mixed16 if self.dtype == np.float16 else self.dtype))
        return stack

    def train_step(self):
        with self.config():
            self.updater.update()
            if self.average is not None:  # train_facade_text.py runs it after every update
                self.average(None)

    def colour(self):
        forward = lambda x: self.dec(self.enc(x)).array  # noqa: E731
        with self.config(), self.net.generating():
            x = self.device.send(self.colour_input)
            y = forward(x) if self.colour_graph is None else self.colour_graph.run(forward, x)
        return self.chainer.backend.CpuDevice().send(y)

    def l1(self):
        """L1 of the generator (as colorize.py runs it) on the training batch."""
        import chainer.functions as F
        x, t = self.updater.converter(list(self.updater.get_iterator('main').dataset), self.device)
        with self.config(), self.net.generating():
            y = self.dec(self.enc(x))
            return float(F.mean_absolute_error(F.cast(y, np.float32), F.cast(t, np.float32)).array)


# ---------------------------------------------------------------- PyTorch


class TorchRunner:
    """bench_torch.py's Trainer (FilmTrainer for design 'film') on the CPU or GPU ``gpu``."""

    def __init__(self, gpu, width, batch, size, precision, seed=0, loss_scale=LOSS_SCALE, graph=False,
                 design='post'):
        import torch
        import bench_torch
        self.torch = torch
        self.device = torch.device('cuda:%d' % gpu if gpu >= 0 else 'cpu')
        if self.device.type == 'cuda':
            tf32 = precision == 'tf32'
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        autocast = torch.float16 if precision == 'mixed16' else None
        torch.manual_seed(seed)
        if design == 'film':
            film = film_training()
            self.trainer = bench_torch.FilmTrainer(width, lr=2e-4, device=self.device, seed=seed,
                                                   design=film_design_of(film), gate_weight=film.gate_loss,
                                                   ema_decay=film.ema_decay)
            self.x, self.t = film_examples(size, batch, seed=seed)
        else:
            self.trainer = bench_torch.Trainer(width, lr=2e-4, device=self.device, seed=seed,
                                               autocast_dtype=autocast,
                                               loss_scale=loss_scale if autocast else None,
                                               capturable=graph)
            self.x, self.t = fixed_batch(batch, size, seed)
        self.batch, self.steps = batch, 0
        self.colour_input = self.x[:1]
        self.graphs = {} if graph else None

    def send(self, array):
        return self.torch.from_numpy(array).to(self.device)

    def train_step(self):
        if self.graphs is None:
            self.trainer.step(*(self.send(a) for a in self.next_batch()))
        else:
            self.replay('train', self.trainer.step, self.x, self.t)

    def next_batch(self):
        """The post's one fixed batch, or the film design's next in the cycle (ChainerRunner's order)."""
        if len(self.x) == self.batch:
            return self.x, self.t
        indices = batch_indices(self.steps, self.batch, len(self.x))
        self.steps += 1
        return self.x[indices], self.t[indices]

    def colour(self):
        if self.graphs is None:
            y = self.trainer.colour(self.send(self.colour_input))
        else:
            y = self.replay('colorize', self.trainer.colour, self.colour_input)
        return y.float().cpu().numpy()

    def replay(self, task, run, *arrays):
        """``run`` on ``arrays`` as PyTorch's CUDA graph of it: the first call warms up on
        a side stream, records, and replays; later calls copy the arrays into the recorded
        inputs and replay. Returns the recorded outputs."""
        torch = self.torch
        if task not in self.graphs:
            inputs = [self.send(a) for a in arrays]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    run(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = run(*inputs)
            self.graphs[task] = graph, inputs, outputs
        graph, inputs, outputs = self.graphs[task]
        for recorded, array in zip(inputs, arrays):
            recorded.copy_(self.send(array))
        graph.replay()
        return outputs


# ---------------------------------------------------------------- timing


def make_runner(impl, args, device, width, batch, size, precision):
    if impl in ('torch', 'torch-graph'):
        return TorchRunner(args.gpu, width, batch, size, precision, loss_scale=args.loss_scale,
                           graph=impl == 'torch-graph', design=args.design)
    fast = 'off' if impl == 'chainer-plain' else (args.fast or default_fast())
    fused = 'all' if impl in ('chainer-fused', 'chainer-graph') else 'off'
    return ChainerRunner(device, width, batch, size, precision, fast, loss_scale=args.loss_scale, fused=fused,
                         graph=impl == 'chainer-graph', design=args.design)


def default_fast():
    import speed
    return speed.setting('user_fast_paths')


def time_config(args, device, impls, task, size, width, batch, precision):
    """Results (dicts) of every implementation for one configuration, interleaved."""
    from speed import cuda_graph
    clock = Clock(device)
    steps, peaks, runners = {}, {}, {}
    for impl in impls:
        # Peak memory is read over the warm-up, before the next implementation starts.
        start = clock.start_memory(impl)
        try:
            runner = make_runner(impl, args, device, width, batch if task == 'train' else 1, size, precision)
            step = runner.train_step if task == 'train' else runner.colour
            # chainer-graph's timed steps are replays: its warm-up holds the recording
            warmup = args.warmup + (cuda_graph.WARMUP_STEPS + 1 if impl == 'chainer-graph' else 0)
            for _ in range(max(1, warmup)):
                step()
            clock.sync(runner.device if isinstance(runner, TorchRunner) else None)
        except Exception as error:  # one implementation failing here must not cost the others' rows
            print('# {} left out of {} batch {} {}: {}: {}'.format(
                impl, task, batch, precision, type(error).__name__,
                (str(error).strip() or '-').splitlines()[0]))
            continue
        steps[impl], runners[impl] = step, runner
        peaks[impl] = clock.peak_memory_mb(impl, start)
    impls = list(runners)
    torch_device = next((r.device for r in runners.values() if isinstance(r, TorchRunner)), None)
    times = {impl: [] for impl in impls}
    for _ in range(args.repeats):
        for impl in impls:
            begin = clock.now(torch_device)
            for _ in range(args.steps):
                steps[impl]()
            times[impl].append((clock.now(torch_device) - begin) / args.steps)
    images = batch if task == 'train' else 1
    results = []
    for impl in impls:
        step_s = statistics.median(times[impl])
        results.append(dict(task=task, design=args.design, impl=impl,
                            device=describe_device(device, args.gpu), size=size, width=width, batch=images,
                            precision=precision,
                            images_per_s=images / step_s, step_ms=step_s * 1000,
                            step_ms_rounds=[round(t * 1000, 2) for t in times[impl]],
                            peak_mem_mb=peaks[impl]))
        if impl == 'chainer-graph':
            runner = runners[impl]
            results[-1]['graph'] = (runner.updater.graph if task == 'train' else runner.colour_graph).status()
    if 'torch' in times:
        torch_rate = next(r['images_per_s'] for r in results if r['impl'] == 'torch')
        for r in results:
            r['ratio_vs_torch'] = r['images_per_s'] / torch_rate
    return results


def describe_device(device, gpu):
    if gpu >= 0:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(gpu)
        name = props['name'].decode() if isinstance(props['name'], bytes) else props['name']
        return 'GPU {} ({})'.format(gpu, name)
    return 'CPU ({} cores, {})'.format(os.cpu_count(), cpu_name())


def cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def versions():
    import chainer
    found = {'python': platform.python_version(), 'numpy': np.__version__, 'chainer': chainer.__version__}
    try:
        import cupy
        found['cupy'] = cupy.__version__
    except ImportError:
        pass
    if torch_available():
        import torch
        found['torch'] = torch.__version__
    return found


def print_table(results):
    columns = ['task', 'design', 'impl', 'size', 'width', 'batch', 'precision', 'step_ms', 'images_per_s',
               'ratio_vs_torch', 'peak_mem_mb']
    def cell(v):
        return '' if v is None else ('%.3g' % v if isinstance(v, float) and v < 10 else
                                     '%.1f' % v if isinstance(v, float) else str(v))
    rows = [[cell(r.get(c)) for c in columns] for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    print('| ' + ' | '.join(c.ljust(w) for c, w in zip(columns, widths)) + ' |')
    print('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    for row in rows:
        print('| ' + ' | '.join(v.ljust(w) for v, w in zip(row, widths)) + ' |')


# ---------------------------------------------------------------- checks


def check_fast_paths(device, fast, width=16, size=128, batch=2, rtol=1e-8, fused='off'):
    """The faster paths (with ``fused``, speed/fused.py's functions too) against Chainer's own
    on ``device``, from the same parameters:
    the outputs of the three networks and every parameter's gradient for a loss on all of
    them, then one updater step each (same dropout masks): its losses and the gradients it
    updated with. In float64: in float32 the networks' batch norms over one or two values
    (the deepest maps) turn rounding differences of 1e-7 into differences of 1e-3, which
    would hide a real error; in float64 the two agree to 1e-12. Gradients are compared
    against the largest of their network, since some are pure rounding noise (the biases
    of convolutions that batch norm follows). Returns a list of failure messages."""
    import chainer
    import chainer.functions as F
    runs = {'fast': ChainerRunner(device, width, batch, size, 'fp64', fast, fused=fused),
            'plain': ChainerRunner(device, width, batch, size, 'fp64', 'off')}
    for name in ('enc', 'dec', 'dis'):
        getattr(runs['plain'], name).copyparams(getattr(runs['fast'], name))
    x = device.send(fixed_batch(batch, size, seed=1)[0].astype(np.float64))
    got = {}
    for label, run in runs.items():
        with run.config(), chainer.using_config('user_dropout', False):
            hs = run.enc(x)
            y = run.dec(hs)
            d = run.dis(x, y)
            for link in (run.enc, run.dec, run.dis):
                link.cleargrads()
            (F.sum(d * d) + F.sum(y * y) + sum(F.sum(h * h) for h in hs)).backward()
        got[label] = {'enc out': hs[-1].array, 'dec out': y.array, 'dis out': d.array,
                      'grads': grads(run)}
        device.xp.random.seed(7)
        np.random.seed(7)
        observation = {}
        reporter = chainer.Reporter()
        reporter.add_observer('enc', run.enc)
        reporter.add_observer('dec', run.dec)
        reporter.add_observer('dis', run.dis)
        with reporter.scope(observation):
            run.train_step()
        got[label].update({key: value.array for key, value in observation.items()})
        got[label]['step grads'] = grads(run)
    fast, plain = got['fast'], got['plain']
    failures = []
    for key in fast:
        if key.endswith('grads'):
            for link_name in fast[key]:
                scale = max(float(abs(g).max()) for g in to_numpy(plain[key][link_name]).values())
                for name, value in fast[key][link_name].items():
                    failures += compare('{} {}{}'.format(key, link_name, name), value,
                                        plain[key][link_name][name], rtol, scale)
        else:
            failures += compare(key, fast[key], plain[key], rtol)
    return failures


def grads(run):
    return {name: {p: param.grad.copy() for p, param in getattr(run, name).namedparams()}
            for name in ('enc', 'dec', 'dis')}


def to_numpy(values):
    return {k: np.asarray(v.get() if hasattr(v, 'get') else v) for k, v in values.items()}


def compare(name, got, want, rtol, scale=None):
    got, want = (np.asarray(a.get() if hasattr(a, 'get') else a, np.float64) for a in (got, want))
    if got.shape != want.shape:
        return ['{}: shape {} != {}'.format(name, got.shape, want.shape)]
    scale = max(scale or np.abs(want).max(), 1e-12)
    error = np.abs(got - want).max()
    if error <= rtol * scale:
        return []
    return ['{}: max difference {:.2e}, {:.1e} of the scale {:.2e} (tolerance {:.0e})'.format(
        name, error, error / scale, scale, rtol)]


def quality(args, device):
    """L1 on a fixed batch after ``args.quality`` steps, per precision, from the same start."""
    results = []
    width, size, batch = args.width[0], args.size[0], args.batch[0]
    for precision in args.precision:
        fused = 'all' if args.graph else args.fused
        run = ChainerRunner(device, width, batch, size, precision, args.fast or default_fast(),
                            loss_scale=args.loss_scale, fused=fused, graph=args.graph, design=args.design)
        device.xp.random.seed(0)
        before = run.l1()
        for _ in range(args.quality):
            run.train_step()
        impl = 'chainer-graph' if args.graph else 'chainer' if fused == 'off' else 'chainer-fused'
        results.append(dict(task='quality', design=args.design, impl=impl,
                            device=describe_device(device, args.gpu), size=size, width=width, batch=batch,
                            precision=precision,
                            steps=args.quality, l1_start=before, l1=run.l1()))
        if args.graph:
            results[-1]['graph'] = run.updater.graph.status()
    return results


def profile(args, device, impls):
    """TimerHook's account of the chainer implementations' steps: ms per step per function
    (forward and backward functions apart), largest first."""
    from chainer.function_hooks import TimerHook
    clock = Clock(device)
    for task in args.task:
        for impl in [i for i in impls if not i.startswith('torch')]:
            for width in args.width:
                for size in args.size:
                    for batch in (args.batch if task == 'train' else [1]):
                        runner = make_runner(impl, args, device, width, batch, size, args.precision[0])
                        step = runner.train_step if task == 'train' else runner.colour
                        for _ in range(max(1, args.warmup)):
                            step()
                        hook = TimerHook()
                        begin = clock.now()
                        with hook:
                            for _ in range(args.steps):
                                step()
                        total = (clock.now() - begin) / args.steps * 1000
                        summary = sorted(hook.summary().items(), key=lambda kv: -kv[1]['elapsed_time'])
                        in_functions = sum(v['elapsed_time'] for _, v in summary) / args.steps * 1000
                        calls = sum(v['occurrence'] for _, v in summary) // args.steps
                        print('{} {} size {} width {} batch {}: {:.1f} ms per step, '
                              '{:.1f} in {} function calls'.format(
                                  task, impl, size, width, batch, total, in_functions, calls))
                        for name, v in summary[:12]:
                            print('  {:<28} {:8.1f} ms  x{}'.format(
                                name, v['elapsed_time'] / args.steps * 1000, v['occurrence'] // args.steps))


def main(argv=None):
    args = parse_args(argv)
    import compat
    try:
        device = compat.get_device(args.gpu)
    except compat.DeviceError as error:
        print('error: {}'.format(error), file=sys.stderr)
        return 1
    import chainer
    chainer.global_config.cudnn_deterministic = True
    if args.threads and torch_available():
        import torch
        torch.set_num_threads(args.threads)
    info = versions()
    print('# device: {}; {}'.format(describe_device(device, args.gpu),
                                   ', '.join('{} {}'.format(k, v) for k, v in info.items())))
    if args.check:
        fast = args.fast or ('all' if args.gpu >= 0 else 'cpu')
        failures = check_fast_paths(device, fast, fused=args.fused)
        for failure in failures:
            print('FAIL ' + failure)
        print('check of user_fast_paths={!r}, user_fused={!r} against Chainer\'s functions on {}: {}'.format(
            fast, args.fused, describe_device(device, args.gpu), 'FAIL' if failures else 'PASS'))
        return 1 if failures else 0
    impls = args.impl or (['chainer', 'torch'] if torch_available() else ['chainer'])
    if args.profile:
        profile(args, device, impls)
        return 0
    if args.quality:
        results = quality(args, device)
        for r in results:
            print('quality: {impl} {precision} after {steps} steps: L1 {l1_start:.4f} -> {l1:.4f}'.format(**r)
                  + ('; steps ' + r['graph'] if 'graph' in r else ''))
            if args.json:
                print(json.dumps(dict(r, versions=info)))
        return 0
    uses_torch = any(i.startswith('torch') for i in impls)
    if uses_torch and not torch_available():
        print('error: --impl torch needs PyTorch: pip install -r benchmarks/requirements-bench.txt',
              file=sys.stderr)
        return 1
    if 'torch-graph' in impls and args.gpu < 0:
        print('error: --impl torch-graph needs a GPU (-g)', file=sys.stderr)
        return 1
    print('# {} warm-up steps, {} rounds of {} steps, median; threads: torch {}, OMP_NUM_THREADS={}'.format(
        args.warmup, args.repeats, args.steps,
        __import__('torch').get_num_threads() if uses_torch else '-', os.environ.get('OMP_NUM_THREADS', '-')))
    results = []
    for task in args.task:
        for precision in args.precision:
            for width in args.width:
                for size in args.size:
                    for batch in (args.batch if task == 'train' else [1]):
                        config = time_config(args, device, impls, task, size, width, batch, precision)
                        results += config
                        print_table(config)
                        for r in config:
                            if 'graph' in r:
                                print('# {} steps: {}'.format(r['impl'], r['graph']))
                        if args.json:  # now, so that a run cut short keeps what it measured
                            for r in config:
                                print(json.dumps(dict(r, versions=info)))
                        sys.stdout.flush()
    if len(results) > len(impls):
        print()
        print_table(results)
    return 0


if __name__ == '__main__':
    sys.exit(main())
