"""speed/fused.py against Chainer's own functions: batch norm + FiLM + dropout + activation
(outputs, every gradient, running averages) and Adam + WeightDecay, in float64, on NumPy
everywhere and on CuPy where there is a GPU (the same tests; skipped without one); the
batch-norm tests and the Adam launches also through the CUDA kernels compiled for the CPU
(tests/cuda_on_cpu.py); then a few training updates of the demo network with user_fused
on and off."""
import shutil
import subprocess

import numpy as np
import pytest

import compat  # noqa: F401
import chainer
from chainer import gradient_check
import chainer.functions as F
import chainer.links as L

import bench
from speed import fast_conv
from speed import fused
import net
import speed


def gpu_available():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, or CuPy without a driver or device
        return False


XPS = ['numpy', pytest.param('cupy', marks=pytest.mark.skipif(not gpu_available(), reason='no GPU'))]
BN_XPS = XPS[:1] + [pytest.param('cuda_on_cpu', marks=pytest.mark.cuda_on_cpu)] + XPS[1:]
ACTIVATIONS = [F.relu, fast_conv.leaky_relu, None]


def module(name, request=None):
    """The test's array module. 'cuda_on_cpu': NumPy arrays that BatchNormActivation takes
    through its CuPy path, whose CUDA kernels run on the CPU (the kernels_on_cpu fixture)."""
    if name == 'cuda_on_cpu':
        request.getfixturevalue('kernels_on_cpu')
        monkeypatch = request.getfixturevalue('monkeypatch')
        node = fused.BatchNormActivation
        monkeypatch.setattr(node, '_forward_numpy', node._forward_cupy)
        monkeypatch.setattr(node, '_backward_numpy', node._backward_cupy)
        return np
    return np if name == 'numpy' else chainer.backends.cuda.cupy


def dropout_numbers(xp, xp_name, rng, shape):
    """Numbers on [0, 1) as F.dropout draws them: float64 on NumPy, float32 on CuPy (the
    kernels read float32)."""
    numbers = rng.rand(*shape)
    return numbers if xp_name == 'numpy' else xp.asarray(numbers, np.float32)


def close(got, want, rtol, floor=1e-12):
    """|got - want| within rtol of want's largest value (at least ``floor``), on the host."""
    got, want = (np.asarray(chainer.backends.cuda.to_cpu(a), np.float64) for a in (got, want))
    assert got.shape == want.shape
    scale = max(float(np.abs(want).max()), floor)
    error = float(np.abs(got - want).max())
    assert error <= rtol * scale, 'max difference {:.2e} of scale {:.2e}'.format(error, scale)


def chainer_reference(bn, x, film, rand, ratio, activation):
    """What net.ConvBNR computes with Chainer's functions, the dropout mask from ``rand``
    as F.dropout makes it."""
    h = bn(x)
    if film is not None:
        h = F.bias(F.scale(h, film[0], axis=0), film[1], axis=0)
    if rand is not None:
        h = F.dropout(h, ratio, mask=(rand >= ratio) * x.dtype.type(1 / (1 - ratio)))
    return activation(h) if activation is not None else h


def random_inputs(xp, shape, with_film, seed=0):
    rng = np.random.RandomState(seed)
    n, c = shape[:2]
    x = rng.normal(0.3, 2.0, shape)
    gy = rng.normal(0, 1, shape)
    film = (rng.uniform(0.5, 1.5, (n, c)), rng.normal(0, 0.5, (n, c))) if with_film else None

    def send(a):
        return xp.asarray(a)

    return send(x), send(gy), None if film is None else tuple(send(a) for a in film)


def make_bn(c, xp, seed=1):
    rng = np.random.RandomState(seed)
    bn = L.BatchNormalization(c, dtype=np.float64)
    bn.gamma.array[:] = rng.uniform(0.5, 1.5, c)
    bn.beta.array[:] = rng.normal(0, 0.5, c)
    bn.avg_mean[:] = rng.normal(0, 1, c)
    bn.avg_var[:] = rng.uniform(0.5, 2, c)
    if xp is not np:
        bn.to_device(chainer.get_device('@cupy:0'))
    bn.cleargrads()  # Chainer starts gradients at NaN
    return bn


