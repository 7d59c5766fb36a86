"""Stage 2 of training (train_facade_text.py --stage 2): a second network that redraws a
stage-1 colouring at a higher resolution, with the drawing beside it (docs/hires.md).

It trains with stage 1's trainer, updater and extensions; what differs is here: its
flags and their checks, the stage-1 model whose colourings it may train on
(--coarse-model; otherwise dataset.RefinementDataset degrades the truth to a coarse
colouring) and what model.json records of it.
"""
import os

import compat  # noqa: F401  (Chainer shims; must precede chainer)

import colour_model
from multi_node import SetupError

def add_arguments(parser):
    """--stage and the flags of stage 2, the refinement network (docs/hires.md)."""
    group = parser.add_argument_group('stage 2', 'Refine a stage-1 colouring at a higher resolution')
    group.add_argument('--stage', type=int, choices=(1, 2), default=1,
                       help='1: colour the drawing (the post); 2: refine a stage-1 colouring at --size')
    group.add_argument('--coarse-size', type=int, default=128,
                       help='Stage 2: the side of the stage-1 colourings it refines (what its training '
                            'degrades the truth to)')
    group.add_argument('--crop', type=int, default=None,
                       help='Stage 2: train on random crops of this side (a multiple of 128; default --size)')
    group.add_argument('--coarse-jitter', type=float, default=1.0,
                       help="Stage 2: scale of the colour jitter of its coarse input (1: matched to the post "
                            "design's stage 1; 0.4: the film design's, whose colours are nearer the truth)")
    group.add_argument('--coarse-model', default=None, metavar='DIR',
                       help="Stage 2: train on this stage-1 model's colourings of the training drawings "
                            "instead of the degraded truth (no jitter)")
    group.add_argument('--shading', action='store_true',
                       help='Stage 2: learn the shading on flat colours (colorize.py --shading: shaded '
                            "flats, colour hints included) instead of refining a coarse colouring")


def check_args(parser, args):
    """The cross-checks of stage 2's flags (train_facade_text.check_args)."""
    if args.crop is not None and (args.stage != 2 or args.crop <= 0 or args.crop % 128
                                  or args.crop > args.size):
        parser.error('--crop is for --stage 2: a positive multiple of 128, at most --size')
    if args.stage == 2 and not args.shading and not 0 < args.coarse_size < args.size:
        parser.error('--coarse-size must be positive and under --size (stage 2 refines a smaller colouring)')
    if args.coarse_jitter != 1.0 and (args.stage != 2 or args.coarse_jitter < 0 or args.coarse_model):
        parser.error('--coarse-jitter is for --stage 2 without --coarse-model: a scale of 0 or more')
    if args.coarse_model and args.stage != 2:
        parser.error('--coarse-model is for --stage 2')
    if args.shading and (args.stage != 2 or args.coarse_model or args.coarse_jitter != 1.0):
        parser.error('--shading is for --stage 2, without --coarse-model or --coarse-jitter (it trains '
                     'on the flat colours of the colour images)')
    if args.stage == 2 and args.blank_fraction:
        parser.error('--blank-fraction is for stage 1 (stage 2 refines a colouring of a drawing)')


def load_coarse_model(args):
    """Stage 2's --coarse-model (a colour_model.ColourModel), or None."""
    if not args.coarse_model:
        return None
    try:
        # On the CPU: the loader's worker processes run it, and they cannot share a GPU context.
        return colour_model.load_model(args.coarse_model, None, compat.get_device(-1))
    except colour_model.ModelError as error:
        raise SetupError('--coarse-model: {}'.format(error)) from None



def settings(args):
    """What model.json holds beyond stage 1's for a stage-2 model."""
    return dict(stage=2, coarse_size=args.coarse_size, crop=args.crop or args.size,
                coarse_jitter=None if args.coarse_model or args.shading else args.coarse_jitter,
                coarse_model=args.coarse_model and os.path.abspath(args.coarse_model),
                # null, not false, for other stage-2 models: as a model.json from before the flag
                # has it, so that such a run still resumes (SAME_ON_RESUME)
                shading=args.shading or None)
