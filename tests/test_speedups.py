"""The faster paths (speed/fast_conv.py's convolutions and leaky ReLU, updater.py's pruned backward
passes) compute what Chainer's own functions and full backward passes compute."""
import numpy as np
import pytest

import compat
import chainer
import chainer.functions as F

import bench
from speed import fast_conv
import net
import updater

# (in, out, kernel, stride, pad, side, deconvolution): every kind of layer the networks
# have, each path of conv_array (im2col, taps) and conv_transpose_array (col2im, flip).
LAYERS = [
    (4, 16, 3, 1, 1, 16, False),    # encoder c0: more outputs than inputs, im2col
    (32, 3, 3, 1, 1, 16, False),    # decoder c7 / discriminator c4: few outputs, taps
    (8, 16, 4, 2, 1, 16, False),    # encoder and discriminator layers
    (16, 16, 4, 2, 1, 2, False),    # the encoder's last layer: a 1x1 map
    (16, 8, 4, 2, 1, 8, True),      # decoder layers
    (16, 16, 4, 2, 1, 1, True),     # the decoder's first layer, from a 1x1 map
]


def chainer_and_fast(layer, dtype, batch=2, seed=0):
    c_in, c_out, k, stride, pad, side, transpose = layer
    rng = np.random.RandomState(seed)
    x = rng.uniform(-1, 1, (batch, c_in, side, side)).astype(dtype)
    W = rng.normal(0, 0.1, (c_in, c_out, k, k) if transpose else (c_out, c_in, k, k)).astype(dtype)
    b = rng.normal(0, 0.1, c_out).astype(dtype)
    results = []
    for fast in (False, True):
        inputs = [chainer.Variable(a.copy()) for a in (x, W, b)]
        if fast:
            y = fast_conv._Convolution(stride, pad, transpose).apply(inputs)[0]
        elif transpose:
            y = F.deconvolution_2d(*inputs, stride=stride, pad=pad)
        else:
            y = F.convolution_2d(*inputs, stride=stride, pad=pad)
        y.grad = np.random.RandomState(seed + 1).normal(size=y.shape).astype(dtype)
        y.backward()
        results.append([y.array] + [v.grad for v in inputs])
    return results


