"""Training on several processes with ChainerMN: train_facade_text.py --communicator.

    mpiexec -n 4 python train_facade_text.py --communicator pure_nccl -g 0 ...  # 4 GPUs
    mpiexec -n 2 python train_facade_text.py --communicator naive ...           # 2 CPU processes

ChainerMN, the ``chainermn`` package of Chainer 7.8.1 (as in Chainer's
examples/chainermn), runs one MPI process (rank) per device. Each holds a copy of the
three networks and trains on its own share of the images; every update averages the
gradients over the ranks before the optimizer's step, so all ranks take the same step
and their copies stay equal: an update of N ranks at batch b is one update at batch N*b.

What changes with a communicator (train_facade_text.py calls these helpers):

* rank 0 scans the data and learns the tag vectors; ``chainermn.scatter_dataset`` sends
  the file list and tags (never decoded images), the vectors with them, to every rank
  and gives each its share of a seeded shuffle;
* the optimizers average the gradients (``multi_node_optimizers``); batch norm is each
  rank's own by default, or over all ranks' images (``across_ranks_batch_norm``);
* each rank seeds its random states with --seed + rank (its own crops, flips and dropout
  masks) and keeps them, with its iterator's position, in its own snapshot,
  snapshot_iter_N.npz.RANK (``per_rank_snapshot``); ``-r latest`` takes the newest
  iteration that every rank holds (``held_by_every_rank``) and loads;
* rank 0 alone reports, previews and writes the model files;
* decisions that every rank must take alike (stop after this update, resume from this
  snapshot, give up with this error) are taken on every rank's facts (``everyones``);
* an exception on one rank ends the whole job (``create_communicator``).

``mpi4py`` and an MPI are needed only here (requirements-mpi.txt); ``import chainermn``
alone does not load them.
"""
import collections
import os
import sys
import warnings

import compat
import chainermn

# Chainer 7.8.1's communicators, less its test-only 'dummy'. naive works on CPUs, and
# on GPUs only with a CUDA-aware MPI, as flat does (it hands GPU memory to MPI);
# pure_nccl averages with NCCL (one GPU per process), non_cuda_aware with NCCL inside a
# machine and MPI on host copies between machines. All but naive need CuPy.
COMMUNICATORS = ('naive', 'flat', 'non_cuda_aware', 'pure_nccl')


class SetupError(RuntimeError):
    """Training cannot start (no data, no snapshot); the message is one line.
    ``every_rank``: under MPI, raised alike on every rank (they agreed), so that each can
    simply exit; any other setup error on one rank ends the whole job."""

    def __init__(self, message, every_rank=False):
        super().__init__(message)
        self.every_rank = every_rank


def make_communicator(name):
    """The ChainerMN communicator ``name`` (--communicator); None without one (one process)."""
    if not name:
        return None
    try:
        return create_communicator(name)
    except ImportError as error:
        raise SetupError('--communicator needs mpi4py and an MPI ({}): pip install -r requirements-mpi.txt, '
                         'and start training with mpiexec'.format(error)) from None
    except RuntimeError as error:  # CuPy or NCCL missing, alike on every rank
        raise SetupError('the {} communicator cannot be used here: {}'.format(name, error),
                         every_rank=True) from None


def create_communicator(name):
    """ChainerMN's communicator ``name``. From here on an exception that no one catches,
    on any rank, calls MPI_Abort and so ends every rank within seconds: without it the
    other ranks would wait for the failed one forever, at full CPU, in their next
    collective call (chainermn.global_except_hook; the same as setting
    CHAINERMN_FORCE_ABORT_ON_EXCEPTION=1 for every rank)."""
    comm = chainermn.create_communicator(name)  # ImportError without mpi4py
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "called multiple times" when the variable added it
        chainermn.global_except_hook.add_hook()
    return comm


def world_rank():
    """This process's rank among all MPI processes, also when no communicator could be made."""
    from mpi4py import MPI
    return MPI.COMM_WORLD.rank


def abort(comm, code=1):
    """Ends every rank now, from this one (after an error the others cannot know of)."""
    sys.stderr.flush()
    comm.mpi_comm.Abort(code)


def everyones(comm, items):
    """Every rank's ``items`` (a list each) in one list, rank 0's first: the same list on
    every rank, for decisions they must take alike."""
    return [item for items_of_rank in comm.bcast_obj(comm.gather_obj(list(items))) for item in items_of_rank]


