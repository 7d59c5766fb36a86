"""Fused batch norm (+ FiLM, dropout, activation) and fused Adam + weight decay.

On a GPU without cuDNN, Chainer's batch norm is about ten small kernels per layer (mean,
variance, rsqrt, normalise, running averages, then F.scale/F.bias for FiLM, dropout's
random numbers and mask, the activation), each call paying Chainer's per-function
overhead (measured: benchmarks/BENCHMARKS.md, 'GPU (one H100), 2026-11-26'), and the
optimizer runs two kernels per parameter (the WeightDecay hook, then Adam).
Here, with ``chainer.config.user_fused`` on:

* ``batch_norm_activation`` computes ``L.BatchNormalization`` in training mode, then
  FiLM (h * scale + shift per example and channel), dropout and ReLU / leaky ReLU, as
  one FunctionNode: on CuPy arrays two kernels forward (one block per channel for the
  mean, the variance and the running averages; one elementwise pass) and two backward,
  on NumPy arrays the same arithmetic in NumPy (the twin that the tests hold to
  Chainer's functions). The link's gamma, beta, avg_mean, avg_var, eps and decay are
  used and updated as Chainer does, so snapshots are unchanged.
* ``Adam`` is chainer.optimizers.Adam whose WeightDecay hook is applied inside the
  update of each parameter: one kernel per parameter on CuPy arrays.

Inside a step that cuda_graph.py records, the update reads alpha_t from the step
scalars (``adam_weight_decay_scalars``) and dropout's numbers come from
``cuda_graph.StepGraph.uniform``: a replay runs no Python to supply new ones.

``user_fused``: 'gpu' (the default: CuPy arrays only), 'off' (Chainer's functions),
'cpu' (NumPy arrays only) or 'all' (both). It is on by default on a GPU because there the
kernels pass the checks benchmarks/gpu_bench.sh makes before timing them
(tests/test_fused.py's CuPy cases, the networks and one update against Chainer's
functions, the L1 after 200 steps against the unfused port's) and take the small kernels
and their host overhead out of the step (measured: benchmarks/BENCHMARKS.md, 'Fused batch
norm and Adam'). On the CPU Chainer's functions stay the default: the NumPy twins are
what the tests hold the kernels to, and change little there.
"""
import numpy

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer
from chainer import backend
import chainer.functions as F
import chainer.links as L
from chainer.optimizer_hooks import WeightDecay

from speed import cuda_graph, fast_conv, setting

# The activations net.ConvBNR uses, as the slope of their negative side.
ACTIVATION_SLOPES = {F.relu: 0.0, F.leaky_relu: 0.2, fast_conv.leaky_relu: 0.2, None: None}

THREADS = 512  # per block, a power of two (block_sum halves it)

