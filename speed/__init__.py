"""Faster paths with the same results as the port's Chainer functions.

* fast_conv.py: the (de)convolutions and leaky ReLU as fewer, larger products;
* fused.py: batch norm with what follows it, and Adam with its weight decay, as single
  functions (CUDA kernels on a GPU, their NumPy twins on the CPU);
* cuda_graph.py: the whole training step recorded once as a CUDA graph and replayed;
* graph_ops.py: the sort and random choice that a recorded step does on the device.

Each is switched by a Chainer config value, set like any other with
``chainer.using_config(name, value)`` (or ``chainer.global_config``); ``setting`` reads it,
falling back to the defaults below, so that importing a module changes no global state.
"""
import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer

DEFAULTS = {
    # fast_conv.py: 'all' (NumPy and CuPy arrays), 'cpu' (NumPy arrays) or 'off'
    # (Chainer's own functions everywhere).
    'user_fast_paths': 'all',
    # fused.py: 'gpu' (CuPy arrays), 'cpu' (NumPy arrays), 'all' or 'off'. On the CPU the
    # NumPy twins gain little, and they are what the tests hold the kernels to.
    'user_fused': 'gpu',
}


def setting(name):
    """The value of one of the switches above: the config's, else its default."""
    return getattr(chainer.config, name, DEFAULTS[name])
