"""The training step recorded once as a CUDA graph and replayed (CuPy on a GPU only).

At batch 1 a training step of the example's networks is several hundred small kernels,
each launched from Python through Chainer, and the GPU waits on the interpreter
(measured: benchmarks/BENCHMARKS.md, 'GPU (one H100), 2026-11-26'). ``StepGraph`` runs
the step as usual a few times, then records every kernel of one step with CUDA stream
capture, and from then on replays the recording: one launch per update, the same kernels
on the same buffers.

A replay runs no Python, so whatever the step decides on the host must come from device
memory instead:

* the batch: copied into the same input buffers before each replay;
* Adam's step size alpha_t, which changes with t: fused.AdamRule reads it from the
  step scalars (``StepGraph.scalars``), written before each launch; the optimizers'
  and rules' t are counted on the host as Chainer counts them, so snapshots are as
  without the graph;
* dropout's random numbers (cuRAND keeps its state on the host): ``uniform`` hashes
  (seed, step, draw, element) with SplitMix64's finaliser, the step being a step
  scalar, so every replay draws new masks; ``uniform_numpy`` is its NumPy twin;
* matrix products: CuPy refuses cuBLAS calls on a capturing stream (cupy_backends'
  ``cublas.setStream`` raises NotImplementedError), so fast_conv.py's products go to
  cuBLAS through ctypes, on a handle, stream and workspace of this module's own: each
  image's product with the weights in one strided-batched call (``matmul_each``), the
  weights' gradient summed over the images inside the gemm (``matmul_sum``); the film
  design's Linear layers and its gate's 1x1 convolution take the same path
  (fast_conv.linear, fast_conv.convolution_2d);
* constants and index arrays (the tag plane's cell centres, FiLM's ones, the gate's luma,
  the colour loss's directions): copied to the device once, in an ordinary step before
  the recording, and kept (``constant``); one first asked for while recording refuses it;
* choices made from the data (which drawings are blank, the colour loss's sorting and its
  random pixels): device arrays, masks instead of the host's index lists (updater.py,
  speed/graph_ops.py).

Memory: the blocks a recording writes must never be handed to anything else, nor given
back to the driver (CuPy's default pool frees its cached blocks when asked, e.g. by
bench.py, or when short of memory). So the steps allocate from a memory pool of their
own (``held_bytes`` counts them), on a stream of their own.

What cannot be recorded is found out by trying or refused before it: a CPU, an optimizer
rule that computes its step on the host, products through ctypes that differ from
cupy.matmul's on small examples (tried before the first step), and what the updater
refuses (``refuse``: the colour loss of blank drawings at batch > 1 or with its other
options, see updater.TextPix2pixUpdater.recording_refusal). Then everything the attempt
changed on the host is put back, the updater goes on with the ordinary step, and
``fallback`` says why. The film design's step (with the colour loss of blank drawings)
records and replays on tests/cuda_on_cpu.py's stand-in, under guards for what a capturing
stream refuses (tests/test_cuda_graph.py); it has not yet been recorded on a GPU.
"""
import contextlib
import copy
import ctypes
import ctypes.util
import os
import weakref

import numpy

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer

# Ordinary steps before the capture: the first makes Adam's states, and every kernel
# the step uses is compiled before recording starts.
WARMUP_STEPS = 2
# cuBLAS's workspace for this module's handle (NVIDIA's advice for Hopper: 32 MiB).
WORKSPACE_BYTES = 32 * 1024 * 1024

_active = []  # the StepGraph whose step is running (recorded or not), innermost last
_graphs = weakref.WeakSet()  # the StepGraphs alive, for held_bytes


def current():
    """The StepGraph whose step is running now, or None."""
    return _active[-1] if _active else None


def held_bytes():
    """What the StepGraphs' memory pools hold on the GPU (beside CuPy's default pool)."""
    return sum(graph.pool.total_bytes() for graph in list(_graphs) if graph.pool is not None)


class Unsupported(Exception):
    """The step cannot be recorded; the message says why."""