@pytest.mark.parametrize('xp_name', BN_XPS)
@pytest.mark.parametrize('activation', ACTIVATIONS, ids=['relu', 'leaky', 'none'])
@pytest.mark.parametrize('with_film', [False, True], ids=['', 'film'])
@pytest.mark.parametrize('dropout', [False, True], ids=['', 'dropout'])
def test_batch_norm_activation_matches_chainer(xp_name, activation, with_film, dropout, request):
    xp = module(xp_name, request)
    shape = (3, 5, 6, 4)
    x, gy, film = random_inputs(xp, shape, with_film)
    ratio = 0.5
    rand = dropout_numbers(xp, xp_name, np.random.RandomState(2), shape) if dropout else None
    results = {}
    for label in ('chainer', 'fused'):
        bn = make_bn(shape[1], xp)
        xv = chainer.Variable(x.copy())
        filmv = None if film is None else tuple(chainer.Variable(a.copy()) for a in film)
        if label == 'chainer':
            y = chainer_reference(bn, xv, filmv, rand, ratio, activation)
        else:
            node = fused.BatchNormActivation(bn.eps, (bn.avg_mean, bn.avg_var, bn.decay), rand, ratio,
                                             fused.ACTIVATION_SLOPES[activation])
            y = node.apply((xv, bn.gamma, bn.beta) + (filmv or ()))[0]
        y.grad = gy
        y.backward()
        results[label] = {'y': y.array, 'gx': xv.grad, 'ggamma': bn.gamma.grad, 'gbeta': bn.beta.grad,
                          'avg_mean': bn.avg_mean, 'avg_var': bn.avg_var}
        if film is not None:
            results[label].update(gscale=filmv[0].grad, gshift=filmv[1].grad)
    for key, want in results['chainer'].items():
        close(results['fused'][key], want, 1e-12)
    # the activation and dropout did something here: the outputs are not batch norm's alone
    if activation is F.relu or dropout:
        assert float((results['fused']['y'] == 0).mean()) > 0.2


@pytest.mark.parametrize('xp_name', BN_XPS)
@pytest.mark.parametrize('slope', [0.0, 0.2, None])
def test_batch_norm_activation_gradients_are_numerical_gradients(xp_name, slope, request):
    """chainer.gradient_check on every input, FiLM and dropout included (float64)."""
    xp = module(xp_name, request)
    shape = (2, 3, 3, 2)
    x, gy, film = random_inputs(xp, shape, True, seed=3)
    rng = np.random.RandomState(4)
    gamma, beta = xp.asarray(rng.uniform(0.5, 1.5, 3)), xp.asarray(rng.normal(0, 0.5, 3))
    rand = dropout_numbers(xp, xp_name, rng, shape)

    def function(*inputs):
        return fused.BatchNormActivation(2e-5, None, rand, 0.5, slope).apply(inputs)[0]

    gradient_check.check_backward(function, (x, gamma, beta) + film, gy, eps=1e-6, atol=1e-6, rtol=1e-5,
                                  dtype=np.float64)


