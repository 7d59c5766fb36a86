"""The training step of Chainer's pix2pix example, for drawing + tag plane inputs.

Losses as in the example: the generator (encoder and decoder) minimises
100 * L1(output, truth) + sum(softplus(-D(fake))) / (batch * w * h), the discriminator
sum(softplus(-D(real))) / (batch * w * h) + sum(softplus(D(fake))) / (batch * w * h).

The example runs two backward passes through the decoder: one from the encoder's loss
(which updates the encoder), and, after unchaining the encoder's outputs, one from the
decoder's loss, which is the same number computed from the same graph, so it gives the
decoder exactly the gradients the first pass did. Here one backward pass fills both
networks' gradients, then both are updated; tests/test_updater.py checks that this is
the example's update to the last bit. ``enc/loss`` and ``dec/loss`` are both reported,
as in the example.

Each backward pass follows only the paths to the parameters it updates (``backward``
below): the generator's skips the discriminator's weight gradients, which the example
computes and then clears, and the discriminator's stops at the generated image instead
of computing its gradient. The updated parameters get the same gradients
(tests/test_speedups.py). A ``loss_scale`` given to the updater (for Chainer's mixed16)
scales both passes, as Chainer's own ``Optimizer.update(lossfun)`` does; those passes
are Chainer's full ``loss.backward``, which records the scale for the optimizer.

``make_optimizer`` is the example's (it defines it inside train_facade.py's main).

addition to the example: with the film tag design's saturation gate
(net.SaturationGate), the generator's loss also holds ``gate_weight`` times the gate's
own loss, reported as ``dec/gate``: whether the target is in colour, read from the
target itself (net.in_colour). With ``blank_loss='colours'``, examples whose drawing is
blank paper (``--blank-fraction``: colour from the tags alone) are scored on where their
colours are, not where they are: a blank drawing says nothing about where the figure
stands, so the per-pixel L1 can only be met by a wash of every pose's average, and the
adversarial term, with nothing to anchor it, paints a checkerboard. Their loss is
``colour_distribution_loss`` (weight 100, as L1's), they are left out of the adversarial
terms, and it is reported as ``dec/colours``.

In a step recorded as a CUDA graph (speed/cuda_graph.py) nothing may be decided on the
host: there the blank drawings are weighted instead of picked out
(``losses_with_blank_weights``, the same losses at batch 1, the only batch size recorded
with the colour loss) and the colour loss sorts and draws its pixels on the device
(``recorded_colour_distribution_loss``).
"""
import numpy as np

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer
import chainer.functions as F

import colour_space
import net
import speed
from speed import cuda_graph, fast_conv, fused, graph_ops


def make_optimizer(model, alpha, beta1=0.5):
    """The example's Adam with weight decay 1e-5 (its alpha default, 2e-4, is the caller's)."""
    # deviation from the example: fused.Adam is chainer.optimizers.Adam (same states and
    # snapshots) that, with user_fused on, applies the weight decay inside its update.
    optimizer = fused.Adam(alpha=alpha, beta1=beta1)
    optimizer.setup(model)
    optimizer.add_hook(chainer.optimizer.WeightDecay(0.00001), 'hook_dec')
    return optimizer


# The example's weight of the L1 term (lam1), also the colour loss's on blank drawings.
L1_WEIGHT = 100


def generator_loss(x_out, t_out, y_fake, lam1=L1_WEIGHT, lam2=1):
    batchsize, _, w, h = y_fake.shape
    loss_rec = lam1 * F.mean_absolute_error(x_out, t_out)
    loss_adv = lam2 * F.sum(F.softplus(-y_fake)) / batchsize / w / h
    return loss_rec + loss_adv, loss_rec


def discriminator_loss(y_real, y_fake):
    batchsize, _, w, h = y_real.shape
    loss_real = F.sum(F.softplus(-y_real)) / batchsize / w / h
    loss_fake = F.sum(F.softplus(y_fake)) / batchsize / w / h
    return loss_real + loss_fake


# A blank drawing is all paper: 255 on [-1, 1] (dataset.to_unit).
PAPER = 255 / 128 - 1
# Directions in CIELAB along which colour distributions are compared: L*, a*, b* and four
# of their mixtures, then SPREAD_DIRECTIONS more spread evenly over the half sphere (a
# Fibonacci lattice); each of length 1. Seven alone leave colours free to mix, which the
# region colour error shows (docs/design.md, "The film design").
SPREAD_DIRECTIONS = 25


