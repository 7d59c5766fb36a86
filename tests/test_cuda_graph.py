"""speed/cuda_graph.py: the random numbers, the cuBLAS arguments and the host's bookkeeping on
any machine; the recorded step against the same step run in Python where CuPy has a GPU
(skipped without one)."""
import shutil
import subprocess

import numpy as np
import pytest

import compat  # noqa: F401
import chainer

from speed import cuda_graph
from test_fused import gpu_available
from test_updater import fixed_batch, make_models, make_updater

needs_gpu = pytest.mark.skipif(not gpu_available(), reason='no GPU')


# ---------------------------------------------------------------- random numbers


def test_mix64_is_splitmix64():
    """SplitMix64 from state 0 first gives 0xE220A8397B1DCDAF (Vigna's splitmix64.c); the
    NumPy version of the finaliser agrees with the integer one."""
    assert cuda_graph._mix64(0) == 0xE220A8397B1DCDAF
    values = np.random.RandomState(0).randint(0, 2 ** 63, 1000, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    assert [int(v) for v in cuda_graph._mix64(values)] == [cuda_graph._mix64(int(v)) for v in values]


def test_uniform_numbers_are_uniform_and_new_each_step():
    size = 1_000_000
    first = cuda_graph.uniform_numpy(size, seed=5, step=0, draw=0)
    assert first.dtype == np.float32 and first.min() >= 0 and first.max() < 1
    assert abs(first.mean() - 0.5) < 2e-3  # the mean's standard error is 2.9e-4
    assert abs((first < 0.5).mean() - 0.5) < 2e-3
    assert np.histogram(first, bins=10, range=(0, 1))[0].min() > 0.098 * size
    assert np.array_equal(first, cuda_graph.uniform_numpy(size, seed=5, step=0, draw=0))
    # Another step, draw or seed: masks that agree on about half the elements, as
    # independent ones do.
    for other in (dict(seed=5, step=1, draw=0), dict(seed=5, step=0, draw=1), dict(seed=6, step=0, draw=0)):
        agree = ((first >= 0.5) == (cuda_graph.uniform_numpy(size, **other) >= 0.5)).mean()
        assert abs(agree - 0.5) < 3e-3, (other, agree)
    assert len(np.unique(first[:100_000])) > 0.99 * 100_000  # 24 bits each


@pytest.mark.skipif(shutil.which('nvcc') is None, reason='no nvcc')
def test_random_source_compiles(tmp_path):
    source = tmp_path / 'random.cu'
    source.write_text(cuda_graph.RANDOM_SOURCE)
    done = subprocess.run(['nvcc', '--ptx', '-o', str(tmp_path / 'random.ptx'), str(source)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '.entry counter_uniform' in (tmp_path / 'random.ptx').read_text()


# ---------------------------------------------------------------- cuBLAS's arguments


def cublas_gemm(base, op_first, op_second, m, n, k, first, ld_first, second, ld_second, out, ld_out, beta=0):
    """What column-major gemm (alpha 1) does to ``base``, a flat buffer; the operands are
    offsets into it (cuBLAS's reference semantics)."""
    def matrix(offset, rows, columns, ld):
        return np.lib.stride_tricks.as_strided(base[offset:], (rows, columns),
                                               (base.itemsize, ld * base.itemsize))
    op = lambda x, trans: x.T if trans == 'T' else x  # noqa: E731
    a = op(matrix(first, *((m, k) if op_first == 'N' else (k, m)), ld_first), op_first)
    b = op(matrix(second, *((k, n) if op_second == 'N' else (n, k)), ld_second), op_second)
    c = matrix(out, m, n, ld_out)
    c[...] = a @ b + beta * c


def cublas_gemm_strided_batched(base, op_first, op_second, m, n, k, first, ld_first, step_first, second,
                                ld_second, step_second, out, ld_out, step_out, count):
    for i in range(count):
        cublas_gemm(base, op_first, op_second, m, n, k, first + i * step_first, ld_first,
                    second + i * step_second, ld_second, out + i * step_out, ld_out)


def offset(base, view):
    return (view.__array_interface__['data'][0] - base.__array_interface__['data'][0]) // base.itemsize


def operands(case, base):
    """a, b and out as speed/fast_conv.py multiplies them, views of ``base``."""
    m, k, n = 5, 7, 3
    if case == 'images':  # b = col[1].T of an (2, n, k) buffer, out = out[1] of (2, m, n)
        a = base[:m * k].reshape(m, k)
        b = base[100:100 + 2 * n * k].reshape(2, n, k).transpose(0, 2, 1)[1]
        return a, b, base[400:400 + 2 * m * n].reshape(2, m, n)[1]
    a = base[:m * k].reshape(m, k) if case not in ('a transposed', 'both') else base[:m * k].reshape(k, m).T
    b = base[100:100 + k * n].reshape(k, n) if case not in ('b transposed', 'both') else \
        base[100:100 + k * n].reshape(n, k).T
    if case == 'rows apart':
        a = base[:m * 11].reshape(m, 11)[:, 2:2 + k]
    if case == 'one column':
        b = base[100:100 + k * 4].reshape(k, 4)[:, 1:2]
        n = 1
    return a, b, base[400:400 + m * n].reshape(m, n)


CASES = ['plain', 'a transposed', 'b transposed', 'both', 'rows apart', 'one column', 'images']


@pytest.mark.parametrize('case', CASES)
def test_gemm_arguments_make_cublas_compute_a_times_b(case):
    """The layouts speed/fast_conv.py multiplies (plain, W.T, an image of transpose(0, 2, 1),
    out[i]) and rows spaced wider than a row, through a column-major gemm; then adding
    to out (matmul_sum's images after the first)."""
    base = np.random.RandomState(0).standard_normal(4000)
    a, b, out = operands(case, base)
    arguments = cuda_graph.gemm_arguments(a, b, out)
    assert arguments is not None
    op_first, op_second, m, n, k, ld_first, ld_second, ld_out = arguments
    places = (offset(base, b), ld_first, offset(base, a), ld_second, offset(base, out), ld_out)
    cublas_gemm(base, op_first, op_second, m, n, k, *places)
    np.testing.assert_allclose(out, a @ b, rtol=1e-13)
    cublas_gemm(base, op_first, op_second, m, n, k, *places, beta=1)
    np.testing.assert_allclose(out, 2 * (a @ b), rtol=1e-13)


@pytest.mark.parametrize('layout', ['images', 'their columns', 'one image'])
def test_batched_arguments_make_one_call_multiply_every_image(layout):
    """matmul_each's strided-batched call: a shared (step 0), b's images as speed/fast_conv.py
    passes them (x's im2col buffer, gy's transposed images), out's images."""
    base = np.random.RandomState(1).standard_normal(5000)
    m, k, n, count = 4, 6, 5, 3 if layout != 'one image' else 1
    a = base[:m * k].reshape(m, k)
    if layout == 'their columns':
        b = base[100:100 + count * n * k].reshape(count, n, k).transpose(0, 2, 1)
    else:
        b = base[100:100 + count * k * n].reshape(count, k, n)
    out = base[1000:1000 + count * m * n].reshape(count, m, n)
    arguments = cuda_graph.batched_arguments(a, b, out)
    op_first, op_second, gm, gn, gk, ld_first, ld_second, ld_out, images, step_b, step_out = arguments
    assert images == count
    cublas_gemm_strided_batched(base, op_first, op_second, gm, gn, gk, offset(base, b), ld_first, step_b,
                                offset(base, a), ld_second, 0, offset(base, out), ld_out, step_out, images)
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-13)


def test_gemm_arguments_refuse_what_cublas_cannot_read():
    x = np.zeros((6, 8), np.float32)
    # a's columns strided, then out's columns
    assert cuda_graph.gemm_arguments(x[:, ::2], x[:4, :3], np.zeros((6, 3), np.float32)) is None
    assert cuda_graph.gemm_arguments(x[:, :4], x[:4, :3], np.zeros((3, 6), np.float32).T) is None


# ---------------------------------------------------------------- the host's side


def updater_pair(**kwargs):
    models = [make_models(seed=0), make_models(seed=0)]
    batch = fixed_batch()
    np.random.seed(0)
    plain = make_updater(models[0], batch)
    np.random.seed(0)
    recorded = make_updater(models[1], batch)
    recorded.graph = cuda_graph.StepGraph(recorded.get_all_optimizers().values(), seed=1, **kwargs)
    return plain, recorded


def parameters(updater):
    return {name + path: p.array.copy() for name, link in (('enc', updater.enc), ('dec', updater.dec),
                                                           ('dis', updater.dis))
            for path, p in link.namedparams()}


def test_on_the_cpu_the_step_runs_as_usual_and_says_why():
    plain, recorded = updater_pair()
    for _ in range(3):
        np.random.seed(3)
        plain.update()
        np.random.seed(3)
        recorded.update()
    want, got = parameters(plain), parameters(recorded)
    assert all(np.array_equal(got[name], want[name]) for name in want)
    assert recorded.graph.status() == 'not recorded (CUDA graphs need CuPy arrays on a GPU)'
    assert recorded.get_optimizer('enc').t == 3


def test_run_returns_what_the_step_returns():
    graph = cuda_graph.StepGraph([], seed=0)
    assert np.array_equal(graph.run(lambda x: x * 2, np.arange(3.0)), [0.0, 2.0, 4.0])


def test_a_rule_that_computes_its_step_on_the_host_is_refused():
    models = make_models()
    optimizer = chainer.optimizers.Adam()
    optimizer.setup(models[0])
    graph = cuda_graph.StepGraph([optimizer], seed=0)
    assert graph._refusal([np.zeros(1)]) == ('AdamRule computes its step size on the host '
                                             '(fused.Adam reads it from the device)')


def test_step_scalars_are_the_step_sizes_chainer_uses():
    """Before a step: each rule's alpha_t for that step, as Chainer's Adam computes it
    inside the update; the counting a replay does by hand is the update's."""
    plain, recorded = updater_pair()
    for _ in range(2):
        plain.update()
        recorded.update()
    graph = recorded.graph
    ahead = graph._scalars(ahead=True)
    plain.update()
    rules = [p.update_rule for o in plain.get_all_optimizers().values() for p in o.target.params()]
    assert ahead[1:] == [rule.alpha_t for rule in rules]
    assert len(set(ahead[1:])) == 1 and ahead[1] != graph._scalars(ahead=False)[1]
    graph._count_step()
    assert graph._scalars(ahead=False) == ahead
    assert [o.t for o in recorded.get_all_optimizers().values()] == [3, 3, 3]
    assert [r.t for r in graph.rules] == [r.t for r in rules]


def test_a_failed_capture_puts_the_host_back():
    _, recorded = updater_pair()
    recorded.update()
    graph = recorded.graph
    state = graph._host_state()
    draw = np.random.rand()
    np.random.set_state(state[2])
    graph._count_step()
    graph.rules[0].pending_decay = 1e-5
    np.random.rand()
    graph._restore(state)
    assert [o.t for o in graph.optimizers] == [1, 1, 1] and {r.t for r in graph.rules} == {1}
    assert graph.rules[0].pending_decay is None
    assert np.random.rand() == draw


def test_what_a_recorded_step_reports_is_reported_again_after_each_replay():
    """The recording's reports keep the trainer's names (enc/loss, ...) and go into each
    later update's observation; without a reporter (bench.py) nothing is kept."""
    reporter = chainer.Reporter()
    link = chainer.Link()
    reporter.add_observer('dec', link)
    recorded = {}
    with reporter.scope({}):
        with cuda_graph._observing(recorded):
            chainer.report({'loss': chainer.Variable(np.array(2.5, np.float32))}, link)
    assert list(recorded) == ['dec/loss']
    for _ in range(2):
        observation = {}
        with reporter.scope(observation):
            cuda_graph._report(recorded)
        assert list(observation) == ['dec/loss'] and float(observation['dec/loss'].array) == 2.5
    alone = {}
    with cuda_graph._observing(alone):
        chainer.report({'loss': 1.0})
    cuda_graph._report({'dec/loss': 1.0})
    assert alone == {}


# ---------------------------------------------------------------- on a GPU


def gpu_updater(batch, warmup=cuda_graph.WARMUP_STEPS, **kwargs):
    """make_updater's updater on the GPU, its step recorded (seed 4)."""
    updater = make_updater(make_models(seed=0), batch, device=chainer.get_device('@cupy:0'), **kwargs)
    updater.graph = cuda_graph.StepGraph(updater.get_all_optimizers().values(), seed=4, warmup=warmup)
    return updater


@pytest.mark.cuda_on_cpu
def test_counter_uniform_kernel_run_on_the_cpu_is_its_numpy_twin(kernels_on_cpu):
    """StepGraph.uniform's launch of the CUDA kernel, run on the CPU (tests/cuda_on_cpu.py):
    the twin's numbers to the bit over several blocks, and the draw counted."""
    graph = cuda_graph.StepGraph([], seed=2 ** 63 + 12345)  # seeds use all 64 bits
    graph.scalars = np.asarray([7.0])
    graph.draws = 3
    got = graph.uniform((30, 137))
    assert got.dtype == np.float32 and got.shape == (30, 137)
    assert np.array_equal(got.ravel(), cuda_graph.uniform_numpy(30 * 137, 2 ** 63 + 12345, 7, 3))
    assert graph.draws == 4
    assert not np.array_equal(graph.uniform((30, 137)), got)


@needs_gpu
def test_counter_uniform_kernel_is_its_numpy_twin():
    cupy = chainer.backends.cuda.cupy
    graph = cuda_graph.StepGraph([], seed=12345)
    graph.scalars = cupy.asarray([7.0])
    graph.draws = 3
    got = graph.uniform((1000, 37)).get()
    assert np.array_equal(got.ravel(), cuda_graph.uniform_numpy(37000, 12345, 7, 3))


def product_cases(array, dtype):
    """The products speed/fast_conv.py makes, of arrays that ``array`` makes from NumPy ones:
    matmul_each's pairs (a, b), matmul_sum's pairs, and the tolerance for ``dtype``."""
    rng = np.random.RandomState(0)
    w, images, gy = (array(rng.standard_normal(shape).astype(dtype)) for shape in ((64, 300), (3, 300, 48),
                                                                                  (3, 64, 48)))
    each = [(w, images), (w.T.copy().T, images), (w, images.transpose(0, 2, 1).copy().transpose(0, 2, 1)),
            (w[:, :48].T, gy), (w, images[:1])]
    summed = [(gy, images.transpose(0, 2, 1)), (gy[:1], images[:1].transpose(0, 2, 1))]
    tolerance = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-10)
    return each, summed, tolerance


@pytest.mark.cuda_on_cpu
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_products_through_ctypes_on_a_cpu_cublas(dtype, kernels_on_cpu, monkeypatch):
    """matmul_each and matmul_sum through _Cublas's ctypes calls into tests/cuda_on_cpu.py's
    stand-in for libcublas (cublas_api.h's prototypes, the documented arithmetic and
    argument checks), on the layouts speed/fast_conv.py passes, against numpy.matmul: every
    image in one strided-batched call, the summed product one gemm per image; and the
    check the steps make before recording passes."""
    import cuda_on_cpu
    monkeypatch.setattr(cuda_graph, '_loaded_library', lambda stem: cuda_on_cpu.cublas_library())
    monkeypatch.setattr(cuda_graph, '_cublas', [])
    each, summed, tolerance = product_cases(lambda a: a.view(cuda_on_cpu.DeviceArray), dtype)
    batched, single = ('{}gemm{}'.format('S' if dtype == np.float32 else 'D', suffix)
                       for suffix in ('StridedBatched', '_v2'))
    for a, b in each:
        calls = cuda_on_cpu.cublas_calls('cublas' + batched)
        np.testing.assert_allclose(cuda_graph.matmul_each(a, b), np.matmul(a, b), **tolerance)
        assert cuda_on_cpu.cublas_calls('cublas' + batched) == calls + 1
    for a, b in summed:
        calls = cuda_on_cpu.cublas_calls('cublas' + single)
        np.testing.assert_allclose(cuda_graph.matmul_sum(a, b), np.matmul(a, b).sum(axis=0), **tolerance)
        assert cuda_on_cpu.cublas_calls('cublas' + single) == calls + len(a)
    cuda_graph._check_products()


@needs_gpu
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_products_through_ctypes_are_cupys(dtype):
    """matmul_each and matmul_sum on the layouts speed/fast_conv.py passes, against cupy.matmul."""
    cupy = chainer.backends.cuda.cupy
    each, summed, tolerance = product_cases(cupy.asarray, dtype)
    for a, b in each:
        np.testing.assert_allclose(cuda_graph.matmul_each(a, b).get(), cupy.matmul(a, b).get(), **tolerance)
    for a, b in summed:
        np.testing.assert_allclose(cuda_graph.matmul_sum(a, b).get(), cupy.matmul(a, b).sum(axis=0).get(),
                                   **tolerance)


@needs_gpu
def test_replays_draw_new_numbers_each_step():
    cupy = chainer.backends.cuda.cupy
    graph = cuda_graph.StepGraph([], seed=99)
    out = cupy.zeros(5000, np.float32)

    def step(x):
        out[...] = cuda_graph.current().uniform(x.shape) + x

    drawn = []
    for _ in range(6):
        graph.run(step, cupy.zeros(5000, np.float32))
        cupy.cuda.get_current_stream().synchronize()
        drawn.append(out.get())
    assert graph.status() == 'recorded after 2 steps, replayed 3 times'
    for step_number, numbers in enumerate(drawn):
        assert np.array_equal(numbers, cuda_graph.uniform_numpy(5000, 99, step_number, 0))


@needs_gpu
def test_the_recorded_step_trains_as_the_step_run_in_python():
    """Six updates of the post's design at batch 1: recorded after two and replayed,
    against the same six run in Python with the same step scalars and random numbers."""
    runs = []
    for warmup in (2, 100):
        updater = gpu_updater(fixed_batch(), warmup=warmup)
        for _ in range(6):
            updater.update()
        runs.append(updater)
    replayed, in_python = runs
    assert replayed.graph.status() == 'recorded after 2 steps, replayed 3 times'
    assert in_python.graph.status() == 'not yet recorded (6 of 100 ordinary steps run)'
    want, got = parameters(in_python), parameters(replayed)
    for name in want:
        np.testing.assert_allclose(chainer.backends.cuda.to_cpu(got[name]),
                                   chainer.backends.cuda.to_cpu(want[name]),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
    assert [o.t for o in replayed.get_all_optimizers().values()] == [6, 6, 6]
    # and the step moved the parameters: not a graph that never ran
    np.random.seed(0)
    start = parameters(make_updater(make_models(seed=0), fixed_batch()))
    moved = max(float(abs(chainer.backends.cuda.to_cpu(got[n]) - start[n]).max()) for n in start)
    assert moved > 1e-4


@needs_gpu
def test_a_recorded_forward_pass_colours_each_new_drawing():
    """Colouring as bench.py's chainer-graph does: five drawings through one recording,
    each against the same forward pass run in Python; CuPy's default pool emptied and
    refilled between them (the recording's blocks are not its to give away)."""
    import net
    cupy = chainer.backends.cuda.cupy
    enc, dec, _ = make_models(seed=0)
    for link in (enc, dec):
        link.to_device('@cupy:0')
    graph = cuda_graph.StepGraph([], seed=0)
    forward = lambda x: dec(enc(x)).array  # noqa: E731
    for seed in range(5):
        x = cupy.asarray(fixed_batch(seed=seed)[0][0][None])
        with net.generating():
            got = graph.run(forward, x).get()
            with chainer.using_config('user_fused', 'all'), chainer.using_config('user_fast_paths', 'all'):
                want = forward(x).get()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        cupy.get_default_memory_pool().free_all_blocks()
        litter = [cupy.full(2 ** k, np.nan, np.float32) for k in range(10, 22)]  # noqa: F841
    assert graph.status() == 'recorded after 2 steps, replayed 2 times'


def film_updater(device=None, warmup=cuda_graph.WARMUP_STEPS):
    """The film design (width 4) at batch 1 with --blank-loss colours and the gate's loss,
    over a drawn example and a blank one in turn, its step to be recorded (seed 4); and
    a reporter that reports its networks' losses."""
    import net
    import updater as updater_module
    np.random.seed(0)
    design = net.film_design()
    models = (net.Encoder(4, width=4, design=design), net.Decoder(3, width=4, design=design),
              net.Discriminator(4, 3, width=4, design=design))
    drawn = fixed_batch(1)[0]
    paper = np.full((3, 128, 128), updater_module.PAPER, np.float32)
    blank = (np.concatenate([paper, drawn[0][3:]]), drawn[1])
    iterator = chainer.iterators.SerialIterator([drawn, blank], 1, shuffle=False)
    optimizers = {name: updater_module.make_optimizer(m, 2e-4)
                  for name, m in zip(('enc', 'dec', 'dis'), models)}
    updater = updater_module.TextPix2pixUpdater(models=models, iterator={'main': iterator},
                                                optimizer=optimizers, device=device, blank_loss='colours',
                                                gate_weight=1)
    updater.graph = cuda_graph.StepGraph(updater.get_all_optimizers().values(), seed=4, warmup=warmup)
    reporter = chainer.Reporter()
    for name, link in zip(('enc', 'dec', 'dis'), models):
        reporter.add_observer(name, link)
    return updater, reporter


def reported_updates(updater, reporter, steps):
    """``steps`` updates; what each reported, as floats (read before the next update)."""
    reports = []
    for _ in range(steps):
        observation = {}
        with reporter.scope(observation):
            updater.update()
        reports.append({k: float(chainer.as_array(v)) for k, v in observation.items()})
    return reports


@pytest.mark.cuda_on_cpu
def test_the_film_step_records_and_replays_on_the_cpu_stand_in(step_on_cpu):
    """The film design's step with blank drawings and the colour loss (its random pixels,
    its sort, the gate, FiLM, the projection) on tests/cuda_on_cpu.py's stand-in:
    recorded after two steps under the capture's guards (no cuBLAS through CuPy, no sort
    or index list that waits for the GPU, no random numbers from the host, no constant
    first made while recording) and launched four times, against the same six steps run
    in Python with the same step scalars and random numbers, as
    test_the_recorded_step_trains_as_the_step_run_in_python does on a GPU: what each step
    reports and the weights after, within that test's rtol 1e-5 (on the stand-in a launch
    runs the same Python again, so they agree to the bit; a GPU's replay is the test)."""
    runs = []
    for warmup in (2, 100):
        updater, reporter = film_updater(warmup=warmup)
        runs.append((updater, reported_updates(updater, reporter, 6)))
    (replayed, got), (in_python, want) = runs
    assert replayed.graph.status() == 'recorded after 2 steps, replayed 3 times'
    assert replayed.graph.graph.reruns == 3  # the recording's launch after capturing, then 3 replays
    assert in_python.graph.status() == 'not yet recorded (6 of 100 ordinary steps run)'
    assert [o.t for o in replayed.get_all_optimizers().values()] == [6, 6, 6]
    assert [sorted(r) for r in got] == [sorted(r) for r in want]
    assert [r['dec/colours'] > 0 for r in got] == [False, True] * 3  # drawn, blank, ...
    assert [r['dis/loss'] > 0 for r in got] == [True, False] * 3
    for step, (g, w) in enumerate(zip(got, want)):
        for key in w:
            np.testing.assert_allclose(g[key], w[key], rtol=1e-5, err_msg='step {} {}'.format(step, key))
    want_weights, got_weights = parameters(in_python), parameters(replayed)
    for name in want_weights:
        np.testing.assert_allclose(got_weights[name], want_weights[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # and the replays moved the weights: the last four steps are the recording's
    start = parameters(film_updater()[0])
    assert any(not np.array_equal(got_weights[name], start[name]) for name in got_weights)


@needs_gpu
def test_the_recorded_film_step_trains_as_the_step_run_in_python():
    """test_the_film_step_records_and_replays_on_the_cpu_stand_in on a GPU, where a replay
    runs only what the capture recorded: the same reports and weights, within the post
    step's tolerances (test_the_recorded_step_trains_as_the_step_run_in_python)."""
    runs = []
    for warmup in (2, 100):
        updater, reporter = film_updater(device=chainer.get_device('@cupy:0'), warmup=warmup)
        runs.append((updater, reported_updates(updater, reporter, 6)))
    (replayed, got), (in_python, want) = runs
    assert replayed.graph.status() == 'recorded after 2 steps, replayed 3 times'
    assert [r['dec/colours'] > 0 for r in got] == [False, True] * 3
    for step, (g, w) in enumerate(zip(got, want)):
        for key in w:
            np.testing.assert_allclose(g[key], w[key], rtol=1e-5, atol=1e-6,
                                       err_msg='step {} {}'.format(step, key))
    want_weights, got_weights = parameters(in_python), parameters(replayed)
    for name in want_weights:
        np.testing.assert_allclose(chainer.backends.cuda.to_cpu(got_weights[name]),
                                   chainer.backends.cuda.to_cpu(want_weights[name]), rtol=1e-5, atol=1e-6,
                                   err_msg=name)


@pytest.mark.cuda_on_cpu
@pytest.mark.parametrize('step, reason', [
    (lambda x: chainer.functions.linear(x, x), 'LinearFunction calls cuBLAS through CuPy'),
    (lambda x: np.sort(x), 'numpy.sort: its CuPy twin waits for the GPU'),
    (lambda x: x + np.random.rand(), "random numbers drawn from NumPy's state on the host: a replay would "
                                      "repeat them"),
])
def test_the_stand_in_refuses_to_record_what_a_gpu_would(step, reason, step_on_cpu):
    """The stand-in's guards: a step that a capturing stream would refuse, or whose
    replay would repeat the host's random numbers, is not recorded and says why."""
    graph = cuda_graph.StepGraph([], seed=0)
    for _ in range(4):
        graph.run(step, np.ones((2, 2), np.float32))
    assert graph.status() == 'not recorded (capture failed: CaptureError: {})'.format(reason)


@pytest.mark.cuda_on_cpu
def test_what_could_refuse_the_recording_is_checked_once(step_on_cpu, monkeypatch):
    """The products through ctypes are tried against the reference before the first step,
    not before every step (each try waits for the GPU to compare)."""
    checks = []
    check = cuda_graph._check_products
    monkeypatch.setattr(cuda_graph, '_check_products', lambda: checks.append(check()))
    graph = cuda_graph.StepGraph([], seed=0)
    for _ in range(5):
        graph.run(lambda x: x * 2, np.ones(3, np.float32))
    assert graph.status() == 'recorded after 2 steps, replayed 2 times' and len(checks) == 1


@needs_gpu
def test_a_step_that_cannot_be_recorded_runs_as_usual():
    """A step that reads a number back to the host (after its update: the sum of its
    input), which a capturing stream refuses: the capture fails, the attempt leaves no
    trace and training goes on."""
    updater = gpu_updater(fixed_batch())
    step = updater.step

    def step_reading_back(x_in, t_out):
        step(x_in, t_out)
        float(x_in.sum())  # a copy to the host

    updater.step = step_reading_back
    for _ in range(4):
        updater.update()
    assert updater.graph.status().startswith('not recorded (capture failed: ')
    assert [o.t for o in updater.get_all_optimizers().values()] == [4, 4, 4]


@pytest.mark.parametrize('batchsize, options, reason', [
    (1, dict(), None),
    (4, dict(), None),                                   # the example's losses: any batch
    (1, dict(blank_loss='colours'), None),
    (2, dict(blank_loss='colours'), 'the colour loss of blank drawings is recorded at batch 1 only'),
    (1, dict(blank_loss='colours', blank_colour_cells=(1, 4), blank_ignore_lines=True),
     '--blank-colour-cells, --blank-ignore-lines of the colour loss not recordable'),
    (1, dict(blank_loss='colours', blank_layout_cells=(4,)), None),  # unused without a layout weight
])
def test_what_the_updater_refuses_to_record(batchsize, options, reason):
    import updater
    assert updater.recording_refusal(batchsize, **options) == reason


def test_an_updater_that_cannot_be_recorded_says_why_before_its_first_step():
    """The colour loss of blank drawings at batch 2: refused when the updater is made, so
    a GPU run never tries the capture; the steps run as usual."""
    np.random.seed(0)
    updater = make_updater(make_models(), fixed_batch(2), blank_loss='colours', cuda_graph=True)
    said = 'not recorded (the colour loss of blank drawings is recorded at batch 1 only)'
    assert updater.graph.status() == said
    updater.update()
    assert updater.get_optimizer('enc').t == 1


def test_training_with_cuda_graph_on_the_cpu_trains_the_same_model(small_data, tiny_model, tmp_path, capsys):
    """--cuda-graph on a CPU: the ordinary steps, the same model to the bit; training says
    why the steps were not recorded after its first update, and again at the end."""
    import train_facade_text
    from conftest import TINY_TRAINING
    out = tmp_path / 'graph'
    assert train_facade_text.main(['-i', str(small_data), '-o', str(out), '--cuda-graph']
                                  + TINY_TRAINING) == 0
    printed = capsys.readouterr().out
    said = 'Training steps (CUDA graph): not recorded (CUDA graphs need CuPy arrays on a GPU)'
    assert printed.count(said) == 2  # CudaGraphStatus's, then the end's
    for name in ('enc.npz', 'dec.npz'):
        with np.load(str(out / name)) as got, np.load(str(tiny_model / name)) as want:
            assert sorted(got.files) == sorted(want.files)
            assert all(np.array_equal(got[key], want[key]) for key in want.files)


def test_training_says_how_its_steps_run_once_it_is_known(capsys):
    """CudaGraphStatus: nothing during the ordinary steps before the recording, one line
    once the step is recorded, nothing after."""
    import types
    import train_extensions
    graph = cuda_graph.StepGraph([])
    trainer = types.SimpleNamespace(updater=types.SimpleNamespace(graph=graph))
    extension = train_extensions.CudaGraphStatus()
    printed = []
    for steps, recorded in ((1, False), (2, False), (3, True), (4, True)):
        graph.steps, graph.graph = steps, object() if recorded else None
        extension(trainer)
        printed.append(capsys.readouterr().out)
    assert printed == ['', '', 'Training steps (CUDA graph): recorded after 2 steps, replayed 0 times\n', '']


def test_cuda_graph_is_for_one_process(capsys):
    import train_facade_text
    with pytest.raises(SystemExit):
        train_facade_text.parse_args(['--cuda-graph', '--communicator', 'naive'])
    assert "--cuda-graph records one process's step: not with --communicator" in capsys.readouterr().err


@pytest.mark.parametrize('argv, records', [
    ([], False),                                      # the CPU
    (['-g', '-1'], False),
    (['-g', '0'], True),                              # the post's command: recorded
    (['--device', '@cupy:1'], True),
    (['-g', '0', '--no-tag'], True),
    (['-g', '0', '--device', '@numpy'], False),       # --device wins
    (['-g', '0', '--no-cuda-graph'], False),
    (['--cuda-graph'], True),                         # asked for: tried, and says why not on a CPU
    (['-g', '0', '--tag-design', 'film'], True),      # recordable since the film step's device paths
    (['-g', '0', '--blank-loss', 'colours'], True),
    (['-g', '0', '--tag-design', 'film', '--blank-fraction', '0.3', '--blank-loss', 'colours',
      '--ema-decay', '0.999'], True),                 # the demo's film settings
    (['-g', '0', '--blank-loss', 'colours', '-b', '2'], False),  # refused (updater.recording_refusal)
    (['-g', '0', '--blank-loss', 'colours', '--blank-colour-pool', '2'], False),
    (['-g', '0', '--stage', '2'], False),             # not tried on a GPU
    (['-g', '0', '--communicator', 'naive'], False),
])
def test_cuda_graph_is_on_by_default_where_it_was_measured(argv, records):
    import train_facade_text
    assert train_facade_text.parse_args(argv).cuda_graph is records


# ---------------------------------------------------------------- bench.py


def test_bench_rows_of_chainer_graph_say_how_the_steps_ran(capsys):
    from conftest import bench_main
    code, out, rows = bench_main(capsys, ['--task', 'train', 'colorize', '--size', '128', '--width', '4',
                                          '--impl', 'chainer-fused', 'chainer-graph', '--warmup', '0',
                                          '--steps', '1', '--repeats', '1', '--json'])
    assert code == 0
    graph_rows = [r for r in rows if r['impl'] == 'chainer-graph']
    assert [r['task'] for r in graph_rows] == ['train', 'colorize']
    assert {r['graph'] for r in graph_rows} == {'not recorded (CUDA graphs need CuPy arrays on a GPU)'}
    assert '# chainer-graph steps: not recorded (CUDA graphs need CuPy arrays on a GPU)' in out


def test_bench_leaves_out_an_implementation_that_fails_and_times_the_rest(capsys, monkeypatch):
    import bench
    from conftest import bench_main
    real = bench.make_runner

    def failing(impl, *args):
        if impl == 'chainer-graph':
            raise RuntimeError('gemm failed with cuBLAS status 7\nsecond line')
        return real(impl, *args)

    monkeypatch.setattr(bench, 'make_runner', failing)
    code, out, rows = bench_main(capsys, ['--task', 'train', '--size', '128', '--width', '4', '--impl',
                                          'chainer', 'chainer-graph', '--warmup', '0', '--steps', '1',
                                          '--repeats', '1', '--json'])
    assert code == 0
    assert ('# chainer-graph left out of train batch 1 fp32: RuntimeError: gemm failed with cuBLAS '
            'status 7\n') in out
    assert [r['impl'] for r in rows] == ['chainer'] and rows[0]['step_ms'] > 0
