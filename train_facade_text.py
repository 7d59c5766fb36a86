"""Trains pix2pix with a tag plane (the post's experiment) on a folder of tagged images.

    python train_facade_text.py -g 0 -e 300 -b 1 -i data/default
    python train_facade_text.py --demo            # small model, 128 px, minutes on a CPU
    python train_facade_text.py --stage 2 --size 512 -i data/default512 -o DIR   # stage 2

The flags are Chainer's examples/pix2pix/train_facade.py's plus --lr (the post's 1e-5),
--no-tag (the post's Fig. 5), --width, --size, the tag design's, --demo and stage 2's
(stage2.py). The output folder holds the model colorize.py reads, snapshots (-r latest
resumes), the log, loss.png and previews (train_extensions.py, visualizer.py). ``main``
reads like the example's: device, data, networks, optimizers, updater, trainer and
extensions, resume, the output folder (written once training can start), run.
"""
import argparse
import collections
import os
import random
import signal
import sys

import numpy as np

import compat
from compat import number
import chainer
from chainer import training
from chainer.training import extensions

import colour_model
import dataset
import multi_node
from multi_node import SetupError
from net import Decoder, Discriminator, Encoder, film_design
from speed import cuda_graph
import stage2
import tag_vectorizer
import train_extensions as ext
from updater import (BLANK_LOSS_FLAGS, TextPix2pixUpdater, add_blank_loss_arguments, blank_loss_options,
                     check_blank_loss_arguments, make_optimizer, recording_refusal)
import visualizer

# The CPU demo: a narrow network at 128 px, one core, minutes. Its learning rate is 30
# times the post's: at the example's 2e-4 the twins' tags made no difference within the
# demo's updates (docs/results.md, "Learning rate").
DEMO = dict(width=16, size=128, lr=6e-4, iteration=5000, snapshot_interval=1000,
            display_interval=50, dataset='data/default', out='result/demo')
# --demo --stage 2: refine the demo's 128-px colourings at 512 px, trained on 256-px crops
# of the default data drawn at 512 (docs/hires.md: why these settings).
DEMO_STAGE2 = dict(DEMO, size=512, coarse_size=128, crop=256, lr=2e-4, iteration=3000,
                   snapshot_interval=500, dataset='data/default512', out='result/demo-stage2')
# --demo --stage 2 --shading: the shading on the default data's flat colours, at its own
# 256 px (trained at 128 px, or on 128-px crops, it missed the hints' target: docs/hires.md).
DEMO_SHADING = dict(DEMO_STAGE2, size=256, crop=256, dataset='data/default', out='result/demo-shading')


