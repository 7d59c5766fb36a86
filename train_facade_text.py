"""Trains pix2pix with a tag plane (the post's experiment) on a folder of tagged images.

    python train_facade_text.py -g 0 -e 300 -b 1 -i data/default
    python train_facade_text.py --demo            # small model, 128 px, minutes on a CPU
    python train_facade_text.py --stage 2 --size 512 -i data/default512 -o DIR   # stage 2

The flags are Chainer's examples/pix2pix/train_facade.py's plus --lr (default 1e-5,
the post's), --no-tag (the conventional pix2pix of the post's Fig. 5), --width,
--size and a --demo preset; --stage 2 (with --coarse-size and --crop) trains the
refinement network of README "Higher resolution"; --ema-decay saves a moving average
of the generator's weights instead of the last ones. The output folder holds the model
colorize.py reads (model.json, enc.npz, dec.npz, tag_vectors.txt), trainer snapshots to
resume from (-r), the log, loss curves (loss.png) and preview sheets (preview/iter_N.png:
drawing | tag plane | output | truth). Snapshots and model files are written to a
temporary name and renamed into place (atomic.py), so a killed run never leaves a
half-written one. Ctrl-C or SIGTERM stops at the end of the current update and saves
a snapshot first; ``-r latest`` resumes from the newest snapshot that loads.

Under MPI, ``mpiexec -n N python train_facade_text.py --communicator pure_nccl -g 0``
trains on N processes, one per GPU, with ChainerMN (multi_node.py says what changes);
without --communicator training is one process, as above.

``main`` reads top to bottom like the example's: device, data, networks, optimizers,
updater, trainer and extensions, resume, then the output folder (written only once
training can start), run.
"""
import argparse
import collections
import contextlib
import json
import os
import random
import re
import signal
import sys
import time
import warnings

import numpy as np
from PIL import Image

import compat
import chainer
from chainer import training
from chainer.training import extensions
import chainermn

import atomic
import colour_model
import dataset
import multi_node
import net
from net import Decoder, Discriminator, Encoder
import sheets
import tag_vectorizer
from updater import TextPix2pixUpdater, make_optimizer

# The CPU demo: a narrow network at 128 px, one core, minutes. Its learning rate is 30
# times the post's: measured on the default data, the twins' tags (響/暁) still made no
# difference after 15,000 updates at the example's 2e-4; at 4e-4 they began to after
# about 9,000 and at 6e-4 after about 5,000 (README, "Results").
DEMO = dict(width=16, size=128, lr=6e-4, iteration=5000, snapshot_interval=1000,
            display_interval=50, dataset='data/default', out='result/demo')
# --demo --stage 2: refine the demo's 128-px colourings at 512 px, trained on 256-px crops of
# the default data drawn at 512 (README "Higher resolution": why these settings).
DEMO_STAGE2 = dict(DEMO, size=512, coarse_size=128, crop=256, lr=2e-4, iteration=3000, snapshot_interval=500,
                   dataset='data/default512', out='result/demo-stage2')


# The fault tests (tests/test_faults.py) set this to a folder: every snapshot, once
# written to its temporary name, then waits until the test removes FOLDER/paused, so
# that a signal or a kill lands exactly inside the write.
PAUSE_IN_SNAPSHOT = 'PIX2PIX_PAUSE_IN_SNAPSHOT'


class SetupError(RuntimeError):
    """Training cannot start (no data, no snapshot); the message is one line.
    ``every_rank``: under MPI, raised alike on every rank (they agreed), so that each can
    simply exit; any other setup error on one rank ends the whole job."""

    def __init__(self, message, every_rank=False):
        super().__init__(message)
        self.every_rank = every_rank


