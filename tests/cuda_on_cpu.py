"""The GPU code of speed/fused.py and speed/cuda_graph.py run on the CPU, so that it is executed, not
only compiled, where there is no GPU: their CUDA C kernels, one thread per CUDA thread,
and their cuBLAS calls through ctypes, into a stand-in for libcublas.

The source is compiled as C++20 by the host's g++ after a prelude standing in for CUDA's
built-ins: threadIdx and blockIdx are thread-local, __syncthreads() is a std::barrier over
the block's threads (a thread that has returned leaves it, as on a GPU), __shared__
memory is a static (blocks run one after another), rsqrt is 1 / sqrt. With ``FIBERS``
set, a block's threads are instead coroutines (ucontext) taking turns on one OS thread,
each running to its next __syncthreads() or its end, round after round: the same
arithmetic without creating an OS thread per CUDA thread, fast enough to run a whole
training step's launches (the ``step_on_cpu`` fixture), and unable to show any race
between a block's threads. ``Module`` takes
CuPy's RawModule arguments; its kernels take CuPy's launch arguments, (grid, block, args),
with NumPy arrays where CuPy's would be. Each argument is checked against the kernel's
parameter as the C++ compiler sees it: a C-contiguous array of the pointed-to type's
kind and size for a pointer, a NumPy scalar of the parameter's kind and size otherwise.
CuPy checks none of this: it packs a scalar by its own dtype and passes an array's
address, so on a GPU a mismatch is read as other numbers, not reported.

``cublas_library()`` is a stand-in for libcublas with the C functions speed/cuda_graph.py calls
through ctypes, declared as cublas_api.h declares them and computing on host memory what
cuBLAS's documentation says they compute (column-major gemm, alpha * op(A) op(B) + beta * C,
C not read where beta is 0), refusing arguments cuBLAS refuses (CUBLAS_STATUS_INVALID_VALUE
for a leading dimension below its minimum) and a gemm between cublasSetStream and
cublasSetWorkspace (cublasSetStream puts the handle back on cuBLAS's own workspace).

``CupyOnCpu`` also stands in for CuPy's streams, memory pools and stream capture, so that
speed/cuda_graph.py's StepGraph runs on it. While a stream captures, what a capturing
CUDA stream would refuse or a replay would get wrong raises ``CaptureError``: Chainer's
functions whose GPU code calls cuBLAS through CuPy (which refuses a capturing stream),
NumPy's sort, argsort and index lists (CuPy's wait for the GPU) called through the numpy
module, and random numbers drawn from NumPy's state on the host (a replay would repeat
them). The stand-in cannot replay: its kernels and NumPy ran at once and recorded
nothing; its kernels ran while it "captured", so the first launch of its recording
(``Graph``) does nothing. Each later launch runs the recorded step's Python again
under the same guards, with the step scalars the StepGraph wrote, puts back the host's
counters as a launch would leave them, and writes what the step reports into the arrays
the recording reported, as a replay overwrites its buffers.

What this cannot show: speed, the GPU's limits (grid size, shared memory), its float
arithmetic to the last bit (NVRTC contracts a * b + c into one rounding, rsqrt is
approximate), races between blocks (they run one after another), and whether the real
library has the symbols and behaves as its documentation says; of a recorded step,
whatever CuPy or Chainer's GPU code does that their NumPy code does not (a copy or a
wait on the host hidden inside a CuPy function), and what a real replay would repeat
that the guards above do not watch.
"""
import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import types

import numpy

# Whether kernels run their threads as coroutines on one OS thread (see above).
FIBERS = False

PRELUDE = r'''
#include <barrier>
#include <cmath>
#include <cstddef>
#include <functional>
#include <thread>
#include <type_traits>
#include <ucontext.h>
#include <utility>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
static std::barrier<>* block_barrier = nullptr;
static bool fibers = false;  // launch_fibers is running the block
static ucontext_t fiber_scheduler;
static ucontext_t* fiber_running = nullptr;
inline void __syncthreads() {
    if (fibers) swapcontext(fiber_running, &fiber_scheduler);  // back to launch_fibers' round
    else block_barrier->arrive_and_wait();
}
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
using std::sqrt;
inline float rsqrt(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
'''

