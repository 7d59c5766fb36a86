"""The pix2pix networks of Chainer's examples/pix2pix, with a width option.

Encoder and Decoder form the U-Net generator, Discriminator the patch discriminator.
Layer names, kernels, strides, initialisers, activations and dropout follow the
example line by line; ``width`` is the example's 64 (the first encoder map's
channels) and scales every layer, so ``width=16`` gives a small model for the CPU
demo and the tests. The only input change of the port is ``in_ch=4``: the drawing's
three planes plus the tag plane (see tag_vectorizer.py).

The (de)convolution links and leaky ReLU come from fast_conv.py: Chainer's links and
function computed faster on the CPU, with the same parameters and results.
"""
import contextlib
import warnings

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer
import chainer.functions as F
import chainer.links as L

from fast_conv import Convolution2D, Deconvolution2D, leaky_relu

# Dropout can be switched off while batch norm still uses batch statistics; see
# generating() below. Chainer keeps user settings in its config under a user_ name.
chainer.global_config.user_dropout = True

# At batch 1 and 128 px the encoder's last map is 1x1: batch norm of one value is its
# beta. That is how the example's network behaves at that size, in training and in
# generating() alike, so Chainer's warning about it is expected, not a fault.
warnings.filterwarnings('ignore', message='A batch with no more than one sample')


class ConvBNR(chainer.Chain):
    """Convolution (or deconvolution) - batch norm - dropout - activation."""

    def __init__(self, ch0, ch1, use_bn=True, sample='down', activation=F.relu, dropout=False):
        super().__init__()
        self.use_bn = use_bn
        self.activation = activation
        self.dropout = dropout
        w = chainer.initializers.Normal(0.02)
        with self.init_scope():
            if sample == 'down':
                self.c = Convolution2D(ch0, ch1, 4, 2, 1, initialW=w)
            else:
                self.c = Deconvolution2D(ch0, ch1, 4, 2, 1, initialW=w)
            if use_bn:
                self.bn = L.BatchNormalization(ch1)

    def forward(self, x):
        h = self.c(x)
        if self.use_bn:
            h = self.bn(h)
        if self.dropout and chainer.config.user_dropout:
            h = F.dropout(h)
        if self.activation is not None:
            h = self.activation(h)
        return h


def encoder_channels(width):
    """Output channels of the encoder's c0..c7: 64, 128, 256, 512, 512, 512, 512, 512."""
    return [width, width * 2, width * 4] + [width * 8] * 5


class Encoder(chainer.Chain):
    """c0: 3x3 conv; c1..c7: 4x4 stride-2 conv + BN + leaky ReLU. Returns all 8 maps."""

    def __init__(self, in_ch=4, width=64):
        super().__init__()
        ch = encoder_channels(width)
        w = chainer.initializers.Normal(0.02)
        with self.init_scope():
            self.c0 = Convolution2D(in_ch, ch[0], 3, 1, 1, initialW=w)
            for i in range(1, 8):
                setattr(self, 'c%d' % i, ConvBNR(ch[i - 1], ch[i], use_bn=True, sample='down',
                                                 activation=leaky_relu, dropout=False))

    def forward(self, x):
        hs = [leaky_relu(self.c0(x))]
        for i in range(1, 8):
            hs.append(self['c%d' % i](hs[i - 1]))
        return hs


class Decoder(chainer.Chain):
    """c0..c6: 4x4 stride-2 deconv + BN + ReLU (dropout on c0..c2), concatenated with the
    mirrored encoder map; c7: 3x3 conv to out_ch with no output activation."""

    def __init__(self, out_ch=3, width=64):
        super().__init__()
        enc = encoder_channels(width)
        w = chainer.initializers.Normal(0.02)
        with self.init_scope():
            # c_i takes the previous output concatenated with encoder map 7-i.
            out = [enc[6 - i] for i in range(7)]  # 512, 512, 512, 512, 256, 128, 64
            for i in range(7):
                in_ch = enc[7] if i == 0 else out[i - 1] + enc[7 - i]
                setattr(self, 'c%d' % i, ConvBNR(in_ch, out[i], use_bn=True, sample='up',
                                                 activation=F.relu, dropout=i < 3))
            self.c7 = Convolution2D(out[6] + enc[0], out_ch, 3, 1, 1, initialW=w)

    def forward(self, hs):
        h = self.c0(hs[-1])
        for i in range(1, 8):
            h = F.concat([h, hs[-i - 1]])
            h = self['c%d' % i](h)
        return h


class Discriminator(chainer.Chain):
    """Two 4x4/2 conv branches (input with tag plane, output image) to width/2 channels each,
    concatenated, then three conv + BN + leaky ReLU and a 3x3 conv to a 1-channel patch map."""

    def __init__(self, in_ch=4, out_ch=3, width=64):
        super().__init__()
        w = chainer.initializers.Normal(0.02)
        half = width // 2
        with self.init_scope():
            self.c0_0 = ConvBNR(in_ch, half, use_bn=False, sample='down',
                                activation=leaky_relu, dropout=False)
            self.c0_1 = ConvBNR(out_ch, half, use_bn=False, sample='down',
                                activation=leaky_relu, dropout=False)
            self.c1 = ConvBNR(half * 2, width * 2, use_bn=True, sample='down',
                              activation=leaky_relu, dropout=False)
            self.c2 = ConvBNR(width * 2, width * 4, use_bn=True, sample='down',
                              activation=leaky_relu, dropout=False)
            self.c3 = ConvBNR(width * 4, width * 8, use_bn=True, sample='down',
                              activation=leaky_relu, dropout=False)
            self.c4 = Convolution2D(width * 8, 1, 3, 1, 1, initialW=w)

    def forward(self, x_in, x_out):
        h = F.concat([self.c0_0(x_in), self.c0_1(x_out)])
        h = self.c1(h)
        h = self.c2(h)
        h = self.c3(h)
        return self.c4(h)


@contextlib.contextmanager
def generating():
    """Runs the generator as at test time: batch norm on the statistics of the batch being
    coloured (as in training and in the pix2pix paper), dropout off so that the output is
    deterministic, no graph kept.

    Running averages are not used: at batch 1 the encoder's deepest maps are 1x1 or 2x2,
    their batch variance is (near) zero and running statistics blow the output up
    (REFERENCE §6). Batch norm in train mode also updates the running averages; they are
    never read, so that side effect is harmless.
    """
    with chainer.using_config('train', True), chainer.using_config('user_dropout', False), \
            chainer.using_config('enable_backprop', False):
        yield
