"""Faults and bad input, end to end.

1. Training killed at several points (SIGKILL, SIGTERM, two SIGINTs; inside a scheduled
   snapshot write, inside the snapshot a stop saves, between snapshots) resumes with
   ``-r latest`` to the very state of an unbroken run and leaves nothing behind.
2. One table of bad inputs to colorize.py, train_facade_text.py, server.py's start-up
   and the running server (BAD_INPUTS): each row is answered with its exit code or HTTP
   status, a one-line message holding the row's words, no traceback, and nothing written.
   Adding a case is adding a row.
"""
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from PIL import Image

import atomic
import colorize
import colour_model
import compat
import load_test
import server
import train_facade_text
import train_extensions
from conftest import TINY_TRAINING

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_TIMEOUT = 120  # seconds a training subprocess may take (it takes about 8)
MODEL_FILES = ('model.json', 'enc.npz', 'dec.npz', 'tag_vectors.txt', 'figure_prior.npz')


# ---- 1. training killed, then resumed ----

def start_training(out, data, pause_dir=None):
    env = dict(os.environ)
    if pause_dir:
        env[train_extensions.PAUSE_IN_SNAPSHOT] = str(pause_dir)
    log = open(str(out) + '.log', 'w')
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'train_facade_text.py'), '-i', str(data), '-o', str(out)]
        + TINY_TRAINING,
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process


def output_of(out):
    with open(str(out) + '.log', encoding='utf-8', errors='replace') as f:
        return f.read()


def wait_until(condition, process, out, what):
    deadline = time.monotonic() + RUN_TIMEOUT
    while not condition():
        if process.poll() is not None:
            raise AssertionError('training exited ({}) before {}:\n{}'.format(process.returncode, what,
                                                                              output_of(out)))
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError('no {} within {} s'.format(what, RUN_TIMEOUT))
        time.sleep(0.01)


def leftovers(out):
    return sorted(name for name in os.listdir(out)
                  if name.startswith(('.', 'tmp')) or atomic.is_temporary(out, name))


def trained_state(path):
    """The networks, optimizers and iterator of a trainer snapshot (batch-norm running
    averages left out: never read, as in test_train)."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files
                if k.startswith('updater/') and '/avg_' not in k and not k.endswith('/N')}


# Each case: what the test does at each pause of the snapshot writer, in order ('go':
# let it finish; INT/TERM: send that signal, then let it finish; KILL: SIGKILL there;
# pauses beyond the list are let go), the exit code, and what the output must say.
# The tiny run snapshots at iterations 3 and 6; a stop saves snapshot_iter_3 again.
KILLS = [
    ('SIGKILL inside the scheduled snapshot_iter_6 write', ['go', 'KILL'], -signal.SIGKILL, ''),
    ('SIGTERM inside the scheduled snapshot_iter_3 write', ['TERM'], 128 + signal.SIGTERM,
     'Stopped by SIGTERM'),
    ('SIGINT, then SIGINT inside the stop snapshot write', ['INT', 'INT'], 128 + signal.SIGINT,
     'still saving'),
    ('SIGINT, then SIGKILL inside the stop snapshot write', ['INT', 'KILL'], -signal.SIGKILL, ''),
    ('SIGKILL between snapshots', None, -signal.SIGKILL, ''),
]


@pytest.mark.parametrize('case, actions, exit_code, said', KILLS, ids=[k[0] for k in KILLS])
def test_killed_training_resumes_to_the_unbroken_state(case, actions, exit_code, said, small_data, tiny_model,
                                                       tmp_path, capsys):
    out, pause_dir = tmp_path / 'run', tmp_path / 'pause'
    pause_dir.mkdir()
    marker = pause_dir / 'paused'
    process = start_training(out, small_data, pause_dir if actions is not None else None)
    try:
        if actions is None:  # no pause: kill once the first snapshot is there
            wait_until(lambda: (out / 'snapshot_iter_3.npz').exists(), process, out, 'snapshot_iter_3.npz')
            process.kill()
        for action in actions or []:
            wait_until(marker.exists, process, out, 'a pause in the snapshot writer')
            if action == 'KILL':
                process.kill()
                break
            if action != 'go':
                process.send_signal(getattr(signal, 'SIG' + action))
                time.sleep(0.2)  # the handler runs while the writer waits
            marker.unlink()
        while process.poll() is None:  # let any further pause go
            if marker.exists():
                marker.unlink()
            time.sleep(0.01)
        assert process.wait(RUN_TIMEOUT) == exit_code, output_of(out)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = output_of(out)
    assert said in log and 'Traceback' not in log, log
    if actions and actions[-1] == 'KILL':
        assert any(name.endswith(atomic.TEMP_SUFFIX) for name in leftovers(out))  # killed inside a write

    capsys.readouterr()
    assert train_facade_text.main(['-i', str(small_data), '-o', str(out), '-r', 'latest']
                                  + TINY_TRAINING) == 0
    resumed = capsys.readouterr()
    assert 'Resumed from {} at iteration 3'.format(out / 'snapshot_iter_3.npz') in resumed.out
    assert leftovers(out) == []
    assert sorted(p.name for p in out.glob('snapshot_iter_*.npz')) == ['snapshot_iter_3.npz',
                                                                       'snapshot_iter_6.npz']
    unbroken = trained_state(tiny_model / 'snapshot_iter_6.npz')
    resumed_state = trained_state(out / 'snapshot_iter_6.npz')
    assert resumed_state.keys() == unbroken.keys() and any('/model:dec/' in k for k in unbroken)
    for key in unbroken:
        np.testing.assert_array_equal(resumed_state[key], unbroken[key], err_msg=key)


def test_latest_skips_damaged_snapshots_and_removes_stale_temporaries(small_data, tiny_model, tmp_path,
                                                                       capsys):
    out = tmp_path / 'run'
    shutil.copytree(tiny_model, out)
    (out / 'snapshot_iter_6.npz').write_bytes((tiny_model / 'snapshot_iter_6.npz').read_bytes()[:100000])
    stale = ['.snapshot_iter_9.npz.0a1b2c3d.part', 'logab_cd123', 'tmpsnapshot_iter_9.npzk2j4h5g6']
    (out / stale[0]).write_bytes(b'half a snapshot')
    for folder, name in ((stale[1], 'log.json'), (stale[2], 'snapshot_iter_9.npz')):
        (out / folder).mkdir()
        (out / folder / name).write_bytes(b'half')
    (out / 'logs_of_mine').mkdir()  # a user's folder: left alone
    assert train_facade_text.main(['-i', str(small_data), '-o', str(out), '-r', 'latest']
                                  + TINY_TRAINING) == 0
    captured = capsys.readouterr()
    assert 'Resumed from {} at iteration 3'.format(out / 'snapshot_iter_3.npz') in captured.out
    skipped = [line for line in captured.err.splitlines() if line.startswith('warning: skipped 1 snapshot')]
    assert len(skipped) == 1 and 'snapshot_iter_6.npz is not a complete .npz file' in skipped[0]
    assert all(name in captured.out for name in stale)
    assert leftovers(out) == [] and (out / 'logs_of_mine').is_dir()
    unbroken = trained_state(tiny_model / 'snapshot_iter_6.npz')
    for key, value in trained_state(out / 'snapshot_iter_6.npz').items():
        np.testing.assert_array_equal(value, unbroken[key], err_msg=key)


# ---- 2. bad inputs ----

def damage(*steps):
    """A preparation: steps applied to the row's folder (which holds copies of the tiny
    model in model/, of the data in data/, and an empty out/)."""
    def prepare(folder):
        for step in steps:
            step(folder)
    return prepare


def truncate(path, keep=0.5):
    def step(folder):
        data = (folder / path).read_bytes()
        (folder / path).write_bytes(data[:int(len(data) * keep)])
    return step


def write(path, content):
    def step(folder):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content if isinstance(content, bytes) else content.encode('utf-8'))
    return step


def copy(source, target):
    def step(folder):
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / source, folder / target)
    return step


def snapshots(folder):
    """out/ as a run left it: the tiny model's snapshots and tag vectors."""
    for name in ('snapshot_iter_3.npz', 'snapshot_iter_6.npz', 'tag_vectors.txt'):
        shutil.copyfile(folder / 'tiny' / name, folder / 'out' / name)


