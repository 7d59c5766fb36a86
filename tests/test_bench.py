"""bench.py and its PyTorch reference: the same networks, losses and gradients as the port."""
import numpy as np
import pytest

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer

import bench
import colour_space
from conftest import bench_main
import net
import train_facade_text
import updater

torch = pytest.importorskip('torch', reason='PyTorch is a benchmark-only extra (requirements-bench.txt)')
import bench_torch  # noqa: E402  (needs torch)


def chainer_models(width, dtype=np.float32, seed=0):
    np.random.seed(seed)
    with chainer.using_config('dtype', dtype):
        return net.Encoder(4, width=width), net.Decoder(3, width=width), net.Discriminator(4, 3, width=width)


def n_params(link):
    return sum(p.size for p in link.params())


def test_parameter_counts_match_at_the_examples_width():
    for theirs, ours in zip(bench_torch.make_models(64), chainer_models(64)):
        assert sum(p.numel() for p in theirs.parameters()) == n_params(ours)


def test_output_shapes_match():
    x = np.random.RandomState(0).uniform(-1, 1, (2, 4, 256, 256)).astype(np.float32)
    enc, dec, dis = chainer_models(8)
    t_enc, t_dec, t_dis = bench_torch.make_models(8)
    with net.generating():
        hs = enc(x)
        y = dec(hs)
        d = dis(x, y)
    with torch.no_grad():
        t_hs = t_enc(torch.from_numpy(x))
        t_y = t_dec(t_hs)
        t_d = t_dis(torch.from_numpy(x), t_y)
    assert [tuple(h.shape) for h in t_hs] == [h.shape for h in hs]
    assert tuple(t_y.shape) == y.shape and tuple(t_d.shape) == d.shape


