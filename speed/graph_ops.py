"""Sorting and random choices on the device, for a step that cuda_graph.py records.

The colour loss of blank drawings (updater.colour_distribution_loss) sorts each of its
projections and compares a random choice of pixels. On a GPU CuPy sorts through Thrust,
which waits for the GPU at the end of the sort (a capturing stream refuses that), and the
random choice was NumPy's, drawn on the host and copied over, which a replay would
repeat. Here, for the recorded step:

* ``sort_rows``: each row of a 2-d array sorted by one kernel launch, a block per row
  (bitonic sort in global memory, rows padded to a power of two with +inf; equal keys in
  the order of their index, so the result is defined to the element), with each sorted
  element's index and each element's place in the sorted row;
* ``sorted_rows``: the same as a Chainer function, whose gradient goes back to where each
  element came from (as F.get_item(x, argsort(x)) does);
* ``random_choice`` and ``select``: ``size`` distinct indices out of ``count``, each set
  equally likely, new each step (the order of StepGraph.uniform's numbers, which are
  keyed by the step scalars), and the columns they pick as a Chainer function.

Only cupy.take and this module's kernel touch the data: no copy to or from the host.
tests/test_graph_ops.py runs the kernel on the CPU (tests/cuda_on_cpu.py) against NumPy.
"""
import numpy

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer
from chainer import backend

from speed import cuda_graph

THREADS = 256  # per block (one row each); any power of two up to 1024

SORT_SOURCE = r'''
// Sorts each row (blockIdx.x) of keys, n elements a row with n a power of two, into
// ascending order, carrying index along; equal keys in ascending index. Then rank[row *
// count + index] = row * count + place for the count real elements (index < count; the
// padding, +inf, sorts after them): where each element went, as a flat position.
template <typename T>
__global__ void sort_rows(T* keys, int* index, long long n, int count, long long* rank) {
    T* key = keys + (long long)blockIdx.x * n;
    int* from = index + (long long)blockIdx.x * n;
    for (long long size = 2; size <= n; size <<= 1) {
        for (long long stride = size >> 1; stride > 0; stride >>= 1) {
            for (long long pair = threadIdx.x; pair < n / 2; pair += blockDim.x) {
                const long long low = 2 * pair - (pair & (stride - 1));  // its bit `stride` clear
                const long long high = low + stride;
                const bool after = key[low] > key[high] || (key[low] == key[high] && from[low] > from[high]);
                // out of this run's order: ascending where low & size is 0, else descending
                if (after == ((low & size) == 0)) {
                    const T k = key[low];
                    key[low] = key[high];
                    key[high] = k;
                    const int i = from[low];
                    from[low] = from[high];
                    from[high] = i;
                }
            }
            __syncthreads();
        }
    }
    const long long row = (long long)blockIdx.x * count;
    for (long long place = threadIdx.x; place < count; place += blockDim.x) {
        rank[row + from[place]] = row + place;
    }
}
'''
C_TYPES = {numpy.dtype(numpy.float32): 'float', numpy.dtype(numpy.float64): 'double'}
_module = []


def _kernel(dtype):
    if not _module:
        cupy = chainer.backends.cuda.cupy
        _module.append(cupy.RawModule(code=SORT_SOURCE, name_expressions=[
            'sort_rows<{}>'.format(t) for t in C_TYPES.values()]))
    return _module[0].get_function('sort_rows<{}>'.format(C_TYPES[numpy.dtype(dtype)]))


def sort_rows(x):
    """Each row of the 2-d device array x (float32 or float64) sorted: (values, order,
    rank), values[r, j] = x[r, order[r, j]] ascending (equal values in ascending index),
    rank the flat position in values of each element of x (values.ravel()[rank] == x)."""
    cupy = chainer.backends.cuda.cupy
    rows, count = x.shape
    if count >= 2 ** 31 - 1:
        raise ValueError('rows of {} elements: the kernel counts them in 32 bits'.format(count))
    n = 1 << max(count - 1, 0).bit_length()  # the next power of two
    keys = cupy.full((rows, n), numpy.inf, x.dtype)
    keys[:, :count] = x
    index = cupy.empty((rows, n), numpy.int32)
    index[...] = cupy.arange(n, dtype=numpy.int32)
    rank = cupy.empty((rows, count), numpy.int64)
    if rows and count:
        _kernel(x.dtype)((rows,), (THREADS,), (keys, index, numpy.int64(n), numpy.int32(count), rank))
    return keys[:, :count].copy(), index[:, :count].copy(), rank


class SortedRows(chainer.function_node.FunctionNode):
    """Each row of a 2-d array sorted ascending (sort_rows); the gradient of an element is
    that of the place it was sorted to. First order only."""

    def forward(self, inputs):
        values, _, self.places = sort_rows(inputs[0])  # (not self.rank: FunctionNode's own)
        return values,

    def backward(self, indexes, grad_outputs):
        gy = grad_outputs[0].array
        xp = backend.get_array_module(gy)
        return chainer.Variable(xp.take(gy.ravel(), self.places)),


def sorted_rows(x):
    """The rows of x (a 2-d Variable or array on the device) sorted, as a Chainer function."""
    return SortedRows().apply((x,))[0]


def random_choice(count, size):
    """``size`` distinct indices in [0, count) (every set equally likely, in random order)
    and each index's place among them (size or more: not chosen), both (count,)-long or
    (size,)-long device arrays: the first ``size`` of a random permutation, the order of
    uniform numbers drawn by the running StepGraph (new each step, a replay's too)."""
    keys = cuda_graph.current().uniform((1, count))
    _, order, rank = sort_rows(keys)
    return order[0, :size], rank[0]


class Select(chainer.function_node.FunctionNode):
    """x[:, chosen] for a 2-d x and distinct indices ``chosen`` (random_choice's), as
    cupy.take; the gradient goes back through ``places`` (random_choice's second array:
    each column's place among the chosen, ``len(chosen)`` or more where not chosen) with
    cupy.take too, instead of a scatter. First order only."""

    def __init__(self, chosen, places):
        self.chosen, self.places = chosen, places

    def forward(self, inputs):
        xp = backend.get_array_module(inputs[0])
        return xp.take(inputs[0], self.chosen, axis=1),

    def backward(self, indexes, grad_outputs):
        gy = grad_outputs[0].array
        xp = backend.get_array_module(gy)
        size = len(self.chosen)
        picked = xp.take(gy, xp.minimum(self.places, size - 1), axis=1)
        return chainer.Variable(xp.where(self.places < size, picked, gy.dtype.type(0))),


def select(x, chosen, places):
    """x[:, chosen] as a Chainer function (Select)."""
    return Select(chosen, places).apply((x,))[0]
