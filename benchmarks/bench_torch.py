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

The film design (net.py's ``--tag-design film`` with the demo's settings, run.sh's
``--tag-design film --blank-fraction 0.3 --blank-loss colours --ema-decay 0.999``):
FilmEncoder, FilmDecoder and FilmDiscriminator (the tag plane's slots read back into
per-tag features and their sum c, FiLM after every batch norm, the saturation gate, the
projection discriminator), and FilmTrainer, whose step is TextPix2pixUpdater's for those
flags (the gate's own loss; on blank drawings the colour distribution loss in place of
L1 and the adversarial terms) followed by the weight average's update. Where the Chainer
code is shaped by Chainer's cost per function call, this is written as one writes
PyTorch: a Linear per layer for FiLM (net.film_parameters stacks them into one
product), the blank examples' colour loss as one batch of sorts (updater.py loops over
the examples), the average with torch._foreach_lerp_. Linear layers start as Chainer's:
LeCunNormal weights and zero biases; FiLM, the gate and the projection at zero.

Two differences in what is learnt remain, both in Adam: Chainer's adds eps to sqrt(v)
before the bias correction, PyTorch's after (the same update but for gradients near
eps; tests/test_bench.py matches the first step by scaling Chainer's eps); and after a
batch of blank drawings only, the discriminator has no gradient, and PyTorch's Adam
skips it, step count included, where Chainer's counts the step.