@pytest.mark.parametrize('xp_name', BN_XPS)
def test_batch_norm_float32_and_one_value_per_channel(xp_name, request):
    """float32 within float32 rounding of Chainer's; a 1x1 map at batch 1 (the encoder's
    deepest at 128 px) gives beta and a zero input gradient, as Chainer's does; maps of
    more pixels than a block has threads, over several blocks (2 x 4 x 24 x 40)."""
    xp = module(xp_name, request)
    for shape in ((2, 4, 8, 8), (1, 4, 1, 1), (2, 4, 24, 40)):
        x, gy, _ = random_inputs(xp, shape, False, seed=5)
        x, gy = x.astype(np.float32), gy.astype(np.float32)
        outs = []
        for use_fused in (False, True):
            bn = make_bn(shape[1], xp)
            bn.to_device(chainer.get_device('@numpy' if xp is np else '@cupy:0'))
            bn.gamma.array, bn.beta.array = (bn.gamma.array.astype(np.float32),
                                             bn.beta.array.astype(np.float32))
            bn.avg_mean, bn.avg_var = bn.avg_mean.astype(np.float32), bn.avg_var.astype(np.float32)
            xv = chainer.Variable(x)
            with chainer.using_config('user_fused', 'all' if use_fused else 'off'):
                assert fused.applies(bn, xv, F.relu) is use_fused
                y = (fused.batch_norm_activation(bn, xv, activation=F.relu) if use_fused else F.relu(bn(xv)))
            y.grad = gy
            y.backward()
            outs.append((y.array, xv.grad, bn.gamma.grad, bn.beta.grad, bn.avg_mean, bn.avg_var))
        for got, want in zip(outs[1], outs[0]):
            assert got.dtype == np.float32
            close(got, want, 1e-5)
        if shape == (1, 4, 1, 1):
            close(outs[1][0].ravel(), xp.maximum(bn.beta.array, 0), 1e-6)
            assert float(abs(outs[1][1]).max()) < 1e-3 * float(abs(gy).max())


def test_fused_path_is_taken_only_where_it_applies():
    link = net.ConvBNR(4, 6, activation=fast_conv.leaky_relu)
    x = np.random.RandomState(0).normal(size=(2, 4, 8, 8)).astype(np.float32)
    assert speed.setting('user_fused') == 'gpu'  # the default: CuPy arrays only
    assert not isinstance(link(x).creator, fused.BatchNormActivation)
    for mode, taken in (('off', False), ('gpu', False), ('cpu', True), ('all', True)):
        with chainer.using_config('user_fused', mode):
            assert isinstance(link(x).creator, fused.BatchNormActivation) is taken, mode
    with chainer.using_config('user_fused', 'all'):
        with chainer.using_config('train', False):  # running averages: Chainer's function
            assert not isinstance(link(x).creator, fused.BatchNormActivation)
        other = net.ConvBNR(4, 6, activation=F.sigmoid)
        assert not isinstance(other(x).creator, fused.BatchNormActivation)
        # --bn-across-ranks: ChainerMN's batch norm (no ``axis``) keeps its own statistics
        import warnings
        import chainermn
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # "experimental"
            link.bn = chainermn.links.MultiNodeBatchNormalization(6, comm=None)
        assert not fused.applies(link.bn, x[:, :6], fast_conv.leaky_relu)


def adam_run(xp, use_fused, steps=4, seed=0, dtype=np.float64, **settings):
    """``steps`` updates of Adam + WeightDecay (as updater.make_optimizer, with a decay
    large enough to matter) on a conv + BN chain, fixed random gradients: Chainer's Adam
    (use_fused None) or fused.Adam with user_fused off or on, with Adam's ``settings``.
    Returns the parameters, the gradients the update saw and Adam's states."""
    rng = np.random.RandomState(seed)
    np.random.seed(seed)  # the initialisers draw from NumPy's global generator
    model = chainer.Chain()
    with model.init_scope():
        model.c = L.Convolution2D(3, 4, 3)
        model.bn = L.BatchNormalization(4)
    model.c.b.array[:] = rng.normal(size=4)
    for param in model.params():
        param.array = param.array.astype(dtype)
    if xp is not np:
        model.to_device(chainer.get_device('@cupy:0'))
    optimizer = (chainer.optimizers.Adam if use_fused is None else fused.Adam)(
        **dict(dict(alpha=2e-2, beta1=0.5), **settings))
    optimizer.setup(model)
    optimizer.add_hook(chainer.optimizer.WeightDecay(1e-2), 'hook_dec')
    with chainer.using_config('user_fused', 'all' if use_fused else 'off'):
        for _ in range(steps):
            for param in model.params():
                param.grad = xp.asarray(rng.normal(size=param.shape).astype(dtype))
            optimizer.update()
    states = {name: param.update_rule.state or {} for name, param in model.namedparams()}
    return {name: (param.array, param.grad) + tuple(states[name][k] for k in ('m', 'v') if k in states[name])
            for name, param in model.namedparams()}