class TrainingStopped(BaseException):
    """Raised by StopOnSignal after a signal. A BaseException, as KeyboardInterrupt is,
    so that Chainer's trainer does not report it as a crash with a traceback."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def parse_args(argv):
    parser = argparse.ArgumentParser(description='pix2pix with text (Chainer)')
    parser.add_argument('--batchsize', '-b', type=int, default=1, help='Number of images in each mini-batch')
    # deviation from the example: 300 epochs (the post's), not 200.
    parser.add_argument('--epoch', '-e', type=int, default=300, help='Number of sweeps over the dataset to train')
    parser.add_argument('--iteration', type=int, default=None, help='Stop after this many updates instead')
    compat.add_device_arguments(parser)
    parser.add_argument('--communicator', choices=multi_node.COMMUNICATORS, default=None,
                        help='Train on several processes under mpiexec with this ChainerMN communicator '
                             '(pure_nccl: one GPU per process; naive: CPUs)')
    parser.add_argument('--bn-across-ranks', action='store_true',
                        help='Batch norm over the images of all processes together (default: each its own)')
    parser.add_argument('--dataset', '-i', default='data/default',
                        help='Folder of tagged images (or with train/ and test/ inside)')
    parser.add_argument('--out', '-o', default='result', help='Directory to output the result')
    parser.add_argument('--resume', '-r', default='',
                        help='Resume from this trainer snapshot ("latest": the newest in --out)')
    parser.add_argument('--seed', type=int, default=0, help='Random seed')
    parser.add_argument('--snapshot_interval', type=int, default=1000, help='Interval of snapshot')
    parser.add_argument('--display_interval', type=int, default=100, help='Interval of displaying log to console')
    parser.add_argument('--lr', type=float, default=1e-5, help='Adam learning rate (the post: 1e-5)')
    parser.add_argument('--no-tag', action='store_true', help='Zero tag plane: conventional pix2pix')
    parser.add_argument('--width', type=int, default=64, help='Base channels of the networks (the example: 64)')
    parser.add_argument('--size', type=int, default=256, help='Training crop side in pixels (a multiple of 128)')
    parser.add_argument('--drawing', choices=dataset.DRAWINGS, default='line',
                        help='Input drawing made from the colour image when no line/ folder is paired')
    parser.add_argument('--flip', action='store_true', help='Random horizontal flips')
    parser.add_argument('--adv-weight', type=float, default=1.0,
                        help='Weight of the adversarial term in the generator loss (the example: 1; 0: L1 only)')
    parser.add_argument('--tag-dropout', type=float, default=0.0,
                        help='Leave each tag of a training image out with this probability')
    parser.add_argument('--blank-fraction', type=float, default=0.0,
                        help='Share of training examples whose drawing is blank paper (learn colours from tags alone)')
    parser.add_argument('--blank-tag-keep', type=float, default=0.5,
                        help="Keep each of a blank example's tags with this probability (at least one; "
                             "1: all): the few tags typed for a blank canvas are then sets that training saw")
    parser.add_argument('--blank-loss', choices=('pixels', 'colours'), default='pixels',
                        help="Blank examples' loss: the example's (per-pixel L1 and adversarial) or the "
                             "distance between the output's and the target's colour distributions")
    parser.add_argument('--ema-decay', type=float, default=0.0, metavar='DECAY',
                        help="Save an exponential moving average of the generator's weights, each update "
                             "moving it by 1 - DECAY towards them (0: the weights as trained, the example's)")
    parser.add_argument('--vectors', default=None, help='Pretrained word vectors (word2vec text/binary format)')
    parser.add_argument('--tag-encoding', choices=('word2vec', 'onehot'), default='word2vec',
                        help='Tag vectors: word2vec trained on the tag lists (the post), or one-hot')
    parser.add_argument('--tag-dim', type=int, default=tag_vectorizer.DEFAULT_DIM,
                        help='Size of the word2vec vectors trained on the tags')
    add_tag_design_arguments(parser)
    parser.add_argument('--cuda-graph', action=argparse.BooleanOptionalAction, default=None,
                        help='GPU: record the training step once as a CUDA graph and replay it (cuda_graph.py; '
                             "default: on for one GPU process training the post's design at stage 1, where it was "
                             'measured: README "GPU"); where the step cannot be recorded it runs as usual; training '
                             'says how its steps run once that is known, and again at the end')
    parser.add_argument('--loaderjob', '-j', type=int, default=0,
                        help='Processes loading images (0: in the training process, exactly reproducible)')
    parser.add_argument('--stage', type=int, choices=(1, 2), default=1,
                        help='1: colour the drawing (the post); 2: refine a stage-1 colouring at --size '
                             '(README "Higher resolution")')
    parser.add_argument('--coarse-size', type=int, default=128,
                        help='Stage 2: the side of the stage-1 colourings it refines (what its training '
                             'degrades the truth to)')
    parser.add_argument('--crop', type=int, default=None,
                        help='Stage 2: train on random crops of this side (a multiple of 128; default --size)')
    parser.add_argument('--coarse-jitter', type=float, default=1.0,
                        help="Stage 2: scale of the colour jitter of its coarse input (1: matched to the post "
                             "design's stage 1; 0.4: the film design's, whose colours are nearer the truth)")
    parser.add_argument('--coarse-model', default=None, metavar='DIR',
                        help="Stage 2: train on this stage-1 model's colourings of the training drawings "
                             "instead of the degraded truth (no jitter)")
    parser.add_argument('--demo', action='store_true', help='CPU demo preset: ' + ', '.join(
        '{}={}'.format(k, v) for k, v in DEMO.items()) + '; with --stage 2: ' + ', '.join(
        '{}={}'.format(k, v) for k, v in DEMO_STAGE2.items() if DEMO.get(k) != v))
    if '--demo' in (argv if argv is not None else sys.argv[1:]):
        parser.set_defaults(**DEMO)
        if parser.parse_known_args(argv)[0].stage == 2:
            parser.set_defaults(**DEMO_STAGE2)
    args = parser.parse_args(argv)
    if args.size <= 0 or args.size % 128:
        parser.error('--size must be a positive multiple of 128 (the encoder halves it 7 times)')
    if args.crop is not None and (args.stage != 2 or args.crop <= 0 or args.crop % 128 or args.crop > args.size):
        parser.error('--crop is for --stage 2: a positive multiple of 128, at most --size')
    if args.stage == 2 and not 0 < args.coarse_size < args.size:
        parser.error('--coarse-size must be positive and under --size (stage 2 refines a smaller colouring)')
    if args.coarse_jitter != 1.0 and (args.stage != 2 or args.coarse_jitter < 0 or args.coarse_model):
        parser.error('--coarse-jitter is for --stage 2 without --coarse-model: a scale of 0 or more')
    if args.coarse_model and args.stage != 2:
        parser.error('--coarse-model is for --stage 2')
    if args.stage == 2 and args.blank_fraction:
        parser.error('--blank-fraction is for stage 1 (stage 2 refines a colouring of a drawing)')
    if not 0 < args.blank_tag_keep <= 1:
        parser.error('--blank-tag-keep is a probability above 0, at most 1')
    if not 0 <= args.ema_decay < 1:
        parser.error('--ema-decay is at least 0 and under 1 (0: no average)')
    if args.bn_across_ranks and not args.communicator:
        parser.error('--bn-across-ranks needs --communicator (several processes)')
    if args.cuda_graph and args.communicator:
        parser.error("--cuda-graph records one process's step: not with --communicator")
    if args.cuda_graph is None:
        args.cuda_graph = records_by_default(args)
    if args.tag_design == 'film' and args.no_tag:
        parser.error('--tag-design film needs tags: leave out --no-tag')
    film_only = [flag for flag, value, default in FILM_FLAGS if getattr(args, value) != default]
    if args.tag_design == 'post' and film_only:
        parser.error('{} only with --tag-design film'.format(', '.join(film_only)))
    return args


def records_by_default(args):
    """--cuda-graph's default: on where a recorded step was measured on a GPU: one
    process, stage 1, the post's design (--no-tag's network is the same with one input
    plane less). The film design and --blank-loss colours cannot be recorded
    (cuda_graph.py says why), and stage 2 has not been tried there."""
    on_gpu = compat.device_name(compat.device_spec(args)).startswith('@cupy')
    return (on_gpu and not args.communicator and args.stage == 1 and args.tag_design == 'post'
            and args.blank_loss == 'pixels')


# The flags of the film design: (flag, attribute, default).
FILM_FLAGS = (('--tag-layout', 'tag_layout', 'slots'), ('--gate', 'gate', 'per_tag'),
              ('--gate-loss', 'gate_loss', 1.0), ('--gate-gain', 'gate_gain', 5.0),
              ('--no-projection', 'no_projection', False), ('--no-coords', 'no_coords', False),
              ('--film-hidden', 'film_hidden', 64), ('--slots', 'slots', tag_vectorizer.SLOTS))


def add_tag_design_arguments(parser):
    """--tag-design and the flags of the film design's parts (for its ablations)."""
    group = parser.add_argument_group('tag design', 'How the tags enter the networks (README "Tag designs")')
    group.add_argument('--tag-design', choices=('post', 'film'), default='post',
                       help="post: the tag plane beside the drawing (the post's); film: per-tag slots on the "
                            "plane, read back into a vector that modulates every batch norm (FiLM), a "
                            "saturation gate on the output and a projection discriminator")
    group.add_argument('--tag-layout', choices=tag_vectorizer.LAYOUTS, default='slots',
                       help='film: the plane holds each tag in its own slot, or the mean vector as in the post')
    group.add_argument('--gate', choices=('per_tag', 'per_set', 'none'), default='per_tag',
                       help='film: the saturation gate, one factor per tag (any tag can take the colour out), '
                            'one for the set, or none')
    group.add_argument('--gate-loss', type=float, default=1.0,
                       help="film: weight of the gate's own loss (is the target in colour)")
    group.add_argument('--gate-gain', type=float, default=5.0, help="film: multiplier of the gate's weights")
    group.add_argument('--no-projection', action='store_true', help='film: a discriminator that ignores the tags')
    group.add_argument('--no-coords', action='store_true', help='film: no x, y planes beside the drawing')
    group.add_argument('--film-hidden', type=int, default=64, help="film: size of the tags' features")
    group.add_argument('--slots', type=int, default=tag_vectorizer.SLOTS, help='film: tags a slots plane holds')


