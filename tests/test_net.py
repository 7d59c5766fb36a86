"""The networks against the layer list of Chainer's examples/pix2pix/net.py."""
import numpy as np
import pytest

import compat  # noqa: F401
import chainer

import net

# The example's layers as (kind, in, out, kernel, batch norm), copied from its net.py
# for in_ch=4 (drawing + tag plane) and out_ch=3.
EXAMPLE_ENCODER = [('conv', 4, 64, 3, False)] + [
    ('conv', i, o, 4, True) for i, o in
    [(64, 128), (128, 256), (256, 512), (512, 512), (512, 512), (512, 512), (512, 512)]]
EXAMPLE_DECODER = [('deconv', i, o, 4, True) for i, o in
                   [(512, 512), (1024, 512), (1024, 512), (1024, 512), (1024, 256), (512, 128),
                    (256, 64)]] + [('conv', 128, 3, 3, False)]
EXAMPLE_DISCRIMINATOR = [('conv', 4, 32, 4, False), ('conv', 3, 32, 4, False),
                         ('conv', 64, 128, 4, True), ('conv', 128, 256, 4, True),
                         ('conv', 256, 512, 4, True), ('conv', 512, 1, 3, False)]


def count(layers):
    """Weights + biases of each (de)convolution, gamma + beta of each batch norm."""
    return sum(i * o * k * k + o + (2 * o if bn else 0) for _, i, o, k, bn in layers)


def n_params(link):
    return sum(p.size for p in link.params())


@pytest.mark.parametrize('link, layers', [
    (lambda: net.Encoder(in_ch=4), EXAMPLE_ENCODER),
    (lambda: net.Decoder(out_ch=3), EXAMPLE_DECODER),
    (lambda: net.Discriminator(in_ch=4, out_ch=3), EXAMPLE_DISCRIMINATOR),
])
def test_default_parameter_counts_equal_the_example(link, layers):
    assert n_params(link()) == count(layers)


def test_layer_shapes_match_the_example():
    enc, dec = net.Encoder(in_ch=4), net.Decoder(out_ch=3)
    got = [enc.c0.W.shape] + [enc['c%d' % i].c.W.shape for i in range(1, 8)]
    assert got == [(o, i, k, k) for _, i, o, k, _ in EXAMPLE_ENCODER]
    # Deconvolution weights are stored (in, out, k, k).
    got = [dec['c%d' % i].c.W.shape for i in range(7)] + [dec.c7.W.shape]
    want = [(i, o, k, k) for _, i, o, k, _ in EXAMPLE_DECODER[:7]] + [(3, 128, 3, 3)]
    assert got == want
    assert [dec['c%d' % i].dropout for i in range(7)] == [True] * 3 + [False] * 4


def test_width_scales_every_layer():
    assert n_params(net.Encoder(4, width=32)) < n_params(net.Encoder(4)) / 3
    assert n_params(net.Encoder(4, width=16)) == count(
        [(k, i // 4 if i != 4 else 4, o // 4, ks, bn) for k, i, o, ks, bn in EXAMPLE_ENCODER])


def test_shapes_at_256():
    enc, dec, dis = net.Encoder(4, width=8), net.Decoder(3, width=8), net.Discriminator(4, 3, width=8)
    x = np.random.RandomState(0).uniform(-1, 1, (2, 4, 256, 256)).astype(np.float32)
    with chainer.using_config('train', True):
        hs = enc(x)
        assert [h.shape[2] for h in hs] == [256, 128, 64, 32, 16, 8, 4, 2]
        y = dec(hs)
        assert y.shape == (2, 3, 256, 256)
        assert dis(x, y).shape == (2, 1, 16, 16)


def test_generating_is_deterministic_and_uses_batch_statistics():
    enc, dec = net.Encoder(4, width=8), net.Decoder(3, width=8)
    x = np.random.RandomState(1).uniform(-1, 1, (1, 4, 128, 128)).astype(np.float32)
    with net.generating():
        a = dec(enc(x)).array
        b = dec(enc(x)).array
    np.testing.assert_array_equal(a, b)
    # Running statistics at batch 1 with 1x1 maps would blow the output up (to thousands).
    assert np.abs(a).max() < 50
