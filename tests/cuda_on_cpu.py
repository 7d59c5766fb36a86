"""The GPU code of speed/fused.py and speed/cuda_graph.py run on the CPU, so that it is executed, not
only compiled, where there is no GPU: their CUDA C kernels, one thread per CUDA thread,
and their cuBLAS calls through ctypes, into a stand-in for libcublas.

The source is compiled as C++20 by the host's g++ after a prelude standing in for CUDA's
built-ins: threadIdx and blockIdx are thread-local, __syncthreads() is a std::barrier over
the block's threads (a thread that has returned leaves it, as on a GPU), __shared__
memory is a static (blocks run one after another), rsqrt is 1 / sqrt. ``Module`` takes
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

What this cannot show: speed, the GPU's limits (grid size, shared memory), its float
arithmetic to the last bit (NVRTC contracts a * b + c into one rounding, rsqrt is
approximate), races between blocks (they run one after another), and whether the real
library has the symbols and behaves as its documentation says.
"""
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import types

import numpy

PRELUDE = r'''
#include <barrier>
#include <cmath>
#include <cstddef>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
static std::barrier<>* block_barrier = nullptr;
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
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


class Kernel:
    def __init__(self, library, index, name):
        self.name = name
        self.run = getattr(library, 'launch_{}'.format(index))
        self.run.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)]
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
        self.run(int(grid[0]), int(block[0]), addresses)

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
    code that hands addresses to cuBLAS."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


class CupyOnCpu:
    """What speed/fused.py and speed/cuda_graph.py call of CuPy, on the CPU: NumPy's functions (those
    that make arrays make DeviceArrays), these kernels, one stream and no cuBLAS handle
    of CuPy's own (set as ``chainer.backends.cuda.cupy`` by the tests' fixture)."""

    MAKERS = ('empty', 'empty_like', 'zeros', 'asarray', 'ascontiguousarray')

    def __init__(self):
        self.RawModule, self.RawKernel = Module, RawKernel
        stream = types.SimpleNamespace(ptr=0)
        self.cuda = types.SimpleNamespace(get_current_stream=lambda: stream,
                                          device=types.SimpleNamespace(get_cublas_handle=lambda: None))

    def __getattr__(self, name):
        function = getattr(numpy, name)
        if name not in self.MAKERS:
            return function
        return lambda *args, **kwargs: function(*args, **kwargs).view(DeviceArray)