CUDA_SOURCE = '#define THREADS %d\n' % THREADS + r'''

template <typename T>
__device__ T block_sum(T value, T* shared) {
    shared[threadIdx.x] = value;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    T total = shared[0];
    __syncthreads();
    return total;
}

// The gradient reaching batch norm's (FiLM's) output from y's: back through the
// activation (y > 0 where its input was) and dropout (kept where rand >= ratio).
template <typename T>
__device__ T grad_before_activation(T gy, T y, int activate, T slope, int dropout, float rand, T ratio,
                                    T keep_scale) {
    T g = (activate && !(y > 0)) ? gy * slope : gy;
    if (dropout) g = g * (rand >= ratio ? keep_scale : (T)0);
    return g;
}

// One block per channel: mean and (biased) variance over (n, hw), 1 / sqrt(var + eps),
// and Chainer's running averages (variance times m / (m - 1)).
template <typename T>
__global__ void bn_stats(const T* x, int n, int c, int hw, T eps, int update, T decay, T adjust,
                         T* mean, T* var, T* inv_std, T* running_mean, T* running_var) {
    __shared__ T shared[THREADS];
    const int ch = blockIdx.x;
    const T count = (T)n * (T)hw;
    T sum = 0;
    for (int b = 0; b < n; ++b) {
        const T* row = x + ((long long)b * c + ch) * hw;
        for (int i = threadIdx.x; i < hw; i += THREADS) sum += row[i];
    }
    const T mu = block_sum(sum, shared) / count;
    T squares = 0;
    for (int b = 0; b < n; ++b) {
        const T* row = x + ((long long)b * c + ch) * hw;
        for (int i = threadIdx.x; i < hw; i += THREADS) {
            const T d = row[i] - mu;
            squares += d * d;
        }
    }
    const T sigma2 = block_sum(squares, shared) / count;
    if (threadIdx.x == 0) {
        mean[ch] = mu;
        var[ch] = sigma2;
        inv_std[ch] = rsqrt(sigma2 + eps);
        if (update) {
            running_mean[ch] = running_mean[ch] * decay + mu * (1 - decay);
            running_var[ch] = running_var[ch] * decay + sigma2 * (1 - decay) * adjust;
        }
    }
}

// y = act(dropout((gamma * x_hat + beta) * scale + shift)), elementwise.
template <typename T>
__global__ void bn_apply(const T* x, long long size, int c, int hw, const T* mean, const T* inv_std,
                         const T* gamma, const T* beta, int film, const T* scale, const T* shift,
                         int dropout, const float* rand, T ratio, T keep_scale, int activate, T slope, T* y) {
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < size;
         k += (long long)blockDim.x * gridDim.x) {
        const long long row = k / hw;
        const int ch = (int)(row % c);
        T h = gamma[ch] * (x[k] - mean[ch]) * inv_std[ch] + beta[ch];
        if (film) h = h * scale[row] + shift[row];
        if (dropout) h = h * (rand[k] >= ratio ? keep_scale : (T)0);
        if (activate && !(h > 0)) h = h * slope;
        y[k] = h;
    }
}

// One block per channel: for each example the sums over hw of g and g * x_hat (g: the
// gradient before the activation); from them FiLM's gradients and gamma's and beta's.
template <typename T>
__global__ void bn_grad_stats(const T* gy, const T* y, const T* x, int n, int c, int hw, const T* mean,
                              const T* inv_std, const T* gamma, const T* beta, int film, const T* scale,
                              int dropout, const float* rand, T ratio, T keep_scale, int activate, T slope,
                              T* ggamma, T* gbeta, T* gscale, T* gshift) {
    __shared__ T shared[THREADS];
    const int ch = blockIdx.x;
    T total_g = 0, total_gx = 0;
    for (int b = 0; b < n; ++b) {
        const long long row = (long long)b * c + ch;
        T sum_g = 0, sum_gx = 0;
        for (int i = threadIdx.x; i < hw; i += THREADS) {
            const long long k = row * hw + i;
            const T g = grad_before_activation(gy[k], y[k], activate, slope, dropout, dropout ? rand[k] : 0.f,
                                               ratio, keep_scale);
            sum_g += g;
            sum_gx += g * ((x[k] - mean[ch]) * inv_std[ch]);
        }
        sum_g = block_sum(sum_g, shared);
        sum_gx = block_sum(sum_gx, shared);
        if (threadIdx.x == 0) {
            T s = 1;
            if (film) {
                s = scale[row];
                gshift[row] = sum_g;
                gscale[row] = gamma[ch] * sum_gx + beta[ch] * sum_g;
            }
            total_g += s * sum_g;
            total_gx += s * sum_gx;
        }
    }
    if (threadIdx.x == 0) {
        gbeta[ch] = total_g;
        ggamma[ch] = total_gx;
    }
}

// gx = gamma * inv_std * (g * scale - (x_hat * ggamma + gbeta) / m), elementwise.
template <typename T>
__global__ void bn_grad_x(const T* gy, const T* y, const T* x, long long size, int c, int hw, const T* mean,
                          const T* inv_std, const T* gamma, int film, const T* scale, int dropout,
                          const float* rand, T ratio, T keep_scale, int activate, T slope, const T* ggamma,
                          const T* gbeta, T inv_m, T* gx) {
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < size;
         k += (long long)blockDim.x * gridDim.x) {
        const long long row = k / hw;
        const int ch = (int)(row % c);
        T g = grad_before_activation(gy[k], y[k], activate, slope, dropout, dropout ? rand[k] : 0.f, ratio,
                                     keep_scale);
        if (film) g = g * scale[row];
        const T x_hat = (x[k] - mean[ch]) * inv_std[ch];
        gx[k] = gamma[ch] * inv_std[ch] * (g - (x_hat * ggamma[ch] + gbeta[ch]) * inv_m);
    }
}

// The WeightDecay hook (g += decay * p) and Chainer's Adam kernel in one pass.
template <typename T>
__device__ void adam_element(long long k, T decay, T alpha_t, T one_minus_beta1, T one_minus_beta2,
                             T eps, T eta, T weight_decay_rate, T* param, T* grad, T* m, T* v) {
    const T p = param[k];
    const T g = grad[k] + decay * p;
    grad[k] = g;
    const T m_ = m[k] + one_minus_beta1 * (g - m[k]);
    const T v_ = v[k] + one_minus_beta2 * (g * g - v[k]);
    m[k] = m_;
    v[k] = v_;
    param[k] = p - eta * (alpha_t * m_ / (sqrt(v_) + eps) + weight_decay_rate * p);
}

template <typename T>
__global__ void adam_weight_decay(long long size, T decay, T alpha_t, T one_minus_beta1, T one_minus_beta2,
                                  T eps, T eta, T weight_decay_rate, T* param, T* grad, T* m, T* v) {
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < size;
         k += (long long)blockDim.x * gridDim.x) {
        adam_element(k, decay, alpha_t, one_minus_beta1, one_minus_beta2, eps, eta, weight_decay_rate,
                     param, grad, m, v);
    }
}

// The same with alpha_t read from device memory (cuda_graph.py's step scalars), so that a
// recorded step takes each replay's own.
template <typename T>
__global__ void adam_weight_decay_scalars(long long size, T decay, const double* scalars, int slot,
                                          T one_minus_beta1, T one_minus_beta2, T eps, T eta,
                                          T weight_decay_rate, T* param, T* grad, T* m, T* v) {
    const T alpha_t = (T)scalars[slot];
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < size;
         k += (long long)blockDim.x * gridDim.x) {
        adam_element(k, decay, alpha_t, one_minus_beta1, one_minus_beta2, eps, eta, weight_decay_rate,
                     param, grad, m, v);
    }
}
'''
KERNEL_NAMES = ('bn_stats', 'bn_apply', 'bn_grad_stats', 'bn_grad_x', 'adam_weight_decay',
                'adam_weight_decay_scalars')