def run_folder(folder):
    """out/ as a run left it, with its model.json."""
    snapshots(folder)
    shutil.copyfile(folder / 'tiny' / 'model.json', folder / 'out' / 'model.json')


def untagged(folder):
    for sidecar in (folder / 'data').rglob('*.txt'):
        sidecar.unlink()


def no_tag_files_but(name, content):
    return damage(untagged, write('data/train/' + name, content))


class MakesAFile:
    """Unpickling this creates the file ``path``: what a model file that runs code would do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')


def pickled(path):
    """The .npz at path gains an array of Python objects whose unpickling writes
    ran_code.txt beside it (the row's check that nothing was written catches it)."""
    def step(folder):
        with np.load(folder / path) as f:
            arrays = {key: f[key] for key in f.files}
        first = sorted(arrays)[0]
        arrays[first] = np.array([MakesAFile(str(folder / 'ran_code.txt'))], dtype=object)
        np.savez(folder / path, **arrays)
    return step


def not_finite(path):
    """One weight of the .npz at path turned to NaN."""
    def step(folder):
        with np.load(folder / path) as f:
            arrays = {key: f[key].copy() for key in f.files}
        arrays['c0/W'].flat[0] = np.nan
        np.savez(folder / path, **arrays)
    return step


def settings(**changes):
    """model/model.json with some values changed (a key path 'a.b' changes a nested one)."""
    def step(folder):
        path = folder / 'model' / 'model.json'
        values = json.loads(path.read_text(encoding='utf-8'))
        for key, value in changes.items():
            *parents, last = key.split('__')
            inner = values
            for parent in parents:
                inner = inner[parent]
            inner[last] = value
        path.write_text(json.dumps(values, ensure_ascii=False), encoding='utf-8')
    return step


BROKEN_UTF8 = b'\xe9\x9f\xbf,\xff\xfe,tag'

# entry point, the bad input, its argv (after the entry point's defaults, DEFAULTS) or
# its HTTP request (see request()), how the row's folder is damaged, the expected exit
# code or HTTP status ('closed': the server drops the connection), and the words (one
# string or several) the message (stderr, warnings, the JSON error) must hold. A run
# that trains past unreadable tag data also lists the first words' file in skipped.txt.
BAD_INPUTS = [
    ('colorize', 'output folder missing', '-o {tmp}/missing/out.png', None, 1, 'does not exist'),
    ('colorize', 'output folder read-only', '-o {readonly}/out.png', None, 1, 'cannot write'),
    ('colorize', 'output is a folder', '-o {tmp}', None, 1, 'is a folder'),
    ('colorize', 'output without an image extension', '-o {tmp}/out.txt', None, 1, 'image extension'),
    ('colorize', 'output without any extension', '-o {tmp}/picture', None, 1, 'image extension'),
    ('colorize', 'sheet of two tag sets into a missing folder', '-t 響 -t 暁 -o {tmp}/no/o.png', None, 1,
     'does not exist'),
    ('colorize', 'truncated enc.npz', '', damage(truncate('model/enc.npz')), 1, 'enc.npz is not a complete'),
    ('colorize', 'empty dec.npz', '', damage(truncate('model/dec.npz', 0)), 1, 'dec.npz is not a complete'),
    ('colorize', 'enc.npz of another network', '', damage(copy('model/dec.npz', 'model/enc.npz')), 1,
     'does not fit'),
    ('colorize', 'broken model.json', '', damage(truncate('model/model.json')), 1, 'model.json'),
    ('colorize', 'model.json that is a list', '', damage(write('model/model.json', '[]')), 1, 'model.json'),
    ('colorize', 'model.json with a text width', '',
     damage(write('model/model.json', '{"in_ch": 4, "out_ch": 3, "width": "8", "size": 128}')), 1, '"width"'),
    ('colorize', 'model.json with tags that are not a list', '',
     damage(write('model/model.json', '{"in_ch": 4, "out_ch": 3, "width": 8, "size": 128, "tags": 5}')), 1,
     '"tags"'),
    ('colorize', 'truncated tag_vectors.txt', '', damage(truncate('model/tag_vectors.txt')), 1,
     'tag_vectors.txt'),
    ('colorize', 'tag_vectors.txt of 8 values in a 16-value model', '',
     damage(write('model/tag_vectors.txt', '2 8\na 1 2 3 4 5 6 7 8\nb 8 7 6 5 4 3 2 1\n')), 1,
     'vectors of 8 values, but the model reads 16'),
    ('colorize', 'model.json with a tag_dim of 0', '', damage(settings(tag_dim=0)), 1, '"tag_dim"'),
    ('colorize', 'truncated figure_prior.npz', '', damage(truncate('model/figure_prior.npz')), 1,
     'figure_prior.npz cannot be read'),
    ('colorize', 'a 5000-character unknown tag', '-t ' + 'x' * 5000, None, 1, '(5000 characters)'),
    ('colorize', 'drawing missing', '-i {tmp}/none.png', None, 1, 'no such file'),
    ('colorize', 'drawing not an image', '-i {tmp}/model/model.json', None, 1, 'not a readable image'),
    ('colorize', 'no model', '--model {tmp}/none', None, 1, 'no trained model'),
    ('colorize', 'size not a multiple of 128', '--size 100', None, 2, 'multiple of 128'),
    ('colorize', 'a side of 1,280,000 pixels', '--size 1280000', None, 2, 'at most 4096'),
    ('colorize', 'output onto the input drawing', '-i {drawing_copy} -o {drawing_copy}', None, 1,
     'is the input drawing'),
    ('colorize', 'a hint outside the drawing', '--hint 5000,5,#102030', None, 1, 'lies outside'),
    ('colorize', 'a hint that is no hint', '--hint 5,5,blue', None, 2, 'X,Y,#RRGGBB'),
    ('colorize', 'a hints picture that is missing', '--hints {tmp}/none_hints.png', None, 1, 'no such file'),
    ('colorize', 'a folder coloured into itself', '-i {tmp} -o {tmp}', None, 1, 'input folder'),
    ('colorize', 'a folder coloured into a file', '-i {tmp}/data -o {tmp}/model/model.json', None, 1,
     'is a file'),
    ('colorize', 'a 245-character output name', '-o {tmp}/out/' + 'x' * 241 + '.png', None, 1, 'too long'),
    ('colorize', 'enc.npz holding a pickled object', '', damage(pickled('model/enc.npz')), 1,
     'enc.npz holds pickled Python objects'),
    ('colorize', 'enc.npz with a NaN weight', '', damage(not_finite('model/enc.npz')), 1,
     'enc.npz holds weights that are not finite'),
    ('colorize', 'model.json with width 100000', '', damage(settings(width=100000)), 1, '"width"'),
    ('colorize', 'model.json with size 100', '', damage(settings(size=100)), 1, '"size"'),
    ('colorize', 'model.json with 0 slots', '', damage(settings(tag_design=dict(
        layout='slots', dim=16, slots=0, hidden=64, gate='per_tag', gate_gain=5.0, projection=True,
        coords=True))), 1, '"tag_design.slots"'),
    ('colorize', 'model.json with "x" slots', '', damage(settings(tag_design=dict(
        layout='slots', dim=16, slots='x', hidden=64, gate='per_tag', gate_gain=5.0, projection=True,
        coords=True))), 1, '"tag_design.slots"'),

    ('train', 'dataset folder missing', '-i {tmp}/none', None, 1, 'does not exist'),
    ('train', 'a folder without images', '-i {tmp}/model', None, 1, 'no images'),
    ('train', '-r a missing snapshot', '-r {tmp}/none.npz', None, 1, 'no snapshot'),
    ('train', '-r latest without snapshots', '-r latest', None, 1, 'no snapshot'),
    ('train', '-r a truncated snapshot', '-r {tmp}/out/snapshot_iter_6.npz',
     damage(snapshots, truncate('out/snapshot_iter_6.npz')), 1, 'snapshot_iter_6.npz is not a complete'),
    ('train', '-r latest, every snapshot damaged', '-r latest',
     damage(snapshots, truncate('out/snapshot_iter_6.npz'), truncate('out/snapshot_iter_3.npz', 0.9)), 1,
     'cannot resume'),
    ('train', '-r latest of another network', '-r latest --width 16', damage(run_folder), 1,
     'trained with width 8'),
    ('train', '-r latest of a snapshot without its model.json', '-r latest --width 16', damage(snapshots), 1,
     'does not fit'),
    ('train', '-r latest at another size', '-r latest --size 256', damage(run_folder), 1,
     'trained with size 128'),
    ('train', '-r latest with --no-tag', '-r latest --no-tag', damage(run_folder), 1,
     'trained with tag_vectors "tag_vectors.txt"'),
    ('train', '-r a snapshot of another folder without its tag vectors',
     '-r {tmp}/elsewhere/snapshot_iter_6.npz',
     damage(copy('tiny/snapshot_iter_6.npz', 'elsewhere/snapshot_iter_6.npz')), 1,
     'elsewhere/tag_vectors.txt is missing'),
    ('train', '-r latest with tag vectors holding a word twice', '-r latest',
     damage(snapshots, write('out/tag_vectors.txt', '3 2\na 0.1 0.2\nb 0.3 0.4\na 0.5 0.6\n')), 1,
     'more than once'),
    ('train', '-r latest with 8-value tag vectors in a film run', '-r latest --tag-design film',
     damage(snapshots, write('out/tag_vectors.txt', '2 8\na 1 2 3 4 5 6 7 8\nb 8 7 6 5 4 3 2 1\n')), 1,
     'reads tag vectors of --tag-dim 16 values, but these hold 8'),
    ('train', '-r latest with truncated tag vectors', '-r latest',
     damage(snapshots, truncate('out/tag_vectors.txt')), 1, 'tag_vectors.txt'),
    ('train', '--vectors missing', '--vectors {tmp}/none.txt', None, 1, 'no such file'),
    ('train', '--vectors that are not word vectors', '--vectors {tmp}/model/model.json', None, 1, 'word2vec'),
    ('train', 'output path is a file', '-o {tmp}/model/model.json', None, 1, 'cannot write'),
    ('train', 'output folder read-only', '-o {readonly}/out', None, 1, 'cannot write'),
    ('train', 'size not a multiple of 128', '--size 200', None, 2, 'multiple of 128'),
    ('train', '-r a snapshot holding a pickled object', '-r {tmp}/out/snapshot_iter_6.npz',
     damage(snapshots, pickled('out/snapshot_iter_6.npz')), 1, 'pickled Python objects'),
    ('train', 'snapshot interval 0', '--snapshot_interval 0', None, 2, 'at least 1'),
    ('train', 'display interval 0', '--display_interval 0', None, 2, 'at least 1'),
    ('train', 'batch of 0', '-b 0', None, 2, 'at least 1'),
    ('train', 'width 0', '--width 0', None, 2, 'at least 2'),
    ('train', 'an odd width', '--width 9', None, 2, 'even'),
    ('train', 'tag vectors of 0 values', '--tag-dim 0', None, 2, 'at least 1'),
    ('train', '0 slots', '--tag-design film --slots 0', None, 2, 'at least 1'),
    ('train', '0 epochs', '-e 0', None, 2, 'at least 1'),
    ('train', '0 updates', '--iteration 0', None, 2, 'at least 1'),
    ('train', '-5 updates', '--iteration -5', None, 2, 'at least 1'),
    ('train', 'tag dropout 2', '--tag-dropout 2', None, 2, 'at most 1'),
    ('train', 'blank fraction 1.5', '--blank-fraction 1.5', None, 2, 'at most 1'),
    ('train', '-1 loader processes', '-j -1', None, 2, 'at least 0'),
    ('train', 'a learning rate of nan', '--lr nan', None, 2, 'not a finite number'),
    ('train', 'a text learning rate', '--lr fast', None, 2, 'not a number'),
    ('train', 'tags.json that is a list', '', no_tag_files_but('tags.json', '["hibiki_0000", "響"]'), 0,
     ('tags.json (a JSON list', 'skipped 1 unreadable')),
    ('train', 'tags.json with non-string tags', '',
     no_tag_files_but('tags.json', '{"hibiki_0000": ["響", 5]}'), 0,
     ('tags.json "hibiki_0000" (tags must be', 'skipped 1 unreadable')),
    ('train', 'a tag file with broken UTF-8', '',
     damage(write('data/train/color/hibiki_0000.txt', BROKEN_UTF8)), 0,
     ('hibiki_0000.txt (not UTF-8', 'skipped 1 unreadable')),
    ('train', 'tags.tsv with a broken line', '',
     no_tag_files_but('tags.tsv', b'hibiki_0000\t\xe9\x9f\xbf\nakatsuki_0000\t\xff\n'), 0,
     ('tags.tsv:2 (not UTF-8', 'skipped 1 unreadable')),
    ('train', 'only untagged images, without --no-tag', '', damage(untagged), 0, 'zero tag plane'),

    ('server start', 'truncated enc.npz', '', damage(truncate('model/enc.npz')), 1, 'enc.npz'),
    ('server start', 'broken model.json', '', damage(truncate('model/model.json')), 1, 'model.json'),
    ('server start', 'truncated tag_vectors.txt', '', damage(truncate('model/tag_vectors.txt')), 1,
     'tag_vectors.txt'),
    ('server start', 'port in use', '--port {busy_port}', None, 1, 'cannot listen'),
    ('server start', 'enc.npz holding a pickled object', '', damage(pickled('model/enc.npz')), 1,
     'pickled Python objects'),
    ('server start', 'no connections allowed', '--max-connections 0', None, 2, 'must be positive'),

    ('http', 'Host of another site', dict(host='evil.example'), None, 400, '--allow-host'),
    ('http', 'Host of another site, with the port', dict(host='evil.example:{port}'), None, 400,
     '--allow-host'),
    ('http', 'Host ending in a loopback name', dict(host='localhost.evil.example'), None, 400,
     '--allow-host'),
    ('http', 'no Host (HTTP/1.0)', dict(host=None), None, 400, '--allow-host'),
    ('http', 'a 5000-character Host', dict(host='h' * 5000), None, 400, '(5000 characters)'),
    ('http', 'missing image', dict(image=None), None, 400, 'image'),
    ('http', 'not an image', dict(image=b'not an image'), None, 415, 'not a PNG'),
    ('http', 'GIF image', dict(image='GIF'), None, 415, 'not a PNG'),
    ('http', 'image over the pixel cap', dict(image=(700, 700)), None, 413, 'pixels'),
    ('http', 'too many tag sets', dict(tags=['響'] * 9), None, 400, 'tag sets'),
    ('http', 'a tag over 64 characters', dict(tags=['x' * 65]), None, 400, 'characters'),
    ('http', 'unknown tag', dict(tags=['no-such-tag']), None, 422, 'no-such-tag'),
    ('http', 'bad drawing kind', dict(fields=[('drawing', '../etc')]), None, 400, 'drawing'),
    ('http', 'body over the upload cap', dict(content_length=2 * 1024 * 1024), None, 413, 'max_body'),
    ('http', 'chunked body over the upload cap', dict(chunked=1100 * 1024), None, 413, 'max_body'),
    ('http', 'malformed request line', dict(raw=b'GET / HTTP/1.1 extra\r\nHost: localhost\r\n\r\n'), None,
     400, 'Start line is invalid'),
    ('http', 'HTTP/0.9 request line', dict(raw=b'BREW /coffee\r\n\r\n'), None, 400, '--allow-host'),
    ('http', 'a header line without a colon', dict(raw=b'GET / HTTP/1.1\r\nHost: localhost\r\nBad\r\n\r\n'),
     None, 400, 'Invalid header'),
    ('http', 'negative Content-Length', dict(raw=b'POST /api/colorize HTTP/1.1\r\nHost: localhost\r\n'
                                                 b'Content-Length: -5\r\n\r\n'), None, 400, 'Content-Length'),
    ('http', 'unsupported Transfer-Encoding', dict(raw=b'POST /api/colorize HTTP/1.1\r\nHost: localhost\r\n'
                                                       b'Transfer-Encoding: gzip\r\n\r\n'), None, 501,
     'not supported'),
    ('http', 'headers over the cap', dict(header_bytes=300 * 1024), None, 431, 'Header'),
    ('http', 'unknown route', dict(path='/api/nothing'), None, 404, 'not found'),
    ('http', 'wrong method', dict(method='GET'), None, 405, 'method'),
    ('http', 'a header line every 0.4 s', dict(slow=True), None, 'closed', ''),
    ('http', 'a connection that sends nothing', dict(silent=True), None, 'closed', ''),
]

DEFAULTS = {
    'colorize': '-i {drawing} --model {tmp}/model -o {tmp}/out/colorized.png',
    'train': '-i {tmp}/data -o {tmp}/out --width 8 --size 128 --iteration 1 --snapshot_interval 1 '
             '--display_interval 1 --tag-dim 16',
    'server start': '--model {tmp}/model --port 0',
}
MAIN = {'colorize': colorize.main, 'train': train_facade_text.main, 'server start': server.main}
# The server the http rows talk to: short limits, so that the slow rows take seconds.
HTTP_LIMITS = dict(read_timeout=1, idle_timeout=1)


def test_every_entry_point_has_bad_inputs():
    counts = {}
    for row in BAD_INPUTS:
        counts[row[0]] = counts.get(row[0], 0) + 1
    print('bad inputs per entry point:', counts)
    assert set(counts) == {'colorize', 'train', 'server start', 'http'} and min(counts.values()) >= 5


def files_under(folder):
    """{path: (size, mtime)} of every file (None for a folder) under folder, to see what a
    run wrote. (A folder's own mtime moves when colorize.py probes it: not a write.)"""
    found = {}
    for parent, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(parent, name)
            info = os.lstat(path)
            found[os.path.relpath(path, folder)] = None if name in dirs else (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture
def readonly(tmp_path):
    """A folder nobody may write in: chmod 555, or /sys where the tests run as root
    (root writes into any mode-555 folder)."""
    folder = tmp_path / 'readonly'
    folder.mkdir()
    folder.chmod(0o555)
    try:
        atomic.check_writable(str(folder))
        yield '/sys'
    except OSError:
        yield str(folder)
    finally:
        folder.chmod(0o755)


@pytest.fixture
def busy_port():
    with socket.create_server(('127.0.0.1', 0)) as taken:
        yield taken.getsockname()[1]


def format_argv(text, **places):
    return [part.format(**places) for part in text.split()]


COMMAND_ROWS = [row for row in BAD_INPUTS if row[0] != 'http']


@pytest.mark.parametrize('entry, case, argv, prepare, expected, words', COMMAND_ROWS,
                         ids=['{}: {}'.format(row[0], row[1]) for row in COMMAND_ROWS])
def test_bad_command_line_input(entry, case, argv, prepare, expected, words, small_data, tiny_model, tmp_path,
                                readonly, busy_port, capsys):
    folder = tmp_path / 'row'
    (folder / 'model').mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copyfile(tiny_model / name, folder / 'model' / name)
    shutil.copytree(small_data, folder / 'data')
    (folder / 'out').mkdir()
    os.symlink(tiny_model, folder / 'tiny')
    if prepare:
        prepare(folder)
    drawing = next((small_data / 'test' / 'line').glob('hibiki_*.png'))
    places = dict(tmp=folder, readonly=readonly, busy_port=busy_port, drawing=drawing,
                  drawing_copy=folder / 'data' / drawing.relative_to(small_data))
    before = files_under(folder)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            code = MAIN[entry](format_argv(DEFAULTS[entry], **places) + format_argv(argv, **places))
        except SystemExit as exit:  # argparse
            code = exit.code
    captured = capsys.readouterr()
    messages = captured.err + '\n'.join(str(w.message) for w in caught)
    words = (words,) if isinstance(words, str) else words
    print('ROW | {} | {} | expected {} | got {} | {}'.format(entry, case, expected, code, next(
        (line for line in messages.splitlines() if words[0] in line), '')[:200]))
    assert code == expected, messages
    assert all(word in messages for word in words), messages
    assert 'Traceback' not in messages
    assert all(len(line) < 500 for line in captured.err.splitlines())
    if expected == 1:  # one error line, the last (warnings may come before it)
        assert [line for line in captured.err.splitlines() if line.startswith('error: ')] == \
            captured.err.splitlines()[-1:]
    if expected != 0:
        assert files_under(folder) == before  # nothing written
    elif 'unreadable tag' in messages:
        assert words[0].split(' (')[0] in (folder / 'out' / 'skipped.txt').read_text(encoding='utf-8')


# ---- the running server ----

def png(size=(100, 60), fmt='PNG'):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0]), np.uint8), 'L').save(
        buffer, fmt)
    return buffer.getvalue()