def constant(key, make, xp):
    """``make()``'s array on xp's device. In a StepGraph's steps it is made once, at its
    first use in an ordinary step, and kept under ``key`` (which must name everything
    make's result depends on: shape, dtype), so that a recording copies nothing from the
    host; outside them, as ``xp.asarray(make())`` always was (on the CPU, make's own array)."""
    graph = current()
    if graph is None:
        return xp.asarray(make())
    if key not in graph.constants:
        if graph.capturing:  # a copy from the host would be recorded, reading a buffer reused later
            raise Unsupported('the constant {!r} first asked for while recording'.format(key))
        graph.constants[key] = chainer.backends.cuda.cupy.asarray(make())
    return graph.constants[key]


# ---------------------------------------------------------------- random numbers

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB

RANDOM_SOURCE = r'''
__device__ unsigned long long mix64(unsigned long long z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// out[k] = the top 24 bits of mix64(key + k) / 2^24, key from (seed, step, draw): the
// step is read from device memory, so a replayed graph draws new numbers each step.
extern "C" __global__ void counter_uniform(long long size, const double* scalars, unsigned long long seed,
                                          unsigned long long draw, float* out) {
    const unsigned long long step = (unsigned long long)scalars[0];
    const unsigned long long key = mix64(mix64(mix64(seed) ^ step) ^ draw);
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < size;
         k += (long long)blockDim.x * gridDim.x) {
        out[k] = (float)(mix64(key + (unsigned long long)k) >> 40) * (1.0f / 16777216.0f);
    }
}
'''


def _mix64(z):
    """SplitMix64's finaliser of a Python int, or of a uint64 NumPy array (wrapping)."""
    if isinstance(z, int):
        z = (z + GOLDEN) & MASK64
        z = ((z ^ (z >> 30)) * MIX1) & MASK64
        z = ((z ^ (z >> 27)) * MIX2) & MASK64
        return z ^ (z >> 31)
    u = numpy.uint64
    z = z + u(GOLDEN)
    z = (z ^ (z >> u(30))) * u(MIX1)
    z = (z ^ (z >> u(27))) * u(MIX2)
    return z ^ (z >> u(31))


def uniform_numpy(size, seed, step, draw):
    """float32 numbers on [0, 1): what the counter_uniform kernel writes."""
    key = _mix64(_mix64(_mix64(seed) ^ step) ^ draw)
    index = numpy.arange(size, dtype=numpy.uint64)
    return ((_mix64(numpy.uint64(key) + index) >> numpy.uint64(40)).astype(numpy.float32)
            * numpy.float32(2 ** -24))


_random_kernel = []


def _counter_uniform():
    if not _random_kernel:
        cupy = chainer.backends.cuda.cupy
        _random_kernel.append(cupy.RawKernel(RANDOM_SOURCE, 'counter_uniform'))
    return _random_kernel[0]


# ---------------------------------------------------------------- matrix products


def _layout(x):
    """How cuBLAS (column-major) reads the 2-d row-major view ``x`` as it lies in memory:
    ('N', ld) where its rows are contiguous (x transposed, ld elements apart),
    ('T', ld) where its columns are; None where neither."""
    rows, columns = x.shape
    item = x.itemsize
    row_step, column_step = x.strides
    if (column_step == item or columns == 1) and row_step % item == 0 and row_step // item >= max(1, columns):
        return 'N', row_step // item
    if (row_step == item or rows == 1) and column_step % item == 0 and column_step // item >= max(1, rows):
        return 'T', column_step // item
    return None


def gemm_arguments(a, b, out):
    """cuBLAS's gemm arguments (op_first, op_second, m, n, k, ld_first, ld_second, ld_out)
    for out = a @ b with 2-d row-major views, the first operand being b and the second a:
    column-major, out^T = b^T a^T. None where an operand lies neither way (copy it) or
    out's rows are not contiguous."""
    (m, k), (_, n) = a.shape, b.shape
    first, second, result = _layout(b), _layout(a), _layout(out)
    if first is None or second is None or result is None or result[0] != 'N':
        return None
    return first[0], second[0], n, m, k, first[1], second[1], result[1]