def colour_directions(named=((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (1, -1, 0), (1, 1, -2), (1, 0, -1)),
                      spread=SPREAD_DIRECTIONS):
    """(len(named) + spread, 3) float32 unit vectors: the named ones, then a Fibonacci
    lattice of ``spread`` points on the half sphere z > 0 (v and -v give the same distance)."""
    named = np.asarray(named, np.float32)
    i = np.arange(spread) + 0.5
    z = i / spread
    r = np.sqrt(1 - z ** 2)
    angle = i * np.pi * (3 - np.sqrt(5))  # the golden angle
    directions = np.concatenate([named / np.linalg.norm(named, axis=1, keepdims=True),
                                 np.stack([r * np.cos(angle), r * np.sin(angle), z], axis=1)])
    return directions.astype(np.float32)


COLOUR_DIRECTIONS = colour_directions()
# The colour loss compares this many pixels of the output with as many of the target, each
# drawn at random (NumPy's random state, kept in snapshots): a quarter of a 128-px picture,
# a quarter of the cost of sorting all of it.
COLOUR_PIXELS = 4096
# Colours are compared in CIELAB / LAB_SCALE: in RGB a navy and a black, or two near-white
# tints, lie closer than the eye (and the palette score, evaluate.palette) sees them.
# LAB_SCALE puts the distance on the scale the RGB one had on the default data's pictures
# (docs/design.md), so that the weight 100 keeps its balance with the drawn examples' L1.
LAB_SCALE = 33.5


def lab_of(rgb):
    """(3, N) colours on the networks' [-1, 1] -> (3, N) CIELAB / LAB_SCALE, differentiable."""
    unit = (rgb + 1) * (128 / 255)  # dataset.to_uint8's pixels, on 0..1
    if cuda_graph.current() is not None:
        return colour_space.srgb_to_lab_variable(unit, recorded_linear_to_xyz) / LAB_SCALE
    return colour_space.srgb_to_lab_variable(unit) / LAB_SCALE


def recorded_linear_to_xyz(linear):
    """colour_space.srgb_to_lab_variable's matrix product in a recorded step: the matrix
    kept on the device (cuda_graph.constant), the product through fast_conv.matmul, where
    the default copies the matrix from the host and calls cuBLAS through CuPy."""
    xp = chainer.backend.get_array_module(linear)
    to_xyz = cuda_graph.constant('linear to XYZ', lambda: colour_space.LINEAR_TO_XYZ_OVER_WHITE, xp)
    return fast_conv.matmul(to_xyz, linear)


def blank_examples(x_in):
    """(B,) bool: the examples whose drawing planes are blank paper."""
    x_in = x_in.array if isinstance(x_in, chainer.Variable) else x_in
    return (x_in[:, :3].reshape(len(x_in), -1).min(axis=1) >= PAPER - 1e-6)


# --blank-ignore-lines: a truth's pixels whose every channel is below this (0..255) are
# its drawn lines, which a blank canvas cannot place; 60 on the networks' [-1, 1].
LINE_LEVEL = 60 / 128 - 1


def line_pixels(t_out):
    """(B, 1, H, W) bool: the truth's line pixels, near black (max channel < LINE_LEVEL).
    A blank example's drawing planes are paper, so its lines are read off the truth."""
    t_out = t_out.array if isinstance(t_out, chainer.Variable) else t_out
    return t_out.max(axis=1, keepdims=True) < LINE_LEVEL


def colour_distribution_loss(x_out, t_out, pixels=COLOUR_PIXELS, t_lines=None):
    """The sliced 1-D Wasserstein distance between an output's and its target's pixel
    colours in CIELAB (lab_of): along each of COLOUR_DIRECTIONS, the mean |difference| of
    the two sorted projections (Rabin et al. 2011), averaged over the directions and
    examples. Zero for any rearrangement of the target's pixels; it scores the palette,
    not the layout.
    With ``pixels`` (None: all), that many random pixels of each stand for the whole.
    With ``t_lines`` ((B, 1, H, W) bool, line_pixels), the target's colours are those of
    its other pixels only, as many drawn from them (with replacement where fewer)."""
    xp = chainer.backend.get_array_module(x_out)
    batch, channels = x_out.shape[:2]
    directions = xp.asarray(COLOUR_DIRECTIONS)
    count = x_out.shape[2] * x_out.shape[3]

    def sample():
        if pixels is None or pixels >= count:
            return slice(None)
        return xp.asarray(np.random.permutation(count)[:pixels])

    def sample_off_lines(lines):
        kept = np.flatnonzero(~chainer.backend.CpuDevice().send(lines).ravel())
        if len(kept) == 0:  # all lines: nothing to leave out
            return sample()
        wanted = count if pixels is None else min(pixels, count)
        drawn = (np.random.permutation(kept)[:wanted] if len(kept) >= wanted
                 else np.random.choice(kept, wanted))
        return xp.asarray(drawn)

    losses = []
    for b in range(batch):
        out = F.matmul(directions, lab_of(F.reshape(x_out[b], (channels, -1))[:, sample()]))  # (K, pixels)
        chosen = sample() if t_lines is None else sample_off_lines(t_lines[b])
        with chainer.no_backprop_mode():  # the target's colours need no graph
            target = xp.sort(directions @ lab_of(t_out[b].reshape(channels, -1)[:, chosen]).array, axis=1)
        order = xp.argsort(out.array, axis=1) + xp.arange(len(directions))[:, None] * out.shape[1]
        losses.append(F.mean(F.absolute(F.get_item(F.reshape(out, (-1,)), order.ravel()) - target.ravel())))
    return sum(losses) / batch


def recorded_colour_distribution_loss(x_out, t_out, pixels=COLOUR_PIXELS):
    """colour_distribution_loss (without ``t_lines``) for a step recorded as a CUDA graph:
    its pixels chosen from numbers drawn on the device (graph_ops.random_choice: new each
    replay, where NumPy's, drawn on the host, would be replayed as recorded), its matrix
    products through fast_conv.matmul and its sorting by graph_ops, where CuPy's sort
    waits for the GPU. The same distance; other random pixels than NumPy's."""
    xp = chainer.backend.get_array_module(x_out)
    batch, channels = x_out.shape[:2]
    directions = cuda_graph.constant('colour directions', lambda: COLOUR_DIRECTIONS, xp)
    count = x_out.shape[2] * x_out.shape[3]

    def picked(x):  # (channels, count) -> (channels, pixels): a new random choice each call
        if pixels is None or pixels >= count:
            return x
        return graph_ops.select(x, *graph_ops.random_choice(count, pixels))

    losses = []
    for b in range(batch):
        out = fast_conv.matmul(directions, lab_of(picked(F.reshape(x_out[b], (channels, -1)))))
        with chainer.no_backprop_mode():  # the target's colours need no graph
            target = fast_conv.matmul(directions, lab_of(picked(t_out[b].reshape(channels, -1)))).array
            target = graph_ops.sort_rows(target)[0]
        losses.append(F.mean(F.absolute(graph_ops.sorted_rows(out) - target)))
    return sum(losses) / batch


def cell_colour_distribution_loss(x_out, t_out, cells):
    """colour_distribution_loss within each cell of a cells x cells grid, every pixel of
    it: the sliced 1-D Wasserstein distance between the output's and the target's colours
    in the same cell, averaged over the directions, cells and examples. Zero for any
    rearrangement of the target's pixels inside their cells: it scores the palette and,
    at the cells' scale, where each colour is, without asking for the mean colour of a
    cell (a blend that is no colour of the picture) where the poses differ."""
    xp = chainer.backend.get_array_module(x_out)
    batch, channels, height, width = x_out.shape
    if height % cells or width % cells:
        raise ValueError('a {}x{} picture is not {} cells a side'.format(height, width, cells))
    directions = xp.asarray(COLOUR_DIRECTIONS)

    def by_cell(x):  # (B, C, H, W) -> (C, B * cells * cells * pixels per cell), cell by cell
        x = F.reshape(x, (batch, channels, cells, height // cells, cells, width // cells))
        return F.reshape(F.transpose(x, (1, 0, 2, 4, 3, 5)), (channels, -1))

    pixels = height * width // cells ** 2
    out = F.reshape(F.matmul(directions, lab_of(by_cell(x_out))), (len(directions), -1, pixels))
    with chainer.no_backprop_mode():  # the target's colours need no graph
        target = xp.sort((directions @ lab_of(by_cell(t_out)).array).reshape(out.shape), axis=2)
    # Indices into out, flattened: each (direction, cell) row sorted on its own.
    order = xp.argsort(out.array, axis=2) + (xp.arange(out.shape[0] * out.shape[1]) * pixels).reshape(
        out.shape[:2] + (1,))
    return F.mean(F.absolute(F.get_item(F.reshape(out, (-1,)), order.ravel()) - target.ravel()))


def lab_picture(x):
    """(B, 3, H, W) pictures on [-1, 1] -> the same in CIELAB / LAB_SCALE (lab_of), differentiable."""
    batch, channels, height, width = x.shape
    lab = lab_of(F.reshape(F.transpose(x, (1, 0, 2, 3)), (channels, -1)))
    return F.transpose(F.reshape(lab, (channels, batch, height, width)), (1, 0, 2, 3))


# layout_loss's distances between cell means: 'l1', the mean absolute difference of the
# RGB means on [-1, 1]; 'lab-squared', the squared Euclidean distance of the CIELAB means
# (lab_of's scale), whose expectation over the poses is least at their mean, the
# picture the layout score (evaluate.text_only_layout_scores) compares with.
LAYOUT_DISTANCES = ('l1', 'lab-squared')


def layout_loss(x_out, t_out, cells=(8,), distance='l1', t_lines=None):
    """The distance (LAYOUT_DISTANCES) between the output's and the target's means over
    the cells of a c x c grid, averaged over the cells, for each c of ``cells``, averaged
    over those grids: where the colours are at those scales, whatever their arrangement
    inside a cell. With ``t_lines`` ((B, 1, H, W) bool, line_pixels), the target's cell
    means are over its other pixels (a cell all lines keeps its plain mean)."""
    side = x_out.shape[2]
    if distance == 'lab-squared':
        x_out, t_out = lab_picture(x_out), lab_picture(t_out).array
    t_out = t_out.array if isinstance(t_out, chainer.Variable) else t_out
    losses = []
    for c in cells:
        out = F.average_pooling_2d(x_out, side // c)
        target = F.average_pooling_2d(t_out, side // c).array
        if t_lines is not None:
            kept = (~t_lines).astype(t_out.dtype)
            share = F.average_pooling_2d(kept, side // c).array
            kept_mean = F.average_pooling_2d(t_out * kept, side // c).array / share.clip(1e-6, None)
            target = target * (share == 0) + kept_mean * (share > 0)
        if distance == 'l1':
            losses.append(F.mean_absolute_error(out, target))
        else:
            losses.append(F.sum(F.square(out - target)) / (out.shape[0] * c * c))
    return sum(losses) / len(losses)


# The blank examples' loss options: (flag, attribute, default); the defaults are the loss
# before them (docs/design.md, "Tags alone").
BLANK_LOSS_FLAGS = (('--blank-colour-cells', 'blank_colour_cells', [1]),
                    ('--blank-colour-pool', 'blank_colour_pool', 1),
                    ('--blank-layout-weight', 'blank_layout_weight', 0.0),
                    ('--blank-layout-cells', 'blank_layout_cells', [8]),
                    ('--blank-layout-distance', 'blank_layout_distance', 'l1'),
                    ('--blank-ignore-lines', 'blank_ignore_lines', False))


def add_blank_loss_arguments(parser):
    """--blank-loss and the options of its 'colours' loss (train_facade_text.py)."""
    parser.add_argument('--blank-loss', choices=('pixels', 'colours'), default='pixels',
                        help="Blank examples' loss: the example's (per-pixel L1 and adversarial) or the "
                             "distance between the output's and the target's colour distributions")
    parser.add_argument('--blank-colour-cells', type=compat.number(int, 1, 64), nargs='+', default=[1],
                        metavar='N', help="colours: compare the colour distributions within each cell of an "
                                          "N x N grid (1: over the whole canvas); several: their mean")
    parser.add_argument('--blank-colour-pool', type=compat.number(int, 1, 64), default=1, metavar='K',
                        help='colours: compare the colours of K x K blocks (their mean) instead of pixels')
    parser.add_argument('--blank-layout-weight', type=compat.number(float, 0), default=0.0, metavar='W',
                        help='colours: add W times the distance between the output and the target averaged '
                             'over coarse cells (0: none)')
    parser.add_argument('--blank-layout-cells', type=compat.number(int, 1, 64), nargs='+', default=[8],
                        metavar='N', help="colours: the grids (N x N cells) of --blank-layout-weight's term")
    parser.add_argument('--blank-layout-distance', choices=LAYOUT_DISTANCES, default='l1',
                        help="colours: --blank-layout-weight's distance between cell means: L1 in RGB, or "
                             "the squared distance in CIELAB (least at the poses' mean)")
    parser.add_argument('--blank-ignore-lines', action='store_true',
                        help="colours: leave the truth's line pixels (near black, updater.line_pixels) out of"
                             " the colour loss's truth and the layout term's truth cell means")


def check_blank_loss_arguments(parser, args):
    """parser.error where a colour-loss option is given without --blank-loss colours or
    does not divide the picture."""
    changed = [flag for flag, name, default in BLANK_LOSS_FLAGS if getattr(args, name) != default]
    if changed and args.blank_loss != 'colours':
        parser.error('{} only with --blank-loss colours'.format(', '.join(changed)))
    if args.blank_ignore_lines and (args.blank_colour_cells != [1] or args.blank_colour_pool != 1):
        parser.error('--blank-ignore-lines only with --blank-colour-cells 1 and --blank-colour-pool 1')
    grids = [cells * args.blank_colour_pool for cells in args.blank_colour_cells] + args.blank_layout_cells
    for cells in grids:
        if args.size % cells:
            parser.error('a grid of {} cells (--blank-colour-pool blocks counted in pixels) does not divide '
                         '--size {}'.format(cells, args.size))


def blank_loss_options(args):
    """The updater's keyword arguments for the blank examples' loss."""
    return dict(blank_loss=args.blank_loss, blank_colour_cells=tuple(args.blank_colour_cells),
                blank_colour_pool=args.blank_colour_pool,
                blank_layout_weight=args.blank_layout_weight,
                blank_layout_cells=tuple(args.blank_layout_cells),
                blank_layout_distance=args.blank_layout_distance,
                blank_ignore_lines=args.blank_ignore_lines)


def recording_refusal(batchsize, blank_loss='pixels', blank_colour_cells=(1,), blank_colour_pool=1,
                      blank_layout_weight=0, blank_ignore_lines=False, **_):
    """Why a step with these settings (blank_loss_options' names) is not recorded as a
    CUDA graph, or None. The colour loss of blank drawings is recorded at batch 1 only:
    at batch > 1 the discriminator's batch norm sees the drawn examples alone, a batch whose
    size the host picks each step; its cell, block, layout and line options keep their
    host-side choices (cupy.sort, index lists) and have no recorded path yet."""
    if blank_loss != 'colours':
        return None
    if batchsize != 1:
        return 'the colour loss of blank drawings is recorded at batch 1 only'
    changed = [flag for flag, changed in (('--blank-colour-cells', tuple(blank_colour_cells) != (1,)),
                                          ('--blank-colour-pool', blank_colour_pool != 1),
                                          ('--blank-layout-weight', blank_layout_weight != 0),
                                          ('--blank-ignore-lines', bool(blank_ignore_lines)))
               if changed]
    return '{} of the colour loss not recordable'.format(', '.join(changed)) if changed else None


def backward(loss, params, loss_scale=None):
    """``loss.backward()`` into ``params`` only: chainer.grad runs backprop along just the
    paths from the loss to them and leaves the gradients in ``param.grad`` as backward
    does. With a loss scale, or with ``user_fast_paths`` 'off' (fast_conv.py), it is the
    example's full ``loss.backward()``: only that records the scale for the optimizer."""
    if loss_scale is not None or speed.setting('user_fast_paths') == 'off':
        for param in params:
            param.cleargrad()
        loss.backward(loss_scale=loss_scale)
        return
    grads = chainer.grad([loss], params)
    for param, grad in zip(params, grads):
        param.grad_var = grad


class TextPix2pixUpdater(chainer.training.StandardUpdater):
    """Updates encoder, decoder and discriminator once per mini-batch."""

    def __init__(self, *args, **kwargs):
        self.enc, self.dec, self.dis = kwargs.pop('models')
        # The example's weight of the adversarial term (lam2); 0 trains the generator on
        # L1 alone, the ablation in docs/results.md.
        self.adversarial_weight = kwargs.pop('adversarial_weight', 1)
        # The weight of the saturation gate's own loss (the film design; 0: none).
        self.gate_weight = kwargs.pop('gate_weight', 0)
        # 'pixels' (the example's losses for every example) or 'colours' (see above).
        self.blank_loss = kwargs.pop('blank_loss', 'pixels')
        # With 'colours': the grids whose cells the colour loss compares, averaged over the
        # grids (1: the whole canvas, colour_distribution_loss; N > 1: within each cell of
        # an N x N grid, cell_colour_distribution_loss), and layout_loss's weight beside
        # it (0: none), its grids and its distance.
        self.blank_colour_cells = kwargs.pop('blank_colour_cells', (1,))
        self.blank_colour_pool = kwargs.pop('blank_colour_pool', 1)  # colours of k x k blocks (1: pixels)
        self.blank_layout_weight = kwargs.pop('blank_layout_weight', 0)
        self.blank_layout_cells = kwargs.pop('blank_layout_cells', (8,))
        self.blank_layout_distance = kwargs.pop('blank_layout_distance', 'l1')
        # With 'colours': leave the truth's line pixels (line_pixels) out of both terms' truth.
        self.blank_ignore_lines = kwargs.pop('blank_ignore_lines', False)
        # The colour loss's random pixels per picture (None: all of them).
        self.colour_pixels = COLOUR_PIXELS
        record = kwargs.pop('cuda_graph', False)
        super().__init__(*args, **kwargs)
        # addition to the example: with ``cuda_graph=True`` the step is recorded once as a
        # CUDA graph and replayed (cuda_graph.py; on a CPU, or where the step cannot be
        # recorded, it runs as usual and ``graph.status()`` says why).
        self.graph = cuda_graph.StepGraph(self.get_all_optimizers().values()) if record else None
        if self.graph is not None:
            refusal = recording_refusal(self.get_iterator('main').batch_size, self.blank_loss,
                                        self.blank_colour_cells, self.blank_colour_pool,
                                        self.blank_layout_weight, self.blank_ignore_lines)
            if refusal is not None:
                self.graph.refuse(refusal)

    def update_core(self):
        batch = self.get_iterator('main').next()
        inputs = self.converter(batch, self.device)
        if self.graph is None:
            self.step(*inputs)
        else:
            self.graph.run(self.step, *inputs)

    def step(self, x_in, t_out):
        """One update of the three networks on a batch already on the device."""
        enc_optimizer = self.get_optimizer('enc')
        dec_optimizer = self.get_optimizer('dec')
        dis_optimizer = self.get_optimizer('dis')
        enc, dec, dis = self.enc, self.dec, self.dis

        features = enc(x_in)
        x_out = dec(features)

        blank = blank_examples(x_in) if self.blank_loss == 'colours' else None
        if blank is not None and cuda_graph.current() is not None:  # no choice on the host
            loss_gen, loss_l1, loss_dis = self.losses_with_blank_weights(x_in, x_out, t_out, blank)
        elif blank is not None and blank.any():
            loss_gen, loss_l1, loss_dis = self.losses_with_blank_examples(x_in, x_out, t_out, blank)
        else:
            y_fake = dis(x_in, x_out)
            y_real = dis(x_in, t_out)
            loss_gen, loss_l1 = generator_loss(x_out, t_out, y_fake, lam2=self.adversarial_weight)
            loss_dis = None
        if self.gate_weight and hasattr(dec, 'gate'):
            loss_gate = dec.gate.loss(features[1], net.in_colour(t_out))
            loss_gen = loss_gen + self.gate_weight * loss_gate
            chainer.report({'gate': loss_gate}, dec)
        backward(loss_gen, list(enc.params()) + list(dec.params()), self.loss_scale)
        enc_optimizer.update()
        dec_optimizer.update()
        chainer.report({'loss': loss_gen}, enc)
        # deviation from the example: dec/l1 also reports the reconstruction term as it
        # enters the loss (100 * L1), to watch it apart from the adversarial term.
        chainer.report({'loss': loss_gen, 'l1': loss_l1}, dec)

        x_out.unchain_backward()
        if loss_dis is None:
            loss_dis = discriminator_loss(y_real, y_fake)
        backward(loss_dis, list(dis.params()), self.loss_scale)
        dis_optimizer.update()
        chainer.report({'loss': loss_dis}, dis)

    def losses_with_blank_examples(self, x_in, x_out, t_out, blank):
        """The generator's and discriminator's losses when some drawings are blank: the
        example's on the drawn examples, colour_distribution_loss on the blank ones (each
        example's share of the batch kept). The discriminator sees the drawn ones only: a
        batch of blank ones costs it nothing."""
        xp = chainer.backend.get_array_module(blank)
        batch, drawn = len(blank), xp.flatnonzero(~blank)
        blank_ones = xp.flatnonzero(blank)
        out, truth = x_out[blank_ones], t_out[blank_ones]
        if self.blank_colour_pool > 1:
            # The colours of k x k blocks: a truth's thin lines become the darker tint of
            # the block they cross, which a blank canvas can paint where the figure is,
            # instead of pure black that it can only heap somewhere (bars).
            out = F.average_pooling_2d(out, self.blank_colour_pool)
            truth = F.average_pooling_2d(truth, self.blank_colour_pool).array
        # --blank-ignore-lines: the truth's near-black lines (the drawing planes are paper,
        # so they are read off the truth) are asked for neither as colours nor in cell means.
        lines = line_pixels(t_out[blank_ones]) if self.blank_ignore_lines else None
        if lines is not None and (self.blank_colour_pool > 1 or tuple(self.blank_colour_cells) != (1,)):
            raise ValueError('blank_ignore_lines only with blank_colour_cells (1,) and blank_colour_pool 1')
        losses = [cell_colour_distribution_loss(out, truth, cells) if cells > 1
                  else colour_distribution_loss(out, truth, self.colour_pixels, t_lines=lines)
                  for cells in self.blank_colour_cells]
        loss_colours = losses[0] if len(losses) == 1 else sum(losses) / len(losses)
        chainer.report({'colours': loss_colours}, self.dec)
        loss_blank = loss_colours
        if self.blank_layout_weight:
            loss_layout = layout_loss(x_out[blank_ones], t_out[blank_ones], self.blank_layout_cells,
                                      self.blank_layout_distance, t_lines=lines)
            chainer.report({'layout': loss_layout}, self.dec)
            loss_blank = loss_blank + self.blank_layout_weight * loss_layout
        loss_gen = L1_WEIGHT * loss_blank * (len(blank_ones) / batch)
        loss_l1 = 0
        loss_dis = chainer.Variable(xp.zeros((), x_out.dtype))
        if len(drawn):
            share = len(drawn) / batch
            y_fake = self.dis(x_in[drawn], x_out[drawn])
            y_real = self.dis(x_in[drawn], t_out[drawn])
            gen, loss_l1 = generator_loss(x_out[drawn], t_out[drawn], y_fake, lam2=self.adversarial_weight)
            loss_gen = loss_gen + share * gen
            loss_l1 = share * loss_l1
            loss_dis = share * discriminator_loss(y_real, y_fake)
        return loss_gen, loss_l1, loss_dis

    def losses_with_blank_weights(self, x_in, x_out, t_out, blank):
        """losses_with_blank_examples for a recorded step, at batch 1 (recording_refusal):
        both kinds of loss computed and weighted by whether the drawing is blank, instead of
        a choice on the host. The weights are 0 and 1, so the losses and gradients are
        those of losses_with_blank_examples (the discriminator's, all 0 for a blank drawing,
        are the zeros Chainer's optimizer gives a parameter without a gradient). The
        differences: the discriminator also runs on a blank example (its batch-norm running
        averages, which nothing reads, move), and ``dec/colours`` is reported at every
        step, 0 for a drawn example, as ``dec/l1`` is for a blank one."""
        if len(blank) != 1:
            raise cuda_graph.Unsupported(recording_refusal(len(blank), self.blank_loss))
        is_blank = blank.astype(x_out.dtype).reshape(())
        drawn = 1 - is_blank
        loss_colours = recorded_colour_distribution_loss(x_out, t_out, self.colour_pixels) * is_blank
        chainer.report({'colours': loss_colours}, self.dec)
        y_fake = self.dis(x_in, x_out)
        y_real = self.dis(x_in, t_out)
        gen, loss_l1 = generator_loss(x_out, t_out, y_fake, lam2=self.adversarial_weight)
        loss_gen = L1_WEIGHT * loss_colours + gen * drawn
        return loss_gen, loss_l1 * drawn, discriminator_loss(y_real, y_fake) * drawn