def request(port, host='127.0.0.1:{port}', method='POST', path='/api/colorize', image=(100, 60), tags=('響',),
            fields=(), content_length=None, chunked=None, header_bytes=0, raw=None, **_):
    """The bytes of one HTTP request for a BAD_INPUTS row."""
    if raw is not None:
        return raw
    if isinstance(image, tuple):
        image = png(image)
    elif image == 'GIF':
        image = png(fmt='GIF')
    body, content_type = load_test.multipart([('tags', t) for t in tags] + list(fields), image)
    lines = ['{} {} HTTP/{}'.format(method, path, '1.1' if host else '1.0')]
    if host:
        lines.append('Host: ' + host.format(port=port))
    lines.append('Content-Type: ' + content_type)
    if header_bytes:
        lines.append('X-Padding: ' + 'p' * header_bytes)
    if chunked:
        lines.append('Transfer-Encoding: chunked')
        chunk = b'x' * 65536
        body = (b''.join(b'%x\r\n%s\r\n' % (len(chunk), chunk) for _ in range(chunked // len(chunk) + 1))
                + b'0\r\n\r\n')
    elif content_length:
        lines.append('Content-Length: {}'.format(content_length))
        body = b''  # the headers alone must be refused
    else:
        lines.append('Content-Length: {}'.format(len(body)))
    lines.append('Connection: close')
    return '\r\n'.join(lines).encode('utf-8') + b'\r\n\r\n' + body


def exchange(port, data, slow=False, silent=False, timeout=15):
    """Sends data (line by line, 0.4 s apart, if slow; nothing if silent) and reads the
    answer: (status, JSON error text) or ('closed', '') if the server hangs up first."""
    with socket.create_connection(('127.0.0.1', port), timeout=timeout) as sock:
        try:
            if slow:
                for line in data.split(b'\r\n')[:40]:
                    sock.sendall(line + b'\r\n')
                    time.sleep(0.4)
            elif not silent:
                sock.sendall(data)
        except OSError:  # the server closed while we were sending
            pass
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
        except (http.client.RemoteDisconnected, ConnectionError):
            return 'closed', ''
        body = response.read()
        assert response.getheader('Content-Type', '').startswith('application/json'), body[:200]
        return response.status, json.loads(body)['error']


@pytest.fixture(scope='module')
def running_server(tiny_model):
    model = colour_model.ColourModel.load(str(tiny_model), compat.get_device(-1))
    app = server.create_app(model, max_upload_mb=1, max_pixels=600 * 600, max_waiting=4, timeout=60)
    with server.serving_in_background(app, **HTTP_LIMITS) as url:
        yield int(url.rsplit(':', 1)[1].strip('/'))
    app.extensions['colouriser'].close()


@contextlib.contextmanager
def nothing_spooled(monkeypatch):
    """Uploads and answers stay in memory: waitress and Werkzeug spool through these."""
    import tempfile
    import werkzeug.formparser

    def refuse(*args, **kwargs):
        raise AssertionError('the server wrote a temporary file')
    for module, name in ((tempfile, 'TemporaryFile'), (tempfile, 'NamedTemporaryFile'), (tempfile, 'mkstemp'),
                         (werkzeug.formparser, 'SpooledTemporaryFile')):
        monkeypatch.setattr(module, name, refuse)
    yield


HTTP_ROWS = [row for row in BAD_INPUTS if row[0] == 'http']


@pytest.mark.parametrize('entry, case, spec, prepare, expected, words', HTTP_ROWS,
                         ids=['{}: {}'.format(row[0], row[1]) for row in HTTP_ROWS])
def test_bad_http_request(entry, case, spec, prepare, expected, words, running_server, tiny_model,
                          monkeypatch):
    before = files_under(tiny_model)
    with nothing_spooled(monkeypatch):
        status, error = exchange(running_server, request(running_server, **spec), spec.get('slow'),
                                 spec.get('silent'))
    print('ROW | {} | {} | expected {} | got {} | {}'.format(entry, case, expected, status, error[:160]))
    assert status == expected, error
    assert words in error and '\n' not in error and len(error) < 500
    assert files_under(tiny_model) == before


def test_the_good_request_and_a_big_upload_pass_the_same_checks(running_server, monkeypatch):
    """The control of the table: the same requests, well formed, are answered 200, and
    a 900 kB upload (waitress would spool over 512 kB) stays in memory."""
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (550, 550, 3), np.uint8)).save(big, 'PNG')
    assert len(big.getvalue()) > 600 * 1024
    with nothing_spooled(monkeypatch):
        for spec in (dict(), dict(host='localhost:{port}'), dict(host='LocalHost'), dict(host='[::1]:{port}'),
                     dict(image=big.getvalue())):
            with socket.create_connection(('127.0.0.1', running_server), timeout=30) as sock:
                sock.sendall(request(running_server, **spec))
                response = http.client.HTTPResponse(sock)
                response.begin()
                assert response.status == 200 and response.getheader('Content-Type') == 'image/png', spec
                assert Image.open(io.BytesIO(response.read())).size in ((100, 60), (550, 550))


