"""The PyTorch reference that bench.py times the Chainer port against.

The same networks as net.py (Chainer's examples/pix2pix, with the ``width`` option),
the same losses as updater.py and the same optimizer settings as
updater.make_optimizer, written the way one writes them in PyTorch eager:

* Chainer's defaults where PyTorch's differ: batch-norm eps 2e-5 and momentum 0.1
  (Chainer's decay 0.9), leaky-ReLU slope 0.2, dropout 0.5, Normal(0.02) weights,
  zero biases;
* Adam(lr, betas=(0.5, 0.999), eps=1e-8) with weight_decay=1e-5, which adds
  1e-5 * param to the gradient before the Adam step, as Chainer's WeightDecay hook does;
* one training step does what TextPix2pixUpdater does: one generator forward, the
  discriminator on fake and real, one backward pass for encoder + decoder, one for the
  discriminator (each only through the graph it needs), then the three Adam steps.

Weights are stored in Chainer's layouts (convolution (out, in, k, k), deconvolution
(in, out, k, k)), so ``copy_from_chainer`` can load a Chainer model and
tests/test_bench.py checks that both compute the same outputs. Only bench.py and the
tests import this module: PyTorch is never needed to train or colour.
"""
import contextlib

import numpy
import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 2e-5          # chainer.links.BatchNormalization's default
BN_MOMENTUM = 0.1      # Chainer's decay=0.9
LEAKY_SLOPE = 0.2      # chainer.functions.leaky_relu's default
DROPOUT = 0.5          # chainer.functions.dropout's default
WEIGHT_DECAY = 1e-5    # updater.make_optimizer


def encoder_channels(width):
    return [width, width * 2, width * 4] + [width * 8] * 5


class BatchNorm(nn.BatchNorm2d):
    """nn.BatchNorm2d with Chainer's eps and momentum, which also takes one value per
    channel (batch 1 and a 1x1 map, the encoder's last map at 128 px): Chainer normalises
    it to beta; PyTorch's module refuses it, its function does the same as Chainer."""

    def __init__(self, channels):
        super().__init__(channels, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x):
        if not self.training or x.numel() > x.shape[1]:
            return super().forward(x)
        return torch.batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.eps,
                                torch.backends.cudnn.enabled)


class ConvBNR(nn.Module):
    """Convolution (or deconvolution) - batch norm - dropout - activation, as net.ConvBNR."""

    def __init__(self, ch0, ch1, use_bn=True, sample='down', activation='relu', dropout=False):
        super().__init__()
        if sample == 'down':
            self.c = nn.Conv2d(ch0, ch1, 4, 2, 1)
        else:
            self.c = nn.ConvTranspose2d(ch0, ch1, 4, 2, 1)
        self.bn = BatchNorm(ch1) if use_bn else None
        self.activation = activation
        self.dropout = dropout
        self.dropout_on = True  # off while colouring, as net.generating() does

    def forward(self, x):
        h = self.c(x)
        if self.bn is not None:
            h = self.bn(h)
        if self.dropout and self.dropout_on:
            h = F.dropout(h, DROPOUT, training=self.training)
        if self.activation == 'relu':
            h = F.relu(h)
        elif self.activation == 'leaky_relu':
            h = F.leaky_relu(h, LEAKY_SLOPE)
        return h


class Encoder(nn.Module):
    def __init__(self, in_ch=4, width=64):
        super().__init__()
        ch = encoder_channels(width)
        self.c0 = nn.Conv2d(in_ch, ch[0], 3, 1, 1)
        for i in range(1, 8):
            setattr(self, 'c%d' % i, ConvBNR(ch[i - 1], ch[i], sample='down', activation='leaky_relu'))

    def forward(self, x):
        hs = [F.leaky_relu(self.c0(x), LEAKY_SLOPE)]
        for i in range(1, 8):
            hs.append(getattr(self, 'c%d' % i)(hs[-1]))
        return hs


class Decoder(nn.Module):
    def __init__(self, out_ch=3, width=64):
        super().__init__()
        enc = encoder_channels(width)
        out = [enc[6 - i] for i in range(7)]
        for i in range(7):
            setattr(self, 'c%d' % i, ConvBNR(enc[7] if i == 0 else out[i - 1] + enc[7 - i], out[i],
                                             sample='up', activation='relu', dropout=i < 3))
        self.c7 = nn.Conv2d(out[6] + enc[0], out_ch, 3, 1, 1)

    def forward(self, hs):
        h = self.c0(hs[-1])
        for i in range(1, 8):
            h = getattr(self, 'c%d' % i)(torch.cat([h, hs[-i - 1]], 1))
        return h


class Discriminator(nn.Module):
    def __init__(self, in_ch=4, out_ch=3, width=64):
        super().__init__()
        half = width // 2
        self.c0_0 = ConvBNR(in_ch, half, use_bn=False, activation='leaky_relu')
        self.c0_1 = ConvBNR(out_ch, half, use_bn=False, activation='leaky_relu')
        self.c1 = ConvBNR(half * 2, width * 2, activation='leaky_relu')
        self.c2 = ConvBNR(width * 2, width * 4, activation='leaky_relu')
        self.c3 = ConvBNR(width * 4, width * 8, activation='leaky_relu')
        self.c4 = nn.Conv2d(width * 8, 1, 3, 1, 1)

    def forward(self, x_in, x_out):
        h = torch.cat([self.c0_0(x_in), self.c0_1(x_out)], 1)
        return self.c4(self.c3(self.c2(self.c1(h))))


