"""bench.py and its PyTorch reference: the same networks, losses and gradients as the port."""
import numpy as np
import pytest

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer

import bench
from conftest import bench_main
import net
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
