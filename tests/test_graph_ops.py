"""What a recorded film step computes in place of what CuPy cannot record, on the CPU
stand-in (tests/cuda_on_cpu.py): speed/graph_ops.py's sort and random choice, fast_conv's
Linear products and 1x1 convolution through the cuBLAS stand-in, the device constants,
and updater's recorded colour loss and blank-drawing weights, each against the ordinary
step's functions. Tolerances: float32 products summed in another order (cuBLAS's column
by column, NumPy's by blocks) agree to about 1e-6 of their scale; 1e-5 leaves room."""
import contextlib

import numpy as np
import pytest

import compat  # noqa: F401
import chainer
import chainer.functions as F

import colour_space
import net
import updater
from speed import cuda_graph, fast_conv, graph_ops

pytestmark = pytest.mark.cuda_on_cpu
FLOAT32 = dict(rtol=1e-5, atol=1e-5)


@contextlib.contextmanager
def in_step(graph, step=0):
    """As inside ``graph``'s step number ``step`` (StepGraph._running), on the stand-in."""
    cupy = chainer.backends.cuda.cupy
    graph.scalars = cupy.zeros(1 + len(graph.rules), np.float64)
    graph.pool, graph.steps = cupy.cuda.MemoryPool(), step
    with graph._running([step] + [0.0] * len(graph.rules)):
        yield graph


def gradients(function, *arrays):
    """function(*Variables) summed against fixed random weights: its value and the
    gradients of every input."""
    variables = [chainer.Variable(a.copy()) for a in arrays]
    y = function(*variables)
    weights = np.random.RandomState(9).standard_normal(y.shape).astype(y.dtype)
    F.sum(y * weights).backward()
    return [y.array] + [v.grad for v in variables]


def assert_all_close(got, want, **tolerance):
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **(tolerance or FLOAT32))


# ---------------------------------------------------------------- the sort


@pytest.mark.parametrize('fibers', [False, True])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_sort_rows_kernel_sorts_as_numpy_with_ties_in_index_order(fibers, dtype, kernels_on_cpu, monkeypatch):
    """Rows of 1, 5 (not a power of two) and 300 elements with many ties, on both of the
    stand-in's launchers: NumPy's sorted values, its stable argsort, and the ranks that
    put the values back."""
    import cuda_on_cpu
    monkeypatch.setattr(cuda_on_cpu, 'FIBERS', fibers)
    monkeypatch.setattr(graph_ops, '_module', [])
    rng = np.random.RandomState(0)
    for rows, count in ((3, 1), (2, 5), (4, 300)):
        x = rng.randint(0, 20, (rows, count)).astype(dtype) - dtype(0.5)
        values, order, rank = graph_ops.sort_rows(x)
        assert values.dtype == dtype and order.dtype == np.int32 and rank.dtype == np.int64
        assert np.array_equal(values, np.sort(x, axis=1))
        assert np.array_equal(order, np.argsort(x, axis=1, kind='stable'))
        assert np.array_equal(values.ravel()[rank], x)


def test_sorted_rows_gradient_is_get_item_of_the_argsort(step_on_cpu):
    """updater.colour_distribution_loss's F.get_item(x, argsort(x)) and SortedRows: the
    same values and gradients, exactly (each is a permutation)."""
    x = np.random.RandomState(1).standard_normal((7, 1000)).astype(np.float32)

    def by_get_item(v):
        order = np.argsort(v.array, axis=1) + np.arange(len(v))[:, None] * v.shape[1]
        return F.reshape(F.get_item(F.reshape(v, (-1,)), order.ravel()), v.shape)

    assert_all_close(gradients(graph_ops.sorted_rows, x), gradients(by_get_item, x), rtol=0, atol=0)


# ---------------------------------------------------------------- the random choice