def batched_arguments(a, b, out):
    """gemm_arguments for out[i] = a @ b[i], every image i of b (n, k, q) and out (n, m, q),
    plus (n, b's step, out's step) in elements between images; None as gemm_arguments."""
    item = b.itemsize
    if not len(b) or b.strides[0] % item or out.strides[0] % item:
        return None
    arguments = gemm_arguments(a, b[0], out[0])
    return None if arguments is None else arguments + (len(b), b.strides[0] // item, out.strides[0] // item)


class _Cublas:
    """A cuBLAS handle of this module's own, called through ctypes."""

    OPS = {'N': 0, 'T': 1}
    TF32_TENSOR_OP_MATH = 3  # cublasMath_t

    def __init__(self):
        cupy = chainer.backends.cuda.cupy
        cupy.cuda.device.get_cublas_handle()  # CuPy loads libcublas
        self.lib = ctypes.CDLL(_loaded_library('libcublas.so'))
        self.handle = ctypes.c_void_p()
        self._check(self.lib.cublasCreate_v2(ctypes.byref(self.handle)), 'cublasCreate')
        if os.environ.get('CUPY_TF32', '0') != '0':  # as CuPy's own products do
            self._check(self.lib.cublasSetMathMode(self.handle, self.TF32_TENSOR_OP_MATH),
                        'cublasSetMathMode')
        self.workspace = cupy.empty(WORKSPACE_BYTES, numpy.uint8)
        self.stream = None
        for name in ('cublasSgemm_v2', 'cublasDgemm_v2', 'cublasSgemmStridedBatched',
                     'cublasDgemmStridedBatched', 'cublasSetStream_v2', 'cublasSetWorkspace_v2'):
            getattr(self.lib, name)  # a missing one is an AttributeError now, not in a step

    @staticmethod
    def _check(status, name):
        if status != 0:
            raise RuntimeError('{} failed with cuBLAS status {}'.format(name, status))

    def _use_current_stream(self):
        stream = chainer.backends.cuda.cupy.cuda.get_current_stream().ptr
        if stream != self.stream:
            self._check(self.lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream)), 'cublasSetStream')
            # cublasSetStream puts the handle back on cuBLAS's own workspace, which it
            # would allocate on the capturing stream.
            self._check(self.lib.cublasSetWorkspace_v2(self.handle,
                                                       ctypes.c_void_p(self.workspace.data.ptr),
                                                       ctypes.c_size_t(WORKSPACE_BYTES)),
                        'cublasSetWorkspace')
            self.stream = stream

    def gemm(self, a, b, out, accumulate=False, images=None):
        """out = a @ b (out += a @ b with ``accumulate``): 2-d CuPy arrays of one float type
        laid out as gemm_arguments accepts. With ``images`` (batched_arguments' last three:
        count and the steps of b and out), out[i] = a @ b[i] for every image in one
        strided-batched call, a shared (step 0), a, b and out being the first image's."""
        op_first, op_second, m, n, k, ld_first, ld_second, ld_out = gemm_arguments(a, b, out)
        self._use_current_stream()
        single = out.dtype == numpy.float32
        scalar = ctypes.c_float if single else ctypes.c_double
        one, beta = scalar(1), scalar(1 if accumulate else 0)
        shape = (self.handle, ctypes.c_int(self.OPS[op_first]), ctypes.c_int(self.OPS[op_second]),
                 ctypes.c_int(m), ctypes.c_int(n), ctypes.c_int(k), ctypes.byref(one))
        first = (ctypes.c_void_p(_address(b)), ctypes.c_int(ld_first))
        second = (ctypes.c_void_p(_address(a)), ctypes.c_int(ld_second))
        result = (ctypes.c_void_p(_address(out)), ctypes.c_int(ld_out))
        if images is None:
            function = self.lib.cublasSgemm_v2 if single else self.lib.cublasDgemm_v2
            arguments = shape + first + second + (ctypes.byref(beta),) + result
        else:
            count, b_step, out_step = images
            function = self.lib.cublasSgemmStridedBatched if single else self.lib.cublasDgemmStridedBatched
            arguments = (shape + first + (ctypes.c_longlong(b_step),) + second + (ctypes.c_longlong(0),)
                         + (ctypes.byref(beta),) + result
                         + (ctypes.c_longlong(out_step), ctypes.c_int(count)))
        self._check(function(*arguments), 'gemm')


def _address(x):
    """The device address of x's first element (tests/cuda_on_cpu.py's stand-in: the host's)."""
    return x.data.ptr