LAUNCHER = r'''
template <typename T> using bare = std::remove_cv_t<std::remove_pointer_t<T>>;

template <typename... Args, std::size_t... I>
void call(void (*kernel)(Args...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<Args>*>(args[I])...);
}

// Each block in turn, its threads side by side.
template <typename... Args>
void launch(void (*kernel)(Args...), unsigned grid, unsigned block, void** args) {
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned b = 0; b < grid; ++b) {
        std::barrier<> barrier(block);
        block_barrier = &barrier;
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block; ++t) {
            threads.emplace_back([&, t] {
                threadIdx.x = t;
                blockIdx.x = b;
                call(kernel, args, std::index_sequence_for<Args...>{});
                barrier.arrive_and_drop();
            });
        }
        for (auto& thread : threads) thread.join();
    }
}

// The same with each block's threads as coroutines on this thread: in each round every
// thread not yet returned runs to its next __syncthreads() or its end.
static std::vector<std::vector<char>> fiber_stacks;
static std::function<void()> fiber_task;
static char* fiber_returned = nullptr;
static void fiber_entry() {
    fiber_task();
    *fiber_returned = 1;
}  // then to uc_link, the scheduler

template <typename... Args>
void launch_fibers(void (*kernel)(Args...), unsigned grid, unsigned block, void** args) {
    const std::size_t stack = 64 * 1024;
    gridDim.x = grid;
    blockDim.x = block;
    while (fiber_stacks.size() < block) fiber_stacks.emplace_back(stack);
    fiber_task = [&] { call(kernel, args, std::index_sequence_for<Args...>{}); };
    std::vector<ucontext_t> contexts(block);
    std::vector<char> returned(block);
    fibers = true;
    for (unsigned b = 0; b < grid; ++b) {
        blockIdx.x = b;
        for (unsigned t = 0; t < block; ++t) {
            getcontext(&contexts[t]);
            contexts[t].uc_stack.ss_sp = fiber_stacks[t].data();
            contexts[t].uc_stack.ss_size = stack;
            contexts[t].uc_link = &fiber_scheduler;
            makecontext(&contexts[t], fiber_entry, 0);
            returned[t] = 0;
        }
        for (bool live = true; live;) {
            live = false;
            for (unsigned t = 0; t < block; ++t) {
                if (returned[t]) continue;
                threadIdx.x = t;
                fiber_running = &contexts[t];
                fiber_returned = &returned[t];
                swapcontext(&fiber_scheduler, &contexts[t]);
                live = live || !returned[t];
            }
        }
    }
    fibers = false;
}

// Per parameter: whether it is a pointer, whether the (pointed-to) type is floating, its size.
template <typename... Args>
int describe(void (*)(Args...), int* out) {
    int i = 0;
    ((out[3 * i] = std::is_pointer_v<Args>, out[3 * i + 1] = std::is_floating_point_v<bare<Args>>,
      out[3 * i + 2] = (int)sizeof(bare<Args>), ++i), ...);
    return i;
}
'''

