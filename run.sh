#!/usr/bin/env bash
# One entry point for a fresh machine:
#   ./run.sh demo    set up, make the default data, train the demo models, colour, write the figures
#                    (--seed N: draw the data and train with seed N; default 0; --shading: also train
#                    the shading model that shades the flat colours and colour hints, ~12 more minutes)
#   ./run.sh test    set up, then run the linter (ruff) and the tests
#   ./run.sh serve   set up and start the web page (server.py) on http://127.0.0.1:8000/
#   ./run.sh bench   set up with PyTorch and time training and colouring against it (benchmarks/bench.py)
#   ./run.sh setup   only set up (.venv with the pinned dependencies)
# Arguments after the command go to pytest, to the three demo trainings, to server.py or to benchmarks/bench.py.
set -euo pipefail
cd "$(dirname "$0")"
PY=.venv/bin/python

setup() {
  if [ ! -x "$PY" ]; then
    python3 -m venv .venv
  fi
  "$PY" -m pip install -q --upgrade 'pip>=23' 'setuptools<81' wheel
  "$PY" -m pip install -q --no-build-isolation -r requirements.txt
  # Japanese labels in the figures need a CJK font; without one they fall back to code points.
  if ! ls /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc \
      >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get install -y -q fonts-ipafont-gothic >/dev/null 2>&1 ||
     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q fonts-ipafont-gothic >/dev/null 2>&1)) ||
      echo "note: could not install fonts-ipafont-gothic; figure labels will show code points"
  fi
}

test_setup() {
  setup
  # tests/test_multi_node.py trains on 2 MPI processes (ChainerMN): mpi4py and the mpich wheel's mpiexec.
  "$PY" -m pip install -q --no-build-isolation -r requirements-mpi.txt
  # tests/test_browser.py drives Debian's headless Chromium (it skips without it).
  if ! command -v chromedriver >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 ||
     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) ||
      echo "note: could not install chromium; the browser test will be skipped"
  fi
}

demo() {
  local seed=0 shading=0
  local args=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --seed) seed=$2; shift 2 ;;
      --seed=*) seed=${1#--seed=}; shift ;;
      --shading) shading=1; shift ;;
      *) args+=("$1"); shift ;;
    esac
  done
  setup
  "$PY" make_default_data.py --out data/default --seed "$seed"
  # Batch-1 work on a small network runs best on one BLAS thread per process: the three
  # models train side by side on the machine's cores.
  export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
  mkdir -p result
  local common=(--demo --seed "$seed" ${args[@]+"${args[@]}"})
  echo "training the post's design and the --no-tag baseline in the background" \
       "(logs: result/demo-post.log, result/demo-notag.log), the film design here"
  # The film design has the most work (FiLM, the colour loss on blank drawings): the other
  # two yield the CPU to it (nice), so that on 2 cores it does not finish last, alone.
  nice -n 10 "$PY" train_facade_text.py "${common[@]}" -o result/demo-post > result/demo-post.log 2>&1 &
  local post=$!
  nice -n 10 "$PY" train_facade_text.py "${common[@]}" --no-tag -o result/demo-notag > result/demo-notag.log 2>&1 &
  local baseline=$!
  "$PY" train_facade_text.py "${common[@]}" --tag-design film --blank-fraction 0.3 --blank-loss colours --ema-decay 0.999 \
    -o result/demo
  wait "$post" || { tail -n 20 result/demo-post.log; exit 1; }
  wait "$baseline" || { tail -n 20 result/demo-notag.log; exit 1; }
  local shaded=()
  if [ "$shading" = 1 ]; then
    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$PY" train_facade_text.py --demo --stage 2 --shading --seed "$seed" \
      -o result/demo-shading
    shaded=(--shading result/demo-shading)
  fi
  "$PY" colorize.py --model result/demo -i data/default/test/line/hibiki_0000.png -t 響 -t 暁 \
    -o result/hibiki_akatsuki.png
  "$PY" colorize.py --model result/demo --blank 128 -t 初音ミク -t 響 -t 暁 -o result/text_only.png
  "$PY" evaluate.py --model result/demo --baseline result/demo-notag --post result/demo-post --out result/report \
    ${shaded[@]+"${shaded[@]}"}
  echo "done: the report is result/report/REPORT.md; colour your own drawings with colorize.py"
}

bench() {
  setup
  "$PY" -m pip install -q -r benchmarks/requirements-bench.txt
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$PY" benchmarks/bench.py --threads 1 --impl chainer-plain chainer torch "$@"
}

case "${1:-}" in
  setup) setup ;;
  demo) shift; demo "$@" ;;
  bench) shift; bench "$@" ;;
  test) test_setup; shift; "$PY" -m ruff check .; OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} exec "$PY" -m pytest -q "$@" ;;
  serve) setup; shift; exec "$PY" server.py "$@" ;;
  *) echo "usage: $0 demo|test|serve|bench|setup [ARGS...]" >&2; exit 2 ;;
esac