def parse_args(argv):
    parser = argparse.ArgumentParser(description='pix2pix with text (Chainer)')
    count = number(int, 1)  # the argparse type of a count: a whole number, 1 or more
    parser.add_argument('--batchsize', '-b', type=count, default=1, help='Number of images in a mini-batch')
    # deviation from the example: 300 epochs (the post's), not 200.
    parser.add_argument('--epoch', '-e', type=count, default=300,
                        help='Number of sweeps over the dataset to train')
    parser.add_argument('--iteration', type=count, default=None, help='Stop after this many updates instead')
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
    parser.add_argument('--snapshot_interval', type=count, default=1000, help='Interval of snapshot')
    parser.add_argument('--display_interval', type=count, default=100,
                        help='Interval of displaying log to console')
    parser.add_argument('--lr', type=number(float, above=0), default=1e-5,
                        help='Adam learning rate (the post: 1e-5)')
    parser.add_argument('--no-tag', action='store_true', help='Zero tag plane: conventional pix2pix')
    parser.add_argument('--width', type=number(int, 2, 1024), default=64,
                        help='Base channels of the networks (example: 64; even)')
    parser.add_argument('--size', type=number(int, 128, 4096), default=256,
                        help='Training crop side (a multiple of 128)')
    parser.add_argument('--drawing', choices=dataset.DRAWINGS, default='line',
                        help='Input drawing made from the colour image when no line/ folder is paired')
    parser.add_argument('--flip', action='store_true', help='Random horizontal flips')
    parser.add_argument('--adv-weight', type=number(float, 0), default=1.0,
                        help='Weight of the adversarial term in the generator loss (example: 1; 0: L1 only)')
    parser.add_argument('--tag-dropout', type=number(float, 0, 1), default=0.0,
                        help='Leave each tag of a training image out with this probability')
    parser.add_argument('--blank-fraction', type=number(float, 0, 1), default=0.0,
                        help='Share of training examples whose drawing is blank paper '
                             '(learn colours from tags alone)')
    parser.add_argument('--blank-tag-keep', type=number(float, high=1, above=0), default=0.5,
                        help="Keep each of a blank example's tags with this probability (at least one; "
                             "1: all): the few tags typed for a blank canvas are then sets that training saw")
    parser.add_argument('--blank-truth', choices=dataset.BLANK_TRUTHS, default='own',
                        help="What a blank example is scored against: its own picture, or the prototype "
                             "of its tag set (of the pictures with all its tags, the one nearest their "
                             "mean layout: one pose per tag set, not a blur of all)")
    add_blank_loss_arguments(parser)
    parser.add_argument('--ema-decay', type=float, default=0.0, metavar='DECAY',
                        help="Save an exponential moving average of the generator's weights, each update "
                             "moving it by 1 - DECAY towards them (0: the weights as trained, the example's)")
    parser.add_argument('--vectors', default=None, help='Pretrained word vectors (word2vec text or binary)')
    parser.add_argument('--tag-encoding', choices=('word2vec', 'onehot'), default='word2vec',
                        help='Tag vectors: word2vec trained on the tag lists (the post), or one-hot')
    parser.add_argument('--tag-dim', type=number(int, 1, 4096), default=tag_vectorizer.DEFAULT_DIM,
                        help='Size of the word2vec vectors trained on the tags')
    add_tag_design_arguments(parser)
    parser.add_argument('--cuda-graph', action=argparse.BooleanOptionalAction, default=None,
                        help="GPU: record the training step as a CUDA graph and replay it (default: on for "
                             "one GPU process at stage 1 unless the step cannot be recorded, e.g. "
                             "--blank-loss colours at batch > 1; docs/scaling.md)")
    parser.add_argument('--loaderjob', '-j', type=number(int, 0), default=0,
                        help='Processes loading images (0: in the training process, exactly reproducible)')
    stage2.add_arguments(parser)
    presets = ', '.join('{}={}'.format(k, v) for k, v in DEMO.items())
    stage2_presets = ', '.join('{}={}'.format(k, v) for k, v in DEMO_STAGE2.items() if DEMO.get(k) != v)
    shading_presets = ', '.join('{}={}'.format(k, v) for k, v in DEMO_SHADING.items() if DEMO_STAGE2[k] != v)
    parser.add_argument('--demo', action='store_true',
                        help='CPU demo preset: {}; with --stage 2: {}; with --stage 2 --shading: {}'.format(
                            presets, stage2_presets, shading_presets))
    if '--demo' in (argv if argv is not None else sys.argv[1:]):
        parser.set_defaults(**DEMO)
        known = parser.parse_known_args(argv)[0]
        if known.stage == 2:
            parser.set_defaults(**(DEMO_SHADING if known.shading else DEMO_STAGE2))
    args = parser.parse_args(argv)
    check_args(parser, args)
    if args.cuda_graph is None:
        gpu = compat.device_name(compat.device_spec(args)).startswith('@cupy')
        refusal = recording_refusal(args.batchsize, **blank_loss_options(args))
        args.cuda_graph = cuda_graph.records_by_default(gpu and not args.communicator, args.stage, refusal)
    return args


# The flags of the film design: (flag, attribute, default).
FILM_FLAGS = (('--tag-layout', 'tag_layout', 'slots'), ('--gate', 'gate', 'per_tag'),
              ('--gate-loss', 'gate_loss', 1.0), ('--gate-gain', 'gate_gain', 5.0),
              ('--no-projection', 'no_projection', False), ('--no-coords', 'no_coords', False),
              ('--film-hidden', 'film_hidden', 64), ('--slots', 'slots', tag_vectorizer.SLOTS))