Weights are stored in Chainer's layouts (convolution (out, in, k, k), deconvolution
(in, out, k, k), Linear (out, in)) and named as in net.py, so ``copy_from_chainer`` can
load a Chainer model of either design and tests/test_bench.py checks that both compute
the same outputs. Only bench.py and the tests import this module: PyTorch is never
needed to train or colour.
"""
import collections
import contextlib
import copy

import numpy
import torch
import torch.nn as nn
import torch.nn.functional as F

import plane_layout  # NumPy only: the tag plane's grid, shared with tag_vectorizer.py and net.py

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
    """Convolution (or deconvolution) - batch norm - dropout - activation, as net.ConvBNR;
    with ``film`` (the size of the film design's vector c), FiLM after the batch norm:
    h * (1 + gamma(c)) + beta(c), gamma and beta from one Linear that starts at zero."""

    def __init__(self, ch0, ch1, use_bn=True, sample='down', activation='relu', dropout=False, film=None):
        super().__init__()
        if sample == 'down':
            self.c = nn.Conv2d(ch0, ch1, 4, 2, 1)
        else:
            self.c = nn.ConvTranspose2d(ch0, ch1, 4, 2, 1)
        self.bn = BatchNorm(ch1) if use_bn else None
        self.film = zero_linear(film, 2 * ch1) if film else None
        self.activation = activation
        self.dropout = dropout
        self.dropout_on = True  # off while colouring, as net.generating() does

    def forward(self, x, c=None):
        h = self.c(x)
        if self.bn is not None:
            h = self.bn(h)
        if self.film is not None:
            scale, shift = self.film(c)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        if self.dropout and self.dropout_on:
            h = F.dropout(h, DROPOUT, training=self.training)
        if self.activation == 'relu':
            h = F.relu(h)
        elif self.activation == 'leaky_relu':
            h = F.leaky_relu(h, LEAKY_SLOPE)
        return h


class Encoder(nn.Module):
    """``film``: FiLM after c1..c7's batch norms, from a vector c of this size."""

    def __init__(self, in_ch=4, width=64, film=None):
        super().__init__()
        ch = encoder_channels(width)
        self.c0 = nn.Conv2d(in_ch, ch[0], 3, 1, 1)
        for i in range(1, 8):
            setattr(self, 'c%d' % i, ConvBNR(ch[i - 1], ch[i], sample='down', activation='leaky_relu',
                                             film=film))

    def forward(self, x, c=None):
        hs = [F.leaky_relu(self.c0(x), LEAKY_SLOPE)]
        for i in range(1, 8):
            hs.append(getattr(self, 'c%d' % i)(hs[-1], c))
        return hs


class Decoder(nn.Module):
    """``film``: FiLM after c0..c6's batch norms, from a vector c of this size."""

    def __init__(self, out_ch=3, width=64, film=None):
        super().__init__()
        enc = encoder_channels(width)
        out = [enc[6 - i] for i in range(7)]
        for i in range(7):
            setattr(self, 'c%d' % i, ConvBNR(enc[7] if i == 0 else out[i - 1] + enc[7 - i], out[i],
                                             sample='up', activation='relu', dropout=i < 3, film=film))
        self.c7 = nn.Conv2d(out[6] + enc[0], out_ch, 3, 1, 1)

    def forward(self, hs, c=None):
        h = self.c0(hs[-1], c)
        for i in range(1, 7):
            h = getattr(self, 'c%d' % i)(torch.cat([h, hs[-i - 1]], 1), c)
        return self.c7(torch.cat([h, hs[0]], 1))


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


def zero_linear(ch0, ch1, bias=0.0, use_bias=True):
    """A Linear that starts at zero weights and the bias ``bias`` (``initialize`` keeps to
    that): FiLM, the gate and the projection start so that the networks are the post's."""
    layer = nn.Linear(ch0, ch1, bias=use_bias)
    layer.initial_bias = bias
    return layer


def initialize(model, generator=None):
    """Chainer's initialisation: Normal(0.02) (de)convolution weights, LeCunNormal Linear
    weights (L.Linear's default, std sqrt(1 / fan-in)), zero biases, BN gamma 1 and beta 0;
    zero_linear's Linears zero weights and their own bias."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02, generator=generator)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and hasattr(module, 'initial_bias'):
            nn.init.zeros_(module.weight)
            if module.bias is not None:
                nn.init.constant_(module.bias, module.initial_bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, module.in_features ** -0.5, generator=generator)
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
        self.enc, self.dec, self.dis = (m.to(device) for m in self.make_models(width, seed))
        self.optimizers = [make_optimizer(m, lr, capturable) for m in (self.enc, self.dec, self.dis)]
        self.generator_params = list(self.enc.parameters()) + list(self.dec.parameters())
        self.dis_params = list(self.dis.parameters())
        self.device = torch.device(device)
        self.autocast_dtype = autocast_dtype
        self.loss_scale = loss_scale  # static, as the Chainer port's mixed16 run uses

    def make_models(self, width, seed):
        return make_models(width, seed=seed)

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


# ---------------------------------------------------------------- the film design
# net.py's --tag-design film, the demo's settings (net.film_design's defaults): the tag
# plane read back into per-tag features and their sum c, FiLM after every batch norm of
# the generator, the saturation gate on its output, the projection discriminator; and
# updater.py's losses for it: the gate's own loss, and on blank drawings the colour
# distribution loss in place of L1 and the adversarial terms (--blank-loss colours).

LUMA = (0.299, 0.587, 0.114)     # net.LUMA
GATE_BIAS = 4.0                  # net.GATE_BIAS
GATE_WEIGHT = 1.0                # train_facade_text.py's --gate-loss
EMA_DECAY = 0.999                # the demo's --ema-decay
L1_WEIGHT = 100                  # updater.L1_WEIGHT, also the colour loss's weight
PAPER = 255 / 128 - 1            # updater.PAPER: a blank drawing's planes
COLOUR_PIXELS = 4096             # updater.COLOUR_PIXELS
LAB_SCALE = 33.5                 # updater.LAB_SCALE
SRGB_TO_XYZ = numpy.array([[0.4124564, 0.3575761, 0.1804375],   # colour_space.SRGB_TO_XYZ
                           [0.2126729, 0.7151522, 0.0721750],
                           [0.0193339, 0.1191920, 0.9503041]])


def film_design(dim=16, slots=16, hidden=64, gate_gain=5.0):
    """net.film_design() with the parts this twin has: slots layout, per-tag gate,
    projection and coordinate planes."""
    return dict(layout='slots', dim=dim, slots=slots, hidden=hidden, gate='per_tag', gate_gain=gate_gain,
                projection=True, coords=True)


def checked_design(design):
    """``design`` (None: film_design()), or ValueError where it asks for parts this twin lacks."""
    design = design or film_design()
    parts = {k: design[k] for k in ('layout', 'gate', 'projection', 'coords')}
    if parts != {k: film_design()[k] for k in parts}:
        raise ValueError('bench_torch has the demo\'s film design only (slots, per-tag gate, projection, '
                         'coordinates), not {}'.format(parts))
    return design


def colour_directions(spread=25):
    """updater.colour_directions(): L*, a*, b* and four mixtures, then a Fibonacci lattice
    of ``spread`` unit vectors on the half sphere, as float32."""
    named = numpy.asarray([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (1, -1, 0), (1, 1, -2), (1, 0, -1)],
                          numpy.float32)
    i = numpy.arange(spread) + 0.5
    z = i / spread
    r = numpy.sqrt(1 - z ** 2)
    angle = i * numpy.pi * (3 - numpy.sqrt(5))
    return numpy.concatenate([named / numpy.linalg.norm(named, axis=1, keepdims=True),
                              numpy.stack([r * numpy.cos(angle), r * numpy.sin(angle), z], axis=1)]
                             ).astype(numpy.float32)


Tags = collections.namedtuple('Tags', 'c each present')  # net.Tags


def read_cells(planes, values):
    """plane_layout.read_cells: (B, size, size) -> (B, values), read at the cell centres,
    for sides that are a multiple of twice the grid's (bench.py's, multiples of 128, for
    grids up to 64 cells a side): there the centres are evenly spaced, a strided view."""
    grid = plane_layout.grid_side(values)
    size = planes.shape[-1]
    if size % (2 * grid):
        raise ValueError('a {} px plane does not put the centres of {} cells evenly'.format(size, grid))
    cells = planes[:, size // (2 * grid)::size // grid, size // (2 * grid)::size // grid]
    return cells.reshape(len(planes), grid * grid)[:, :values]


class TagReader(nn.Module):
    """net.TagReader, slots layout: each slot's tag vector through a small shared network,
    c the sum over the slots that hold a tag."""

    def __init__(self, dim=16, slots=16, hidden=64):
        super().__init__()
        self.dim, self.slots = dim, slots
        self.l1 = nn.Linear(dim, hidden)
        self.l2 = nn.Linear(hidden, hidden)

    def forward(self, x):
        planes = x[:, -1]
        batch = len(planes)
        values = read_cells(planes, self.slots * self.dim).reshape(batch * self.slots, self.dim)
        present = (values.abs().amax(dim=1, keepdim=True) > 0).to(values.dtype)
        each = (self.l2(F.leaky_relu(self.l1(values), LEAKY_SLOPE)) * present).reshape(batch, self.slots, -1)
        return Tags(each.sum(dim=1), each, present.reshape(batch, self.slots))


def coordinate_planes(x):
    """net.coordinate_planes: (B, 2, H, W), x and y from -1 to 1."""
    batch, _, height, width = x.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height, dtype=x.dtype, device=x.device),
                            torch.linspace(-1, 1, width, dtype=x.dtype, device=x.device), indexing='ij')
    return torch.stack([xs, ys])[None].expand(batch, 2, height, width)


class SaturationGate(nn.Module):
    """net.SaturationGate, per tag: out = grey + s * (rgb - grey), s the product over the
    tags of sigmoid(gain * w.f_k + b)."""

    def __init__(self, size, gain=5.0):
        super().__init__()
        self.gain = gain
        self.l = zero_linear(size, 1, bias=GATE_BIAS)  # net.py's name, which copy_from_chainer reads
        # Kept in float64: a float64 model's grey then uses net.py's float64 weights (the
        # float32 ones would put 1e-9 between the two outputs).
        self.register_buffer('luma', torch.tensor(LUMA, dtype=torch.float64).reshape(1, 3, 1, 1),
                             persistent=False)

    def log_share(self, tags):
        logits = F.linear(tags.each, self.l.weight * self.gain, self.l.bias).squeeze(2)
        return -(F.softplus(-logits) * tags.present).sum(dim=1, keepdim=True)

    def forward(self, rgb, tags):
        grey = (rgb * self.luma.to(rgb.dtype)).sum(dim=1, keepdim=True)
        return grey + (rgb - grey) * self.log_share(tags).exp()[:, :, None, None]

    def loss(self, tags, in_colour):
        log_s = self.log_share(tags)
        log_not_s = torch.log(-torch.expm1(log_s) + 1e-7)
        return -(in_colour * log_s + (1 - in_colour) * log_not_s).mean()


class FilmEncoder(Encoder):
    """net.Encoder with a design: c0 sees the drawing and the coordinate planes, not the
    tag plane; forward returns (maps, tags)."""

    def __init__(self, in_ch=4, width=64, design=None):
        design = checked_design(design)
        super().__init__(in_ch - 1 + 2, width, film=design['hidden'])
        self.tags = TagReader(design['dim'], design['slots'], design['hidden'])

    def forward(self, x):
        tags = self.tags(x)
        return super().forward(torch.cat([x[:, :-1], coordinate_planes(x)], 1), tags.c), tags


class FilmDecoder(Decoder):
    """net.Decoder with a design: FiLM from the encoder's tags, the gate on the output."""

    def __init__(self, out_ch=3, width=64, design=None):
        design = checked_design(design)
        super().__init__(out_ch, width, film=design['hidden'])
        self.gate = SaturationGate(design['hidden'], design['gate_gain'])

    def forward(self, features):
        hs, tags = features
        return self.gate(super().forward(hs, tags.c), tags)


