"""CUDA C kernels run on the CPU, one thread per CUDA thread, so that the kernels of
fused.py and cuda_graph.py are executed, not only compiled, where there is no GPU.

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

What this cannot show: speed, the GPU's limits (grid size, shared memory), its float
arithmetic to the last bit (NVRTC contracts a * b + c into one rounding, rsqrt is
approximate) and races between blocks (they run one after another).
"""
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile

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

MAX_PARAMETERS = 64
_built = {}


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


class Module:
    """cupy.RawModule(code=..., name_expressions=...), compiled for the CPU (once per source)."""

    def __init__(self, code, name_expressions):
        self.names = list(name_expressions)
        wrappers = ''.join(
            'extern "C" void launch_{i}(unsigned g, unsigned b, void** a) {{ launch(&{name}, g, b, a); }}\n'
            'extern "C" int describe_{i}(int* out) {{ return describe(&{name}, out); }}\n'.format(i=i, name=name)
            for i, name in enumerate(self.names))
        source = PRELUDE + code + LAUNCHER + wrappers
        key = hashlib.sha256(source.encode()).hexdigest()[:16]
        if key not in _built:
            work = tempfile.mkdtemp(prefix='cuda_on_cpu_')
            path = os.path.join(work, 'kernels.cpp')
            with open(path, 'w') as f:
                f.write(source)
            library = os.path.join(work, 'kernels.so')
            done = subprocess.run([compiler() or 'g++', '-std=c++20', '-O1', '-pthread', '-shared', '-fPIC',
                                   path, '-o', library], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError('the CUDA source does not compile as C++ here:\n' + done.stderr[-4000:])
            _built[key] = ctypes.CDLL(library)
        self.library = _built[key]

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
            raise TypeError('{}: {} arguments for {} parameters'.format(self.name, len(args), len(self.parameters)))
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
                raise TypeError('{}: the array is not C-contiguous (the kernel reads it as if it were)'.format(where))
            return numpy.array([value.ctypes.data], numpy.uintp)
        if not isinstance(value, numpy.generic):
            raise TypeError('{}: a NumPy scalar (CuPy packs it by its dtype), not {}'.format(
                where, type(value).__name__))
        if value.dtype.itemsize != size or (value.dtype.kind == 'f') != bool(floating):
            raise TypeError('{}: a {} for a {}-byte {}'.format(where, value.dtype, size,
                                                              'float' if floating else 'integer'))
        return numpy.array(value)


class CupyOnCpu:
    """What fused.py and cuda_graph.py call of CuPy, on the CPU: NumPy's functions and
    these kernels (set as ``chainer.backends.cuda.cupy`` by the tests' fixture)."""

    def __init__(self):
        self.RawModule, self.RawKernel = Module, RawKernel

    def __getattr__(self, name):
        return getattr(numpy, name)