def add_tag_design_arguments(parser):
    """--tag-design and the flags of the film design's parts (for its ablations)."""
    group = parser.add_argument_group('tag design', 'How the tags enter the networks (docs/design.md)')
    group.add_argument('--tag-design', choices=('post', 'film'), default='post',
                       help="post: the tag plane beside the drawing (the post's); film: per-tag slots on the "
                            "plane, read back into a vector that modulates every batch norm (FiLM), a "
                            "saturation gate on the output and a projection discriminator")
    group.add_argument('--tag-layout', choices=tag_vectorizer.LAYOUTS, default='slots',
                       help='film: each tag in its own slot of the plane, or the mean vector as in the post')
    group.add_argument('--gate', choices=('per_tag', 'per_set', 'none'), default='per_tag',
                       help='film: the saturation gate, one factor per tag (any tag can take the colour '
                            'out), one for the set, or none')
    group.add_argument('--gate-loss', type=number(float, 0), default=1.0,
                       help="film: weight of the gate's own loss (is the target in colour)")
    group.add_argument('--gate-gain', type=number(float, above=0), default=5.0,
                       help="film: multiplier of the gate's weights")
    group.add_argument('--no-projection', action='store_true',
                       help='film: a discriminator that ignores the tags')
    group.add_argument('--no-coords', action='store_true', help='film: no x, y planes beside the drawing')
    group.add_argument('--film-hidden', type=number(int, 1, 4096), default=64,
                       help="film: size of the tags' features")
    group.add_argument('--slots', type=number(int, 1, 256), default=tag_vectorizer.SLOTS,
                       help='film: tags a slots plane holds')


def check_args(parser, args):
    """The cross-checks of the flags: parser.error (exit 2) on the first that fails."""
    if args.size % 128:
        parser.error('--size must be a multiple of 128 (the encoder halves it 7 times)')
    if args.width % 2:
        parser.error('--width must be even (the discriminator halves it)')
    stage2.check_args(parser, args)
    check_blank_loss_arguments(parser, args)
    if args.blank_truth != 'own' and not args.blank_fraction:
        parser.error('--blank-truth {} needs --blank-fraction above 0'.format(args.blank_truth))
    if not 0 <= args.ema_decay < 1:
        parser.error('--ema-decay is at least 0 and under 1 (0: no average)')
    if args.bn_across_ranks and not args.communicator:
        parser.error('--bn-across-ranks needs --communicator (several processes)')
    if args.cuda_graph and args.communicator:
        parser.error("--cuda-graph records one process's step: not with --communicator")
    if args.tag_design == 'film' and args.no_tag:
        parser.error('--tag-design film needs tags: leave out --no-tag')
    film_only = [flag for flag, value, default in FILM_FLAGS if getattr(args, value) != default]
    if args.tag_design == 'post' and film_only:
        parser.error('{} only with --tag-design film'.format(', '.join(film_only)))


def tag_design_of(args):
    """model.json's tag_design: None for the post's design, else net.film_design's settings."""
    if args.tag_design == 'post':
        return None
    return film_design(layout=args.tag_layout, dim=args.tag_dim, slots=args.slots, hidden=args.film_hidden,
                       gate=None if args.gate == 'none' else args.gate, gate_gain=args.gate_gain,
                       projection=not args.no_projection, coords=not args.no_coords)


def load_data(args):
    """The training set (with its tag vectorizer) and the preview set; reads only (the output
    folder is written by train_extensions.prepare_output, once training can start)."""
    train_dir, test_dir = dataset.split_folders(args.dataset)
    stage1 = stage2.load_coarse_model(args)
    try:
        train_set = dataset.examples(args, train_dir, None, True, stage1)
    except (FileNotFoundError, ValueError) as error:
        raise SetupError('{} (make the default data with: python make_default_data.py)'.format(
            error)) from None
    try:
        train_set.vectorizer = make_vectorizer(args, train_set.tags)
    except tag_vectorizer.VectorsError as error:
        raise SetupError(str(error)) from None
    print('# training images: {} ({} without tags), vocabulary: {}'.format(
        len(train_set), train_set.untagged, len(train_set.vectorizer.kv) if train_set.vectorizer else 0))
    preview_set = dataset.examples(args, test_dir or train_dir, train_set.vectorizer, False, stage1)
    return train_set, preview_set


def make_vectorizer(args, tag_lists):
    """The tag vectors (tag_vectorizer.for_training; none for --no-tag, or, with a warning,
    when no image has tags), laid out as the tag design wants them."""
    if args.no_tag:
        return None
    design = tag_design_of(args)
    resumed = args.resume and os.path.join(ext.snapshot_folder(args.resume, args.out), 'tag_vectors.txt')
    vectorizer = tag_vectorizer.for_training(tag_lists, args.tag_encoding, args.tag_dim, args.seed,
                                             args.vectors, resumed, design and design['dim'])
    if vectorizer is None:
        # Untagged images train with the zero plane (documented), as --no-tag: say so, not stop.
        print('warning: no training image under {} has tags: training with the zero tag plane, as '
              '--no-tag does (the model will ignore tags)'.format(args.dataset), file=sys.stderr)
    elif design:
        vectorizer.set_layout(design['layout'], design['slots'])
    return vectorizer