# ---- the second sweep: runs that meet each other, a full disk, weights gone NaN ----

def test_a_second_training_into_a_folder_in_use_refuses(small_data, tmp_path, capsys):
    """The second run says whose the folder is and touches nothing; the first finishes whole."""
    out, pause_dir = tmp_path / 'run', tmp_path / 'pause'
    pause_dir.mkdir()
    first = start_training(out, small_data, pause_dir)
    try:
        wait_until((pause_dir / 'paused').exists, first, out, 'a pause in the snapshot writer')
        before = files_under(out)
        capsys.readouterr()
        code = train_facade_text.main(['-i', str(small_data), '-o', str(out)] + TINY_TRAINING)
        err = capsys.readouterr().err
        assert files_under(out) == before  # the first's temporary snapshot file included
    finally:
        while first.poll() is None:
            (pause_dir / 'paused').unlink(missing_ok=True)
            time.sleep(0.01)
    assert code == 1 and err.splitlines() == [
        'error: {} is in use by another training (PID {}): give another -o, or wait until it ends'.format(
            out, first.pid)]
    assert first.wait(RUN_TIMEOUT) == 0, output_of(out)
    assert leftovers(out) == [] and (out / 'snapshot_iter_6.npz').exists()
    colour_model.load_model(str(out), None, compat.get_device(-1))