def tag_design_of(args):
    """model.json's tag_design: None for the post's design, else net.film_design's settings."""
    if args.tag_design == 'post':
        return None
    return net.film_design(layout=args.tag_layout, dim=args.tag_dim, slots=args.slots, hidden=args.film_hidden,
                           gate=None if args.gate == 'none' else args.gate, gate_gain=args.gate_gain,
                           projection=not args.no_projection, coords=not args.no_coords)


def split_folders(root):
    """(train, test) folders: ROOT/train and ROOT/test when present, else (ROOT, None)."""
    train, test = os.path.join(root, 'train'), os.path.join(root, 'test')
    if os.path.isdir(train):
        return train, (test if os.path.isdir(test) else None)
    return root, None


def save_npz(path, target):
    """chainer.serializers.save_npz without zlib: trained float weights shrink only 7-15 %
    in it, and compressing a demo snapshot (60 MB) took 2.0 s of CPU, writing it 0.07 s."""
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
        previous = {signum: signal.signal(signum, self.received) for signum in (signal.SIGINT, signal.SIGTERM)}
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


def preview_extension(model, preview_set, out, count=4, weights_of=None):
    """Every trigger: a sheet of drawing | tag plane | output | truth for fixed test images,
    each row labelled with the image's first tags. ``weights_of``: the (encoder, decoder)
    whose weights model's networks take first (--bn-across-ranks trains copies whose batch
    norms need every rank, and the preview runs on rank 0 alone)."""
    indices = list(range(min(count, len(preview_set))))

    @training.make_extension()
    def preview(trainer):
        if weights_of is not None:
            model.enc.copyparams(weights_of[0])
            model.dec.copyparams(weights_of[1])
        rows, row_labels = [], []
        for i in indices:
            tags = preview_set.tags[i]
            drawing = preview_set.drawing_of(i)
            truth = dataset.load_image(preview_set.paths[i])
            if model.stage == 2:
                rows.append(refinement_preview_row(model, preview_set, drawing, truth, tags))
            else:
                plane = tag_vectorizer.tag_plane(model.vectorizer, tags, model.size)
                plane_image = Image.fromarray(np.uint8((plane + 1) * 127.5), 'L')
                rows.append([drawing, plane_image, model.colour(drawing, tags), truth])
            row_labels.append(','.join(tags[:3]) or '(no tag)')
        columns = ['drawing', 'coarse input' if model.stage == 2 else 'tag plane', 'output', 'truth']
        grid = sheets.grid(rows, columns, row_labels, cell=model.size)
        os.makedirs(os.path.join(out, 'preview'), exist_ok=True)
        grid.save(os.path.join(out, 'preview', 'iter_{}.png'.format(trainer.updater.iteration)))

    return preview


