"""Times training on several processes (train_facade_text.py --communicator): the step and
the averaging of the gradients, one JSON line per measurement from rank 0.

    python benchmarks/bench_multi_node.py --size 128 --width 16                     # 1 process
    mpiexec -n 2 python benchmarks/bench_multi_node.py --communicator naive --size 128 --width 16
    mpiexec -n 2 python benchmarks/bench_multi_node.py --communicator naive --task allreduce --width 64

``train``: ``TextPix2pixUpdater.update()`` with the project's networks and optimizers
(under MPI wrapped by multi_node.multi_node_optimizers, as training does), each rank on
its own fixed batch (bench.fixed_batch); warm-up steps, then rounds of steps, each
round started together on all ranks; step_ms is the median round's time per step and
images_per_s = ranks * batch / step. ``allreduce``: what the optimizers add to each
step, ``comm.multi_node_mean_grad`` of the encoder's, decoder's and discriminator's
gradients, one after the other (median over the rounds).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import compat  # noqa: E402,F401
import chainer  # noqa: E402

import bench  # noqa: E402
import multi_node  # noqa: E402
import net  # noqa: E402
from updater import TextPix2pixUpdater, make_optimizer  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description='Speed of training on several processes (ChainerMN)')
    parser.add_argument('--communicator', choices=multi_node.COMMUNICATORS, default=None,
                        help='Under mpiexec; without it, one process')
    compat.add_device_arguments(parser)  # a GPU request: under MPI, that of the local rank
    parser.add_argument('--task', nargs='+', choices=('train', 'allreduce'), default=['train', 'allreduce'])
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--width', type=int, default=64)
    parser.add_argument('--batch', type=int, default=1, help='Images per process and update')
    parser.add_argument('--bn-across-ranks', action='store_true')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--repeats', type=int, default=5)
    return parser.parse_args(argv)


def networks(width, comm, across_ranks):
    np.random.seed(0)
    links = [net.Encoder(4, width=width), net.Decoder(3, width=width), net.Discriminator(4, 3, width=width)]
    return multi_node.across_ranks_batch_norm(links, comm) if across_ranks else links


def timed_rounds(work, args, clock, comm):
    """Median time per call of work() over the rounds, in ms, and every round's."""
    for _ in range(args.warmup):
        work()
    rounds = []
    for _ in range(args.repeats):
        if comm is not None:
            comm.mpi_comm.Barrier()
        start = clock.now()
        for _ in range(args.steps):
            work()
        rounds.append((clock.now() - start) / args.steps * 1000)
    return statistics.median(rounds), rounds


def time_training(args, device, clock, comm):
    links = networks(args.width, comm, args.bn_across_ranks)
    for link in links:
        link.to_device(device)
    optimizers = {name: make_optimizer(link, 2e-4) for name, link in zip(('enc', 'dec', 'dis'), links)}
    if comm is not None:
        optimizers = multi_node.multi_node_optimizers(optimizers, comm)
    x, t = bench.fixed_batch(args.batch, args.size, seed=0 if comm is None else comm.rank)
    iterator = chainer.iterators.SerialIterator(list(zip(x, t)), args.batch, shuffle=False)
    updater = TextPix2pixUpdater(models=links, iterator={'main': iterator}, optimizer=optimizers,
                                 device=device)
    step_ms, rounds = timed_rounds(updater.update, args, clock, comm)
    ranks = 1 if comm is None else comm.size
    return dict(task='train', step_ms=round(step_ms, 1),
                images_per_s=round(ranks * args.batch / step_ms * 1000, 2),
                rounds_ms=[round(r, 1) for r in rounds])


def time_allreduce(args, device, clock, comm):
    links = networks(args.width, comm, False)
    for link in links:
        link.to_device(device)
        for param in link.params():
            param.grad = link.xp.ones_like(param.array)

    def average():
        for link in links:
            comm.multi_node_mean_grad(link)
    ms, rounds = timed_rounds(average, args, clock, comm)
    parameters = sum(param.size for link in links for param in link.params())
    return dict(task='allreduce', per_step_ms=round(ms, 1), parameters=parameters,
                megabytes=round(parameters * 4 / 1e6, 1), rounds_ms=[round(r, 1) for r in rounds])


def main(argv=None):
    args = parse_args(argv)
    comm = multi_node.create_communicator(args.communicator) if args.communicator else None
    device = compat.device_of(args, None if comm is None else comm.intra_rank)
    clock = bench.Clock(device)
    measure = {'train': time_training, 'allreduce': time_allreduce}
    for task in args.task:
        if task == 'allreduce' and comm is None:
            continue
        result = measure[task](args, device, clock, comm)
        if comm is None or comm.rank == 0:
            print(json.dumps(dict(result, ranks=1 if comm is None else comm.size,
                                  communicator=args.communicator, device=str(device), width=args.width,
                                  size=args.size, batch_per_rank=args.batch,
                                  bn_across_ranks=args.bn_across_ranks,
                                  threads=os.environ.get('OMP_NUM_THREADS'),
                                  load=round(os.getloadavg()[0], 1), time=time.strftime('%Y-%m-%d %H:%M'))),
                  flush=True)


if __name__ == '__main__':
    main()