def test_random_choice_is_distinct_indices_new_each_step_and_fair(step_on_cpu):
    """Distinct indices in range with their places; another choice at another step (and
    at the next draw of a step); over 200 steps each index chosen about as often."""
    graph = cuda_graph.StepGraph([], seed=5)
    count, size, steps = 64, 16, 200
    chosen_counts = np.zeros(count)
    choices = []
    for step in range(steps):
        with in_step(graph, step):
            chosen, places = graph_ops.random_choice(count, size)
            again, _ = graph_ops.random_choice(count, size)
        assert chosen.shape == (size,) and len(set(chosen.tolist())) == size
        assert chosen.min() >= 0 and chosen.max() < count
        assert np.array_equal(places[chosen], np.arange(size))
        assert (np.delete(places, chosen) >= size).all()
        assert not np.array_equal(np.sort(again), np.sort(chosen))
        chosen_counts[chosen] += 1
        choices.append(tuple(chosen))
    assert len(set(choices)) == steps
    # Each index: Binomial(200, 1/4), mean 50, standard deviation 6.1; 5.5 of them apart.
    assert abs(chosen_counts - steps * size / count).max() < 34


def test_select_is_get_item_of_the_columns(step_on_cpu):
    """graph_ops.select and F.get_item(x, (slice(None), chosen)): the same values and
    gradients, exactly; columns not chosen get gradient 0."""
    graph = cuda_graph.StepGraph([], seed=6)
    x = np.random.RandomState(2).standard_normal((3, 50)).astype(np.float32)
    with in_step(graph):
        chosen, places = graph_ops.random_choice(50, 20)
    got = gradients(lambda v: graph_ops.select(v, chosen, places), x)
    assert_all_close(got, gradients(lambda v: F.get_item(v, (slice(None), chosen)), x), rtol=0, atol=0)
    assert (np.delete(got[1], chosen, axis=1) == 0).all()


# ---------------------------------------------------------------- products and constants


def test_linear_products_in_a_step_are_chainers(step_on_cpu):
    """fast_conv.linear (with and without a bias), fast_conv.matmul and fast_conv.Linear in
    a StepGraph's step, through cuda_graph's ctypes calls into the cuBLAS stand-in, against
    Chainer's F.linear and F.matmul: values and the gradients of every input."""
    import cuda_on_cpu
    rng = np.random.RandomState(3)
    x, W, b = (rng.standard_normal(shape).astype(np.float32) for shape in ((5, 16), (64, 16), (64,)))
    a = rng.standard_normal((32, 3)).astype(np.float32)
    lab = rng.standard_normal((3, 40)).astype(np.float32)
    graph = cuda_graph.StepGraph([], seed=0)
    calls = cuda_on_cpu.cublas_calls('cublasSgemmStridedBatched')
    with in_step(graph):
        got = [gradients(fast_conv.linear, x, W, b), gradients(fast_conv.linear, x, W),
               gradients(lambda v: fast_conv.matmul(a, v), lab)]
        link = fast_conv.Linear(16, 64)
        got_link = link(x).array
    # 3 products for each linear (y, then gx and gW), 2 for matmul (y, its second's gradient), 1 for the link
    assert cuda_on_cpu.cublas_calls('cublasSgemmStridedBatched') == calls + 9
    want = [gradients(F.linear, x, W, b), gradients(F.linear, x, W), gradients(lambda v: F.matmul(a, v), lab)]
    for g, w in zip(got, want):
        assert_all_close(g, w)
    np.testing.assert_allclose(got_link, F.linear(x, link.W, link.b).array, **FLOAT32)


def test_gate_convolution_in_a_step_is_chainers(step_on_cpu):
    """The saturation gate's 1x1 convolution to grey (fast_conv.convolution_2d in a step)
    and F.convolution_2d: the same values and gradients."""
    rgb = np.random.RandomState(4).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    luma = np.asarray(net.LUMA, np.float32).reshape(1, 3, 1, 1)
    with in_step(cuda_graph.StepGraph([], seed=0)):
        got = gradients(lambda v: fast_conv.convolution_2d(v, luma), rgb)
    assert_all_close(got, gradients(lambda v: F.convolution_2d(v, luma), rgb))