def refinement_preview_row(model, preview_set, drawing, truth, tags):
    """Stage 2's preview of one test image: drawing | coarse input (the truth degraded, as in
    training, without the random jitter) | output | truth."""
    square = (model.size, model.size)
    coarse = dataset.coarse_colouring(dataset.resized(truth, square), preview_set.factor)
    return [drawing, coarse, model.refine(dataset.resized(drawing, square), coarse, tags, model.size), truth]


def load_data(args):
    """The training set (with its tag vectorizer set) and the preview set. Reads only:
    the output folder is written by prepare_output, once training can start."""
    train_dir, test_dir = split_folders(args.dataset)
    stage1 = None
    if args.coarse_model:
        try:
            # On the CPU: the loader's worker processes run it, and they cannot share a GPU context.
            stage1 = colour_model.load_model(args.coarse_model, None, compat.get_device(-1))
        except colour_model.ModelError as error:
            raise SetupError('--coarse-model: {}'.format(error)) from None
    try:
        train_set = make_dataset(args, train_dir, None, augment=True, stage1=stage1)
    except (FileNotFoundError, ValueError) as error:
        raise SetupError('{} (make the default data with: python make_default_data.py)'.format(error)) from None
    try:
        train_set.vectorizer = make_vectorizer(args, train_set.tags)
    except tag_vectorizer.VectorsError as error:
        raise SetupError(str(error)) from None
    print('# training images: {} ({} without tags), vocabulary: {}'.format(
        len(train_set), train_set.untagged, len(train_set.vectorizer.kv) if train_set.vectorizer else 0))
    preview_set = make_dataset(args, test_dir or train_dir, train_set.vectorizer, augment=False, stage1=stage1)
    return train_set, preview_set


