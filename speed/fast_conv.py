"""Faster CPU convolutions and leaky ReLU for net.py: the same links, the same results.

Chainer 7's CPU (and, without cuDNN, GPU) convolution is im2col followed by tensordot,
which transposes the im2col buffer (and, for the weights, a (512, 8192) matrix) into a
fresh copy before every product and returns a transposed view; profiling on 2 cores put
most of a step's time in those copies. ``Convolution2D`` and ``Deconvolution2D`` here
are Chainer's links (same parameters, same saved weights) whose forward computes each
image as one matrix product in the layout im2col makes; ``leaky_relu`` is one NumPy
maximum instead of a masked copy. ``chainer.config.user_fast_paths`` switches them:
'all' (NumPy and CuPy arrays, the default: on a GPU too, since benchmarks/gpu_bench.sh
checks them there against Chainer's functions, ``bench.py --check --fast all``, before it
times anything), 'cpu' (NumPy arrays only) or 'off' (Chainer's own functions).
tests/test_speedups.py checks that they compute Chainer's outputs and gradients;
benchmarks/BENCHMARKS.md has the measurements ('Where the CPU time went, and what
changed'; on a GPU, 'GPU (one H100), 2026-11-26' and 'GPU (one H200), 2026-11-27: the
targets met').
"""
import numpy

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer
from chainer import backend
import chainer.functions as F
import chainer.links as L
from chainer.utils import conv as conv_utils

from speed import cuda_graph, setting


# A layer with few output channels, such as the decoder's last 3x3 convolution (128 -> 3
# channels), builds an im2col buffer far larger than its output and then spends a large
# share of a colourisation on a product with 3 outputs (measured:
# benchmarks/BENCHMARKS.md, 'Where the CPU time went, and what changed'). Here every
# product reads the buffers in the layout they are made in, and the layers with few
# output channels multiply first and shift and add after ("taps"), which never builds
# that buffer.
# Square kernels and strides, no groups, dilation or outsize: what the networks here
# use (other links fall back).

def _im2col(x, k, stride, pad):
    """Chainer's im2col (n, c, h, w) -> (n, c, k, k, oh, ow), to the bit; on NumPy arrays one
    copy from a strided view of the padded image instead of numpy.pad and a copy per tap."""
    if backend.get_array_module(x) is chainer.backends.cuda.cupy:
        return conv_utils.im2col_gpu(x, k, k, stride, stride, pad, pad)
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    x_pad = _pad(numpy, x, pad)
    s_n, s_c, s_h, s_w = x_pad.strides
    taps = numpy.lib.stride_tricks.as_strided(
        x_pad, (n, c, k, k, oh, ow), (s_n, s_c, s_h, s_w, s_h * stride, s_w * stride), writeable=False)
    return taps.copy()