@pytest.mark.parametrize('layer', LAYERS)
@pytest.mark.parametrize('dtype, tolerance', [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_convolutions_match_chainer(layer, dtype, tolerance):
    want, got = chainer_and_fast(layer, dtype)
    for name, g, w in zip(('y', 'gx', 'gW', 'gb'), got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        np.testing.assert_allclose(g, w, rtol=0, atol=tolerance * np.abs(w).max(), err_msg=name)
    assert got[0].flags['C_CONTIGUOUS']


# (batch, channels, height, width, kernel, stride, pad): the networks' layers (2x2 -> 1x1 and
# back: the encoder's last and the decoder's first), odd sizes, strides that do not divide.
IM2COL_CASES = [(1, 16, 128, 128, 4, 2, 1), (1, 4, 32, 32, 3, 1, 1), (1, 128, 2, 2, 4, 2, 1),
                (2, 8, 15, 13, 4, 2, 1), (1, 3, 9, 9, 3, 2, 0), (1, 3, 10, 9, 3, 3, 2),
                (2, 5, 7, 11, 5, 3, 2)]


@pytest.mark.parametrize('n, c, h, w, k, stride, pad', IM2COL_CASES)
def test_im2col_and_col2im_are_chainers_to_the_bit(n, c, h, w, k, stride, pad):
    from chainer.utils import conv
    rng = np.random.RandomState(0)
    x = rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32)
    want = conv.im2col_cpu(x, k, k, stride, stride, pad, pad)
    got = fast_conv._im2col(x, k, stride, pad)
    assert got.shape == want.shape and got.tobytes() == want.tobytes()
    # col2im sums each pixel's overlapping taps: in Chainer's order, so with its rounding
    # (values over six decades, so that another order would round differently).
    col = (rng.normal(size=want.shape) * 10 ** rng.uniform(-3, 3, want.shape)).astype(np.float32)
    want_image = np.ascontiguousarray(conv.col2im_cpu(col, stride, stride, pad, pad, h, w))
    got_image = fast_conv._col2im(col, stride, pad, h, w)
    assert got_image.shape == want_image.shape and got_image.tobytes() == want_image.tobytes()


def test_links_take_the_fast_path_on_the_cpu_and_chainers_when_off():
    link = fast_conv.Convolution2D(4, 8, 4, 2, 1)
    x = np.zeros((1, 4, 8, 8), np.float32)
    assert isinstance(link(x).creator, fast_conv._Convolution)
    with chainer.using_config('user_fast_paths', 'off'):
        assert not isinstance(link(x).creator, fast_conv._Convolution)
        assert not isinstance(fast_conv.leaky_relu(x).creator, fast_conv._LeakyReLU)
    assert isinstance(fast_conv.leaky_relu(x).creator, fast_conv._LeakyReLU)


def test_leaky_relu_is_chainers_to_the_bit():
    x = np.random.RandomState(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    x[0, 0, 0, :3] = [0.0, -0.0, 1e-40]
    outputs = []
    for mode in ('cpu', 'off'):
        v = chainer.Variable(x.copy())
        with chainer.using_config('user_fast_paths', mode):
            y = fast_conv.leaky_relu(v)
        y.grad = np.random.RandomState(1).normal(size=x.shape).astype(np.float32)
        y.backward()
        outputs.append((y.array, v.grad))
    for got, want in zip(*outputs):
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))


def test_networks_and_update_match_chainer_in_float64():
    # The networks' outputs, every gradient, and one updater step's losses and gradients.
    assert bench.check_fast_paths(compat.get_device(-1), 'cpu', width=8, size=128, batch=2) == []


def test_pruned_backward_gives_the_full_backward_gradients():
    np.random.seed(0)
    enc, dec, dis = net.Encoder(4, width=8), net.Decoder(3, width=8), net.Discriminator(4, 3, width=8)
    x, t = bench.fixed_batch(2, 128)
    grads = {}
    for pruned in (True, False):
        with chainer.using_config('user_dropout', False):
            x_out = dec(enc(x))
            y_fake, y_real = dis(x, x_out), dis(x, t)
        loss_gen, _ = updater.generator_loss(x_out, t, y_fake)
        gen_params = list(enc.params()) + list(dec.params())
        for link in (enc, dec, dis):
            link.cleargrads()
        if pruned:
            updater.backward(loss_gen, gen_params)
        else:
            loss_gen.backward()
        gen = [p.grad.copy() for p in gen_params]
        x_out.unchain_backward()
        loss_dis = updater.discriminator_loss(y_real, y_fake)
        dis.cleargrads()
        if pruned:
            updater.backward(loss_dis, list(dis.params()))
        else:
            loss_dis.backward()
        grads[pruned] = gen + [p.grad.copy() for p in dis.params()]
        if pruned:
            assert x_out.grad is None  # the discriminator's pass stopped at the image
    for got, want in zip(grads[True], grads[False]):
        np.testing.assert_array_equal(got, want)


def test_mixed16_step_with_loss_scale_trains():
    device = compat.get_device(-1)
    run = bench.ChainerRunner(device, width=4, batch=1, size=128, precision='mixed16', fast='cpu')
    assert run.enc.c1.c.W.dtype == np.float16 and run.updater.loss_scale == bench.LOSS_SCALE
    before = run.l1()
    for _ in range(5):
        run.train_step()
    params = [p.array for link in (run.enc, run.dec, run.dis) for p in link.params()]
    assert all(np.isfinite(p).all() for p in params)
    # L1 on the fixed batch falls steadily (measured: 0.672 -> 0.6664 in 5 steps).
    assert run.l1() < before - 0.003
