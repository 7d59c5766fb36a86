"""Programs that tests/test_multi_node.py starts under mpiexec (not a test module).

    mpiexec -n 2 python tests/mpi_runs.py step OUT
        one training update of the project's networks and optimizers at batch 1 on each
        rank, with each rank's own batch norm and with batch norm across the ranks;
        writes each rank's parameters and gradients after it to OUT/RANK.npz
    mpiexec -n 2 python tests/mpi_runs.py fail-on-rank-1 MARKER TRAINING-ARGS...
        train_facade_text.py, except that rank 1 raises in its second update (after
        writing the time to MARKER): the job must end instead of waiting for it
"""
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import compat  # noqa: E402,F401
import chainer  # noqa: E402

import multi_node  # noqa: E402
import net  # noqa: E402
import train_facade_text  # noqa: E402
import updater  # noqa: E402

WIDTH, SIZE, LR = 4, 128, 1e-3


def two_examples():
    """Two fixed (input, target) pairs: rank r trains on example r, one process on both."""
    state = np.random.RandomState(1)
    return [(state.uniform(-1, 1, (4, SIZE, SIZE)), state.uniform(-1, 1, (3, SIZE, SIZE))) for _ in range(2)]


def one_update(comm=None, across_ranks=False):
    """Parameters and gradients (name -> array) after one update: on rank comm.rank's
    example at batch 1 under MPI, on both examples at batch 2 without comm. The networks
    start from seed 0 (under MPI: rank 0's, sent to the others); dropout is off, so that
    the two ways see the same numbers."""
    np.random.seed(0)
    with chainer.using_config('dtype', np.float64):
        links = [net.Encoder(in_ch=4, width=WIDTH), net.Decoder(out_ch=3, width=WIDTH),
                 net.Discriminator(in_ch=4, out_ch=3, width=WIDTH)]
    if across_ranks:
        links = multi_node.across_ranks_batch_norm(links, comm)
    enc, dec, dis = links
    optimizers = {name: updater.make_optimizer(link, LR) for name, link in zip(('enc', 'dec', 'dis'), links)}
    if comm is not None:
        optimizers = multi_node.multi_node_optimizers(optimizers, comm)
    batch = two_examples() if comm is None else [two_examples()[comm.rank]]
    step = updater.TextPix2pixUpdater(
        models=(enc, dec, dis), iterator=chainer.iterators.SerialIterator(batch, len(batch), shuffle=False),
        optimizer=optimizers)
    with chainer.using_config('user_dropout', False):
        step.update()
    values = {}
    for name, link in (('enc', enc), ('dec', dec), ('dis', dis)):
        for path, param in link.namedparams():
            values['{}{}/W'.format(name, path)] = param.array.copy()
            values['{}{}/grad'.format(name, path)] = param.grad.copy()
    return values


def step(out):
    comm = multi_node.create_communicator('naive')
    per_rank = one_update(comm)
    across = one_update(comm, across_ranks=True)
    np.savez(os.path.join(out, '{}.npz'.format(comm.rank)),
             **{'per_rank/' + k: v for k, v in per_rank.items()},
             **{'across/' + k: v for k, v in across.items()})


def fail_on_rank_1(marker, argv):
    if os.environ.get('PMI_RANK') == '1':
        update_core = updater.TextPix2pixUpdater.update_core

        def failing_update_core(self):
            if self.iteration == 1:
                with open(marker, 'w') as f:
                    f.write(repr(time.time()))
                raise RuntimeError('injected failure on rank 1')
            update_core(self)
        updater.TextPix2pixUpdater.update_core = failing_update_core
    return train_facade_text.main(argv)


if __name__ == '__main__':
    if sys.argv[1] == 'step':
        step(sys.argv[2])
    elif sys.argv[1] == 'fail-on-rank-1':
        sys.exit(fail_on_rank_1(sys.argv[2], sys.argv[3:]))
    else:
        sys.exit('usage: see the docstring')