@pytest.mark.parametrize('xp_name', XPS)
def test_adam_with_weight_decay_matches_chainers(xp_name):
    xp = module(xp_name)
    want = adam_run(xp, None)
    unfused, got = adam_run(xp, False), adam_run(xp, True)
    start = adam_run(xp, None, steps=0)
    for name, arrays in want.items():
        for a, b in zip(unfused[name], arrays):
            # user_fused 'off': Chainer's own update, to the bit
            assert (chainer.backends.cuda.to_cpu(a) == chainer.backends.cuda.to_cpu(b)).all()
        for a, b in zip(got[name], arrays):
            close(a, b, 1e-12)
        moved = np.abs(chainer.backends.cuda.to_cpu(arrays[0] - start[name][0])).max()
        assert moved > 1e-3  # four steps of alpha 2e-2 moved every parameter


def same_bits(run, other):
    return all(a.dtype == b.dtype and a.tobytes() == b.tobytes()
               for name in run for a, b in zip(run[name], other[name]))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_unfused_cpu_adam_is_chainers_to_the_bit_in_its_own_buffers(dtype, monkeypatch):
    want = adam_run(np, None, dtype=dtype)

    def chainers(rule, param):
        raise AssertionError("took Chainer's update_core_cpu")
    monkeypatch.setattr(chainer.optimizers.adam.AdamRule, 'update_core_cpu', chainers)
    got = adam_run(np, False, dtype=dtype)
    assert same_bits(got, want)
    assert not same_bits(got, adam_run(np, False, steps=3, dtype=dtype))  # the bits do tell runs apart


@pytest.mark.parametrize('settings', [dict(amsgrad=True), dict(weight_decay_rate=1e-3),
                                      dict(alpha=np.float64(2e-2))])
def test_unfused_cpu_adam_leaves_other_arithmetic_to_chainer(settings):
    # A NumPy float64 alpha makes Chainer's float32 temporaries float64: its update is kept.
    want = adam_run(np, None, dtype=np.float32, **settings)
    assert same_bits(adam_run(np, False, dtype=np.float32, **settings), want)


def test_make_optimizer_is_fused_adam_with_the_examples_settings():
    import updater
    optimizer = updater.make_optimizer(L.Linear(2, 2), 2e-4)
    assert isinstance(optimizer, fused.Adam) and isinstance(optimizer, chainer.optimizers.Adam)
    assert (optimizer.alpha, optimizer.beta1, optimizer.beta2, optimizer.eps) == (2e-4, 0.5, 0.999, 1e-8)


def test_adam_fuses_the_decay_and_falls_back_where_it_cannot():
    model = L.Linear(3, 2)
    optimizer = fused.Adam()
    optimizer.setup(model)
    optimizer.add_hook(chainer.optimizer.WeightDecay(0.5))
    for param in model.params():
        param.grad = np.ones_like(param.array)
    with chainer.using_config('user_fused', 'cpu'):
        optimizer.call_hooks('pre')
        assert all(p.update_rule.pending_decay == 0.5 for p in model.params())
        assert all((p.grad == 1).all() for p in model.params())  # not yet applied: inside the update
        optimizer.t += 1
        for param in model.params():
            param.update()
        assert all(p.update_rule.pending_decay is None for p in model.params())
        model.W.grad = np.ones_like(model.W.array)
        model.W._loss_scale = 8.0  # loss-scaled gradients take the hook
        optimizer.call_hooks('pre')
        assert model.W.update_rule.pending_decay is None
        np.testing.assert_allclose(model.W.grad, 1 + 0.5 * 8 * model.W.array)