def test_constants_are_made_once_before_the_recording(step_on_cpu):
    """In a StepGraph's steps a constant is copied to the device at its first use and kept;
    asked for first while recording, it refuses the recording; outside the steps it is
    made each time, on the CPU make's own array."""
    graph = cuda_graph.StepGraph([], seed=0)
    made = []

    def make():
        made.append(1)
        return np.arange(4)
    with in_step(graph):
        first = cuda_graph.constant('k', make, np)
        assert cuda_graph.constant('k', make, np) is first and len(made) == 1
        graph.capturing = True
        assert cuda_graph.constant('k', make, np) is first
        with pytest.raises(cuda_graph.Unsupported, match="constant 'other' first asked for while recording"):
            cuda_graph.constant('other', make, np)
        graph.capturing = False
    host = np.arange(3)
    assert cuda_graph.constant('k', lambda: host, np) is host


def test_the_film_networks_in_a_step_compute_the_ordinary_forward_pass(step_on_cpu):
    """Encoder, decoder and discriminator of the film design (tag slots read back, FiLM,
    the gate, the projection) in a StepGraph's step, dropout off, against the same
    networks outside it: the same outputs, and the step's constants made once."""
    from test_updater import fixed_batch
    np.random.seed(0)
    design = net.film_design()
    enc, dec, dis = (net.Encoder(4, width=4, design=design), net.Decoder(3, width=4, design=design),
                     net.Discriminator(4, 3, width=4, design=design))
    x = np.stack([example[0] for example in fixed_batch(2)])
    x[:, 3] = 0
    x[:, 3, 4:12, 4:12] = 0.5  # one tag's cell
    graph = cuda_graph.StepGraph([], seed=0)
    runs = []
    for step in (True, False):
        inside = in_step(graph) if step else contextlib.nullcontext()
        with inside, chainer.using_config('user_dropout', False):
            features = enc(x)
            y = dec(features)
            runs.append([y.array, dis(x, y).array, features[1].c.array])
    assert_all_close(*runs)
    # the encoder's and the discriminator's TagReaders share their centres; FiLM's ones
    # are one array for the encoder's 7 layers, another for the decoder's
    assert sorted(key[0] for key in graph.constants) == [
        'cell centres', 'coordinate planes', 'film ones', 'film ones', 'luma']


# ---------------------------------------------------------------- the colour loss


def test_recorded_lab_is_colour_spaces(step_on_cpu):
    """updater's Lab of a recorded step and colour_space.srgb_to_lab_variable: the same
    values and gradients (colours on both sides of sRGB's knee)."""
    rgb = np.random.RandomState(5).uniform(0, 1, (3, 500)).astype(np.float32)
    rgb[:, :50] *= 0.05
    with in_step(cuda_graph.StepGraph([], seed=0)):
        got = gradients(lambda c: colour_space.srgb_to_lab_variable(c, updater.recorded_linear_to_xyz), rgb)
    assert_all_close(got, gradients(colour_space.srgb_to_lab_variable, rgb), rtol=1e-5, atol=1e-4)


def test_recorded_colour_loss_is_the_colour_loss(step_on_cpu):
    """With every pixel compared (no random choice), the recorded colour loss and
    colour_distribution_loss: the same value and gradient."""
    rng = np.random.RandomState(6)
    x, t = (np.tanh(rng.standard_normal((2, 3, 16, 16))).astype(np.float32) for _ in range(2))
    with in_step(cuda_graph.StepGraph([], seed=0)):
        got = gradients(lambda v: updater.recorded_colour_distribution_loss(v, t, pixels=None), x)
    want = gradients(lambda v: updater.colour_distribution_loss(v, t, pixels=None), x)
    assert_all_close(got, want)