def test_training_whose_weights_turn_nan_stops_and_keeps_the_last_good_files(small_data, tiny_model, tmp_path,
                                                                              capsys):
    out = tmp_path / 'run'
    shutil.copytree(tiny_model, out)
    not_finite_snapshot = out / 'nan.npz'  # beside the run's tag vectors and model.json
    with np.load(out / 'snapshot_iter_6.npz') as f:
        arrays = {key: f[key].copy() for key in f.files}
    arrays['updater/model:enc/c0/W'].flat[0] = np.nan
    np.savez(not_finite_snapshot, **arrays)
    kept = {name: (out / name).read_bytes() for name in ('enc.npz', 'dec.npz', 'snapshot_iter_6.npz')}
    capsys.readouterr()
    code = train_facade_text.main(['-i', str(small_data), '-o', str(out), '-r', str(not_finite_snapshot)]
                                  + TINY_TRAINING + ['--iteration', '9'])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.splitlines()[-1].startswith('error: training diverged by update 9: enc/loss, dec/loss')
    assert 'Traceback' not in err
    assert not (out / 'snapshot_iter_9.npz').exists()
    assert {name: (out / name).read_bytes() for name in kept} == kept


def test_the_end_of_a_run_leaves_a_snapshot_that_latest_continues(small_data, tmp_path, capsys):
    out = tmp_path / 'run'
    assert train_facade_text.main(['-i', str(small_data), '-o', str(out)] + TINY_TRAINING
                                  + ['--iteration', '4']) == 0
    assert sorted(p.name for p in out.glob('snapshot_iter_*.npz')) == ['snapshot_iter_3.npz',
                                                                       'snapshot_iter_4.npz']
    capsys.readouterr()
    assert train_facade_text.main(['-i', str(small_data), '-o', str(out), '-r', 'latest'] + TINY_TRAINING
                                  + ['--iteration', '5']) == 0
    assert 'Resumed from {} at iteration 4'.format(out / 'snapshot_iter_4.npz') in capsys.readouterr().out