def make_dataset(args, folder, vectorizer, augment, stage1=None):
    """The examples in folder: stage 1's TaggedImageDataset or stage 2's RefinementDataset
    (on stage1's colourings, a colour_model.ColourModel, with --coarse-model)."""
    if args.stage == 2:
        return dataset.RefinementDataset(folder, vectorizer, args.size, args.coarse_size, args.crop, args.drawing,
                                         augment=augment, flip=args.flip, tag_dropout=args.tag_dropout,
                                         jitter=args.coarse_jitter, stage1=stage1)
    return dataset.TaggedImageDataset(folder, vectorizer, args.size, args.drawing, augment=augment, flip=args.flip,
                                      tag_dropout=args.tag_dropout, blank_fraction=args.blank_fraction,
                                      blank_tag_keep=args.blank_tag_keep)


def input_planes(args):
    """The generator's input planes: the drawing's 3 and the tag plane, and in stage 2 the
    coarse colouring's 3 (dataset.refinement_input)."""
    return dataset.REFINE_PLANES if args.stage == 2 else 4


def load_shared_data(args, comm):
    """Under MPI: rank 0 loads the data (load_data: the scan, the tag vectors) and every
    rank gets its share of a shuffle seeded by --seed (chainermn.scatter_dataset sends
    the file list, tags and vectors, never decoded images). Returns the training set
    and the preview set (rank 0's; None on the others) and this rank's share."""
    loaded, error = (None, None), None
    if comm.rank == 0:
        try:
            loaded = load_data(args)
            error = ''
        except SetupError as failure:
            error = str(failure)
    error = comm.bcast_obj(error)  # from rank 0 (the others pass None)
    if error:
        raise SetupError(error, every_rank=True)
    train_set, preview_set = loaded
    return train_set, preview_set, chainermn.scatter_dataset(train_set, comm, shuffle=True, seed=args.seed)


def make_vectorizer(args, tag_lists):
    """The tag vectors, laid out as the tag design wants them (vectorizer_of)."""
    vectorizer = vectorizer_of(args, tag_lists)
    design = tag_design_of(args)
    if vectorizer is not None and design:
        vectorizer.set_layout(design['layout'], design['slots'])
    return vectorizer


def vectorizer_of(args, tag_lists):
    """The tag vectors: none for --no-tag; a resumed run's saved ones; none, with a
    warning, when no image has tags; --vectors; one-hot; else word2vec trained on the
    tag lists."""
    if args.no_tag:
        return None
    saved = os.path.join(args.out, 'tag_vectors.txt')
    if args.resume and os.path.exists(saved):
        return tag_vectorizer.TagVectorizer.load(saved)  # the planes the snapshot learnt
    if not any(tag_lists):
        # The zero plane for every image is what --no-tag trains; say so rather than stop,
        # since untagged images are documented to train with the zero plane.
        print('warning: no training image under {} has tags: training with the zero tag plane, as '
              '--no-tag does (the model will ignore tags)'.format(args.dataset), file=sys.stderr)
        return None
    if args.vectors:
        return tag_vectorizer.TagVectorizer.load(args.vectors)
    if args.tag_encoding == 'onehot':
        return tag_vectorizer.TagVectorizer.one_hot(tag_lists)
    return tag_vectorizer.TagVectorizer.train(tag_lists, dim=args.tag_dim, seed=args.seed)