def _col2im(col, stride, pad, h, w):
    """Chainer's col2im (n, c, k, k, oh, ow) -> (n, c, h, w), to the bit: each pixel sums
    its taps in the same order from zero. On NumPy arrays the sums go into the image split
    into its stride x stride phases (pixel (y, x) of the padded image at [y % s, x % s,
    y // s, x // s]), where every tap's rows are contiguous instead of strided."""
    if backend.get_array_module(col) is chainer.backends.cuda.cupy:
        return conv_utils.col2im_gpu(col, stride, stride, pad, pad, h, w)
    n, c, k, _, oh, ow = col.shape
    s = stride
    phase_h = max((k - 1) // s + oh, -(-(h + 2 * pad) // s))
    phase_w = max((k - 1) // s + ow, -(-(w + 2 * pad) // s))
    phases = numpy.zeros((n, c, s, s, phase_h, phase_w), dtype=col.dtype)
    for j in range(k):
        for i in range(k):
            phases[:, :, j % s, i % s, j // s:j // s + oh, i // s:i // s + ow] += col[:, :, j, i]
    img = numpy.empty((n, c, h, w), dtype=col.dtype)
    for y0 in range(min(s, h)):
        for x0 in range(min(s, w)):
            rows, columns = len(range(y0, h, s)), len(range(x0, w, s))
            p_y, p_x = y0 + pad, x0 + pad  # the first pixel's place in the padded image
            img[:, :, y0::s, x0::s] = phases[:, :, p_y % s, p_x % s,
                                             p_y // s:p_y // s + rows, p_x // s:p_x // s + columns]
    return img


def _pad(xp, x, pad):
    """x with pad zeros around each image (numpy.pad's result, without its overhead)."""
    if not pad:
        return x
    n, c, h, w = x.shape
    padded = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
    padded[:, :, pad:pad + h, pad:pad + w] = x
    return padded


def _in_cuda_graph_step(xp):
    """Whether the products go through cuda_graph.py's cuBLAS handle: in its steps, where
    CuPy's would be refused on a capturing stream. (A StepGraph runs its steps only on
    device arrays; tests/cuda_on_cpu.py's stand-in for them is NumPy's, hence no test of xp.)"""
    return cuda_graph.current() is not None


def _matmul_each(xp, a, b):
    """a @ b[i] for every image i (a is one matrix): one plain product each, never a
    broadcast copy of a."""
    if _in_cuda_graph_step(xp):
        return cuda_graph.matmul_each(a, b)
    out = xp.empty((b.shape[0], a.shape[0], b.shape[2]), dtype=xp.result_type(a, b))
    for i in range(b.shape[0]):
        xp.matmul(a, b[i], out=out[i])
    return out


def _matmul_sum(xp, a, b):
    """The sum over images i of a[i] @ b[i]."""
    if _in_cuda_graph_step(xp):
        return cuda_graph.matmul_sum(a, b)
    total = xp.matmul(a[0], b[0])
    for i in range(1, a.shape[0]):
        total += xp.matmul(a[i], b[i])
    return total


def _uses_taps(stride, outputs, inputs):
    """Whether conv_array (and conv_grad_W_array for its W) multiply by taps instead of an
    im2col buffer: stride 1 and fewer output channels than input channels."""
    return stride == 1 and outputs < inputs


def conv_array(x, W, stride, pad, col=None):
    """convolution_2d(x, W) without bias: x (n, c, h, w), W (o, c, k, k) -> (n, o, oh, ow).
    col: _im2col(x, k, stride, pad) if the caller has it already."""
    xp = backend.get_array_module(x)
    n, c, h, w = x.shape
    o, _, k, _ = W.shape
    if _uses_taps(stride, o, c):
        # Taps: z[o, j, i] = W[o, :, j, i] . x at every padded pixel, then
        # y[o, py, px] = sum over (j, i) of z[o, j, i, py + j, px + i].
        x_pad = _pad(xp, x, pad)
        hp, wp = x_pad.shape[2:]
        oh, ow = hp - k + 1, wp - k + 1
        taps = xp.ascontiguousarray(W.transpose(0, 2, 3, 1)).reshape(o * k * k, c)
        z = _matmul_each(xp, taps, x_pad.reshape(n, c, hp * wp)).reshape(n, o, k, k, hp, wp)
        y = z[:, :, 0, 0, :oh, :ow].copy()
        for j in range(k):
            for i in range(k):
                if j or i:
                    y += z[:, :, j, i, j:j + oh, i:i + ow]
        return y
    if col is None:
        col = _im2col(x, k, stride, pad)
    oh, ow = col.shape[4:]
    y = _matmul_each(xp, W.reshape(o, c * k * k), col.reshape(n, c * k * k, oh * ow))
    return y.reshape(n, o, oh, ow)


def conv_transpose_array(y, W, stride, pad, h, w):
    """The adjoint of conv_array (deconvolution_2d without bias): y (n, o, oh, ow),
    W (o, c, k, k) -> (n, c, h, w)."""
    xp = backend.get_array_module(y)
    n, o, oh, ow = y.shape
    _, c, k, _ = W.shape
    if stride == 1:
        # A stride-1 transpose is the convolution with the kernel flipped and the
        # channels swapped, padded by k - 1 - pad: it reuses conv_array's taps.
        flipped = xp.ascontiguousarray(W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        return conv_array(y, flipped, 1, k - 1 - pad)
    col = _matmul_each(xp, W.reshape(o, c * k * k).T, y.reshape(n, o, oh * ow))
    return xp.ascontiguousarray(_col2im(col.reshape(n, c, k, k, oh, ow), stride, pad, h, w))


def conv_grad_W_array(x, gy, k, stride, pad, col=None):
    """The gradient of conv_array's W: x (n, c, h, w), gy (n, o, oh, ow) -> (o, c, k, k).
    col: _im2col(x, k, stride, pad) if the caller has it already."""
    xp = backend.get_array_module(x)
    n, c = x.shape[:2]
    o, oh, ow = gy.shape[1:]
    if _uses_taps(stride, o, c):
        # Taps again: gy placed at each tap's offset in the padded frame, times x.
        x_pad = _pad(xp, x, pad)
        hp, wp = x_pad.shape[2:]
        shifted = xp.zeros((n, o, k, k, hp, wp), dtype=gy.dtype)
        for j in range(k):
            for i in range(k):
                shifted[:, :, j, i, j:j + oh, i:i + ow] = gy
        gw = _matmul_sum(xp, shifted.reshape(n, o * k * k, hp * wp),
                         x_pad.reshape(n, c, hp * wp).transpose(0, 2, 1))
        return xp.ascontiguousarray(gw.reshape(o, k, k, c).transpose(0, 3, 1, 2))
    if col is None:
        col = _im2col(x, k, stride, pad)
    gw = _matmul_sum(xp, gy.reshape(n, o, oh * ow), col.reshape(n, c * k * k, oh * ow).transpose(0, 2, 1))
    return gw.reshape(o, c, k, k)


class _Convolution(chainer.function_node.FunctionNode):
    """convolution_2d (``transpose=False``) or deconvolution_2d on the arrays above.
    First-order gradients only (pix2pix needs no more)."""

    def __init__(self, stride, pad, transpose):
        self.stride, self.pad, self.transpose = stride, pad, transpose

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        k = W.shape[2]
        # A convolution's im2col buffer of x serves its output and, in backward, W's
        # gradient: made once and kept until then (a 4x4 stride-2 layer's is 4 times x).
        self.col = None
        if self.transpose:
            h, w = (conv_utils.get_deconv_outsize(s, k, self.stride, self.pad) for s in x.shape[2:])
            y = conv_transpose_array(x, W, self.stride, self.pad, h, w)
        else:
            if not _uses_taps(self.stride, *W.shape[:2]):
                self.col = _im2col(x, k, self.stride, self.pad)
            y = conv_array(x, W, self.stride, self.pad, self.col)
        if len(inputs) == 3:
            y += inputs[2].reshape(1, -1, 1, 1)
        return y.astype(x.dtype, copy=False),

    def backward(self, indexes, grad_outputs):
        x, W = (v.array for v in self.get_retained_inputs())
        gy = grad_outputs[0].array
        k, stride, pad = W.shape[2], self.stride, self.pad
        col = self.col
        if 1 in indexes:
            self.col = None  # W's gradient is its last use (a pass to x alone may come first)
        if self.transpose and 0 in indexes and 1 in indexes and not _uses_taps(stride, *W.shape[:2]):
            col = _im2col(gy, k, stride, pad)  # a deconvolution's two gradients share gy's
        grads = [None] * len(self.inputs)
        if 0 in indexes:
            grads[0] = (conv_array(gy, W, stride, pad, col) if self.transpose else
                        conv_transpose_array(gy, W, stride, pad, *x.shape[2:]))
        if 1 in indexes:
            grads[1] = (conv_grad_W_array(gy, x, k, stride, pad, col) if self.transpose else
                        conv_grad_W_array(x, gy, k, stride, pad, col))
        if 2 in indexes:
            grads[2] = gy.sum(axis=(0, 2, 3))
        return tuple(None if g is None else chainer.Variable(g.astype(v.dtype, copy=False))
                     for g, v in zip(grads, self.inputs))


def _fast_path(link, x):
    """Whether link's forward may take the faster path for input x."""
    mode = setting('user_fast_paths')
    xp = backend.get_array_module(x)
    if not (mode == 'all' or (mode == 'cpu' and xp is numpy)):
        return False
    if xp not in (numpy, chainer.backends.cuda.cupy) or link.W.array is None:
        return False
    return (link.groups == 1 and link.dilate == (1, 1) and link.W.shape[2] == link.W.shape[3]
            and link.stride[0] == link.stride[1] and link.pad[0] == link.pad[1]
            and getattr(link, 'outsize', None) in (None, (None, None)))


class Convolution2D(L.Convolution2D):
    """L.Convolution2D (same parameters, same saved weights) on the faster path."""

    def forward(self, x):
        if not _fast_path(self, x):
            return super().forward(x)
        inputs = (x, self.W) if self.b is None else (x, self.W, self.b)
        return _Convolution(self.stride[0], self.pad[0], False).apply(inputs)[0]


class Deconvolution2D(L.Deconvolution2D):
    """L.Deconvolution2D (same parameters, same saved weights) on the faster path."""

    def forward(self, x):
        if not _fast_path(self, x):
            return super().forward(x)
        inputs = (x, self.W) if self.b is None else (x, self.W, self.b)
        return _Convolution(self.stride[0], self.pad[0], True).apply(inputs)[0]


def convolution_2d(x, W):
    """F.convolution_2d(x, W) (stride 1, no padding, no bias; the film design's 1x1 gate
    convolution), in a recorded step (cuda_graph.py) as _Convolution, whose products go
    through cuda_graph's cuBLAS handle: Chainer's would call cuBLAS or cuDNN through CuPy."""
    if not _in_cuda_graph_step(None):
        return F.convolution_2d(x, W)
    return _Convolution(1, 0, False).apply((x, W))[0]


# ---------------------------------------------------------------- Linear layers
# In a recorded step F.linear's x.dot(W.T) would be cuBLAS through CuPy, which refuses a
# capturing stream: there these products go through cuda_graph.matmul_each instead.
# Elsewhere F.linear is used as before, so the CPU's results are unchanged to the bit.


def _product(a, b):
    """a @ b of 2-d arrays through cuda_graph's cuBLAS handle (one image of matmul_each)."""
    return cuda_graph.matmul_each(a, b[None])[0]


class _Linear(chainer.function_node.FunctionNode):
    """F.linear(x, W, b) for 2-d x, its products through _product. First order only."""

    def forward(self, inputs):
        self.retain_inputs((0, 1))
        x, W = inputs[:2]
        y = _product(x, W.T)
        if len(inputs) == 3:
            y += inputs[2]
        return y,

    def backward(self, indexes, grad_outputs):
        x, W = (v.array for v in self.get_retained_inputs())
        gy = grad_outputs[0].array
        grads = {0: lambda: _product(gy, W), 1: lambda: _product(gy.T, x), 2: lambda: gy.sum(axis=0)}
        return tuple(chainer.Variable(grads[i]()) for i in indexes)


def linear(x, W, b=None):
    """F.linear(x, W, b) for 2-d x; in a recorded step through cuda_graph's handle."""
    if not _in_cuda_graph_step(None):
        return F.linear(x, W, b)
    return _Linear().apply((x, W) if b is None else (x, W, b))[0]


def matmul(a, b):
    """F.matmul(a, b) of 2-d arrays or Variables; in a recorded step through cuda_graph's
    handle (as linear(a, b.T))."""
    if not _in_cuda_graph_step(None):
        return F.matmul(a, b)
    return _Linear().apply((a, F.transpose(b)))[0]


class Linear(L.Linear):
    """L.Linear (same parameters, same saved weights) whose product, in a recorded step,
    goes through cuda_graph's cuBLAS handle (``linear``)."""

    def forward(self, x, n_batch_axes=1):
        if self.W.array is None or n_batch_axes != 1 or x.ndim != 2:
            return super().forward(x, n_batch_axes)
        return linear(x, self.W, self.b)


class _LeakyReLU(chainer.function_node.FunctionNode):
    """F.leaky_relu for NumPy arrays, to the bit: Chainer's CPU code copies x and
    multiplies through a boolean mask, far slower than one maximum (measured:
    benchmarks/BENCHMARKS.md, 'Where the CPU time went, and what changed'). First order only."""

    def __init__(self, slope):
        self.slope = slope

    def forward_cpu(self, inputs):
        x, = inputs
        y = x * x.dtype.type(self.slope)
        numpy.maximum(x, y, out=y)  # slope in [0, 1): x where x > 0, else slope * x
        self.retain_outputs((0,))
        return y,

    def backward(self, indexes, grad_outputs):
        y = self.get_retained_outputs()[0].array
        gy = grad_outputs[0].array
        return chainer.Variable(numpy.where(y > 0, gy, gy * gy.dtype.type(self.slope))),


def leaky_relu(x, slope=0.2):
    """F.leaky_relu, on the faster path for NumPy arrays."""
    array = x.array if isinstance(x, chainer.Variable) else x
    if setting('user_fast_paths') == 'off' or not isinstance(array, numpy.ndarray) or not 0 <= slope < 1:
        return F.leaky_relu(x, slope)
    return _LeakyReLU(slope).apply((x,))[0]
