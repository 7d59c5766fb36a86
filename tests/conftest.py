"""Shared fixtures: a small default dataset and a tiny model trained on it; bench.py's
output as the tests read it; the CUDA kernels run on the CPU."""
import json
import subprocess

import pytest

import make_default_data
import train_facade_text

# The tiny model's training (width 8, 128 px, 6 updates, snapshots at 3 and 6), shared
# with the fault tests, which kill and resume it.
TINY_TRAINING = ['--width', '8', '--size', '128', '--iteration', '6', '--snapshot_interval', '3',
                 '--display_interval', '3', '--lr', '2e-4', '--tag-dim', '16']


@pytest.fixture(scope='session')
def small_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    make_default_data.generate(str(root), train_per_char=2, test_per_char=1, size=128, seed=0)
    return root


@pytest.fixture(scope='session')
def tiny_model(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp('model')
    code = train_facade_text.main(['-i', str(small_data), '-o', str(out)] + TINY_TRAINING)
    assert code == 0
    return out


def stop_process(process, timeout):
    """Ends a server started for a test: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bench_main(capsys, argv):
    """benchmarks/bench.py's exit code, printed output and JSON rows for ``argv``."""
    import bench
    code = bench.main(argv)
    out = capsys.readouterr().out
    return code, out, [json.loads(line) for line in out.splitlines() if line.startswith('{')]


@pytest.fixture
def kernels_on_cpu(monkeypatch):
    """speed/fused.py's and speed/cuda_graph.py's CUDA kernels compiled for the CPU (tests/cuda_on_cpu.py),
    with NumPy standing in for the rest of CuPy: their CuPy code paths run on NumPy arrays."""
    import chainer
    from speed import cuda_graph
    import cuda_on_cpu
    from speed import fused
    if cuda_on_cpu.compiler() is None:
        pytest.skip('no g++ with C++20 to run the CUDA source on the CPU')
    monkeypatch.setattr(chainer.backends.cuda, 'cupy', cuda_on_cpu.CupyOnCpu())
    monkeypatch.setattr(fused, '_module', [])
    monkeypatch.setattr(cuda_graph, '_random_kernel', [])


@pytest.fixture
def step_on_cpu(kernels_on_cpu, monkeypatch):
    """A StepGraph's whole training step on tests/cuda_on_cpu.py's stand-in: its streams and
    capture (with the guards), its kernels as coroutines (FIBERS), its cuBLAS stand-in for
    cuda_graph's ctypes products, NumPy arrays counting as the device's, and fused.Adam's
    graph update (the step scalars' kernel) where a StepGraph's step runs. Batch norm
    keeps its NumPy twin (tests/test_fused.py holds the kernels to it). Returns the
    CupyOnCpu, whose ``recorded_step`` this fixture fills in for its Graph."""
    import chainer
    import cuda_on_cpu
    from speed import cuda_graph, fused, graph_ops
    cupy = chainer.backends.cuda.cupy
    monkeypatch.setattr(cuda_on_cpu, 'FIBERS', True)
    monkeypatch.setattr(cuda_graph, '_loaded_library', lambda stem: cuda_on_cpu.cublas_library())
    monkeypatch.setattr(cuda_graph, '_cublas', [])
    monkeypatch.setattr(cuda_graph, '_address', lambda x: x.__array_interface__['data'][0])
    monkeypatch.setattr(cuda_graph, '_on_device', lambda inputs: True)
    monkeypatch.setattr(graph_ops, '_module', [])
    on_cpu, on_gpu = fused.AdamRule.update_core_cpu, fused.AdamRule.update_core_gpu
    monkeypatch.setattr(fused.AdamRule, 'update_core_cpu',
                        lambda rule, param: (on_cpu if cuda_graph.current() is None else on_gpu)(rule, param))
    capture = cuda_graph.StepGraph._capture

    def capture_handing_over(graph, step):
        cupy.recorded_step = step
        return capture(graph, step)
    monkeypatch.setattr(cuda_graph.StepGraph, '_capture', capture_handing_over)
    return cupy