def test_recorded_colour_loss_draws_its_pixels_each_step(step_on_cpu):
    """With a random choice of pixels: new ones at each step (the loss changes), and a
    picture with one colour everywhere scores as with all its pixels."""
    rng = np.random.RandomState(7)
    x, t = (np.tanh(rng.standard_normal((1, 3, 32, 32))).astype(np.float32) for _ in range(2))
    graph = cuda_graph.StepGraph([], seed=0)
    losses = []
    for step in range(3):
        with in_step(graph, step):
            losses.append(float(updater.recorded_colour_distribution_loss(x, t, pixels=100).array))
    assert len(set(losses)) == 3
    flat = np.full_like(x, 0.25)
    with in_step(graph, 4):
        got = float(updater.recorded_colour_distribution_loss(flat, np.full_like(t, -0.5), pixels=100).array)
    want = float(updater.colour_distribution_loss(flat, np.full_like(t, -0.5), pixels=None).array)
    assert abs(got - want) <= 1e-6 * want


def test_the_recorded_blank_weights_give_the_ordinary_losses_and_gradients(step_on_cpu):
    """The film design's step at batch 1 with --blank-loss colours, one drawn example then
    one blank, every pixel in the colour loss and dropout off: the ordinary step (the
    host picks the blank drawings) and the step inside a StepGraph (weights, the device's
    sort, cuBLAS through ctypes) report the same losses and leave the same gradients in
    every parameter (the discriminator's only its weight decay's for the blank drawing,
    rate * p). The weights are not updated (lr 0), so each example starts from the same
    networks."""
    from test_updater import fixed_batch, make_updater
    design = net.film_design()
    drawn = fixed_batch(1)[0]
    blank = (np.concatenate([np.full((3, 128, 128), updater.PAPER, np.float32), drawn[0][3:]]), drawn[1])
    for example in (drawn, blank):
        runs = []
        for recorded in (False, True):
            np.random.seed(0)
            models = (net.Encoder(4, width=4, design=design), net.Decoder(3, width=4, design=design),
                      net.Discriminator(4, 3, width=4, design=design))
            step = make_updater(models, [example], lr=0, blank_loss='colours', gate_weight=1,
                                cuda_graph=recorded)
            step.colour_pixels = None
            if recorded:
                step.graph.warmup = 100  # every step as a StepGraph runs it before recording
            reporter, observation = chainer.Reporter(), {}
            for name, link in zip(('enc', 'dec', 'dis'), models):
                reporter.add_observer(name, link)
            with reporter.scope(observation), chainer.using_config('user_dropout', False):
                step.update()
            if recorded:
                assert step.graph.status() == 'not yet recorded (1 of 100 ordinary steps run)'
            grads = {name + path: p.grad.copy() for name, link in zip(('enc', 'dec', 'dis'), models)
                     for path, p in link.namedparams()}
            runs.append(({k: float(chainer.as_array(v)) for k, v in observation.items()}, grads))
        (want_losses, want_grads), (got_losses, got_grads) = runs
        if example is blank:
            for path, p in models[2].namedparams():
                np.testing.assert_allclose(got_grads['dis' + path], 1e-5 * p.array, rtol=1e-6, atol=0)
        else:
            assert got_losses.pop('dec/colours') == 0  # reported at every recorded step
        assert sorted(got_losses) == sorted(want_losses)
        for key in want_losses:
            np.testing.assert_allclose(got_losses[key], want_losses[key], rtol=1e-5, err_msg=key)
        # Each parameter's gradient within ``tolerance`` of its largest plus 1e-2 of its
        # network's largest (a convolution's bias before batch norm has gradient 0 up to
        # rounding of terms on the network's scale: batch norm takes the mean out). Drawn:
        # 5e-4 (seen: 1e-4). Blank: 5e-3 (seen: 4e-4), since rounding decides the sorted
        # order of near-equal projections, and with it which target value a few pixels
        # are sent to.
        tolerance = 5e-3 if example is blank else 5e-4
        network_scale = {name: max(float(abs(g).max()) for k, g in want_grads.items() if k.startswith(name))
                         for name in ('enc', 'dec', 'dis')}
        for key in want_grads:
            atol = tolerance * (float(abs(want_grads[key]).max()) + 1e-2 * network_scale[key[:3]])
            np.testing.assert_allclose(got_grads[key], want_grads[key], rtol=0, atol=atol, err_msg=key)