def _loaded_library(stem):
    """The path of the loaded shared library whose file name starts with ``stem`` (e.g.
    libcublas.so.12), else the one the linker would find."""
    try:
        with open('/proc/self/maps') as maps:
            for line in maps:
                path = line.split()[-1]
                if os.path.basename(path).startswith(stem + '.') or os.path.basename(path) == stem:
                    return path
    except OSError:
        pass
    found = ctypes.util.find_library(stem[3:].split('.')[0])
    if found is None:
        raise Unsupported('{} is not loaded and not found'.format(stem))
    return found


_cublas = []


def _handle():
    if not _cublas:
        _cublas.append(_Cublas())
    return _cublas[0]


def _check_types(a, b):
    if a.dtype != b.dtype or a.dtype not in (numpy.float32, numpy.float64):
        raise Unsupported('matrix products of {} and {}'.format(a.dtype, b.dtype))


def matmul_each(a, b):
    """a @ b[i] for every image i of b (n, k, q), a (m, k) shared: (n, m, q), from one
    strided-batched gemm through this module's cuBLAS handle (which works on a capturing
    stream)."""
    cupy = chainer.backends.cuda.cupy
    _check_types(a, b)
    out = cupy.empty((b.shape[0], a.shape[0], b.shape[2]), a.dtype)
    if not out.size or not a.shape[1]:
        out.fill(0)
        return out
    arguments = batched_arguments(a, b, out)
    if arguments is None:
        a, b = cupy.ascontiguousarray(a), cupy.ascontiguousarray(b)
        arguments = batched_arguments(a, b, out)
    _handle().gemm(a, b[0], out[0], images=arguments[-3:])
    return out


def matmul_sum(a, b):
    """The sum over images i of a[i] @ b[i] (a (n, m, k), b (n, k, q)): one gemm per image
    into the same (m, q) matrix, each after the first adding to it."""
    cupy = chainer.backends.cuda.cupy
    _check_types(a, b)
    out = cupy.zeros((a.shape[1], b.shape[2]), a.dtype)
    for i in range(len(a) if a.shape[2] else 0):
        x, y = a[i], b[i]
        if gemm_arguments(x, y, out) is None:
            x, y = cupy.ascontiguousarray(x), cupy.ascontiguousarray(y)
        _handle().gemm(x, y, out, accumulate=i > 0)
    return out


def _check_products():
    """Small products of each kind the steps make (one image, several, transposed weights,
    summed), through this module's handle against cupy.matmul: a wrong binding or
    argument gives other numbers here, before any step has changed a parameter. The
    tolerance is TF32's."""
    cupy = chainer.backends.cuda.cupy
    rng = numpy.random.RandomState(0)  # not NumPy's global state: training's own
    images = cupy.asarray(rng.standard_normal((3, 7, 5)).astype(numpy.float32))
    weights = cupy.asarray(rng.standard_normal((4, 7)).astype(numpy.float32))
    gy = cupy.asarray(rng.standard_normal((3, 4, 5)).astype(numpy.float32))
    pairs = [(matmul_each(weights, images[:1]), cupy.matmul(weights, images[:1])),
             (matmul_each(weights, images), cupy.matmul(weights, images)),
             (matmul_each(weights.T.copy().T, images), cupy.matmul(weights, images)),
             (matmul_sum(gy, images.transpose(0, 2, 1)),
              cupy.matmul(gy, images.transpose(0, 2, 1)).sum(axis=0))]
    for got, want in pairs:
        if not bool(cupy.allclose(got, want, rtol=1e-2, atol=1e-2)):
            raise Unsupported('the products through ctypes differ from cupy.matmul')


# ---------------------------------------------------------------- the step


def records_by_default(on_one_gpu, stage, refusal=None):
    """train_facade_text.py --cuda-graph's default: on for one process on a GPU training
    stage 1, either tag design (the post's step was measured recorded; the film design's
    records and replays on tests/cuda_on_cpu.py's stand-in and awaits its GPU run),
    unless the updater refuses to record its step (``refusal``: its reason,
    updater.recording_refusal). Stage 2 has not been tried on a GPU."""
    return on_one_gpu and stage == 1 and refusal is None