def prepare_output(args, train_set, comm=None):
    """The output folder, once training can start: stale temporaries of a killed run
    removed; skipped.txt (what the data scan left out), tag_vectors.txt and model.json.
    Under MPI rank 0 writes them; the other ranks only make the folder."""
    try:
        os.makedirs(args.out, exist_ok=True)
        if comm is not None and comm.rank != 0:
            return
        removed = atomic.remove_stale(args.out)
        if removed:
            print('Removed what a killed run left half-written in {}: {}'.format(args.out, ', '.join(removed)))
        skipped = [(path, reason) for path, reason in train_set.skipped] + \
            [(path, 'tags skipped: ' + reason) for path, reason in train_set.tag_problems]
        if skipped:
            atomic.write_text(os.path.join(args.out, 'skipped.txt'),
                              ''.join('{}\t{}\n'.format(path, reason) for path, reason in skipped))
        if train_set.vectorizer:
            train_set.vectorizer.save(os.path.join(args.out, 'tag_vectors.txt'))
        write_settings(args, train_set)
    except OSError as error:
        raise SetupError('cannot write the results to {}: {}'.format(
            args.out, error.strerror or error)) from None


def write_settings(args, train_set):
    """OUT/model.json: what colorize.py needs to rebuild the generator, how it was trained,
    and the training tags, most frequent first (the web page suggests them)."""
    vectorizer = train_set.vectorizer
    counts = collections.Counter(tag for tags in train_set.tags for tag in tags)
    settings = dict(in_ch=input_planes(args), out_ch=3, width=args.width, size=args.size,
                    tag_vectors='tag_vectors.txt' if vectorizer else None,
                    tag_encoding=(None if vectorizer is None else
                                  'vectors' if args.vectors else args.tag_encoding),
                    tag_design=tag_design_of(args),
                    drawing='paired' if train_set.line_root else args.drawing,
                    tag_dropout=args.tag_dropout, blank_fraction=args.blank_fraction, blank_loss=args.blank_loss,
                    blank_tag_keep=args.blank_tag_keep, ema_decay=args.ema_decay, adv_weight=args.adv_weight,
                    lr=args.lr, batchsize=args.batchsize,
                    dataset=os.path.abspath(args.dataset),
                    tags=sorted(counts, key=lambda tag: (-counts[tag], tag)) if vectorizer else [])
    if args.stage == 2:
        settings.update(stage=2, coarse_size=args.coarse_size, crop=args.crop or args.size,
                        coarse_jitter=None if args.coarse_model else args.coarse_jitter,
                        coarse_model=args.coarse_model and os.path.abspath(args.coarse_model))
    atomic.write_text(os.path.join(args.out, 'model.json'), json.dumps(settings, ensure_ascii=False, indent=1))


def extend_trainer(trainer, args, enc, dec, preview, comm=None, average=None):
    """The example's snapshot, log, report and progress extensions, plus the model files
    (enc and dec: the networks saved), the random states, the weight average (if any),
    loss curves, previews and the stop on Ctrl-C or SIGTERM. Under MPI every rank
    snapshots (its own file), keeps its random states and average and stops on a signal;
    the rest is rank 0's."""
    snapshot_interval = (args.snapshot_interval, 'iteration')
    display_interval = (args.display_interval, 'iteration')
    # deviation from the example: SnapshotWriter, so that a killed run leaves no
    # half-written snapshot (nor Chainer's tmpsnapshot folders) behind.
    snapshot = extensions.snapshot(filename='snapshot_iter_{.updater.iteration}.npz', n_retains=3,
                                   writer=SnapshotWriter())
    if comm is not None:
        snapshot = multi_node.per_rank_snapshot(snapshot, comm)
    trainer.extend(snapshot, trigger=snapshot_interval, name='snapshot')
    trainer.extend(RandomStates(), name='random_states')
    if average is not None:
        trainer.extend(average, name='weight_average')
    trainer.extend(StopOnSignal(comm), name='stop_on_signal')
    if trainer.updater.graph is not None:
        trainer.extend(CudaGraphStatus(), name='cuda_graph_status')
    if comm is not None and comm.rank != 0:
        return
    # deviation from the example: instead of enc/dec/dis_iter_N.npz every interval, the
    # latest enc.npz and dec.npz (what colorize.py reads); the discriminator is only
    # needed to go on training, and the trainer snapshot holds it.
    trainer.extend(lambda t: save_model(args.out, enc, dec), name='save_model', trigger=snapshot_interval)
    trainer.extend(extensions.LogReport(trigger=display_interval))
    trainer.extend(extensions.PrintReport(['epoch', 'iteration', 'enc/loss', 'dec/l1', 'dis/loss',
                                           'elapsed_time']), trigger=display_interval)
    if extensions.PlotReport.available():
        trainer.extend(LossPlot(['dec/l1', 'dis/loss'], 'iteration', file_name='loss.png',
                                trigger=display_interval), name='PlotReport')  # its name in snapshots
    trainer.extend(extensions.ProgressBar(update_interval=10))
    trainer.extend(preview, trigger=snapshot_interval)