def across_ranks_batch_norm(links, comm):
    """Copies of the links whose batch norms normalise with the statistics of every
    rank's batch together (chainermn.links.MultiNodeBatchNormalization): N ranks at
    batch b then compute what one process computes at batch N*b. The parameters keep
    their names, so the saved weights load into net.py's networks as they are."""
    return [chainermn.links.create_mnbn_model(link, comm) for link in links]


def multi_node_optimizers(optimizers, comm):
    """Each optimizer (a dict of them) wrapped so that its update first averages the
    gradients over the ranks (chainermn.create_multi_node_optimizer), after rank 0's
    weights were sent to every rank. A multi-node optimizer's first update() only sends
    them, with no step (chainermn/optimizers.py): that first call is made here, so that
    each of the trainer's updates, the first one after a resume too, is a step."""
    wrapped = {name: chainermn.create_multi_node_optimizer(optimizer, comm)
               for name, optimizer in optimizers.items()}
    for optimizer in wrapped.values():
        optimizer.update()  # rank 0's weights to every rank
    return wrapped


def per_rank_snapshot(snapshot, comm):
    """The snapshot extension writing each rank's own file, NAME.RANK (the rank appended
    by chainermn.extensions.multi_node_snapshot, here with one replica set per rank):
    the weights are the same on every rank, but each rank's iterator position and
    random states are its own."""
    per_rank = chainermn.extensions.multi_node_snapshot(comm, snapshot, [[rank] for rank in range(comm.size)])
    # The snapshot's own priority (-100: after the other extensions, whose states it
    # holds); the wrapper would run at Extension's default, 100, before some of them.
    per_rank.priority = snapshot.priority
    return per_rank


def rank_suffix(comm):
    """What per_rank_snapshot appends to the snapshot names of this rank ('' for one process)."""
    return '' if comm is None else '.{}'.format(comm.rank)


def held_by_every_rank(comm, paths):
    """The paths among ``paths`` (this rank's snapshots, each a NAME.RANK) whose NAME every
    rank holds, in their order. A rank killed inside a snapshot write holds one fewer
    than the others."""
    names = [os.path.splitext(path)[0] for path in paths]
    holders = collections.Counter(everyones(comm, names))
    return [path for path, name in zip(paths, names) if holders[name] == comm.size]


def agreed_signal(comm, signum):
    """The stop signal if any rank received one (this rank's, or another's), else None:
    every rank then stops after the same update. A rank that stopped alone would leave
    the others waiting for it in the next update's averaging."""
    received = everyones(comm, [] if signum is None else [signum])
    return signum if signum is not None or not received else received[0]


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
    errors = everyones(comm, errors)
    if errors:
        raise SetupError(errors[0], every_rank=True)
    return device


def shared_data(comm, load, seed):
    """Under MPI: rank 0 runs ``load()`` (the scan, the tag vectors: it returns the
    training set and the preview set) and every rank gets its share of a shuffle seeded
    by ``seed`` (chainermn.scatter_dataset sends the file list, tags and vectors, never
    decoded images). Returns the training set, the preview set (rank 0's; None on the
    others) and this rank's share."""
    loaded, error = (None, None), None
    if comm.rank == 0:
        try:
            loaded = load()
            error = ''
        except SetupError as failure:
            error = str(failure)
    error = comm.bcast_obj(error)  # from rank 0 (the others pass None)
    if error:
        raise SetupError(error, every_rank=True)
    train_set, preview_set = loaded
    return train_set, preview_set, chainermn.scatter_dataset(train_set, comm, shuffle=True, seed=seed)


def setup_failed(error, comm, communicator=None):
    """Prints the one-line error; returns the exit code, 1. Under MPI (``communicator``
    asked for) rank 0 prints an error that every rank raised alike; one of this rank
    alone ends the whole job, since the other ranks would wait for this one forever.
    A single process never asks MPI for its rank: mpi4py may not be installed."""
    every_rank = getattr(error, 'every_rank', False)
    rank = comm.rank if comm is not None else world_rank() if every_rank and communicator else 0
    if rank == 0 or not every_rank:
        print('error: {}'.format(error), file=sys.stderr)
    if comm is not None and not every_rank:
        abort(comm)
    return 1