def test_settings_are_chainers():
    enc, dec, dis = bench_torch.make_models(8)
    bn = dec.c1.bn
    assert bn.eps == 2e-5 and bn.momentum == 0.1
    optimizer = bench_torch.make_optimizer(enc, 2e-4)
    assert optimizer.defaults['betas'] == (0.5, 0.999) and optimizer.defaults['weight_decay'] == 1e-5
    with torch.no_grad():
        weights = torch.cat([m.weight.flatten() for m in enc.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(float(weights.std()) - 0.02) < 0.001 and abs(float(weights.mean())) < 0.001


def test_same_weights_give_the_same_losses_and_gradients():
    """In float64 (so that batch norm over tiny maps does not amplify rounding), with the
    port's weights loaded: outputs, both losses and every gradient of one step."""
    enc, dec, dis = chainer_models(8, np.float64)
    t_enc, t_dec, t_dis = (bench_torch.copy_from_chainer(m.double(), c) for m, c in
                           zip(bench_torch.make_models(8), (enc, dec, dis)))
    x, t = (a.astype(np.float64) for a in bench.fixed_batch(2, 256))
    with chainer.using_config('user_dropout', False):
        x_out = dec(enc(x))
        y_fake, y_real = dis(x, x_out), dis(x, t)
    loss_gen, _ = updater.generator_loss(x_out, t, y_fake)
    updater.backward(loss_gen, list(enc.params()) + list(dec.params()))
    loss_dis = updater.discriminator_loss(y_real, y_fake)
    updater.backward(loss_dis, list(dis.params()))

    bench_torch.set_dropout(t_dec, False)
    tx, tt = torch.from_numpy(x), torch.from_numpy(t)
    t_out = t_dec(t_enc(tx))
    t_fake, t_real = t_dis(tx, t_out), t_dis(tx, tt)
    t_gen, _ = bench_torch.generator_loss(t_out, tt, t_fake)
    t_dis_loss = bench_torch.discriminator_loss(t_real, t_fake)
    torch.autograd.backward(t_gen, inputs=list(t_enc.parameters()) + list(t_dec.parameters()),
                            retain_graph=True)
    torch.autograd.backward(t_dis_loss, inputs=list(t_dis.parameters()))

    np.testing.assert_allclose(t_out.detach().numpy(), x_out.array, atol=1e-10)
    assert float(t_gen.detach()) == pytest.approx(float(loss_gen.array), rel=1e-10)
    assert float(t_dis_loss.detach()) == pytest.approx(float(loss_dis.array), rel=1e-10)
    for theirs, ours in ((t_enc, enc), (t_dec, dec), (t_dis, dis)):
        ours_grads = {'/' + k.lstrip('/'): p.grad for k, p in ours.namedparams()}
        scale = max(np.abs(g).max() for g in ours_grads.values())
        for name, chainer_name in bench_torch.chainer_names(theirs).items():
            param = dict(theirs.named_parameters()).get(name)
            if param is None:
                continue  # running statistics
            want = ours_grads['/' + chainer_name]
            np.testing.assert_allclose(param.grad.numpy().reshape(want.shape), want, rtol=0,
                                       atol=1e-9 * scale, err_msg=chainer_name)


def test_one_value_per_channel_batch_norm_is_beta_as_in_chainer():
    # Batch 1 at 128 px: the encoder's last map is 1x1 (seven halvings of 128).
    trainer = bench_torch.Trainer(width=4)
    x, t = (torch.from_numpy(a) for a in bench.fixed_batch(1, 128))
    losses = trainer.step(x, t)
    assert all(np.isfinite(float(v)) for v in losses)
    assert torch.isfinite(trainer.enc.c7.bn.running_var).all()


def test_bench_times_both_implementations_and_reports_json(capsys):
    code, out, results = bench_main(capsys, ['--task', 'train', 'colorize', '--size', '128', '--width', '4',
                                           '--impl', 'chainer', 'chainer-plain', 'torch',
                                           '--warmup', '1', '--steps', '1', '--repeats', '2', '--json'])
    assert code == 0
    assert len(results) == 6 and '| train ' in out and '| colorize ' in out
    for r in results:
        assert {'impl', 'device', 'size', 'batch', 'precision', 'images_per_s', 'step_ms', 'peak_mem_mb',
                'ratio_vs_torch', 'versions'} <= set(r)
        assert r['step_ms'] > 0 and r['images_per_s'] == pytest.approx(r['batch'] * 1000 / r['step_ms'])
        assert len(r['step_ms_rounds']) == 2
    assert [r['ratio_vs_torch'] for r in results if r['impl'] == 'torch'] == [1.0, 1.0]


def test_quality_mode_reports_l1(capsys):
    code, out, results = bench_main(capsys, ['--quality', '2', '--size', '128', '--width', '4', '--json'])
    assert code == 0
    assert [r['precision'] for r in results] == ['fp32'] and np.isfinite(results[0]['l1'])


@pytest.mark.parametrize('argv, message', [
    (['--size', '100'], 'multiple of 128'),
    (['--precision', 'tf32'], 'needs a GPU'),
    (['--width', '0'], 'must be positive'),
    (['--design', 'film', '--precision', 'mixed16'], 'no mixed16 step'),
    (['--design', 'film', '--check'], "post's design only"),
    (['--design', 'film', '--impl', 'torch-graph'], 'no torch-graph'),
])
def test_bad_arguments_are_one_line_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_no_gpu_is_a_clear_error(capsys):
    if chainer.backends.cuda.available:
        pytest.skip('a GPU is here')
    assert bench.main(['-g', '0']) == 1
    assert capsys.readouterr().err.startswith('error: @cupy:0 asks for a GPU, but CuPy is not usable here')


def test_training_and_colouring_never_import_torch():
    import os
    import subprocess
    import sys
    code = ('import sys, train_facade_text, colorize; '
            'sys.exit(1 if "torch" in sys.modules else 0)')
    # The repository, above benchmarks/.
    root = os.path.dirname(os.path.dirname(os.path.abspath(bench.__file__)))
    assert subprocess.run([sys.executable, '-c', code], cwd=root).returncode == 0


def test_torch_graph_needs_a_gpu(capsys):
    assert bench.main(['--impl', 'chainer', 'torch-graph']) == 1
    assert capsys.readouterr().err == 'error: --impl torch-graph needs a GPU (-g)\n'


# ---------------------------------------------------------------- the film design
# FiLM, the gate and the projection start at zero (the gate's bias at net.GATE_BIAS), so
# that the networks start as the post's; the comparisons move them off it first, or they
# would compare the post's networks again.

def chainer_film_models(width, dtype=np.float32, seed=0):
    np.random.seed(seed)
    design = bench.film_design_of(bench.film_training())
    with chainer.using_config('dtype', dtype):
        return (net.Encoder(4, width, design), net.Decoder(3, width, design),
                net.Discriminator(4, 3, width, design))


def moved_off_zero(links, seed=1):
    rng = np.random.RandomState(seed)
    for link in links:
        for name, param in link.namedparams():
            if any(part in name for part in ('/film/', '/gate/', '/proj/')):
                param.array += rng.normal(0, 0.1, param.shape).astype(param.dtype)
    return links


def film_twins(width=4):
    """Chainer's film networks in float64 (see test_same_weights_give_the_same_losses_and_
    gradients) off zero, and a FilmTrainer in float64 holding their weights."""
    links = moved_off_zero(chainer_film_models(width, np.float64))
    film = bench.film_training()
    trainer = bench_torch.FilmTrainer(width, design=bench.film_design_of(film), gate_weight=film.gate_loss,
                                      ema_decay=film.ema_decay, dtype=torch.float64)
    for model, link in zip((trainer.enc, trainer.dec, trainer.dis), links):
        bench_torch.copy_from_chainer(model, link)
    bench_torch.set_dropout(trainer.dec, False)
    return links, trainer


def film_batch(indices, size=128):
    x, t = bench.film_examples(size)
    return x[list(indices)].astype(np.float64), t[list(indices)].astype(np.float64)


def test_film_parameter_counts_match_at_the_examples_width():
    for theirs, ours in zip(bench_torch.make_film_models(64), chainer_film_models(64)):
        assert sum(p.numel() for p in theirs.parameters()) == n_params(ours)


def test_film_settings_are_the_demos_and_the_ports():
    film = bench.film_training()
    assert bench_torch.film_design() == net.film_design() == bench.film_design_of(film)
    assert (film.blank_loss, film.gate_loss, film.ema_decay) == ('colours', bench_torch.GATE_WEIGHT,
                                                                 bench_torch.EMA_DECAY)
    assert len(bench.FILM_BLANK) / bench.FILM_EXAMPLES == film.blank_fraction
    assert updater.blank_loss_options(film) == updater.blank_loss_options(
        train_facade_text.parse_args(['--blank-loss', 'colours']))  # the colour loss alone
    np.testing.assert_array_equal(bench_torch.colour_directions(), updater.COLOUR_DIRECTIONS)
    np.testing.assert_array_equal(bench_torch.SRGB_TO_XYZ, colour_space.SRGB_TO_XYZ)
    assert (bench_torch.LUMA, bench_torch.GATE_BIAS) == (net.LUMA, net.GATE_BIAS)
    assert (bench_torch.PAPER, bench_torch.L1_WEIGHT, bench_torch.COLOUR_PIXELS, bench_torch.LAB_SCALE) == (
        updater.PAPER, updater.L1_WEIGHT, updater.COLOUR_PIXELS, updater.LAB_SCALE)
    x, _ = bench.film_examples(128)
    assert updater.blank_examples(x).nonzero()[0].tolist() == list(bench.FILM_BLANK)
    assert bench_torch.blank_examples(torch.from_numpy(x)).nonzero()[:, 0].tolist() == list(bench.FILM_BLANK)
    x, _ = bench.film_examples(128, batch=12)  # two rounds of examples, so that no batch takes one twice
    assert updater.blank_examples(x).nonzero()[0].tolist() == [2, 5, 8, 12, 15, 18]


def test_film_outputs_match():
    """Tags, generator and discriminator outputs from the same weights, batch norm on the
    batch's statistics and dropout off, to 1e-9 of their scale in float64."""
    (enc, dec, dis), trainer = film_twins()
    x, t = film_batch([0, 1, 2])
    with net.generating():
        hs, tags = enc(x)
        y = dec((hs, tags))
        d = dis(x, y)
    with torch.no_grad():
        t_hs, t_tags = trainer.enc(torch.from_numpy(x))
        t_y = trainer.dec((t_hs, t_tags))
        t_d = trainer.dis(torch.from_numpy(x), t_y)
    for theirs, ours in ((t_tags.c, tags.c), (t_tags.each, tags.each), (t_tags.present, tags.present),
                         (t_hs[-1], hs[-1]), (t_y, y), (t_d, d)):
        ours = getattr(ours, 'array', ours)
        np.testing.assert_allclose(theirs.numpy(), ours, rtol=0, atol=1e-9 * np.abs(ours).max())
    assert np.abs(d.array).max() > 0.1 and np.ptp(y.array) > 0.1  # outputs, not zeros


def test_film_step_matches_the_updaters():
    """One TextPix2pixUpdater step with the demo's film losses on a drawn and a blank
    example, and FilmTrainer's from the same weights and the same random pixels: every
    loss to 1e-9 of itself, every updated weight to 1e-8 of the step size. Chainer's Adam
    adds eps to sqrt(v) before the bias correction, PyTorch's after; eps * sqrt(1 - beta2)
    on Chainer's side makes the first step the same formula."""
    (enc, dec, dis), trainer = film_twins()
    film = bench.film_training()
    x, t = film_batch([0, 2])  # example 2 is blank
    lr = 2e-4
    optimizers = {name: updater.make_optimizer(link, lr) for name, link in
                  zip(('enc', 'dec', 'dis'), (enc, dec, dis))}
    for optimizer in optimizers.values():
        optimizer.eps = 1e-8 * np.sqrt(1 - optimizer.beta2)
    step = updater.TextPix2pixUpdater(
        models=(enc, dec, dis), iterator={'main': chainer.iterators.SerialIterator([], 1)},
        optimizer=optimizers, gate_weight=film.gate_loss, **updater.blank_loss_options(film))
    reporter = chainer.Reporter()
    for name, link in (('enc', enc), ('dec', dec), ('dis', dis)):
        reporter.add_observer(name, link)
    observed = {}
    np.random.seed(3)
    with reporter.scope(observed), chainer.using_config('user_dropout', False):
        step.step(x, t)

    pixels = trainer.colour_loss.pixels
    trainer.colour_loss.sample = lambda count: torch.from_numpy(np.random.permutation(count)[:pixels])
    np.random.seed(3)
    losses = trainer.step(torch.from_numpy(x), torch.from_numpy(t))
    assert set(losses) == set(observed) - {'enc/loss'}
    for name, value in losses.items():
        assert float(value) == pytest.approx(float(observed[name].array), rel=1e-9), name
    assert float(losses['dec/colours']) > 0.01 and float(losses['dis/loss']) > 0.1
    for theirs, ours in zip((trainer.enc, trainer.dec, trainer.dis), (enc, dec, dis)):
        weights = {name.lstrip('/'): param.array for name, param in ours.namedparams()}
        # The biases of the convolutions that batch norm follows: their gradient is zero but
        # for rounding, so both sides' steps are rounding noise (under 1e-6 of a step here)
        # and compare only in staying that small. They start at zero.
        noise = {name + '.c.bias' for name, module in theirs.named_modules()
                 if isinstance(module, bench_torch.ConvBNR) and module.bn is not None}
        for name, param in theirs.named_parameters():
            want = weights[bench_torch.chainer_names(theirs)[name]]
            got = param.detach().numpy().reshape(want.shape)
            if name in noise:
                assert max(np.abs(got).max(), np.abs(want).max()) < 1e-5 * lr, name
            else:
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-8 * lr, err_msg=name)


def test_film_weight_average_matches_train_extensions():
    """train_extensions.WeightAverage and the twin's over three updates of the same
    weights, to 1e-12 (lerp rounds otherwise than Chainer's multiply and add)."""
    import train_extensions
    (enc, dec, _), trainer = film_twins()
    ours = train_extensions.WeightAverage((enc, dec), (enc, dec), trainer.average.decay)
    rng = np.random.RandomState(4)
    for _ in range(3):
        for twin, link in zip((trainer.enc, trainer.dec), (enc, dec)):
            weights = {name.lstrip('/'): param.array for name, param in link.namedparams()}
            for name, param in twin.named_parameters():
                want = weights[bench_torch.chainer_names(twin)[name]]
                want += rng.normal(0, 0.01, want.shape)
                with torch.no_grad():
                    param.copy_(torch.from_numpy(want).reshape(param.shape))
        trainer.average.update()
        ours(None)
    for twin, link in zip(trainer.average.models, ours.links):
        averages = {name.lstrip('/'): param.array for name, param in link.namedparams()}
        for name, param in twin.named_parameters():
            want = averages[bench_torch.chainer_names(twin)[name]]
            np.testing.assert_allclose(param.numpy().reshape(want.shape), want, rtol=0, atol=1e-12,
                                       err_msg=name)
    # An average, not a copy: the noise's 0.01 shows through.
    with torch.no_grad():
        assert float((trainer.enc.c0.weight - trainer.average.models[0].c0.weight).abs().max()) > 1e-3


def test_film_runners_train_the_demos_design_on_the_same_batches():
    device = chainer.get_device('@numpy')
    chainer_run = bench.ChainerRunner(device, 4, 3, 128, 'fp32', 'all', design='film')
    torch_run = bench.TorchRunner(-1, 4, 3, 128, 'fp32', design='film')
    film = bench.film_training()
    assert isinstance(torch_run.trainer, bench_torch.FilmTrainer)
    assert chainer_run.enc.design == bench.film_design_of(film) == torch_run.trainer.design
    assert (chainer_run.updater.blank_loss, chainer_run.updater.gate_weight, chainer_run.average.decay) == (
        'colours', torch_run.trainer.gate_weight, torch_run.trainer.average.decay)
    iterator = chainer_run.updater.get_iterator('main')
    blanks = 0
    for _ in range(5):  # 15 examples: the 10, then 0 to 4 again
        x, t = chainer_run.updater.converter(iterator.next(), device)
        tx, tt = torch_run.next_batch()
        np.testing.assert_array_equal(x, tx)
        np.testing.assert_array_equal(t, tt)
        blanks += int(updater.blank_examples(x).sum())
    assert blanks == 4  # examples 2, 5, 8 and, the second time round, 2


def test_bench_times_the_film_design_on_both_sides(capsys):
    code, out, results = bench_main(capsys, ['--design', 'film', '--task', 'train', 'colorize',
                                           '--size', '128', '--width', '4', '--batch', '2',
                                           '--impl', 'chainer', 'torch',
                                           '--warmup', '1', '--steps', '2', '--repeats', '1', '--json'])
    assert code == 0 and 'left out' not in out
    assert [(r['task'], r['design'], r['impl']) for r in results] == [
        ('train', 'film', 'chainer'), ('train', 'film', 'torch'),
        ('colorize', 'film', 'chainer'), ('colorize', 'film', 'torch')]
    assert [r['ratio_vs_torch'] for r in results if r['impl'] == 'torch'] == [1.0, 1.0]