def test_setup_errors_are_one_line_without_mpi4py(small_data, tmp_path, monkeypatch, capsys):
    """A ./run.sh setup install has no mpi4py: one process never asks MPI for its rank."""
    monkeypatch.setitem(sys.modules, 'mpi4py', None)  # import mpi4py now fails
    code = train_facade_text.main(['-i', str(small_data), '-o', str(tmp_path / 'run'), '-r', 'latest']
                                  + TINY_TRAINING)
    err = capsys.readouterr().err
    assert code == 1 and err.splitlines() == ['error: no snapshot to resume from: none in {}'.format(
        tmp_path / 'run')]


def limited_file_size(limit):
    """preexec_fn for a child whose writes stop at ``limit`` bytes a file (as a full disk
    would stop them: Python ignores SIGXFSZ, so the write fails with EFBIG)."""
    import resource
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize('command', ['colorize', 'train'])
def test_a_full_disk_is_one_line_and_keeps_what_was_there(command, small_data, tiny_model, tmp_path):
    out = tmp_path / 'out'
    shutil.copytree(tiny_model, out)
    drawing = next((small_data / 'test' / 'line').glob('hibiki_*.png'))
    (out / 'colorized.png').write_bytes(drawing.read_bytes())
    kept = {path.name: path.read_bytes() for path in out.iterdir()
            if path.suffix in ('.npz', '.json', '.txt') or path.name == 'colorized.png'}
    if command == 'colorize':
        argv = ['colorize.py', '--model', str(out), '-i', str(drawing), '-t', '響',
                '-o', str(out / 'colorized.png')]
        limit, said = 2000, 'error: cannot write {} (File too large)'.format(out / 'colorized.png')
    else:
        argv = ['train_facade_text.py', '-i', str(small_data), '-o', str(out), '-r', 'latest'] + \
            TINY_TRAINING + ['--iteration', '9']
        limit = 1000000
        said = 'error: cannot write in {} (File too large): training stopped at update 9'.format(out)
    read = ('model.json',) if command == 'colorize' else ('model.json', 'figure_prior.npz')
    assert (out / 'snapshot_iter_6.npz').stat().st_size > limit > max((out / n).stat().st_size for n in read)
    done = subprocess.run([sys.executable] + argv, cwd=ROOT, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, preexec_fn=limited_file_size(limit))
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1].startswith(said), done.stderr
    assert 'Traceback' not in done.stderr
    assert leftovers(out) == []
    for name, content in kept.items():
        assert (out / name).read_bytes() == content, name