CUBLAS_SOURCE = r'''
#include <algorithm>
#include <map>
#include <string>

namespace {
int handles = 0;
bool workspace_set = false;
std::map<std::string, int> calls;
const int SUCCESS = 0, NOT_INITIALIZED = 1, INVALID_VALUE = 7, EXECUTION_FAILED = 13;

template <typename T>
int gemm(void* handle, int transa, int transb, int m, int n, int k, const T* alpha, const T* A, int lda,
         long long stride_a, const T* B, int ldb, long long stride_b, const T* beta, T* C, int ldc,
         long long stride_c, int count) {
    if (handle != &handles || !handles) return NOT_INITIALIZED;
    if (!workspace_set) return EXECUTION_FAILED;  // on cuBLAS's own workspace: not capturable
    if (transa < 0 || transa > 1 || transb < 0 || transb > 1 || m < 0 || n < 0 || k < 0 || count < 0 ||
        lda < std::max(1, transa ? k : m) || ldb < std::max(1, transb ? n : k) || ldc < std::max(1, m))
        return INVALID_VALUE;
    for (int image = 0; image < count; ++image) {
        const T* a = A + image * stride_a;
        const T* b = B + image * stride_b;
        T* c = C + image * stride_c;
        for (int j = 0; j < n; ++j) {
            for (int i = 0; i < m; ++i) {
                T sum = 0;
                for (int l = 0; l < k; ++l)
                    sum += (transa ? a[l + (long long)i * lda] : a[i + (long long)l * lda]) *
                           (transb ? b[j + (long long)l * ldb] : b[l + (long long)j * ldb]);
                T& out = c[i + (long long)j * ldc];
                out = *alpha * sum + (*beta == 0 ? (T)0 : *beta * out);
            }
        }
    }
    return SUCCESS;
}
}  // namespace

extern "C" {
int cublasCreate_v2(void** handle) {
    ++calls["cublasCreate_v2"];
    handles = 1;
    *handle = &handles;
    return SUCCESS;
}
int cublasSetMathMode(void* handle, int mode) {
    ++calls["cublasSetMathMode"];
    return handle == &handles ? SUCCESS : NOT_INITIALIZED;
}
int cublasSetStream_v2(void* handle, void* stream) {
    ++calls["cublasSetStream_v2"];
    workspace_set = false;
    return handle == &handles ? SUCCESS : NOT_INITIALIZED;
}
int cublasSetWorkspace_v2(void* handle, void* workspace, size_t bytes) {
    ++calls["cublasSetWorkspace_v2"];
    if (handle != &handles) return NOT_INITIALIZED;
    if (workspace == nullptr || bytes == 0) return INVALID_VALUE;
    workspace_set = true;
    return SUCCESS;
}
int cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* A, int lda,
                   const float* B, int ldb, const float* beta, float* C, int ldc) {
    ++calls["cublasSgemm_v2"];
    return gemm(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}
int cublasDgemm_v2(void* h, int ta, int tb, int m, int n, int k, const double* alpha, const double* A,
                   int lda, const double* B, int ldb, const double* beta, double* C, int ldc) {
    ++calls["cublasDgemm_v2"];
    return gemm(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}
int cublasSgemmStridedBatched(void* h, int ta, int tb, int m, int n, int k, const float* alpha,
                              const float* A, int lda, long long sa, const float* B, int ldb, long long sb,
                              const float* beta, float* C, int ldc, long long sc, int count) {
    ++calls["cublasSgemmStridedBatched"];
    return gemm(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, count);
}
int cublasDgemmStridedBatched(void* h, int ta, int tb, int m, int n, int k, const double* alpha,
                              const double* A, int lda, long long sa, const double* B, int ldb, long long sb,
                              const double* beta, double* C, int ldc, long long sc, int count) {
    ++calls["cublasDgemmStridedBatched"];
    return gemm(h, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, count);
}
int calls_of(const char* name) { return calls[name]; }
}
'''

MAX_PARAMETERS = 64
_built = {}
_work = []  # one temporary folder for the libraries, removed when the process ends


@functools.lru_cache(maxsize=None)
def compiler():
    """The C++ compiler used, or None where there is none able to (g++ with C++20's <barrier>)."""
    gxx = shutil.which('g++')
    if gxx is None:
        return None
    with tempfile.TemporaryDirectory() as work:
        probe = os.path.join(work, 'probe.cpp')
        with open(probe, 'w') as f:
            f.write('#include <barrier>\nint main() { std::barrier<> b(1); b.arrive_and_wait(); }\n')
        done = subprocess.run([gxx, '-std=c++20', '-pthread', probe, '-o', os.path.join(work, 'probe')],
                              capture_output=True)
    return gxx if done.returncode == 0 else None


