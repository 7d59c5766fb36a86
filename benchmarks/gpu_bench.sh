#!/usr/bin/env bash
# The GPU half of BENCHMARKS.md, in one go (about 4 minutes on one H100, capped at 8):
#   1. installs Chainer from wheels (the GPU machine has no network; its python3 has
#      NumPy, CuPy and PyTorch);
#   2. checks fast_conv.py's faster convolutions on CuPy arrays against Chainer's own functions
#      (bench.py --check, float64) and uses them below only if that passes;
#   3. checks that TF32 and mixed16 train to the same L1 as fp32 (bench.py --quality,
#      same start, same batch, QUALITY_STEPS steps; tolerance QUALITY_TOLERANCE relative);
#   4. times training (fp32 batch 1 and 8, TF32 batch 8, mixed16 batch 8) and
#      colourisation (batch 1) for the port before the speed-ups (chainer-plain), after
#      (chainer) and PyTorch eager (torch), interleaved in each configuration.
# Everything lands in $OUT (or /tmp/gpu_bench_out): env.txt, check.txt, quality.jsonl,
# bench.log (the tables), bench.jsonl (one JSON object per result), summary.txt.
#
# Usage (see BENCHMARKS.md): here  /work/shared/tools/build_chainer_wheels.sh .whl
#        there  bash benchmarks/gpu_bench.sh [WHEEL_DIR=.whl]
set -uo pipefail
cd "$(dirname "$0")/.."  # the repository root: bench.py imports the project
WHEELS=${1:-.whl}
OUT=${OUT:-/tmp/gpu_bench_out}
GPU=${GPU:-0}
QUALITY_STEPS=${QUALITY_STEPS:-200}
QUALITY_TOLERANCE=${QUALITY_TOLERANCE:-0.1}
PY=${PYTHON:-python3}
# Extra bench.py arguments, e.g. BENCH_ARGS="--size 128 --width 4" GPU=-1 for a quick dry run on a CPU.
read -r -a EXTRA <<< "${BENCH_ARGS:-}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
deadline=$(( $(date +%s) + ${BUDGET_S:-480} ))
fail=0

# Runs "$@" with what is left of the budget, at most $1 seconds.
step() {
  local limit=$1; shift
  local left=$(( deadline - $(date +%s) ))
  (( left < limit )) && limit=$left
  if (( limit <= 5 )); then echo "skipped (time budget spent): $*" | tee -a "$OUT/summary.txt"; return 124; fi
  timeout "$limit" "$@"
}

if ls "$WHEELS"/chainer-*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/chainer-site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/chainer-site${PYTHONPATH:+:$PYTHONPATH}
fi
{
  date -u +%Y-%m-%dT%H:%MZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  $PY -c 'import platform, numpy, cupy, torch, compat, chainer; print("python", platform.python_version(), "numpy", numpy.__version__, "cupy", cupy.__version__, "torch", torch.__version__, "chainer", chainer.__version__, "cudnn in chainer:", chainer.backends.cuda.cudnn_enabled)' 2>&1
} | tee "$OUT/env.txt"

# 2. The faster convolutions on the GPU, against Chainer's.
FAST=cpu
if step 120 $PY benchmarks/bench.py -g "$GPU" --check --fast all 2>&1 | tee "$OUT/check.txt"; then
  FAST=all
else
  echo "FAIL: the faster paths differ from Chainer's on the GPU; timing without them (--fast cpu)" | tee -a "$OUT/summary.txt"
  fail=1
fi

# 3. Precision quality: L1 after the same training from the same start.
: > "$OUT/quality.jsonl"
step 150 $PY benchmarks/bench.py -g "$GPU" "${EXTRA[@]}" --fast "$FAST" --quality "$QUALITY_STEPS" --precision fp32 mixed16 --json \
  2>&1 | tee -a "$OUT/bench.log" | grep '^{' >> "$OUT/quality.jsonl"
CUPY_TF32=1 step 90 $PY benchmarks/bench.py -g "$GPU" "${EXTRA[@]}" --fast "$FAST" --quality "$QUALITY_STEPS" --precision tf32 --json \
  2>&1 | tee -a "$OUT/bench.log" | grep '^{' >> "$OUT/quality.jsonl"
$PY - "$OUT/quality.jsonl" "$QUALITY_TOLERANCE" <<'EOF' 2>&1 | tee -a "$OUT/summary.txt" || fail=1
import json, sys
rows = {r['precision']: r for r in map(json.loads, open(sys.argv[1]))}
tolerance = float(sys.argv[2])
if 'fp32' not in rows:
    sys.exit('quality: no fp32 result')
reference = rows['fp32']['l1']
bad = False
for precision in ('tf32', 'mixed16'):
    if precision not in rows:
        print('quality {}: no result (FAIL)'.format(precision))
        bad = True
for precision, r in sorted(rows.items()):
    ok = abs(r['l1'] - reference) <= tolerance * reference
    bad |= not ok
    print('quality {}: L1 {:.4f} -> {:.4f} after {} steps (fp32 {:.4f}; tolerance {:.0%}): {}'.format(
        precision, r['l1_start'], r['l1'], r['steps'], reference, tolerance, 'ok' if ok else 'FAIL'))
sys.exit(1 if bad else 0)
EOF

# 4. Timing, PyTorch in the same run.
IMPLS="--impl chainer-plain chainer torch --fast $FAST --warmup 3 --steps 10 --repeats 3 --json ${BENCH_ARGS:-}"
: > "$OUT/bench.jsonl"
run_bench() {
  step "$@" 2>&1 | tee -a "$OUT/bench.log" | grep '^{' >> "$OUT/bench.jsonl"
}
run_bench 150 $PY benchmarks/bench.py -g "$GPU" --task train --batch 1 8 --precision fp32 $IMPLS
CUPY_TF32=1 run_bench 60 $PY benchmarks/bench.py -g "$GPU" --task train --batch 8 --precision tf32 $IMPLS
run_bench 60 $PY benchmarks/bench.py -g "$GPU" --task train --batch 8 --precision mixed16 $IMPLS
run_bench 60 $PY benchmarks/bench.py -g "$GPU" --task colorize --precision fp32 $IMPLS

$PY - "$OUT/bench.jsonl" <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
import json, sys
print('| task | precision | batch | impl | step ms | images/s | vs torch | peak MB |')
print('|---|---|---|---|---|---|---|---|')
for r in map(json.loads, open(sys.argv[1])):
    print('| {task} | {precision} | {batch} | {impl} | {step_ms:.1f} | {images_per_s:.1f} | {ratio:.2f} | {mem:.0f} |'.format(
        ratio=r.get('ratio_vs_torch', float('nan')), mem=r['peak_mem_mb'] or 0, **r))
EOF
echo "done in $(( $(date +%s) - deadline + ${BUDGET_S:-480} )) s; fast paths on GPU: $FAST" | tee -a "$OUT/summary.txt"
exit $fail