def test_one_client_holding_connections_cannot_hold_the_server(tiny_model, small_data):
    """600 one-byte connections from one address, over the server's 100: the cap per client
    closes all but 16, and another client is answered at once (without the cap, its
    connection would wait for the read timeout, 30 s, to close the others)."""
    model = colour_model.ColourModel.load(str(tiny_model), compat.get_device(-1))
    app = server.create_app(model, max_upload_mb=1, max_pixels=600 * 600, max_waiting=4, timeout=60)
    drawing = next((small_data / 'test' / 'line').glob('hibiki_*.png')).read_bytes()
    with server.serving_in_background(app, max_connections=100, max_per_client=16) as url:
        held = load_test.one_byte_connections(url, 600)
        try:
            start = time.monotonic()
            assert load_test.get_json(url, 'healthz', timeout=10)['status'] == 'ok'
            healthz = time.monotonic() - start
            body, content_type = load_test.multipart([('tags', '響')], drawing)
            start = time.monotonic()
            outcome, _ = load_test.one_request(url + 'api/colorize', body, content_type,
                                               Image.open(io.BytesIO(drawing)).size, timeout=10)
            colouring = time.monotonic() - start
            kept = sum(load_test.held_open(sock) for sock in held)
        finally:
            for sock in held:
                sock.close()
    app.extensions['colouriser'].close()
    print('600 one-byte connections: {} kept; /healthz {:.3f} s, a colouring {:.3f} s'.format(
        kept, healthz, colouring))
    assert outcome == 'ok' and healthz < 2 and colouring < 5
    assert kept <= 16