def _build(source, flags):
    """The shared library compiled from ``source`` (once per source), and its path."""
    key = hashlib.sha256((source + ' '.join(flags)).encode()).hexdigest()[:16]
    if key not in _built:
        if not _work:
            _work.append(tempfile.TemporaryDirectory(prefix='cuda_on_cpu_'))
        work = os.path.join(_work[0].name, key)
        os.mkdir(work)
        path = os.path.join(work, 'source.cpp')
        with open(path, 'w') as f:
            f.write(source)
        library = os.path.join(work, 'library.so')
        done = subprocess.run([compiler() or 'g++', '-O1', '-pthread', '-shared', '-fPIC'] + flags
                              + [path, '-o', library], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError('the source does not compile as C++ here:\n' + done.stderr[-4000:])
        _built[key] = library
    return _built[key]


def cublas_library():
    """The path of the stand-in for libcublas (see the module's docstring)."""
    return _build(CUBLAS_SOURCE, ['-std=c++17'])


def cublas_calls(name):
    """How often the stand-in's function ``name`` has been called."""
    library = ctypes.CDLL(cublas_library())
    library.calls_of.argtypes = [ctypes.c_char_p]
    return library.calls_of(name.encode())


class Module:
    """cupy.RawModule(code=..., name_expressions=...), compiled for the CPU (once per source)."""

    def __init__(self, code, name_expressions):
        self.names = list(name_expressions)
        wrappers = ''.join(
            'extern "C" void launch_{i}(unsigned g, unsigned b, void** a) {{ launch(&{name}, g, b, a); }}\n'
            'extern "C" void launch_fibers_{i}(unsigned g, unsigned b, void** a) {{\n'
            '    launch_fibers(&{name}, g, b, a);\n'
            '}}\n'
            'extern "C" int describe_{i}(int* out) {{ return describe(&{name}, out); }}\n'.format(
                i=i, name=name)
            for i, name in enumerate(self.names))
        self.library = ctypes.CDLL(_build(PRELUDE + code + LAUNCHER + wrappers, ['-std=c++20']))

    def get_function(self, name):
        return Kernel(self.library, self.names.index(name), name)


class RawKernel(Module):
    """cupy.RawKernel(code, name) for an ``extern "C"`` kernel."""

    def __init__(self, code, name):
        super().__init__(code, [name])
        self.kernel = self.get_function(name)

    def __call__(self, grid, block, args):
        self.kernel(grid, block, args)

    def compile(self):
        """Compiled already (cupy.RawKernel.compile)."""


class Kernel:
    def __init__(self, library, index, name):
        self.name = name
        self.runs = {}
        for fibers, prefix in ((False, 'launch_'), (True, 'launch_fibers_')):
            self.runs[fibers] = getattr(library, '{}{}'.format(prefix, index))
            self.runs[fibers].argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)]
        layout = (ctypes.c_int * (3 * MAX_PARAMETERS))()
        count = getattr(library, 'describe_{}'.format(index))(layout)
        self.parameters = [tuple(layout[3 * i:3 * i + 3]) for i in range(count)]

    def __call__(self, grid, block, args):
        """Launches ``grid[0]`` blocks of ``block[0]`` threads (1-d, as the kernels here use)."""
        assert len(grid) == 1 and len(block) == 1, 'only 1-d launches are emulated'
        if len(args) != len(self.parameters):
            raise TypeError('{}: {} arguments for {} parameters'.format(self.name, len(args),
                                                                        len(self.parameters)))
        keep = [self._argument(i, value) for i, value in enumerate(args)]
        addresses = (ctypes.c_void_p * len(keep))(*[k.ctypes.data for k in keep])
        self.runs[FIBERS](int(grid[0]), int(block[0]), addresses)

    def _argument(self, i, value):
        """A NumPy array holding what the kernel reads for parameter i (for a pointer: the address)."""
        pointer, floating, size = self.parameters[i]
        where = '{} argument {}'.format(self.name, i)
        if pointer:
            if not isinstance(value, numpy.ndarray):
                raise TypeError('{}: an array for a pointer, not {}'.format(where, type(value).__name__))
            if value.dtype.itemsize != size or (value.dtype.kind == 'f') != bool(floating):
                raise TypeError('{}: {} array for a pointer to a {}-byte {}'.format(
                    where, value.dtype, size, 'float' if floating else 'integer'))
            if not value.flags.c_contiguous:
                raise TypeError('{}: the array is not C-contiguous (the kernel reads it as if it '
                                'were)'.format(where))
            return numpy.array([value.ctypes.data], numpy.uintp)
        if not isinstance(value, numpy.generic):
            raise TypeError('{}: a NumPy scalar (CuPy packs it by its dtype), not {}'.format(
                where, type(value).__name__))
        if value.dtype.itemsize != size or (value.dtype.kind == 'f') != bool(floating):
            raise TypeError('{}: a {} for a {}-byte {}'.format(where, value.dtype, size,
                                                              'float' if floating else 'integer'))
        return numpy.array(value)