def settings_of(args, train_set):
    """model.json: what colour_model.py needs to rebuild the generator, how it was trained and
    the training tags, most frequent first (the web page suggests them)."""
    vectorizer = train_set.vectorizer
    counts = collections.Counter(tag for tags in train_set.tags for tag in tags)
    settings = dict(in_ch=dataset.input_planes(args.stage), out_ch=3, width=args.width, size=args.size,
                    tag_vectors='tag_vectors.txt' if vectorizer else None,
                    tag_encoding=(None if vectorizer is None else
                                  'vectors' if args.vectors else args.tag_encoding),
                    tag_dim=vectorizer.dim if vectorizer else None,
                    tag_design=tag_design_of(args),
                    drawing='paired' if train_set.line_root else args.drawing)
    settings.update((name, getattr(args, name)) for name in ('tag_dropout', 'blank_fraction', 'blank_loss',
                    'blank_tag_keep', 'blank_truth', 'ema_decay', 'adv_weight', 'lr', 'batchsize')
                    + tuple(name for _, name, _ in BLANK_LOSS_FLAGS))
    settings.update(dataset=os.path.abspath(args.dataset),
                    tags=sorted(counts, key=lambda tag: (-counts[tag], tag)) if vectorizer else [])
    if args.stage == 2:
        settings.update(stage2.settings(args))
    elif vectorizer:  # blank paper's canvases (figure_prior.py), counted from the same pictures
        settings.update(figure_prior='figure_prior.npz', seed=args.seed)
    return settings


def extend_trainer(trainer, args, enc, dec, preview, comm, average, reports):
    """The example's snapshot, log, report and progress extensions, plus train_extensions.py's
    and the previews. Every rank (under MPI) snapshots its own file, keeps its random states
    and average and stops on a signal; the rest is for the process that ``reports``."""
    snapshot_interval = (args.snapshot_interval, 'iteration')
    display_interval = (args.display_interval, 'iteration')
    # deviation from the example: SnapshotWriter, so that a killed run leaves no
    # half-written snapshot (nor Chainer's tmpsnapshot folders) behind.
    snapshot = extensions.snapshot(filename='snapshot_iter_{.updater.iteration}.npz', n_retains=3,
                                   writer=ext.SnapshotWriter())
    if comm is not None:
        snapshot = multi_node.per_rank_snapshot(snapshot, comm)
    trainer.extend(snapshot, trigger=snapshot_interval, name='snapshot')
    trainer.extend(ext.RandomStates(), name='random_states')
    if average is not None:
        trainer.extend(average, name='weight_average')
    trainer.extend(ext.StopOnSignal(comm), name='stop_on_signal')
    trainer.extend(ext.StopOnNonFinite(args.display_interval, args.snapshot_interval), name='stop_on_nan')
    if trainer.updater.graph is not None:
        trainer.extend(ext.CudaGraphStatus(), name='cuda_graph_status')
    if not reports:
        return
    # deviation from the example: instead of enc/dec/dis_iter_N.npz every interval, the
    # latest enc.npz and dec.npz (what colorize.py reads); the discriminator is only
    # needed to go on training, and the trainer snapshot holds it.
    trainer.extend(lambda t: ext.save_model(args.out, enc, dec), name='save_model', trigger=snapshot_interval)
    trainer.extend(extensions.LogReport(trigger=display_interval))
    trainer.extend(extensions.PrintReport(['epoch', 'iteration', 'enc/loss', 'dec/l1', 'dis/loss',
                                           'elapsed_time'], out=ext.LogStream()), trigger=display_interval)
    if extensions.PlotReport.available():
        trainer.extend(ext.LossPlot(['dec/l1', 'dis/loss'], 'iteration', file_name='loss.png',
                                    trigger=display_interval), name='PlotReport')  # its name in snapshots
    trainer.extend(ext.Progress(10, args.display_interval), name='ProgressBar')  # its name in snapshots
    trainer.extend(preview, trigger=snapshot_interval)


