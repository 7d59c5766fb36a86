"""Training end to end: outputs, snapshots that resume to the same state, bad input."""
import json
import os
import zipfile

import numpy as np
import pytest

import compat  # noqa: F401
import chainer

import train_facade_text
import train_extensions


def test_training_writes_model_snapshots_previews_and_log(tiny_model):
    files = set(os.listdir(tiny_model))
    assert {'model.json', 'enc.npz', 'dec.npz', 'tag_vectors.txt', 'log',
            'snapshot_iter_3.npz', 'snapshot_iter_6.npz'} <= files
    assert os.path.exists(tiny_model / 'preview' / 'iter_6.png')
    settings = json.loads((tiny_model / 'model.json').read_text(encoding='utf-8'))
    assert settings['width'] == 8 and settings['size'] == 128 and settings['drawing'] == 'paired'
    log = json.loads((tiny_model / 'log').read_text())
    assert log[-1]['iteration'] == 6 and 'dec/l1' in log[-1] and 'dis/loss' in log[-1]
    for name in ('enc.npz', 'dec.npz', 'snapshot_iter_6.npz'):  # written without zlib (save_npz)
        with zipfile.ZipFile(tiny_model / name) as archive:
            assert {entry.compress_type for entry in archive.infolist()} == {zipfile.ZIP_STORED}


def run_to(out, data, iteration, resume=None):
    argv = ['-i', str(data), '-o', str(out), '--width', '8', '--size', '128', '--iteration', str(iteration),
            '--snapshot_interval', '2', '--display_interval', '2', '--lr', '2e-4', '--seed', '1']
    if resume:
        argv += ['-r', resume]
    assert train_facade_text.main(argv) == 0