def initialize(model, generator=None):
    """Chainer's initialisation: Normal(0.02) weights, zero biases, BN gamma 1 and beta 0."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02, generator=generator)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def make_models(width=64, in_ch=4, out_ch=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(initialize(m, generator) for m in
                 (Encoder(in_ch, width), Decoder(out_ch, width), Discriminator(in_ch, out_ch, width)))


def chainer_names(model):
    """PyTorch state name -> the Chainer link's name: modules are named as in net.py."""
    leaves = {'weight': 'W', 'bias': 'b'}
    bn_leaves = {'weight': 'gamma', 'bias': 'beta', 'running_mean': 'avg_mean', 'running_var': 'avg_var'}
    names = {}
    for name in model.state_dict():
        *path, leaf = name.split('.')
        if leaf == 'num_batches_tracked':
            continue
        names[name] = '/'.join(path + [(bn_leaves if path[-1] == 'bn' else leaves)[leaf]])
    return names


def copy_from_chainer(model, link):
    """Loads a Chainer link's parameters and batch-norm statistics (same architecture and
    width) into ``model``."""
    import chainer  # only here: the reference itself does not need Chainer
    serializer = chainer.serializers.DictionarySerializer()
    serializer.save(link)
    arrays = serializer.target
    state = model.state_dict()
    for name, chainer_name in chainer_names(model).items():
        source = arrays[chainer_name]
        source = source.get() if hasattr(source, 'get') else source  # CuPy -> NumPy
        state[name] = torch.as_tensor(numpy.asarray(source)).reshape(state[name].shape)
    model.load_state_dict(state)
    return model


def make_optimizer(model, lr, capturable=False):
    """``capturable``: Adam's step counts kept on the GPU, which a CUDA graph needs."""
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999), eps=1e-8,
                            weight_decay=WEIGHT_DECAY, capturable=capturable)


def generator_loss(x_out, t_out, y_fake, lam1=100, lam2=1):
    batchsize, _, w, h = y_fake.shape
    loss_rec = lam1 * F.l1_loss(x_out, t_out)
    loss_adv = lam2 * F.softplus(-y_fake).sum() / (batchsize * w * h)
    return loss_rec + loss_adv, loss_rec


def discriminator_loss(y_real, y_fake):
    batchsize, _, w, h = y_real.shape
    return (F.softplus(-y_real).sum() + F.softplus(y_fake).sum()) / (batchsize * w * h)


class Trainer:
    """enc, dec, dis and their optimizers; ``step(x_in, t_out)`` is one training update."""

    def __init__(self, width=64, lr=2e-4, device='cpu', seed=0, autocast_dtype=None, loss_scale=None,
                 capturable=False):
        self.enc, self.dec, self.dis = (m.to(device) for m in make_models(width, seed=seed))
        self.optimizers = [make_optimizer(m, lr, capturable) for m in (self.enc, self.dec, self.dis)]
        self.generator_params = list(self.enc.parameters()) + list(self.dec.parameters())
        self.dis_params = list(self.dis.parameters())
        self.device = torch.device(device)
        self.autocast_dtype = autocast_dtype
        self.loss_scale = loss_scale  # static, as the Chainer port's mixed16 run uses

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def step(self, x_in, t_out):
        for model in (self.enc, self.dec, self.dis):
            model.train()
        with self._autocast():
            x_out = self.dec(self.enc(x_in))
            y_fake = self.dis(x_in, x_out)
            y_real = self.dis(x_in, t_out)
            loss_gen, loss_l1 = generator_loss(x_out.float(), t_out, y_fake.float())
            loss_dis = discriminator_loss(y_real.float(), y_fake.float())
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        # Gradients for exactly what each loss updates, as TextPix2pixUpdater does.
        scale = self.loss_scale or 1.0
        torch.autograd.backward(loss_gen * scale, inputs=self.generator_params, retain_graph=True)
        torch.autograd.backward(loss_dis * scale, inputs=self.dis_params)
        if self.loss_scale:
            torch._foreach_div_([p.grad for p in self.generator_params + self.dis_params], scale)
        for optimizer in self.optimizers:
            optimizer.step()
        return loss_gen.detach(), loss_l1.detach(), loss_dis.detach()

    def colour(self, x_in):
        return generate(self.enc, self.dec, x_in, self._autocast())


def set_dropout(model, on):
    for module in model.modules():
        if isinstance(module, ConvBNR):
            module.dropout_on = on


@torch.no_grad()
def generate(enc, dec, x_in, autocast=None):
    """net.generating(): batch statistics of the batch, no dropout, no graph."""
    enc.train()
    dec.train()
    set_dropout(dec, False)
    try:
        with autocast or contextlib.nullcontext():
            return dec(enc(x_in))
    finally:
        set_dropout(dec, True)