class DeviceArray(numpy.ndarray):
    """A NumPy array with CuPy's ``data.ptr`` (the address of its first element), for the
    code that hands addresses to cuBLAS, and CuPy's ``set`` (a copy from the host)."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)

    def set(self, host, stream=None):
        self[...] = host


class CaptureError(RuntimeError):
    """What a capturing CUDA stream would refuse, or a replay would repeat, seen on the stand-in."""


def _cublas_functions():
    """Chainer's functions whose GPU code multiplies through CuPy's cuBLAS calls (F.linear's
    x.dot(W.T), F.matmul, the convolutions' tensordot), which CuPy refuses while capturing."""
    import compat  # noqa: F401  (Chainer shims; must precede chainer)
    from chainer.functions.connection import convolution_2d, deconvolution_2d, linear
    from chainer.functions.math import matmul, tensordot
    return (linear.LinearFunction, linear.LinearGradData, linear.LinearGradWeight, matmul.MatMul,
            matmul.BatchMatMul, convolution_2d.Convolution2DFunction, convolution_2d.Convolution2DGradW,
            deconvolution_2d.Deconvolution2DFunction, tensordot.TensorDot)


# NumPy's functions whose CuPy twins wait for the GPU: Thrust's sort, an index list's length.
WAITING_FUNCTIONS = ('sort', 'argsort', 'flatnonzero', 'nonzero', 'argwhere', 'unique')


@contextlib.contextmanager
def capture_guards():
    """Raises CaptureError for what a capturing stream would refuse or a replay repeat (see
    the module's docstring), inside the block and at its end."""
    import compat  # noqa: F401
    import chainer
    node = chainer.function_node.FunctionNode
    apply, refused = node.apply, _cublas_functions()

    def guarded_apply(self, inputs):
        if isinstance(self, refused):
            raise CaptureError('{} calls cuBLAS through CuPy'.format(type(self).__name__))
        return apply(self, inputs)

    def refusal(name):
        def waits(*args, **kwargs):
            raise CaptureError('numpy.{}: its CuPy twin waits for the GPU'.format(name))
        return waits

    state = numpy.random.get_state()
    with contextlib.ExitStack() as stack:
        stack.callback(setattr, node, 'apply', apply)
        node.apply = guarded_apply
        for name in WAITING_FUNCTIONS:
            stack.callback(setattr, numpy, name, getattr(numpy, name))
            setattr(numpy, name, refusal(name))
        yield
    after = numpy.random.get_state()
    if not all(numpy.array_equal(a, b) for a, b in zip(state, after)):
        raise CaptureError("random numbers drawn from NumPy's state on the host: a replay would repeat them")


class Stream:
    """cupy.cuda.Stream on the stand-in: what runs on it runs at once; it can capture."""

    def __init__(self, owner, non_blocking=False, ptr=None):
        self.owner, self.ptr = owner, id(self) if ptr is None else ptr
        self.guards = None

    def __enter__(self):
        self.owner.streams.append(self)
        return self

    def __exit__(self, *exc):
        self.owner.streams.pop()

    def record(self):
        return types.SimpleNamespace(stream=self)  # an event: the work before it is done already

    def wait_event(self, event):
        pass

    def begin_capture(self):
        self.guards = capture_guards()
        self.guards.__enter__()

    def end_capture(self):
        """The Graph of the recorded step (see the module's docstring)."""
        guards, self.guards = self.guards, None
        guards.__exit__(None, None, None)
        from speed import cuda_graph
        return Graph(cuda_graph.current(), self.owner.recorded_step)


class Graph:
    """What Stream.end_capture returns: ``launch`` runs the recorded step again (see the
    module's docstring). ``step_graph``: the StepGraph whose step it recorded; ``step``:
    that step (the step_on_cpu fixture hands it over, since a CUDA stream never sees it)."""

    def __init__(self, step_graph, step):
        self.step_graph, self.step = step_graph, step
        self.launches = self.reruns = 0

    def launch(self, stream):
        from speed import cuda_graph
        self.launches += 1
        if self.launches == 1:  # StepGraph._capture's: the captured step ran at once here already
            return
        graph = self.step_graph
        counted = [(o, o.t) for o in graph.optimizers] + [(r, r.t) for r in graph.rules]
        fresh = {}
        with graph._running(graph._scalars(ahead=False)), cuda_graph._observing(fresh), capture_guards():
            outputs = self.step(*graph.inputs)
        for counter, t in counted:  # the StepGraph counted this update already, as for a replay
            counter.t = t
        _overwrite(graph.observation, fresh)
        _overwrite(graph.outputs, outputs)
        self.reruns += 1


def _overwrite(recorded, fresh):
    """Writes ``fresh`` into the arrays of ``recorded`` (a dict, a sequence, a Variable, an
    array or None), as a replay writes into the recording's buffers; what a replay could
    not change (a host number, another structure) must not have changed."""
    if isinstance(recorded, dict):
        if sorted(recorded) != sorted(fresh):
            raise CaptureError('the replayed step reports {}, the recording {}'.format(sorted(fresh),
                                                                                       sorted(recorded)))
        for key in recorded:
            _overwrite(recorded[key], fresh[key])
    elif isinstance(recorded, (list, tuple)):
        for a, b in zip(recorded, fresh, strict=True):
            _overwrite(a, b)
    elif hasattr(recorded, 'array') or isinstance(recorded, numpy.ndarray):
        target = recorded.array if hasattr(recorded, 'array') else recorded
        target[...] = fresh.array if hasattr(fresh, 'array') else fresh
    elif recorded != fresh:
        raise CaptureError('a host value the recording holds changed: {!r} -> {!r}'.format(recorded, fresh))


class MemoryPool:
    """cupy.cuda.MemoryPool on the stand-in: NumPy allocates."""

    def malloc(self, size):
        raise NotImplementedError('NumPy allocates on the stand-in')

    def total_bytes(self):
        return 0


class CupyOnCpu:
    """What speed/fused.py, speed/graph_ops.py and speed/cuda_graph.py call of CuPy, on the
    CPU: NumPy's functions (those that make arrays make DeviceArrays), these kernels,
    streams that can capture, memory pools that NumPy stands in for, and no cuBLAS handle
    of CuPy's own (set as ``chainer.backends.cuda.cupy`` by the tests' fixture)."""

    MAKERS = ('empty', 'empty_like', 'zeros', 'asarray', 'ascontiguousarray')

    def __init__(self):
        self.RawModule, self.RawKernel = Module, RawKernel
        self.streams = [Stream(self, ptr=0)]  # the null stream, then those entered
        self.recorded_step = None  # the step being captured (the step_on_cpu fixture's)
        self.cuda = types.SimpleNamespace(
            get_current_stream=lambda: self.streams[-1],
            device=types.SimpleNamespace(get_cublas_handle=lambda: None),
            Stream=lambda non_blocking=False: Stream(self, non_blocking), MemoryPool=MemoryPool,
            using_allocator=lambda allocator=None: contextlib.nullcontext())

    def __getattr__(self, name):
        function = getattr(numpy, name)
        if name not in self.MAKERS:
            return function
        return lambda *args, **kwargs: function(*args, **kwargs).view(DeviceArray)