def weights(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_snapshot_resumes_to_the_same_state(small_data, tmp_path):
    run_to(tmp_path / 'straight', small_data, 4)
    run_to(tmp_path / 'resumed', small_data, 2)
    run_to(tmp_path / 'resumed', small_data, 4, resume='latest')
    a = weights(tmp_path / 'straight' / 'snapshot_iter_4.npz')
    b = weights(tmp_path / 'resumed' / 'snapshot_iter_4.npz')
    assert a.keys() == b.keys()
    compared = [k for k in a if k.startswith('updater/')   # networks, optimizers, iterator
                and '/avg_' not in k and not k.endswith('/N')]  # batch-norm running averages, never read
    assert any('/optimizer:enc/' in k for k in compared) and any('/model:dec/' in k for k in compared)
    for key in compared:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # loss.png's points: one per display interval, none for a resume's first update
    plotted = [k for k in a if k.endswith('_plot_loss.png')]
    assert len(plotted) == 1
    points = json.loads(str(b[plotted[0]]))
    assert [x for x, _ in points['dec/l1']] == [2, 4]
    assert points == json.loads(str(a[plotted[0]]))


def test_snapshot_from_before_loss_plot_kept_its_trigger_resumes_quietly(small_data, tmp_path, recwarn):
    run_to(tmp_path / 'old', small_data, 2)
    snapshot = tmp_path / 'old' / 'snapshot_iter_2.npz'
    old = {k: v for k, v in weights(snapshot).items() if 'PlotReport/_trigger/' not in k}
    assert len(old) < len(weights(snapshot))
    np.savez(snapshot, **old)
    run_to(tmp_path / 'old', small_data, 4, resume='latest')
    points = json.loads(str(weights(tmp_path / 'old' / 'snapshot_iter_4.npz')
                            ['extensions/PlotReport/_plot_loss.png']))
    assert [x for x, _ in points['dec/l1']] == [2, 4]
    assert not [w for w in recwarn if 'previous value' in str(w.message)]


def test_the_weight_average_is_the_exponential_moving_average_of_the_trained_weights():
    source = chainer.links.Linear(2, 3)
    average = train_extensions.WeightAverage((source,), (source,), decay=0.3)
    assert average.links[0] is not source
    seen = []
    for step in range(5):
        source.W.array[...] = step + 1  # the weights after update step + 1
        average(None)
        seen.append(float(average.links[0].W.array[0, 0]))
    # It starts at the first update's weights (1), then keeps (1 + n) / (10 + n) of itself,
    # at most the decay: 2/11 of 1 + 9/11 of 2; 3/12 of that + 9/12 of 3; then 0.3 twice.
    by_hand = [1, 20 / 11, 2.7045454545, 0.3 * 2.7045454545 + 0.7 * 4, 0.3 * 3.6113636364 + 0.7 * 5]
    np.testing.assert_allclose(seen, by_hand, rtol=1e-6)
    np.testing.assert_array_equal(source.W.array, 5)  # the trained weights are left alone


def test_ema_decay_must_be_under_one(capsys):
    for value in ('1', '-0.1'):
        with pytest.raises(SystemExit) as exit:
            train_facade_text.parse_args(['--ema-decay', value])
        assert exit.value.code == 2
    assert '--ema-decay is at least 0 and under 1' in capsys.readouterr().err


def test_missing_snapshot_and_data_are_one_line_errors(small_data, tmp_path, capsys):
    assert train_facade_text.main(['-i', str(small_data), '-o', str(tmp_path), '--width', '8',
                                   '--size', '128', '--iteration', '1',
                                   '-r', str(tmp_path / 'nope.npz')]) == 1
    assert train_facade_text.main(['-i', str(tmp_path / 'no-data'), '-o', str(tmp_path)]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith('error: ') for e in errors)
    assert 'nope.npz' in errors[0] and 'no-data' in errors[1]


def test_size_must_fit_the_encoder(capsys):
    try:
        train_facade_text.main(['--size', '200'])
    except SystemExit as exit:
        assert exit.code == 2
    assert 'multiple of 128' in capsys.readouterr().err


def test_resume_keeps_the_saved_tag_vectors(small_data, tmp_path):
    """A resumed run colours with the vectors its snapshot learnt, even if word2vec would now give others."""
    out = tmp_path / 'run'
    run_to(out, small_data, 2)
    path = out / 'tag_vectors.txt'
    header, *rows = path.read_text(encoding='utf-8').splitlines()
    tag, *values = rows[0].split(' ')
    rows[0] = ' '.join([tag] + ['0.5'] * len(values))  # what retraining could never produce
    path.write_text('\n'.join([header] + rows) + '\n', encoding='utf-8')
    run_to(out, small_data, 4, resume='latest')
    resumed_row = path.read_text(encoding='utf-8').splitlines()[1].split(' ')
    assert resumed_row[0] == tag and [float(v) for v in resumed_row[1:]] == [0.5] * len(values)


def test_progress_into_a_log_is_plain_lines_and_whole_seconds(small_data, tmp_path, capsys):
    from conftest import TINY_TRAINING
    assert train_facade_text.main(['-i', str(small_data), '-o', str(tmp_path / 'run')] + TINY_TRAINING) == 0
    out = capsys.readouterr().out
    assert '\x1b' not in out and 'inf' not in out
    assert 'enc/loss' in out  # PrintReport's table is in this output too
    progress = [line for line in out.splitlines() if ' of 6 iterations ' in line]
    assert progress == ['3 of 6 iterations (50.00%), epoch 0; unknown yet left',
                        '6 of 6 iterations (100.00%), epoch 0; 0:00:00 left'], out


def test_progress_on_a_terminal_is_redrawn_in_place():
    import io
    import types

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    progress = train_extensions.Progress(every=10, plain_every=100, out=terminal)
    updater = types.SimpleNamespace(iteration=0, epoch=0, epoch_detail=0.0)
    trainer = types.SimpleNamespace(updater=updater, stop_trigger=types.SimpleNamespace(
        get_training_length=lambda: (40, 'iteration')))
    for iteration in range(1, 21):
        updater.iteration, updater.epoch_detail = iteration, iteration / 30
        progress(trainer)
    progress.finalize()
    drawings = terminal.getvalue().split('\x1b[J')
    assert len(drawings) == 4 and drawings[-1] == ''  # two drawings (at 10 and 20), then the erase
    assert drawings[2].startswith('     total [' + '#' * 25 + '.' * 25 + '] 50.00%\n')
    assert '20 of 40 iterations (50.00%), epoch 0; ' in drawings[2] and drawings[2].endswith('\x1b[4A')


def test_snapshots_hold_what_earlier_releases_resume_from(tiny_model):
    """The extensions a snapshot holds, by name, as the release before the NaN check and
    the progress lines wrote them: a run upgraded between two of its snapshots resumes
    (the strict loader wants every key the trainer asks for)."""
    with np.load(tiny_model / 'snapshot_iter_6.npz') as snapshot:
        names = sorted({'/'.join(key.split('/')[:2]) for key in snapshot.files
                        if key.startswith('extension')})
    assert names == ['extension_triggers/LogReport', 'extension_triggers/PlotReport',
                     'extension_triggers/PrintReport', 'extension_triggers/ProgressBar',
                     'extension_triggers/preview', 'extension_triggers/random_states',
                     'extension_triggers/save_model', 'extension_triggers/snapshot',
                     'extension_triggers/stop_on_signal', 'extensions/LogReport', 'extensions/PlotReport',
                     'extensions/random_states']


def test_compare_runs_finds_the_same_models_the_same_and_others_different(small_data, tiny_model, tmp_path,
                                                                          capsys):
    """benchmarks/compare_runs.py, a refactor's check: a run repeated with the same flags is
    identical to the bit; one with another seed is not."""
    import compare_runs
    from conftest import TINY_TRAINING
    again, other = tmp_path / 'again', tmp_path / 'other'
    assert train_facade_text.main(['-i', str(small_data), '-o', str(again)] + TINY_TRAINING) == 0
    assert train_facade_text.main(['-i', str(small_data), '-o', str(other), '--seed', '1']
                                  + TINY_TRAINING) == 0
    capsys.readouterr()
    assert compare_runs.main([str(tiny_model), str(again)]) == 0
    out = capsys.readouterr().out
    assert out.count(' identical') == 4 and out.endswith('identical\n')  # enc, dec, 2 snapshots
    assert compare_runs.main([str(tiny_model), str(other)]) == 1
    assert 'DIFFER: c0/W' in capsys.readouterr().out