@pytest.mark.cuda_on_cpu
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_both_fused_adam_kernels_get_their_arguments_in_order(dtype, kernels_on_cpu):
    """The GPU paths' launches (alpha_t as a value, and from the step scalars as a
    recorded step has it), their CUDA kernels run on the CPU, update as the CPU's fused
    path; over more elements than a block has threads."""
    link = chainer.Link()
    with link.init_scope():
        link.w = chainer.Parameter(np.random.RandomState(0).standard_normal(1500).astype(dtype))
    optimizer = fused.Adam(alpha=1e-2, beta1=0.5)
    optimizer.setup(link)
    rule = link.w.update_rule
    rule._init_states(link.w)
    rule.state['m'][...], rule.state['v'][...], rule.t = 0.3, 0.2, 3
    start = [a.copy() for a in (link.w.array, rule.state['m'], rule.state['v'])]
    gradient = np.random.RandomState(1).standard_normal(1500).astype(dtype)

    class Graph:  # what _update_core_graph reads of a cuda_graph.StepGraph
        scalars = np.array([7.0, 0.0, rule.alpha_t])

        def slot(self, _):
            return 2

    results = []
    for update in (lambda: rule.update_core_cpu(link.w),
                   lambda: rule._launch('adam_weight_decay', link.w, 1e-3, dtype(rule.alpha_t)),
                   lambda: rule._update_core_graph(link.w, 1e-3, Graph())):
        for array, value in zip((link.w.array, rule.state['m'], rule.state['v']), start):
            array[...] = value
        link.w.grad = gradient.copy()
        rule.pending_decay = 1e-3
        with chainer.using_config('user_fused', 'cpu'):
            update()
        results.append([a.copy() for a in (link.w.array, link.w.grad, rule.state['m'], rule.state['v'])])
    assert not np.allclose(results[0][0], start[0], rtol=0, atol=1e-4)  # the step moved the parameter
    for got in results[1:]:
        for got_array, want_array in zip(got, results[0]):
            assert got_array.dtype == dtype
            close(got_array, want_array, 1e-12 if dtype == np.float64 else 1e-6)


def training_run(use_fused, updates=3, width=8, size=128, batch=2):
    """``updates`` training steps of the demo network in float64 from the same start and
    the same dropout draws; returns every parameter and running average afterwards."""
    device = compat.get_device(-1)
    run = bench.ChainerRunner(device, width, batch, size, 'fp64', 'cpu', fused='cpu' if use_fused else 'off')
    np.random.seed(11)
    losses = []
    for _ in range(updates):
        observation = {}
        reporter = chainer.Reporter()
        for name in ('enc', 'dec', 'dis'):
            reporter.add_observer(name, getattr(run, name))
        with reporter.scope(observation):
            run.train_step()
        losses.append(float(observation['dec/l1'].array))
    state = {}
    for name in ('enc', 'dec', 'dis'):
        link = getattr(run, name)
        state.update({name + path: param.array.copy() for path, param in link.namedparams()})
        state.update({name + path + '/avg_mean': norm.avg_mean.copy() for path, norm in link.namedlinks()
                      if isinstance(norm, L.BatchNormalization)})
        state.update({name + path + '/avg_var': norm.avg_var.copy() for path, norm in link.namedlinks()
                      if isinstance(norm, L.BatchNormalization)})
    return losses, state


def test_training_with_fused_paths_equals_training_without():
    want_losses, want = training_run(False)
    got_losses, got = training_run(True)
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-9)
    assert want_losses[-1] < want_losses[0]
    assert any(key.endswith('avg_var') for key in want)
    for key in want:  # the biases before batch norm hold rounding noise (~1e-12): absolute there
        close(got[key], want[key], 1e-8, floor=1e-2)


def test_check_fast_paths_with_fused_passes_on_the_cpu():
    assert bench.check_fast_paths(compat.get_device(-1), 'cpu', width=8, size=128, batch=2, fused='cpu') == []


@pytest.mark.skipif(shutil.which('nvcc') is None, reason='no nvcc')
def test_cuda_source_compiles(tmp_path):
    """The kernels compile for both types (nvcc; on a GPU CuPy compiles the same source)."""
    source = tmp_path / 'fused.cu'
    taking = ['(void)&{}<{}>;'.format(k, t) for k in fused.KERNEL_NAMES for t in fused.C_TYPES.values()]
    source.write_text(fused.CUDA_SOURCE + '\nvoid instantiate() {\n' + '\n'.join(taking) + '\n}\n')
    done = subprocess.run(['nvcc', '-std=c++14', '--ptx', '-o', str(tmp_path / 'fused.ptx'), str(source)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / 'fused.ptx').read_text().count('.entry') == 2 * len(fused.KERNEL_NAMES)
