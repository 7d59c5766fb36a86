"""The trainer's extensions beyond the example's: crash-safe snapshots, a clean stop on
Ctrl-C or SIGTERM, the weight average, random states in snapshots, the loss plot, the
CUDA-graph status line, and resuming from the newest snapshot that loads.

Snapshots and model files are written to a temporary name and renamed into place
(atomic.py), so a killed run never leaves a half-written one; a stop on a signal saves
a snapshot and the model first. Under MPI (``comm``) every rank snapshots its own file
and stops on a signal that any rank got (multi_node.py).
"""
import collections
import contextlib
import datetime
import fcntl
import json
import os
import random
import re
import signal
import sys
import time
import warnings

import numpy as np

import compat  # noqa: F401  (Chainer shims; must precede chainer)
import chainer
from chainer import training
from chainer.training import extensions

import atomic
import colour_model
import figure_prior
import multi_node
from multi_node import SetupError

# The fault tests (tests/test_faults.py) set this to a folder: every snapshot, once
# written to its temporary name, then waits until the test removes FOLDER/paused, so
# that a signal or a kill lands exactly inside the write.
PAUSE_IN_SNAPSHOT = 'PIX2PIX_PAUSE_IN_SNAPSHOT'


class TrainingStopped(BaseException):
    """Raised by StopOnSignal after a signal. A BaseException, as KeyboardInterrupt is,
    so that Chainer's trainer does not report it as a crash with a traceback."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class TrainingFailed(BaseException):
    """Training cannot go on: a loss or a weight is no longer finite, or a file cannot be
    written (a full disk). The message is one line. A BaseException for the reason
    TrainingStopped is one."""


def run_checked(trainer):
    """trainer.run(); a write that fails and weights that are not finite at its end are
    raised as TrainingFailed (the files written before stay as they were)."""
    try:
        trainer.run(show_loop_exception_msg=False)
    except OSError as error:
        raise TrainingFailed('cannot write in {} ({}): training stopped at update {}; the files written '
                             'before are kept'.format(trainer.out, error.strerror or error,
                                                      trainer.updater.iteration)) from None
    raise_if_not_finite(trainer, weights=True)


def raise_if_not_finite(trainer, weights=False):
    """TrainingFailed naming the update's losses, and with ``weights`` the trained
    parameters, that are NaN or infinite. Reading a value off a GPU waits for the step:
    this is called only every so many updates."""
    observation = trainer.observation
    bad = [key for key in LOSSES
           if key in observation and not np.isfinite(chainer.as_array(observation[key])).all()]
    if weights:
        for name, optimizer in sorted(trainer.updater.get_all_optimizers().items()):
            bad += ['{}{}'.format(name, path) for path, param in optimizer.target.namedparams()
                    if param.array is not None and not optimizer.target.xp.isfinite(param.array).all()]
    if bad:
        raise TrainingFailed('training diverged by update {}: {} not finite; the snapshot and model files '
                             'written before are kept (resume with -r and a lower --lr)'.format(
                                 trainer.updater.iteration, ', '.join(bad[:3])))


# The losses every update reports (updater.py).
LOSSES = ('enc/loss', 'dec/loss', 'dis/loss')


class StopOnNonFinite(training.Extension):
    """Stops training once the losses (every ``every`` updates) or the weights (every
    ``snapshot_every`` updates, before that update's snapshot and model files are
    written) are not finite, so that the files written last, by an earlier update, stay
    the last good ones. A run whose weights turn NaN would otherwise save them and colour
    black pictures."""
    # Called at every update by a trigger with no state, so that snapshots hold nothing of
    # it: a snapshot from before this extension resumes as it is.
    trigger = staticmethod(lambda trainer: True)
    priority = training.PRIORITY_WRITER + 1  # before the weight average, snapshots and model files

    def __init__(self, every, snapshot_every):
        self.every, self.snapshot_every = every, snapshot_every

    def __call__(self, trainer):
        iteration = trainer.updater.iteration
        at_snapshot = iteration % self.snapshot_every == 0
        if iteration % self.every == 0 or at_snapshot:
            raise_if_not_finite(trainer, weights=at_snapshot)


def save_npz(path, target):
    """chainer.serializers.save_npz without zlib: trained float weights shrink only 7-15 %
    in it, and compressing a snapshot costs far more CPU than writing it (BENCHMARKS.md)."""
    chainer.serializers.save_npz(path, target, compression=False)


def save_model(out, enc, dec):
    """Writes enc.npz and dec.npz for colorize.py (replaced whole, never half-written)."""
    for name, link in (('enc.npz', enc), ('dec.npz', dec)):
        atomic.write_file(os.path.join(out, name), lambda temp: save_npz(temp, link))


def snapshots_newest_first(out, suffix=''):
    """The snapshot_iter_N.npz files in out, the highest N first (under MPI, those of one
    rank: snapshot_iter_N.npz.RANK, suffix '.RANK')."""
    numbered = []
    for name in os.listdir(out):
        match = re.fullmatch(r'snapshot_iter_(\d+)\.npz' + re.escape(suffix), name)
        if match:
            numbered.append((int(match.group(1)), os.path.join(out, name)))
    return [path for _, path in sorted(numbered, reverse=True)]


class SnapshotWriter(extensions.snapshot_writers.Writer):
    """Chainer's snapshot writer interface over atomic.write_file: the snapshot appears
    under its name whole or not at all. (Chainer's default SimpleWriter writes into a
    tmpsnapshot_iter_N folder first and leaves that folder behind when killed.)"""

    def __call__(self, filename, outdir, target):
        def save(temp):
            save_npz(temp, target)
            pause_for_fault_tests(filename)
        atomic.write_file(os.path.join(outdir, filename), save)
        self._post_save()  # the snapshot extension's n_retains clean-up


def pause_for_fault_tests(filename):
    """Only under the fault tests (PAUSE_IN_SNAPSHOT set): waits inside the write."""
    folder = os.environ.get(PAUSE_IN_SNAPSHOT)
    if not folder:
        return
    marker = os.path.join(folder, 'paused')
    atomic.write_text(marker, filename)
    deadline = time.monotonic() + 60
    while os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.01)


class StopOnSignal(training.Extension):
    """Ctrl-C (SIGINT) and SIGTERM stop training at the end of the current update, once
    its extensions (a scheduled snapshot included) have run, so that run() saves a
    consistent state. Signals that come while it stops and saves are reported and
    ignored: a second Ctrl-C cannot break the save. (kill -9 can; atomic.write_file
    then leaves only a temporary file, which the next start removes.) Under MPI
    (``comm``) every rank stops after the update in which any rank got the signal."""
    trigger = 1, 'iteration'
    priority = -1000  # after every other extension, the snapshot's -100 included

    def __init__(self, comm=None):
        self.signum = None
        self.comm = comm

    def __call__(self, trainer):
        signum = self.signum
        if self.comm is not None:
            signum = multi_node.agreed_signal(self.comm, signum)
        if signum is not None:
            raise TrainingStopped(signum)

    @contextlib.contextmanager
    def handling_signals(self):
        previous = {signum: signal.signal(signum, self.received)
                    for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def received(self, signum, frame):
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            print('\n{}: stopping after this update; a snapshot and the model will be saved'.format(name),
                  file=sys.stderr, flush=True)
        else:
            print('\n{} again: still saving, please wait (the files are renamed into place when '
                  'complete, so even kill -9 now would lose only this snapshot)'.format(name),
                  file=sys.stderr, flush=True)


class WeightAverage(training.Extension):
    """An exponential moving average of the generator's weights (Polyak averaging, as in
    Yazici et al. 2019, "The Unusual Effectiveness of Averaging in GAN Training"): after
    each update ``links`` (copies of the generator) move by 1 - decay towards ``sources``
    (the networks being trained). It starts at the weights after the first update, and
    its decay grows as (1 + n) / (10 + n) up to ``decay``, so that the first updates'
    weights do not linger (as TensorFlow's ExponentialMovingAverage with num_updates):
    0.999 is reached after 8,990 updates; until then the weights it holds are on average
    n / 10 updates old (500 at the demo's end). Batch norm's running statistics stay
    those of the copies' start: nothing reads them, since the generator normalises with
    each picture's own (net.generating). The trainer snapshot keeps the average."""
    trigger = 1, 'iteration'
    priority = training.PRIORITY_WRITER  # before the snapshot and the model files read it

    def __init__(self, sources, links, decay):
        self.links = tuple(link.copy(mode='copy') for link in links)
        self.decay = decay
        self.count = 0
        # (average, trained) parameter pairs, matched by name once: the optimizer and the
        # snapshots change their arrays in place, never the parameters themselves.
        self.pairs = []
        for source, link in zip(sources, self.links):
            weights = dict(source.namedparams())
            if sorted(weights) != sorted(name for name, _ in link.namedparams()):
                raise ValueError('the average and the trained network have different parameters')
            self.pairs += [(average, weights[name]) for name, average in link.namedparams()]

    def __call__(self, trainer):
        decay = min(self.decay, (1 + self.count) / (10 + self.count)) if self.count else 0
        self.count += 1
        for average, weight in self.pairs:
            average.array *= decay
            average.array += (1 - decay) * weight.array

    def serialize(self, serializer):
        self.count = int(serializer('count', self.count))
        for name, link in zip(('enc', 'dec'), self.links):
            link.serialize(serializer[name])


class RandomStates(training.Extension):
    """Keeps NumPy's (dropout) and Python's (crops, flips, tag dropout) random states in
    the trainer snapshot, so that a resumed run continues exactly as an unbroken one."""
    trigger = (1, 'iteration')

    def __call__(self, trainer):
        pass

    def serialize(self, serializer):
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        keys = serializer('numpy_keys', keys)
        numbers = serializer('numpy_numbers', np.array([pos, has_gauss, gauss], np.float64))
        version, python_keys, python_gauss = random.getstate()
        python_keys = serializer('python_keys', np.array(python_keys, np.uint64))
        if isinstance(serializer, chainer.serializer.Deserializer):
            pos, has_gauss, gauss = numbers
            np.random.set_state((kind, keys, int(pos), int(has_gauss), float(gauss)))
            random.setstate((version, tuple(int(k) for k in python_keys), python_gauss))


class CudaGraphStatus(training.Extension):
    """With --cuda-graph (on a GPU by default): says how the training steps run as soon
    as that is known (the step recorded after the ordinary ones, or why it cannot be),
    not only at the end."""
    trigger = (1, 'iteration')

    def __init__(self):
        self.said = False

    def __call__(self, trainer):
        graph = trainer.updater.graph
        if not self.said and (graph.graph is not None or graph.fallback is not None):
            self.say(graph)
            self.said = True

    @staticmethod
    def say(graph):
        print('Training steps (CUDA graph): {}'.format(graph.status()))


class LogStream:
    """The standard output for Chainer's PrintReport, which writes a terminal's erase code
    before each line: into a file or pipe (a log) without it."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.on_terminal = hasattr(self.out, 'isatty') and self.out.isatty()

    def write(self, text):
        self.out.write(text if self.on_terminal else text.replace('\033[J', ''))

    def flush(self):
        self.out.flush()


class Progress(training.Extension):
    """Chainer's ProgressBar, readable where it is read: on a terminal its four lines,
    redrawn in place every ``every`` updates; into a file or pipe (a log), one plain line
    every ``plain_every`` updates and no cursor codes. The speed is over the last 100
    drawings and shown once known (Chainer's first says inf); the time left is in whole
    seconds (Chainer's prints microseconds)."""
    trigger = 1, 'iteration'

    def __init__(self, every, plain_every, out=None):
        self.out = out or sys.stdout
        self.on_terminal = hasattr(self.out, 'isatty') and self.out.isatty()
        self.every = every if self.on_terminal else plain_every
        self.recent = collections.deque(maxlen=100)

    def __call__(self, trainer):
        updater = trainer.updater
        if updater.iteration % self.every:
            return
        length, unit = trainer.stop_trigger.get_training_length()
        done = updater.iteration if unit == 'iteration' else updater.epoch_detail
        self.recent.append((done, time.monotonic()))
        (first, start), now = self.recent[0], self.recent[-1][1]
        speed = (done - first) / (now - start) if now > start else None
        left = 'unknown yet' if not speed else str(datetime.timedelta(seconds=round((length - done) / speed)))
        rate = min(done / length, 1.0)
        status = '{} of {} {}s ({:.2%}), epoch {}; {} left'.format(
            updater.iteration, length, unit, rate, updater.epoch, left)
        if not self.on_terminal:
            self.out.write(status + '\n')
        else:
            bar = '#' * int(rate * 50)
            epoch_bar = '#' * int((updater.epoch_detail % 1) * 50)
            lines = ['     total [{:.<50}] {:6.2%}'.format(bar, rate),
                     'this epoch [{:.<50}] {:6.2%}'.format(epoch_bar, updater.epoch_detail % 1), status,
                     '{:10.5g} iters/sec.'.format(speed) if speed else '']
            self.out.write('\033[J' + '\n'.join(lines) + '\n\033[{}A'.format(len(lines)))
        self.out.flush()

    def finalize(self):
        if self.on_terminal:
            self.out.write('\033[J')
            self.out.flush()


class LossPlot(extensions.PlotReport):
    """Chainer's PlotReport (loss.png) whose snapshot keeps its trigger, as LogReport's
    does: Chainer's restarts its trigger at iteration 0 on resume, so the first update
    after a resume became a point of its own (one update's loss)."""

    def serialize(self, serializer):
        super().serialize(serializer)
        with warnings.catch_warnings():
            # A snapshot from before this kept no trigger: IntervalTrigger then warns and
            # takes the last update as the one before, which is right for an extension
            # called every update, as this one is.
            warnings.filterwarnings('ignore', 'The previous value of', UserWarning)
            self._trigger.serialize(serializer['_trigger'])


def snapshot_folder(snapshot, out):
    """The folder of -r SNAPSHOT ('latest': the output folder), whose model.json and
    tag_vectors.txt belong to the run that wrote it."""
    return out if snapshot == 'latest' else os.path.dirname(snapshot) or '.'


# What model.json says of the network and its input: a resumed run must keep them.
SAME_ON_RESUME = ('in_ch', 'out_ch', 'width', 'size', 'tag_vectors', 'tag_encoding', 'tag_design', 'stage',
                  'coarse_size', 'crop', 'shading')


def check_same_model(folder, settings):
    """SetupError when the run that wrote the snapshots in folder (its model.json) trained
    another network or input than ``settings`` would (another --size, --no-tag, tag design,
    ...): resumed, its snapshot would go on under flags it was not trained with."""
    try:
        before = colour_model.read_settings(os.path.join(folder, 'model.json'))
    except colour_model.ModelError:
        return  # no readable model.json beside the snapshot: nothing to compare
    changed = [key for key in SAME_ON_RESUME if before.get(key) != settings.get(key)]

    def values(of):
        return ', '.join('{} {}'.format(key, json.dumps(of.get(key), ensure_ascii=False)) for key in changed)
    if changed:
        raise SetupError('cannot resume: the run in {} was trained with {}; give the same flags (now '
                         '{})'.format(folder, values(before), values(settings)))


def resume(trainer, snapshot, out, comm=None, settings=None):
    """Loads the trainer snapshot ``snapshot`` (-r); for 'latest', the newest one in ``out``
    that loads, naming those it skips (damaged, or of another network). With ``settings``
    (the model.json this run would write), check_same_model first. Under MPI each rank
    loads its own file (SNAPSHOT.RANK), and only an iteration that every rank holds and
    loads is taken: a rank killed inside a snapshot write has one fewer."""
    if settings is not None:
        check_same_model(snapshot_folder(snapshot, out), settings)
    suffix = multi_node.rank_suffix(comm)
    if snapshot == 'latest':
        candidates = snapshots_newest_first(out, suffix) if os.path.isdir(out) else []
        missing = 'none in {}'.format(out)
    else:
        candidates = [snapshot + suffix] if os.path.isfile(snapshot + suffix) else []
        missing = snapshot
    if comm is not None:
        candidates = multi_node.held_by_every_rank(comm, candidates)
    if not candidates:
        raise SetupError('no snapshot to resume from: {}'.format(missing), every_rank=True)
    vectors = os.path.join(snapshot_folder(snapshot, out), 'tag_vectors.txt')
    if settings is not None and settings.get('tag_vectors') and not os.path.exists(vectors):
        raise SetupError('{} is missing: the snapshot learnt with its tag vectors'.format(vectors))
    problems = []
    for path in candidates:
        try:
            colour_model.load_npz(path, trainer)
            failed = []
        except colour_model.ModelError as error:
            failed = [str(error)]
        if comm is not None:
            failed = multi_node.everyones(comm, failed)
        if failed:
            problems.extend(failed)
            continue
        if comm is None or comm.rank == 0:
            if problems:
                print('warning: skipped {} snapshot(s) that do not load: {}'.format(
                    len(problems), '; '.join(problems)), file=sys.stderr)
            print('Resumed from {} at iteration {}'.format(path, trainer.updater.iteration))
        return
    raise SetupError('cannot resume: {}'.format('; '.join(problems)), every_rank=True)


def prepare_output(out, train_set, settings):
    """The output folder, once training can start: locked for this run (lock_output),
    stale temporaries of a killed run removed; skipped.txt (what the data scan left out),
    tag_vectors.txt, figure_prior.npz (where ``settings`` names one) and model.json
    (``settings``). Returns the lock, a context manager
    that holds it until its end. Under MPI the ranks that do not report pass no settings
    and only make the folder."""
    try:
        os.makedirs(out, exist_ok=True)
        if settings is None:
            return contextlib.nullcontext()
        lock = lock_output(out)
        removed = atomic.remove_stale(out)
        if removed:
            print('Removed what a killed run left half-written in {}: {}'.format(out, ', '.join(removed)))
        skipped = [(path, reason) for path, reason in train_set.skipped] + \
            [(path, 'tags skipped: ' + reason) for path, reason in train_set.tag_problems]
        if skipped:
            atomic.write_text(os.path.join(out, 'skipped.txt'),
                              ''.join('{}\t{}\n'.format(path, reason) for path, reason in skipped))
        if train_set.vectorizer:
            train_set.vectorizer.save(os.path.join(out, 'tag_vectors.txt'))
        prior_name = settings.get('figure_prior')
        if prior_name and not os.path.exists(os.path.join(out, prior_name)):  # a resumed run's is its own
            print('Counting the figure prior (tags alone, figure_prior.py) over {} pictures...'.format(
                min(len(train_set.paths), figure_prior.COUNTED_PICTURES)), flush=True)
            prior = figure_prior.estimate(train_set.paths, train_set.tags,
                                          min(settings['size'], figure_prior.SIDE), settings['seed'])
            atomic.write_file(os.path.join(out, prior_name), prior.save)
        atomic.write_text(os.path.join(out, 'model.json'), json.dumps(settings, ensure_ascii=False, indent=1))
    except OSError as error:
        raise SetupError('cannot write the results to {}: {}'.format(out, error.strerror or error)) from None
    except figure_prior.PriorError as error:
        raise SetupError('cannot count the figure prior: {}'.format(error)) from None
    return lock


# The file in an output folder that the training writing there holds locked (flock) and
# that names its process.
LOCK_NAME = 'training.lock'


def lock_output(out):
    """An exclusive lock on the output folder ``out``: a second training into the same
    folder would mix the two runs' snapshots, vectors and model files, and delete each
    other's snapshots. SetupError, naming the holder's PID, when another process holds it.
    The lock goes when the returned file is closed, or with the process (kill -9 too)."""
    handle = open(os.path.join(out, LOCK_NAME), 'a+')
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or 'unknown'
        handle.close()
        raise SetupError('{} is in use by another training (PID {}): give another -o, or wait until it '
                         'ends'.format(out, holder)) from None
    handle.seek(0)
    handle.truncate()
    handle.write('{}\n'.format(os.getpid()))
    handle.flush()
    return handle
