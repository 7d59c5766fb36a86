"""Makes Chainer 7.8.1 import and run on today's Python and NumPy, and picks the device.

Import this module before ``chainer`` (every script here does). Chainer 7.8.1 is the
last release and predates NumPy 2 and Python 3.12; it needs three small shims:

* ``numpy.sctypes`` (removed in NumPy 2) is read at import time by
  ``chainer/functions/array/as_strided.py``;
* ``numpy.float`` (removed in NumPy 1.24) is used by ``F.resize_images``;
* ``numpy.distutils`` (gone in Python 3.12) is imported by
  ``chainer/_environment_check.py``, which only uses it on macOS.

Each shim is added only when the name is missing, so nothing changes on old versions.
"""
import argparse
import math
import sys
import types
import warnings

import numpy

if 'sctypes' not in vars(numpy):
    numpy.sctypes = {
        'int': [numpy.int8, numpy.int16, numpy.int32, numpy.int64],
        'uint': [numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64],
        'float': [numpy.float16, numpy.float32, numpy.float64],
        'complex': [numpy.complex64, numpy.complex128],
        'others': [bool, object, bytes, str, numpy.void],
    }
if 'float' not in vars(numpy):
    numpy.float = float

try:
    import numpy.distutils.system_info  # noqa: F401
except ImportError:
    _distutils = types.ModuleType('numpy.distutils')
    _system_info = types.ModuleType('numpy.distutils.system_info')
    _system_info.get_info = lambda name, notfound_action=0: {}
    _distutils.system_info = _system_info
    sys.modules['numpy.distutils'] = _distutils
    sys.modules['numpy.distutils.system_info'] = _system_info

# Chainer asks for cupy<8 by name; CuPy 13/14 work with it (CuPy 14 has no cuDNN module,
# so Chainer runs im2col + GEMM there; the GPU runs of benchmarks/BENCHMARKS.md use CuPy
# 14), so the version warning it prints for cupy-cuda12x would only be noise.
warnings.filterwarnings('ignore', message=r'(?s).*may not be compatible with this version of Chainer')
# Chainer imports pkg_resources, which newer setuptools (<81) marks as deprecated.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

import chainer  # noqa: E402  (must come after the shims)


class DeviceError(RuntimeError):
    """The requested device cannot be used (no CuPy, or no such GPU)."""


def number(kind, low=None, high=None, above=None):
    """An argparse type: a finite ``kind`` (int or float) from ``low`` to ``high``, or
    over ``above`` (None: no bound), so that a value is checked where it is parsed."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError('{!r} is not {}'.format(
                text, 'a whole number' if kind is int else 'a number')) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError('{} is not a finite number'.format(text))
        if ((low is not None and value < low) or (high is not None and value > high)
                or (above is not None and value <= above)):
            bounds = ['at least {}'.format(low) if low is not None else None,
                      'over {}'.format(above) if above is not None else None,
                      'at most {}'.format(high) if high is not None else None]
            raise argparse.ArgumentTypeError('{} must be {}'.format(
                text, ' and '.join(bound for bound in bounds if bound)))
        return value
    parse.__name__ = kind.__name__
    return parse


def add_device_arguments(parser):
    """``--device`` (Chainer 7's examples' flag) and ``-g`` (the pix2pix example's)."""
    parser.add_argument('--device', '-d', default=None,
                        help='Device specifier: @numpy, @cupy:N, or an integer (GPU id; negative: CPU)')
    parser.add_argument('--gpu', '-g', type=int, default=None,
                        help='GPU ID (negative value indicates CPU); --device wins when both are given')


def device_of(args, local_rank=None):
    """The device that parsed ``--device`` / ``-g`` arguments name (the CPU when neither).

    ``local_rank``: this process's rank among those of its machine, for training under
    MPI (train_facade_text.py --communicator). A GPU request then means GPU local_rank,
    one GPU per process as in ChainerMN's examples, counted modulo the GPUs this process
    sees, so that more processes than GPUs share them (the naive communicator allows it;
    NCCL needs a GPU per process)."""
    spec = device_spec(args)
    if local_rank is not None and device_name(spec).startswith('@cupy'):
        if not chainer.backends.cuda.available:
            return get_device(spec)  # the one-line error of a GPU request without CuPy
        spec = local_rank % chainer.backends.cuda.cupy.cuda.runtime.getDeviceCount()
    return get_device(spec)


def device_spec(args):
    """What parsed ``--device`` / ``-g`` arguments ask for (--device wins)."""
    return args.device if args.device is not None else args.gpu


def device_name(spec):
    """Chainer's name of a GPU id (negative or None: the CPU) or a device specifier
    string ('@numpy', '@cupy:0', '0', '-1')."""
    if isinstance(spec, str):
        try:
            spec = int(spec)
        except ValueError:
            return spec
    if spec is None or spec < 0:
        return '@numpy'
    return '@cupy:{}'.format(spec)


def get_device(spec):
    """The chainer device for a GPU id (negative or None: the CPU, NumPy) or a device
    specifier string ('@numpy', '@cupy:0', '0', '-1')."""
    name = device_name(spec)
    if name == '@numpy':
        return chainer.get_device('@numpy')
    if name.startswith('@cupy') and not chainer.backends.cuda.available:
        raise DeviceError('{} asks for a GPU, but CuPy is not usable here: '
                          'pip install cupy-cuda12x (see docs/scaling.md "GPU")'.format(name))
    try:
        device = chainer.get_device(name)
        device.use()
    except Exception as error:  # CuPy raises its own CUDA errors for a bad id
        raise DeviceError('device {} cannot be used: {}'.format(name, error)) from None
    return device