class FilmDiscriminator(Discriminator):
    """net.Discriminator with a projection: each patch's logit gets c.V.phi added, c read
    by its own TagReader from the input's tag plane, phi the patch's last features."""

    def __init__(self, in_ch=4, out_ch=3, width=64, design=None):
        design = checked_design(design)
        super().__init__(in_ch, out_ch, width)
        self.tags = TagReader(design['dim'], design['slots'], design['hidden'])
        self.proj = zero_linear(design['hidden'], width * 8, use_bias=False)

    def forward(self, x_in, x_out):
        h = torch.cat([self.c0_0(x_in), self.c0_1(x_out)], 1)
        h = self.c3(self.c2(self.c1(h)))
        projection = (h * self.proj(self.tags(x_in).c)[:, :, None, None]).sum(dim=1, keepdim=True)
        return self.c4(h) + projection


def make_film_models(width=64, design=None, in_ch=4, out_ch=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(initialize(m, generator) for m in
                 (FilmEncoder(in_ch, width, design), FilmDecoder(out_ch, width, design),
                  FilmDiscriminator(in_ch, out_ch, width, design)))


def blank_examples(x_in):
    """updater.blank_examples: (B,) bool, the examples whose drawing planes are paper."""
    return x_in[:, :3].flatten(1).amin(dim=1) >= PAPER - 1e-6


def in_colour(images, spread=0.005):
    """net.in_colour: (B, 1), 1 where a target's channels spread over ``spread`` on average."""
    spread_of = (images.amax(dim=1) - images.amin(dim=1)).flatten(1).mean(dim=1)
    return (spread_of > spread).to(images.dtype)[:, None]


class ColourLoss(nn.Module):
    """updater.colour_distribution_loss: the sliced 1-D Wasserstein distance between the
    output's and the target's pixel colours in CIELAB / LAB_SCALE, ``pixels`` random
    pixels of each (``sample(count)``: their indices; torch.randperm on the device unless
    replaced), averaged over the directions and examples. The examples go through in one
    batch of sorts where updater.py loops over them; the random draws come in its order
    (output, then target, example by example)."""

    def __init__(self, pixels=COLOUR_PIXELS):
        super().__init__()
        self.pixels = pixels
        self.register_buffer('directions', torch.from_numpy(colour_directions()), persistent=False)
        to_xyz = (SRGB_TO_XYZ / SRGB_TO_XYZ.sum(axis=1, keepdims=True)).astype(numpy.float32)
        self.register_buffer('to_xyz', torch.from_numpy(to_xyz), persistent=False)
        self.sample = self.random_pixels

    def random_pixels(self, count):
        return torch.randperm(count, device=self.directions.device)[:self.pixels]

    def lab(self, rgb):
        """(B, 3, N) on [-1, 1] -> (B, 3, N) CIELAB / LAB_SCALE, as colour_space.srgb_to_lab_variable
        (each side of a where clipped to where its formula is smooth, for its gradient)."""
        c = (rgb + 1) * (128 / 255)
        decoded = ((c.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4
        t = self.to_xyz @ torch.where(c <= 0.04045, c / 12.92, decoded)
        delta = 6.0 / 29.0
        cube_root = t.clamp_min(delta ** 3) ** (1.0 / 3)
        f = torch.where(t > delta ** 3, cube_root, t / (3 * delta ** 2) + 4.0 / 29.0)
        lab = torch.stack([116.0 * f[:, 1] - 16.0, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])],
                          dim=1)
        return lab / LAB_SCALE

    def forward(self, x_out, t_out):
        batch, channels = x_out.shape[:2]
        x_out, t_out = x_out.flatten(2), t_out.flatten(2)
        count = x_out.shape[2]
        if self.pixels is not None and self.pixels < count:
            draws = torch.stack([self.sample(count) for _ in range(2 * batch)])[:, None]
            draws = draws.expand(-1, channels, -1)
            x_out, t_out = torch.gather(x_out, 2, draws[0::2]), torch.gather(t_out, 2, draws[1::2])
        out = (self.directions @ self.lab(x_out)).sort(dim=2).values
        with torch.no_grad():  # the target's colours need no graph
            target = (self.directions @ self.lab(t_out)).sort(dim=2).values
        return (out - target).abs().mean()


class WeightAverage:
    """train_extensions.WeightAverage: copies of ``models`` whose parameters move by
    1 - decay towards the trained ones after each update, decay growing as
    (1 + n) / (10 + n) up to ``decay`` (0 at the first: a copy). Buffers stay the copies'."""

    def __init__(self, models, decay):
        self.models = [copy.deepcopy(m).requires_grad_(False) for m in models]
        self.decay = decay
        self.count = 0
        self.averages = [p for m in self.models for p in m.parameters()]
        self.weights = [p for m in models for p in m.parameters()]

    @torch.no_grad()
    def update(self):
        decay = min(self.decay, (1 + self.count) / (10 + self.count)) if self.count else 0
        self.count += 1
        torch._foreach_lerp_(self.averages, self.weights, 1 - decay)


class FilmTrainer(Trainer):
    """Trainer of the film design: ``step(x_in, t_out)`` is TextPix2pixUpdater.step with
    gate_weight and blank_loss='colours', then the weight average's update (the demo's
    --ema-decay 0.999), and returns the losses under the names updater.py reports them."""

    def __init__(self, width=64, lr=2e-4, device='cpu', seed=0, design=None, gate_weight=GATE_WEIGHT,
                 ema_decay=EMA_DECAY, dtype=torch.float32):
        self.design, self.dtype = checked_design(design), dtype
        super().__init__(width, lr, device, seed)
        self.gate_weight = gate_weight
        self.colour_loss = ColourLoss().to(self.device, dtype)
        self.average = WeightAverage((self.enc, self.dec), ema_decay) if ema_decay else None

    def make_models(self, width, seed):
        return (m.to(self.dtype) for m in make_film_models(width, self.design, seed=seed))

    def step(self, x_in, t_out):
        for model in (self.enc, self.dec, self.dis):
            model.train()
        features = self.enc(x_in)
        x_out = self.dec(features)
        losses = {}
        blank = blank_examples(x_in)
        if blank.any():
            loss_gen, loss_l1, loss_dis = self.losses_with_blank_examples(x_in, x_out, t_out, blank, losses)
        else:
            y_fake, y_real = self.dis(x_in, x_out), self.dis(x_in, t_out)
            loss_gen, loss_l1 = generator_loss(x_out, t_out, y_fake)
            loss_dis = discriminator_loss(y_real, y_fake)
        loss_gate = self.dec.gate.loss(features[1], in_colour(t_out))
        loss_gen = loss_gen + self.gate_weight * loss_gate
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss_gen, inputs=self.generator_params, retain_graph=loss_dis is not None)
        if loss_dis is not None:  # None: every drawing blank, nothing for the discriminator
            torch.autograd.backward(loss_dis, inputs=self.dis_params)
        for optimizer in self.optimizers:
            optimizer.step()
        if self.average is not None:
            self.average.update()
        losses.update({'dec/loss': loss_gen, 'dec/l1': loss_l1, 'dec/gate': loss_gate,
                       'dis/loss': loss_dis if loss_dis is not None else torch.zeros((), device=x_in.device)})
        return {name: value.detach() if torch.is_tensor(value) else value for name, value in losses.items()}

    def losses_with_blank_examples(self, x_in, x_out, t_out, blank, losses):
        """updater.TextPix2pixUpdater.losses_with_blank_examples: the colour loss on the
        blank examples, the example's losses on the drawn ones, each by its share."""
        batch, blanks = len(blank), int(blank.sum())
        losses['dec/colours'] = self.colour_loss(x_out[blank], t_out[blank])
        loss_gen = L1_WEIGHT * losses['dec/colours'] * (blanks / batch)
        if blanks == batch:
            return loss_gen, 0, None
        drawn = ~blank
        share = (batch - blanks) / batch
        y_fake = self.dis(x_in[drawn], x_out[drawn])
        y_real = self.dis(x_in[drawn], t_out[drawn])
        gen, loss_l1 = generator_loss(x_out[drawn], t_out[drawn], y_fake)
        return loss_gen + share * gen, share * loss_l1, share * discriminator_loss(y_real, y_fake)
