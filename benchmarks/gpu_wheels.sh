#!/usr/bin/env bash
# Builds .whl/: what the GPU machine (Python 3.12, no network; NumPy, SciPy, Pillow,
# Matplotlib, Werkzeug, Jinja2, wrapt, mpi4py and CuPy already there) needs to train,
# colour, evaluate and serve: chainer 7.8.1 (a source release, built here into a wheel)
# and setuptools<81 (chainer imports pkg_resources), gensim, smart_open, janome, flask,
# itsdangerous, blinker and waitress; pytest and its dependencies, for the GPU tests
# gpu_bench.sh runs (the image may have none). About 50 MB, under the device tool's 64 MiB carry.
# Usage: bash benchmarks/gpu_wheels.sh [OUT=.whl]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.whl}
mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q 'setuptools<81' wheel
"$tmp/venv/bin/pip" wheel -q --no-build-isolation --no-deps 'chainer==7.8.1' -w "$out"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$out" setuptools==80.9.0 gensim==4.4.0 smart_open janome==0.5.1 flask itsdangerous blinker waitress \
  pytest iniconfig pluggy packaging pygments  # gpu_bench.sh runs the GPU tests with pytest
du -sh "$out"
