#!/usr/bin/env bash
# Builds .whl/: what the GPU machine (Python 3.12, no network; NumPy, SciPy, Pillow,
# Matplotlib, Werkzeug, Jinja2, wrapt, mpi4py and CuPy already there) needs to train,
# colour, evaluate and serve: chainer 7.8.1 and setuptools<81 (built by the shared
# tools/build_chainer_wheels.sh), gensim, smart_open, janome, flask, itsdangerous,
# blinker and waitress; pytest and its dependencies, for the GPU tests gpu_bench.sh
# runs (the image may have none). About 50 MB, under the device tool's 64 MiB carry.
# Usage: bash benchmarks/gpu_wheels.sh [OUT=.whl] [BUILD_CHAINER=/work/shared/tools/build_chainer_wheels.sh]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.whl}
bash "${BUILD_CHAINER:-/work/shared/tools/build_chainer_wheels.sh}" "$out"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$out" gensim==4.4.0 smart_open janome==0.5.1 flask itsdangerous blinker waitress \
  pytest iniconfig pluggy packaging pygments  # gpu_bench.sh runs the GPU tests with pytest
du -sh "$out"