def resume(trainer, args, comm=None):
    """Loads -r SNAPSHOT into the trainer; for -r latest, the newest snapshot in --out
    that loads, naming those it skips (damaged, or of another network). Under MPI each
    rank loads its own file (SNAPSHOT.RANK), and only an iteration that every rank holds
    and loads is taken: a rank killed inside a snapshot write has one fewer."""
    suffix = multi_node.rank_suffix(comm)
    if args.resume == 'latest':
        candidates = snapshots_newest_first(args.out, suffix) if os.path.isdir(args.out) else []
        missing = 'none in {}'.format(args.out)
    else:
        candidates = [args.resume + suffix] if os.path.isfile(args.resume + suffix) else []
        missing = args.resume
    if comm is not None:
        candidates = multi_node.held_by_every_rank(comm, candidates)
    if not candidates:
        raise SetupError('no snapshot to resume from: {}'.format(missing), every_rank=True)
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


def run(trainer, args, enc, dec, comm=None):
    """Runs the trainer; Ctrl-C or SIGTERM stops it with a snapshot and the model (enc
    and dec) saved first (exit code 128 + the signal's number, as a shell reports it).
    Returns the exit code. Under MPI every rank snapshots and rank 0 saves the model and
    reports."""
    root = comm is None or comm.rank == 0
    stop = trainer.get_extension('stop_on_signal')
    with stop.handling_signals():
        try:
            trainer.run()
        except TrainingStopped as stopped:
            trainer.get_extension('snapshot')(trainer)
            if root:
                save_model(args.out, enc, dec)
                print('Stopped by {} at iteration {}: saved snapshot_iter_{}.npz{} and the model; '
                      'resume with -r latest'.format(signal.Signals(stopped.signum).name, trainer.updater.iteration,
                                                     trainer.updater.iteration, '' if comm is None else '.RANK'),
                      file=sys.stderr)
            return 128 + stopped.signum
        if root:
            save_model(args.out, enc, dec)
    if root:
        if trainer.updater.graph is not None:
            CudaGraphStatus.say(trainer.updater.graph)
        models = '--model STAGE1 --refine {}'.format(args.out) if args.stage == 2 else '--model {}'.format(args.out)
        print('Model saved in {} (colour with: python colorize.py {} -i DRAWING -t TAG)'.format(args.out, models))
    return 0


def make_communicator(args):
    """The ChainerMN communicator of --communicator; None without it (one process)."""
    if not args.communicator:
        return None
    try:
        return multi_node.create_communicator(args.communicator)
    except ImportError as error:
        raise SetupError('--communicator needs mpi4py and an MPI ({}): pip install -r requirements-mpi.txt, '
                         'and start training with mpiexec'.format(error)) from None
    except RuntimeError as error:  # CuPy or NCCL missing, alike on every rank
        raise SetupError('the {} communicator cannot be used here: {}'.format(args.communicator, error),
                         every_rank=True) from None


def choose_device(args, comm):
    """compat.device_of; under MPI the GPU of this process's local rank, and a device
    that one rank cannot use stops every rank."""
    if comm is None:
        return compat.device_of(args)
    device, errors = None, []
    try:
        device = compat.device_of(args, comm.intra_rank)
    except compat.DeviceError as error:
        errors = ['rank {}: {}'.format(comm.rank, error)]
    errors = multi_node.everyones(comm, errors)
    if errors:
        raise SetupError(errors[0], every_rank=True)
    return device


