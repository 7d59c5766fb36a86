"""The pix2pix networks of Chainer's examples/pix2pix, with a width option.

Encoder and Decoder form the U-Net generator, Discriminator the patch discriminator.
Layer names, kernels, strides, initialisers, activations and dropout follow the
example line by line, one line per layer, so the two files can be read side by side:
where the example writes 64, 128, 256, 512 and 1024 channels this file writes c,
c * 2, c * 4, c * 8 and c * 16 with ``c = width`` (the example's 64; ``width=16`` gives
the small model of the CPU demo and the tests). The only input change of the port is
``in_ch=4``: the drawing's three planes plus the tag plane (see tag_vectorizer.py).

Deviations from the example, each for a reason given where it is made: the
(de)convolution links and leaky ReLU come from fast_conv.py (the same parameters and
results, faster on the CPU); dropout can be switched off for colouring
(``generating``).
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
        # deviation from the example: dropout can be switched off (generating()).
        if self.dropout and chainer.config.user_dropout:
            h = F.dropout(h)
        if self.activation is not None:
            h = self.activation(h)
        return h


class Encoder(chainer.Chain):
    """c0: 3x3 conv; c1..c7: 4x4 stride-2 conv + BN + leaky ReLU. Returns all 8 maps."""

    def __init__(self, in_ch=4, width=64):
        super().__init__()
        w = chainer.initializers.Normal(0.02)
        c = width  # the example's 64
        with self.init_scope():
            self.c0 = Convolution2D(in_ch, c, 3, 1, 1, initialW=w)
            self.c1 = ConvBNR(c, c * 2, use_bn=True, sample='down', activation=leaky_relu, dropout=False)
            self.c2 = ConvBNR(c * 2, c * 4, use_bn=True, sample='down', activation=leaky_relu, dropout=False)
            self.c3 = ConvBNR(c * 4, c * 8, use_bn=True, sample='down', activation=leaky_relu, dropout=False)
            self.c4 = ConvBNR(c * 8, c * 8, use_bn=True, sample='down', activation=leaky_relu, dropout=False)
            self.c5 = ConvBNR(c * 8, c * 8, use_bn=True, sample='down', activation=leaky_relu, dropout=False)
            self.c6 = ConvBNR(c * 8, c * 8, use_bn=True, sample='down', activation=leaky_relu, dropout=False)
            self.c7 = ConvBNR(c * 8, c * 8, use_bn=True, sample='down', activation=leaky_relu, dropout=False)

    def forward(self, x):
        hs = [leaky_relu(self.c0(x))]
        for i in range(1, 8):
            hs.append(self['c%d' % i](hs[i - 1]))
        return hs


class Decoder(chainer.Chain):
    """c0..c6: 4x4 stride-2 deconv + BN + ReLU (dropout on c0..c2), each after c0 fed its
    predecessor's output concatenated with the mirrored encoder map; c7: 3x3 conv to
    out_ch with no output activation."""

    def __init__(self, out_ch=3, width=64):
        super().__init__()
        w = chainer.initializers.Normal(0.02)
        c = width  # the example's 64
        with self.init_scope():
            self.c0 = ConvBNR(c * 8, c * 8, use_bn=True, sample='up', activation=F.relu, dropout=True)
            self.c1 = ConvBNR(c * 16, c * 8, use_bn=True, sample='up', activation=F.relu, dropout=True)
            self.c2 = ConvBNR(c * 16, c * 8, use_bn=True, sample='up', activation=F.relu, dropout=True)
            self.c3 = ConvBNR(c * 16, c * 8, use_bn=True, sample='up', activation=F.relu, dropout=False)
            self.c4 = ConvBNR(c * 16, c * 4, use_bn=True, sample='up', activation=F.relu, dropout=False)
            self.c5 = ConvBNR(c * 8, c * 2, use_bn=True, sample='up', activation=F.relu, dropout=False)
            self.c6 = ConvBNR(c * 4, c, use_bn=True, sample='up', activation=F.relu, dropout=False)
            self.c7 = Convolution2D(c * 2, out_ch, 3, 1, 1, initialW=w)

    def forward(self, hs):
        h = self.c0(hs[-1])
        for i in range(1, 8):
            h = F.concat([h, hs[-i - 1]])
            h = self['c%d' % i](h)  # c7 is the output convolution
        return h


class Discriminator(chainer.Chain):
    """Two 4x4/2 conv branches (input with tag plane, output image) to width/2 channels each,
    concatenated, then three conv + BN + leaky ReLU and a 3x3 conv to a 1-channel patch map."""

    def __init__(self, in_ch=4, out_ch=3, width=64):
        super().__init__()
        w = chainer.initializers.Normal(0.02)
        c = width  # the example's 64
        with self.init_scope():
            self.c0_0 = ConvBNR(in_ch, c // 2, use_bn=False, sample='down',
                                activation=leaky_relu, dropout=False)
            self.c0_1 = ConvBNR(out_ch, c // 2, use_bn=False, sample='down',
                                activation=leaky_relu, dropout=False)
            self.c1 = ConvBNR(c, c * 2, use_bn=True, sample='down', activation=leaky_relu, dropout=False)
            self.c2 = ConvBNR(c * 2, c * 4, use_bn=True, sample='down', activation=leaky_relu, dropout=False)
            self.c3 = ConvBNR(c * 4, c * 8, use_bn=True, sample='down', activation=leaky_relu, dropout=False)
            self.c4 = Convolution2D(c * 8, 1, 3, 1, 1, initialW=w)

    def forward(self, x_0, x_1):
        h = F.concat([self.c0_0(x_0), self.c0_1(x_1)])
        h = self.c1(h)
        h = self.c2(h)
        h = self.c3(h)
        h = self.c4(h)
        return h


@contextlib.contextmanager
def generating():
    """Runs the generator as at test time: batch norm on the statistics of the batch being
    coloured (as in training and in the pix2pix paper), dropout off so that the output is
    deterministic, no graph kept.

    Running averages are not used: at batch 1 the encoder's deepest maps are 1x1 or 2x2,
    their batch variance is (near) zero, and with running statistics the outputs reach
    values in the thousands (tests/test_net.py keeps them bounded). Batch norm in train
    mode also updates the running averages; they are never read, so that side effect is
    harmless.
    """
    with chainer.using_config('train', True), chainer.using_config('user_dropout', False), \
            chainer.using_config('enable_backprop', False):
        yield