def run(trainer, args, enc, dec, reports):
    """Runs the trainer; returns the exit code. Its end and a stop by Ctrl-C or SIGTERM (128 +
    the signal, as a shell says) write a snapshot and the model; a failed run writes none (1)."""
    code = 0
    with trainer.get_extension('stop_on_signal').handling_signals():
        try:
            ext.run_checked(trainer)
        except ext.TrainingStopped as stopped:
            code = 128 + stopped.signum
        except ext.TrainingFailed as failure:
            if args.communicator:
                raise  # ChainerMN's exception hook ends every rank
            print('error: {}'.format(failure), file=sys.stderr)
            return 1
        iteration = trainer.updater.iteration
        if code or iteration % args.snapshot_interval:  # a stop, or an end between snapshots
            trainer.get_extension('snapshot')(trainer)
        if reports:
            ext.save_model(args.out, enc, dec)
    if reports and code:
        print('Stopped by {} at iteration {}: saved snapshot_iter_{}.npz{} and the model; resume with -r '
              'latest'.format(signal.Signals(code - 128).name, iteration, iteration,
                              '.RANK' if args.communicator else ''), file=sys.stderr)
    elif reports:
        if trainer.updater.graph is not None:
            ext.CudaGraphStatus.say(trainer.updater.graph)
        models = ('--model STAGE1 --shading {}' if args.shading else '--model STAGE1 --refine {}'
                  if args.stage == 2 else '--model {}').format(args.out)
        print('Model saved in {} (colour with: python colorize.py {} -i DRAWING -t TAG)'.format(
            args.out, models))
    return code


def main(argv=None):
    args = parse_args(argv)
    comm = None
    stop = (args.iteration, 'iteration') if args.iteration else (args.epoch, 'epoch')
    try:
        comm = multi_node.make_communicator(args.communicator)
        rank = 0 if comm is None else comm.rank
        reports = rank == 0  # this process prints, previews and writes the model files
        device = multi_node.choose_device(args, comm)
        if reports:
            print('Device: {}'.format(device))
            if comm is not None:
                print('# Processes: {} ({} communicator), {} images per update'.format(
                    comm.size, args.communicator, comm.size * args.batchsize))
            print('# Minibatch-size: {}'.format(args.batchsize))
            print('# {1}: {0}\n'.format(*stop))
        chainer.global_config.cudnn_deterministic = True
        # Under MPI each rank its own crops, flips and dropout masks; rank 0's initial
        # weights (those of one process) are sent to the others.
        np.random.seed(args.seed + rank)
        random.seed(args.seed + rank)

        if comm is None:
            train_set, preview_set = load_data(args)
            train_share = train_set
        else:
            train_set, preview_set, train_share = multi_node.shared_data(
                comm, lambda: load_data(args), args.seed)

        # Set up the networks to train
        design = tag_design_of(args)
        enc = Encoder(in_ch=dataset.input_planes(args.stage), width=args.width, design=design)
        dec = Decoder(out_ch=3, width=args.width, design=design)
        dis = Discriminator(in_ch=dataset.input_planes(args.stage), out_ch=3, width=args.width, design=design)
        generator = enc, dec  # what the previews run: net.py's own batch norm
        if args.bn_across_ranks:
            enc, dec, dis = multi_node.across_ranks_batch_norm((enc, dec, dis), comm)
        for link in (enc, dec, dis) + generator:
            link.to_device(device)
        average = ext.WeightAverage((enc, dec), generator, args.ema_decay) if args.ema_decay else None
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
            gate_weight=args.gate_loss if design else 0, **blank_loss_options(args),
            cuda_graph=args.cuda_graph)
        trainer = training.Trainer(updater, stop, out=args.out)
        preview = None
        if reports:
            # The previews show what enc.npz and dec.npz hold: the average, where there is one.
            model = colour_model.ColourModel(*(average.links if average else generator),
                                             train_set.vectorizer, args.size, dict(stage=args.stage))
            weights_of = (enc, dec) if args.bn_across_ranks and not average else None
            preview = visualizer.preview_extension(model, preview_set, args.out, weights_of=weights_of)
        extend_trainer(trainer, args, *saved, preview, comm, average, reports)

        settings = settings_of(args, train_set) if reports else None
        if args.resume:
            ext.resume(trainer, args.resume, args.out, comm, settings)
        # Written only now: a run that cannot start changes nothing in --out.
        lock = ext.prepare_output(args.out, train_set, settings)
    except (SetupError, compat.DeviceError) as error:
        return multi_node.setup_failed(error, comm, args.communicator)
    except KeyboardInterrupt:
        print('\nInterrupted before training started; nothing to save', file=sys.stderr)
        if comm is not None:
            multi_node.abort(comm, 128 + signal.SIGINT)
        return 128 + signal.SIGINT
    with lock:
        return run(trainer, args, *saved, reports)


if __name__ == '__main__':
    sys.exit(main())