def setup_failed(error, comm):
    """Prints the one-line error; returns the exit code, 1. Under MPI rank 0 prints an
    error that every rank raised alike; one of this rank alone ends the whole job, since
    the other ranks would wait for this one forever."""
    every_rank = getattr(error, 'every_rank', False)
    rank = comm.rank if comm is not None else multi_node.world_rank() if every_rank else 0
    if rank == 0 or not every_rank:
        print('error: {}'.format(error), file=sys.stderr)
    if comm is not None and not every_rank:
        multi_node.abort(comm)
    return 1


def main(argv=None):
    args = parse_args(argv)
    comm = None
    try:
        comm = make_communicator(args)
        rank = 0 if comm is None else comm.rank
        device = choose_device(args, comm)
        if rank == 0:
            print('Device: {}'.format(device))
            if comm is not None:
                print('# Processes: {} ({} communicator), {} images per update'.format(
                    comm.size, args.communicator, comm.size * args.batchsize))
            print('# Minibatch-size: {}'.format(args.batchsize))
            print('# {}: {}'.format(*(('iteration', args.iteration) if args.iteration else ('epoch', args.epoch))))
            print('')
        chainer.global_config.cudnn_deterministic = True
        # Under MPI each rank its own crops, flips and dropout masks; rank 0's initial
        # weights (those of one process) are sent to the others.
        np.random.seed(args.seed + rank)
        random.seed(args.seed + rank)

        if comm is None:
            train_set, preview_set = load_data(args)
            train_share = train_set
        else:
            train_set, preview_set, train_share = load_shared_data(args, comm)

        # Set up the networks to train
        design = tag_design_of(args)
        enc = Encoder(in_ch=input_planes(args), width=args.width, design=design)
        dec = Decoder(out_ch=3, width=args.width, design=design)
        dis = Discriminator(in_ch=input_planes(args), out_ch=3, width=args.width, design=design)
        generator = enc, dec  # what the previews run: net.py's own batch norm
        if args.bn_across_ranks:
            enc, dec, dis = multi_node.across_ranks_batch_norm((enc, dec, dis), comm)
        for link in (enc, dec, dis) + generator:
            link.to_device(device)
        average = WeightAverage((enc, dec), generator, args.ema_decay) if args.ema_decay else None
        saved = average.links if average else (enc, dec)  # what enc.npz and dec.npz hold

        # Set up the optimizers, the updater and the trainer
        optimizers = {'enc': make_optimizer(enc, args.lr), 'dec': make_optimizer(dec, args.lr),
                      'dis': make_optimizer(dis, args.lr)}
        if comm is not None:
            optimizers = multi_node.multi_node_optimizers(optimizers, comm)
        updater = TextPix2pixUpdater(
            models=(enc, dec, dis),
            iterator={'main': dataset.make_iterator(train_share, args.batchsize, args.loaderjob)},
            optimizer=optimizers, device=device, adversarial_weight=args.adv_weight,
            gate_weight=args.gate_loss if design else 0, blank_loss=args.blank_loss, cuda_graph=args.cuda_graph)
        stop = (args.iteration, 'iteration') if args.iteration else (args.epoch, 'epoch')
        trainer = training.Trainer(updater, stop, out=args.out)
        preview = None
        if rank == 0:
            # The previews show what enc.npz and dec.npz hold: the average, where there is one.
            model = colour_model.ColourModel(*(average.links if average else generator), train_set.vectorizer,
                                        args.size, dict(stage=args.stage))
            preview = preview_extension(model, preview_set, args.out,
                                        weights_of=(enc, dec) if args.bn_across_ranks and not average else None)
        extend_trainer(trainer, args, *saved, preview, comm, average)

        if args.resume:
            resume(trainer, args, comm)
        # Written only now: a run that cannot start changes nothing in --out.
        prepare_output(args, train_set, comm)
    except (SetupError, compat.DeviceError) as error:
        return setup_failed(error, comm)
    except KeyboardInterrupt:
        print('\nInterrupted before training started; nothing to save', file=sys.stderr)
        if comm is not None:
            multi_node.abort(comm, 128 + signal.SIGINT)
        return 128 + signal.SIGINT
    return run(trainer, args, *saved, comm)


if __name__ == '__main__':
    sys.exit(main())