class StepGraph:
    """Runs ``step(*inputs)`` (device arrays in; reports through chainer.report; what it
    returns, arrays, is returned) for the optimizers' parameters (none for a forward pass
    alone): WARMUP_STEPS times as usual, then once recorded, then as replays of the
    recording, which return the arrays the recording writes (overwritten by the next run:
    read them first)."""

    def __init__(self, optimizers, seed=None, warmup=WARMUP_STEPS):
        """``seed``: of the dropout masks; None: drawn from NumPy's random state at the
        first step on a GPU (a CPU run's random numbers stay as without the graph)."""
        self.optimizers = list(optimizers)
        self.rules = [param.update_rule for optimizer in self.optimizers
                      for param in optimizer.target.params()]
        self.slots = {id(rule): 1 + i for i, rule in enumerate(self.rules)}
        self.seed = seed
        self.warmup = warmup
        self.steps = 0  # steps run; the step scalar the random numbers are keyed by
        self.draws = 0  # uniform() calls so far in this step
        self.fallback = None  # why the steps are not recorded, once that is known
        self.graph = None
        self.capturing = False  # the step running now is being recorded
        self.constants = {}  # constant()'s device arrays, made once before the recording
        self.stream = self.pool = self.inputs = self.scalars = self.observation = self.outputs = None

    def refuse(self, reason):
        """Runs every step as usual, never recorded, ``reason`` saying why (before the first)."""
        self.fallback = reason

    # ---- what the step reads while recording

    def slot(self, rule):
        """Where ``rule``'s alpha_t lies in the step scalars."""
        if id(rule) not in self.slots:
            raise Unsupported('an update rule the StepGraph was not given')
        return self.slots[id(rule)]

    def uniform(self, shape):
        """float32 numbers on [0, 1) of ``shape``, new each step (counter_uniform)."""
        cupy = chainer.backends.cuda.cupy
        out = cupy.empty(shape, numpy.float32)
        _counter_uniform()((min((out.size + 511) // 512, 65535),), (512,), (
            numpy.int64(out.size), self.scalars, numpy.uint64(self.seed), numpy.uint64(self.draws), out))
        self.draws += 1
        return out

    # ---- running

    def run(self, step, *inputs):
        if self.fallback is None and self.stream is None:  # before the first step only
            self.fallback = self._refusal(inputs)
        if self.fallback is None:
            ran, outputs = self._run_on_stream(step, inputs)
            if ran:
                return outputs
        return step(*inputs)

    def _run_on_stream(self, step, inputs):
        """The step as usual, recorded or replayed, on the graph's stream: (True, its
        outputs), or (False, None) where it did not run (then ``fallback`` says why)."""
        cupy = chainer.backends.cuda.cupy
        caller = cupy.cuda.get_current_stream()
        if self.stream is None:
            if self.seed is None:
                self.seed = int(numpy.random.randint(2 ** 62))
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.pool = cupy.cuda.MemoryPool()
            _graphs.add(self)
            self.scalars = cupy.zeros(1 + len(self.rules), numpy.float64)
            self.inputs = [cupy.empty_like(x) for x in inputs]
        if [x.shape for x in inputs] != [x.shape for x in self.inputs]:
            self.fallback = 'the batch changed shape'
            return False, None
        self.stream.wait_event(caller.record())
        with self.stream:
            for buffer, x in zip(self.inputs, inputs):
                buffer[...] = x
            if self.steps < self.warmup:
                outputs = self._step(step)
            elif self.graph is None:
                outputs = self._capture(step)
            else:
                outputs = self._replay()
        caller.wait_event(self.stream.record())
        return self.fallback is None, outputs

    def _refusal(self, inputs):
        """Why the steps cannot be recorded, seen before trying; None if nothing is seen."""
        for rule in self.rules:
            if not getattr(rule, 'reads_step_scalars', False):
                return '{} computes its step size on the host (fused.Adam reads it from the device)'.format(
                    type(rule).__name__)
        if not _on_device(inputs):
            return 'CUDA graphs need CuPy arrays on a GPU'
        try:  # what the steps will call, made and tried before the first step rather than in it
            _check_products()
            _counter_uniform().compile()
        except Exception as error:
            return 'cuBLAS through ctypes or the random numbers kernel: {}: {}'.format(
                type(error).__name__, str(error).strip().split('\n')[0])
        return None

    @contextlib.contextmanager
    def _running(self, scalars):
        """The step's settings: fused.py's functions and fast_conv.py's paths on CuPy
        arrays, the graph's memory pool, ``scalars`` in the step scalars."""
        self._write_scalars(scalars)
        self.draws = 0
        _active.append(self)
        try:
            with chainer.using_config('user_fused', 'all'), chainer.using_config('user_fast_paths', 'all'), \
                    chainer.backends.cuda.cupy.cuda.using_allocator(self.pool.malloc):
                yield
        finally:
            _active.pop()

    def _scalars(self, ahead):
        """The step number, then each rule's alpha_t for the step about to run: for
        a step run in Python (``ahead``) the rule counts it itself, later."""
        alphas = []
        for rule in self.rules:
            if ahead:
                rule = copy.copy(rule)
                rule.t += 1
            alphas.append(rule.alpha_t if rule.enabled else 0.0)
        return [self.steps] + alphas

    def _write_scalars(self, values):
        # On the graph's stream, after the launches before it: a copy on the legacy
        # stream (ndarray.set without a stream) would not wait for them. From pageable
        # memory the copy is staged before set returns.
        self.scalars.set(numpy.asarray(values, numpy.float64), stream=self.stream)

    def _step(self, step):
        with self._running(self._scalars(ahead=True)):
            outputs = step(*self.inputs)
        self.steps += 1
        return outputs

    def _capture(self, step):
        host = self._host_state()
        observation = {}
        try:
            with self._running(self._scalars(ahead=True)), _observing(observation):
                self.stream.begin_capture()
                self.capturing = True
                try:
                    outputs = step(*self.inputs)
                except BaseException:
                    with contextlib.suppress(Exception):  # the capture is void; keep the step's error
                        self.stream.end_capture()
                    raise
                finally:
                    self.capturing = False
                graph = self.stream.end_capture()
        except Exception as error:  # anything the recording cannot hold
            self._restore(host)
            reason = str(error).strip().splitlines()
            self.fallback = 'capture failed: {}: {}'.format(type(error).__name__, reason[0] if reason else '')
            return None
        self.graph, self.observation, self.outputs = graph, observation, outputs
        self.graph.launch(self.stream)
        _report(observation)
        self.steps += 1
        return outputs

    def _count_step(self):
        """What Chainer's optimizers count on the host in an update, which a replay skips."""
        for optimizer in self.optimizers:
            optimizer.t += 1
        for rule in self.rules:
            if rule.enabled:
                rule.t += 1

    def _replay(self):
        self._count_step()
        self._write_scalars(self._scalars(ahead=False))
        self.graph.launch(self.stream)
        _report(self.observation)
        self.steps += 1
        return self.outputs

    def _host_state(self):
        return ([(o, o.t) for o in self.optimizers], [(r, r.t) for r in self.rules], numpy.random.get_state())

    def _restore(self, host):
        optimizers, rules, random_state = host
        for optimizer, t in optimizers:
            optimizer.t = t
        for rule, t in rules:
            rule.t = t
            if hasattr(rule, 'pending_decay'):
                rule.pending_decay = None
        numpy.random.set_state(random_state)

    def status(self):
        """One line: how the steps run."""
        if self.fallback is not None:
            return 'not recorded ({})'.format(self.fallback)
        if self.graph is None:
            return 'not yet recorded ({} of {} ordinary steps run)'.format(self.steps, self.warmup)
        return 'recorded after {} steps, replayed {} times'.format(self.warmup, self.steps - self.warmup - 1)


def _on_device(inputs):
    """Whether the step's inputs are CuPy arrays on a GPU (tests/cuda_on_cpu.py's stand-in
    counts its own)."""
    cuda = chainer.backends.cuda
    return cuda.available and all(isinstance(x, cuda.ndarray) for x in inputs)


def _current_reporter():
    try:
        return chainer.reporter.get_current_reporter()
    except IndexError:
        return None


@contextlib.contextmanager
def _observing(observation):
    """What the step reports goes into ``observation`` (under the current reporter's
    names), to be reported again after each replay."""
    reporter = _current_reporter()
    if reporter is None:
        yield
        return
    with reporter.scope(observation):
        yield


def _report(observation):
    reporter = _current_reporter()
    if reporter is not None and observation:
        reporter.report(observation)