C_TYPES = {numpy.dtype(numpy.float32): 'float', numpy.dtype(numpy.float64): 'double'}
_module = []


def _kernel(name, dtype):
    """The compiled kernel ``name`` for ``dtype`` (float32 or float64), compiled once."""
    if not _module:
        cupy = chainer.backends.cuda.cupy
        _module.append(cupy.RawModule(code=CUDA_SOURCE, name_expressions=[
            '{}<{}>'.format(k, t) for k in KERNEL_NAMES for t in C_TYPES.values()]))
    return _module[0].get_function('{}<{}>'.format(name, C_TYPES[numpy.dtype(dtype)]))


def _blocks(size):
    return (min((size + THREADS - 1) // THREADS, 65535),)


def enabled(array):
    """Whether user_fused covers ``array``: a NumPy one with 'cpu' or 'all', a CuPy one
    with 'gpu' or 'all'."""
    mode = setting('user_fused')
    xp = backend.get_array_module(array)
    if xp is numpy:
        return mode in ('cpu', 'all')
    return xp is chainer.backends.cuda.cupy and mode in ('gpu', 'all')


# ---------------------------------------------------------------- batch norm


class BatchNormActivation(chainer.function_node.FunctionNode):
    """batch_normalization (training mode), FiLM, dropout and activation in one function.

    Inputs x (n, c, h, w), gamma, beta (c,) and, with FiLM, scale and shift (n, c).
    ``running`` (avg_mean, avg_var, decay) is updated in place as Chainer does;
    ``rand`` (x's shape; NumPy float64 or CuPy float32, as F.dropout draws them) keeps
    the elements where rand >= ratio, scaled by 1 / (1 - ratio); ``slope``: None (no
    activation), 0 (ReLU) or leaky ReLU's slope. First-order gradients only."""

    def __init__(self, eps, running=None, rand=None, ratio=0.5, slope=None):
        self.eps, self.running, self.rand, self.ratio, self.slope = eps, running, rand, ratio, slope

    def forward(self, inputs):
        self.retain_inputs(tuple(range(len(inputs))))
        self.retain_outputs((0,))
        x = inputs[0]
        if backend.get_array_module(x) is numpy:
            y, self.mean, self.inv_std = self._forward_numpy(*inputs)
        else:
            y, self.mean, self.inv_std = self._forward_cupy(*inputs)
        return y,

    def _keep_scale(self, dtype):
        return dtype.type(1. / (1 - self.ratio))

    def _update_running(self, m, mean, var):
        if self.running is None:
            return
        avg_mean, avg_var, decay = self.running
        adjust = m / max(m - 1., 1.)  # Chainer's unbiased estimate
        avg_mean *= decay
        avg_mean += (1 - decay) * mean
        avg_var *= decay
        avg_var += (1 - decay) * adjust * var

    def _forward_numpy(self, x, gamma, beta, scale=None, shift=None):
        axis = (0, 2, 3)
        mean = x.mean(axis=axis)
        var = x.var(axis=axis)
        inv_std = numpy.reciprocal(numpy.sqrt(var + x.dtype.type(self.eps)))
        self._update_running(x.size // gamma.size, mean, var)
        h = x - mean[:, None, None]
        h *= (gamma * inv_std)[:, None, None]
        h += beta[:, None, None]
        if scale is not None:
            h *= scale[:, :, None, None]
            h += shift[:, :, None, None]
        if self.rand is not None:
            h *= self._keep_scale(x.dtype) * (self.rand >= self.ratio)  # F.dropout's mask
        if self.slope is not None:
            numpy.maximum(h, h * x.dtype.type(self.slope), out=h)
        return h, mean, inv_std

    def _cuda_flags(self, xp, x, scale):
        """The kernels' dropout and activation arguments, and stand-ins for absent arrays."""
        t = x.dtype.type
        rand = self.rand if self.rand is not None else xp.zeros(1, numpy.float32)
        film = scale is not None
        return (film, int(self.rand is not None), rand, t(self.ratio), self._keep_scale(x.dtype),
                int(self.slope is not None), t(self.slope or 0))

    def _forward_cupy(self, x, gamma, beta, scale=None, shift=None):
        xp = chainer.backends.cuda.cupy
        x = xp.ascontiguousarray(x)
        n, c, h, w = x.shape
        t = x.dtype.type
        mean, var, inv_std = (xp.empty(c, x.dtype) for _ in range(3))
        m = x.size // c
        if self.running is None:
            avg_mean, avg_var, decay = mean, var, 0  # not written (update=0)
        else:
            avg_mean, avg_var, decay = self.running
        _kernel('bn_stats', x.dtype)((c,), (THREADS,), (
            x, numpy.int32(n), numpy.int32(c), numpy.int32(h * w), t(self.eps),
            numpy.int32(self.running is not None), t(decay), t(m / max(m - 1., 1.)), mean, var, inv_std,
            avg_mean, avg_var))
        film, dropout, rand, ratio, keep_scale, activate, slope = self._cuda_flags(xp, x, scale)
        scale = xp.ascontiguousarray(scale) if film else gamma
        shift = xp.ascontiguousarray(shift) if film else gamma
        y = xp.empty_like(x)
        _kernel('bn_apply', x.dtype)(_blocks(x.size), (THREADS,), (
            x, numpy.int64(x.size), numpy.int32(c), numpy.int32(h * w), mean, inv_std, gamma, beta,
            numpy.int32(film), scale, shift, numpy.int32(dropout), rand, ratio, keep_scale,
            numpy.int32(activate), slope, y))
        return y, mean, inv_std

    def backward(self, indexes, grad_outputs):
        inputs = [v.array for v in self.get_retained_inputs()]
        y = self.get_retained_outputs()[0].array
        gy = grad_outputs[0].array
        if backend.get_array_module(gy) is numpy:
            grads = self._backward_numpy(gy, y, *inputs)
        else:
            grads = self._backward_cupy(gy, y, *inputs)
        return tuple(chainer.Variable(grads[i]) for i in indexes)

    def _backward_numpy(self, gy, y, x, gamma, beta, scale=None, shift=None):
        t = x.dtype.type
        g = gy if self.slope is None else numpy.where(y > 0, gy, gy * t(self.slope))
        if self.rand is not None:
            g = g * (self._keep_scale(x.dtype) * (self.rand >= self.ratio))
        x_hat = (x - self.mean[:, None, None]) * self.inv_std[:, None, None]
        sum_g = g.sum(axis=(2, 3))  # (n, c)
        sum_gx = (g * x_hat).sum(axis=(2, 3))
        grads_film = []
        if scale is not None:
            grads_film = [gamma * sum_gx + beta * sum_g, sum_g]
            sum_g, sum_gx = scale * sum_g, scale * sum_gx
            g = g * scale[:, :, None, None]
        ggamma, gbeta = sum_gx.sum(axis=0), sum_g.sum(axis=0)
        m = x.size // gamma.size
        gx = (gamma * self.inv_std)[:, None, None] * (
            g - (x_hat * ggamma[:, None, None] + gbeta[:, None, None]) / t(m))
        return [gx, ggamma, gbeta] + grads_film

    def _backward_cupy(self, gy, y, x, gamma, beta, scale=None, shift=None):
        xp = chainer.backends.cuda.cupy
        gy, x = xp.ascontiguousarray(gy), xp.ascontiguousarray(x)
        n, c, h, w = x.shape
        film, dropout, rand, ratio, keep_scale, activate, slope = self._cuda_flags(xp, x, scale)
        ggamma, gbeta = xp.empty_like(gamma), xp.empty_like(beta)
        gscale = xp.empty_like(scale) if film else gamma
        gshift = xp.empty_like(scale) if film else gamma
        scale = scale if film else gamma
        _kernel('bn_grad_stats', x.dtype)((c,), (THREADS,), (
            gy, y, x, numpy.int32(n), numpy.int32(c), numpy.int32(h * w), self.mean, self.inv_std, gamma,
            beta, numpy.int32(film), scale, numpy.int32(dropout), rand, ratio, keep_scale,
            numpy.int32(activate), slope, ggamma, gbeta, gscale, gshift))
        gx = xp.empty_like(x)
        _kernel('bn_grad_x', x.dtype)(_blocks(x.size), (THREADS,), (
            gy, y, x, numpy.int64(x.size), numpy.int32(c), numpy.int32(h * w), self.mean, self.inv_std, gamma,
            numpy.int32(film), scale, numpy.int32(dropout), rand, ratio, keep_scale, numpy.int32(activate),
            slope, ggamma, gbeta, x.dtype.type(1. / (x.size // c)), gx))
        grads = [gx, ggamma, gbeta]
        return grads + [gscale, gshift] if film else grads


def applies(bn, x, activation):
    """Whether batch_norm_activation can stand for ``bn`` then ``activation`` on x:
    Chainer's own batch-norm link (ChainerMN's across ranks, --bn-across-ranks, keeps its
    own), user_fused covers x, training mode, a 4-d input of gamma's dtype (mixed16's
    float16 maps fall back), a link with gamma and beta over the channels."""
    array = x.array if isinstance(x, chainer.Variable) else x
    return (isinstance(bn, L.BatchNormalization) and enabled(array) and chainer.config.train
            and not chainer.config.in_recomputing
            and activation in ACTIVATION_SLOPES and array.ndim == 4 and bn.axis is None
            and bn.gamma is not None and bn.beta is not None and bn.avg_mean is not None
            and array.dtype == bn.gamma.dtype and array.dtype in C_TYPES)


def batch_norm_activation(bn, x, film=None, dropout=False, activation=None, ratio=0.5):
    """activation(F.dropout(bn(x) * film[0] + film[1])) as net.ConvBNR computes it, in one
    function; bn's running averages are updated. Check ``applies`` first."""
    array = x.array if isinstance(x, chainer.Variable) else x
    xp = backend.get_array_module(array)
    rand = None
    graph = cuda_graph.current()
    # In a StepGraph's steps (on the device, or tests/cuda_on_cpu.py's stand-in for it):
    # numbers new each replay of the recording.
    if dropout and graph is not None:
        rand = graph.uniform(array.shape)
    elif dropout:  # the random numbers F.dropout draws
        rand = (numpy.random.rand(*array.shape) if xp is numpy
                else xp.random.rand(*array.shape, dtype=numpy.float32))
    node = BatchNormActivation(bn.eps, (bn.avg_mean, bn.avg_var, bn.decay), rand, ratio,
                               ACTIVATION_SLOPES[activation])
    inputs = (x, bn.gamma, bn.beta) + (tuple(film) if film is not None else ())
    return node.apply(inputs)[0]


# ---------------------------------------------------------------- Adam


_SCRATCH = {}


def _scratch(like, slot):
    """A reused buffer shaped like the NumPy array ``like`` (one per slot and dtype, grown
    to the largest size asked for): the optimizer updates one parameter at a time."""
    key = (slot, like.dtype)
    flat = _SCRATCH.get(key)
    if flat is None or flat.size < like.size:
        flat = _SCRATCH[key] = numpy.empty(like.size, like.dtype)
    return flat[:like.size].reshape(like.shape)


class AdamRule(chainer.optimizers.adam.AdamRule):
    """Chainer's AdamRule; where a fused WeightDecay rate is pending (Adam.call_hook), the
    decay and the update are one pass: g += rate * p, then Adam, as the hook and the
    rule would do one after the other."""

    pending_decay = None
    reads_step_scalars = True  # on CuPy arrays in a cuda_graph step (update_core_gpu)

    def _take_decay(self):
        rate, self.pending_decay = self.pending_decay, None
        return rate

    def update_core_cpu(self, param):
        rate = self._take_decay()
        if rate is None:
            return self._update_core_cpu_unfused(param)
        hp = self.hyperparam
        p, g, m, v = param.array, param.grad, self.state['m'], self.state['v']
        t = p.dtype.type
        g += t(rate) * p
        m += t(1 - hp.beta1) * (g - m)
        v += t(1 - hp.beta2) * (g * g - v)
        step = m / (numpy.sqrt(v) + t(hp.eps))
        step *= t(self.alpha_t)
        step += t(hp.weight_decay_rate) * p
        p -= t(hp.eta) * step

    def _update_core_cpu_unfused(self, param):
        """Chainer's update_core_cpu, to the bit, for float32/float64 parameters without
        amsgrad, adabound or Adam's own weight_decay_rate (other cases go to Chainer's):
        the same operations in the same order, their temporaries written into two reused
        buffers instead of five fresh parameter-sized arrays per call."""
        hp = self.hyperparam
        p, g = param.array, param.grad
        alpha_t = self.alpha_t
        # Python numbers keep NumPy's arithmetic in the parameter's dtype, as Chainer's does
        # (a NumPy float64 hyperparameter would lift its temporaries to float64).
        python_numbers = all(type(value) in (int, float)
                             for value in (alpha_t, hp.beta1, hp.beta2, hp.eps, hp.eta))
        if (g is None or not python_numbers or hp.amsgrad or hp.adabound or hp.weight_decay_rate != 0
                or p.dtype not in (numpy.float32, numpy.float64) or g.dtype != p.dtype):
            return super().update_core_cpu(param)
        self._check_eps(p.dtype.type)
        m, v = self.state['m'], self.state['v']
        a, b = _scratch(p, 0), _scratch(p, 1)
        numpy.subtract(g, m, out=a)                  # m += (1 - beta1) * (g - m)
        a *= 1.0 - hp.beta1
        m += a
        numpy.multiply(g, g, out=a)                  # v += (1 - beta2) * (g * g - v)
        a -= v
        a *= 1.0 - hp.beta2
        v += a
        numpy.sqrt(v, out=b)                         # p += -eta * (alpha_t / (sqrt(v) + eps) * m)
        b += hp.eps
        numpy.divide(alpha_t, b, out=b)
        b *= m
        b *= -hp.eta
        p += b

    def update_core_gpu(self, param):
        rate = self._take_decay()
        graph = cuda_graph.current()
        if graph is not None:
            return self._update_core_graph(param, rate, graph)
        if rate is None:
            return super().update_core_gpu(param)
        self._launch('adam_weight_decay', param, rate, param.array.dtype.type(self.alpha_t))

    def _update_core_graph(self, param, rate, graph):
        """The fused update with alpha_t from the step scalars (cuda_graph.StepGraph)."""
        if self.hyperparam.amsgrad or self.hyperparam.adabound or not Adam._can_fuse(param):
            raise cuda_graph.Unsupported('Adam with amsgrad, adabound, loss scaling or fp32 updates, or a '
                                         'parameter of another dtype or layout')
        self._launch('adam_weight_decay_scalars', param, rate, graph.scalars, numpy.int32(graph.slot(self)))

    def _launch(self, kernel, param, rate, *alpha_t):
        """One of the fused Adam kernels over the parameter (decay ``rate``, None: none);
        ``alpha_t``: its value, or the step scalars and the slot it lies in."""
        hp = self.hyperparam
        p = param.array
        t = p.dtype.type
        _kernel(kernel, p.dtype)(
            _blocks(p.size), (THREADS,), (numpy.int64(p.size), t(rate or 0)) + alpha_t + (
                t(1 - hp.beta1), t(1 - hp.beta2), t(hp.eps), t(hp.eta), t(hp.weight_decay_rate), p,
                param.grad, self.state['m'], self.state['v']))


class Adam(chainer.optimizers.Adam):
    """chainer.optimizers.Adam (same hyperparameters, states and snapshots). With
    user_fused on, a WeightDecay hook called before the update is not run on its own: its
    rate goes to each parameter's rule, which applies it inside the Adam update (the
    parameters it cannot take, e.g. float16 ones or loss-scaled gradients, get the hook)."""

    _pre_update = False

    def create_update_rule(self):
        return AdamRule(self.hyperparam)

    def call_hooks(self, timing='pre'):
        self._pre_update = timing == 'pre'
        try:
            super().call_hooks(timing)
        finally:
            self._pre_update = False

    def call_hook(self, hook):
        if not (self._pre_update and isinstance(hook, WeightDecay)):
            return super().call_hook(hook)
        hp = self.hyperparam
        for param in self.target.params():
            rule = param.update_rule
            if (hp.amsgrad or hp.adabound or not rule.enabled or rule.pending_decay is not None
                    or not self._can_fuse(param)):
                hook(rule, param)
            else:
                rule.pending_decay = hook.rate

    @staticmethod
    def _can_fuse(param):
        p, g = param.array, param.grad
        if p is None or g is None or param._loss_scale is not None or not enabled(p):
            return False
        if p.dtype not in C_TYPES or g.dtype != p.dtype or param.update_rule._use_fp32_update:
            return False
        return backend.get_array_module(p) is numpy or (p.flags.c_contiguous and g.flags.c_contiguous)
