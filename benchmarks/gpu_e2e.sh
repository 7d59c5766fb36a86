#!/usr/bin/env bash
# The post's command on one GPU, end to end, in one go (about 5 minutes on one H100 before
# the film design's run was added; with it, not yet timed on a GPU):
#   1. installs the wheels the GPU machine lacks (it has no network; its python3 has NumPy,
#      SciPy, Pillow, Matplotlib, Werkzeug and CuPy);
#   2. draws the default data at the example's size (256 px);
#   3. trains, side by side on the same GPU: the tag model with the post's command shape
#      (-g 0 -b 1 -i DATA, width 64, ITERATIONS updates at the example's learning rate
#      2e-4), the --no-tag baseline alike, and the film design at the CPU demo's preset
#      (--demo: 128 px, width FILM_WIDTH 16, FILM_ITERATIONS 5,000 updates, with run.sh
#      demo's --tag-design film --blank-fraction 0.3 --blank-loss colours --ema-decay
#      0.999); the tag and film models are each stopped with SIGINT, resumed with -r
#      latest, killed with kill -9 during the next interval, resumed again and finished;
#      on a GPU all three must say that their steps were recorded (the default there);
#   4. colours a twin drawing with 響 and 暁 (colorize.py -g), scores the tag model against
#      the baseline and the film model against the post's design and the baseline
#      (evaluate.py -g, twice) and serves a few requests (server.py -g);
#   5. writes the run's record to $OUT: e2e.log (everything printed, the script's wall
#      time last), timings.json, scores.json, REPORT.md, scores_film.json,
#      REPORT_film.md, loss.png, a preview sheet, the 響/暁 sheet and Fig. 7.
#
# Usage: here   bash benchmarks/gpu_wheels.sh .whl
#        there  bash benchmarks/gpu_e2e.sh .whl       (device tool: carry [".whl"], timeout_s 540)
# Dry run on a CPU: GPU=-1 SIZE=128 WIDTH=8 ITERATIONS=60 SNAPSHOT=20 FILM_WIDTH=8 FILM_ITERATIONS=80 \
#                   FILM_SNAPSHOT=20 PYTHON=.venv/bin/python OUT=/tmp/e2e bash benchmarks/gpu_e2e.sh none
#                   (no wheels: .venv has all)
set -uo pipefail
cd "$(dirname "$0")/.."  # the repository root
WHEELS=${1:-.whl}
OUT=${OUT:-/tmp/gpu_e2e_out}
GPU=${GPU:-0}
SIZE=${SIZE:-256}
WIDTH=${WIDTH:-64}
ITERATIONS=${ITERATIONS:-3000}
SNAPSHOT=${SNAPSHOT:-500}
FILM_WIDTH=${FILM_WIDTH:-16}
FILM_ITERATIONS=${FILM_ITERATIONS:-5000}
FILM_SNAPSHOT=${FILM_SNAPSHOT:-1000}
PY=${PYTHON:-python3}
WORK=${WORK:-/tmp/gpu_e2e_work}
PORT=${PORT:-8765}
rm -rf "$WORK"; mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/e2e.log") 2>&1
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
started=$(date +%s)
declare -A seconds
fail=0
check() { if ! "$@"; then echo "FAIL: $*"; fail=1; fi; }
elapsed() { echo $(( $(date +%s) - started )); }

if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/e2e-site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/e2e-site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1
$PY -c 'import platform, numpy, compat, chainer; print("python", platform.python_version(), "numpy", numpy.__version__, "chainer", chainer.__version__, "cuda", chainer.backends.cuda.available)'

# Waits until FILE exists (at most $2 seconds); 1 if it never came.
wait_for() {
  local file=$1 limit=$2 t=0
  while [ ! -e "$file" ]; do sleep 1; t=$((t + 1)); (( t >= limit )) && return 1; done
  return 0
}

# 2. Data at the example's size.
t=$(date +%s)
check $PY make_default_data.py --out "$WORK/data" --size "$SIZE"
seconds[data]=$(( $(date +%s) - t ))

TRAIN=(-g "$GPU" -b 1 -i "$WORK/data" --width "$WIDTH" --size "$SIZE" --lr 2e-4 --iteration "$ITERATIONS"
       --snapshot_interval "$SNAPSHOT" --display_interval 100)
# The film design as ./run.sh demo trains it (--demo: 128 px, width 16, 5,000 updates).
FILM=(--demo -g "$GPU" -i "$WORK/data" --width "$FILM_WIDTH" --iteration "$FILM_ITERATIONS"
      --snapshot_interval "$FILM_SNAPSHOT" --tag-design film --blank-fraction 0.3 --blank-loss colours
      --ema-decay 0.999)

# Trains into $WORK/NAME with the arguments after NAME and SNAPSHOT (its snapshot interval):
# stopped with SIGINT after its second snapshot, resumed with -r latest, killed with
# kill -9 after its third, resumed again and finished. Returns 1 if a part went wrong.
interrupted_training() {
  local name=$1 snapshot=$2 status=0 run code
  shift 2
  local out="$WORK/$name"
  $PY train_facade_text.py "$@" -o "$out" &
  run=$!
  wait_for "$out/snapshot_iter_$((snapshot * 2)).npz" 600 || { echo "FAIL: $name: no snapshot 2"; status=1; }
  kill -INT "$run"; wait "$run"; code=$?
  echo "$name: SIGINT: exit $code (130 expected)"; [ "$code" = 130 ] || status=1
  ls "$out"
  $PY train_facade_text.py "$@" -o "$out" -r latest &
  run=$!
  wait_for "$out/snapshot_iter_$((snapshot * 3)).npz" 600 || { echo "FAIL: $name: no snapshot 3"; status=1; }
  sleep 2
  kill -9 "$run"; wait "$run" 2>/dev/null
  echo "$name: kill -9 during training: resuming from the newest snapshot that loads"
  $PY train_facade_text.py "$@" -o "$out" -r latest || { echo "FAIL: $name: the last resume"; status=1; }
  return $status
}

# 3. The baseline in the background; the tag and film models stopped twice and resumed,
#    side by side, each into its own log (printed below).
t=$(date +%s)
$PY train_facade_text.py "${TRAIN[@]}" --no-tag -o "$WORK/notag" > "$WORK/notag.log" 2>&1 &
baseline=$!
interrupted_training tag "$SNAPSHOT" "${TRAIN[@]}" > "$WORK/tag.log" 2>&1 &
tag=$!
interrupted_training film "$FILM_SNAPSHOT" "${FILM[@]}" > "$WORK/film.log" 2>&1 &
film=$!
check wait "$tag"
check wait "$baseline"
seconds[train]=$(( $(date +%s) - t ))
check wait "$film"
seconds[train_film]=$(( $(date +%s) - t ))
for log in tag notag film; do
  echo "--- $log.log"
  if [ "$log" = notag ]; then tail -n 5 "$WORK/$log.log"; else cat "$WORK/$log.log"; fi
done
if (( GPU >= 0 )); then  # all three record their step on a GPU by default, after each resume too
  for log in tag notag film; do
    if ! grep -q 'Training steps (CUDA graph): recorded after' "$WORK/$log.log" \
        || grep -q 'Training steps (CUDA graph): not recorded' "$WORK/$log.log"; then
      echo "FAIL: the steps in $log.log were not recorded as a CUDA graph"; fail=1
    fi
  done
fi

# 4. Colour, score, serve.
t=$(date +%s)
drawing=$(ls "$WORK"/data/test/line/hibiki_*.png | head -1)
check $PY colorize.py -g "$GPU" --model "$WORK/tag" -i "$drawing" -t 響 -t 暁 -o "$WORK/hibiki_akatsuki.png"
seconds[colorize]=$(( $(date +%s) - t ))
t=$(date +%s)
check $PY evaluate.py -g "$GPU" --model "$WORK/tag" --baseline "$WORK/notag" --data "$WORK/data" --out "$WORK/report"
seconds[evaluate]=$(( $(date +%s) - t ))
t=$(date +%s)
check $PY evaluate.py -g "$GPU" --model "$WORK/film" --post "$WORK/tag" --baseline "$WORK/notag" \
  --data "$WORK/data" --out "$WORK/report_film"
seconds[evaluate_film]=$(( $(date +%s) - t ))

t=$(date +%s)
$PY server.py -g "$GPU" --model "$WORK/tag" --port "$PORT" > "$WORK/server.log" 2>&1 &
server=$!
check $PY - "$PORT" "$drawing" <<'EOF'
import io, json, sys, time, urllib.request, uuid
port, drawing = sys.argv[1], sys.argv[2]
base = 'http://127.0.0.1:{}'.format(port)
for _ in range(120):
    try:
        health = json.load(urllib.request.urlopen(base + '/healthz', timeout=2))
        break
    except OSError:
        time.sleep(1)
else:
    sys.exit('the server did not start')
print('healthz', health)
boundary = uuid.uuid4().hex
with open(drawing, 'rb') as f:
    image = f.read()
latencies = []
for tags in ['響', '暁', '響', '暁', '初音ミク']:
    body = (('--{b}\r\nContent-Disposition: form-data; name="tags"\r\n\r\n{t}\r\n'
             '--{b}\r\nContent-Disposition: form-data; name="image"; filename="d.png"\r\n'
             'Content-Type: image/png\r\n\r\n').format(b=boundary, t=tags).encode()
            + image + '\r\n--{}--\r\n'.format(boundary).encode())
    request = urllib.request.Request(base + '/api/colorize', body, method='POST', headers={
        'Content-Type': 'multipart/form-data; boundary=' + boundary})
    begin = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200 and response.read(8) == b'\x89PNG\r\n\x1a\n'
    latencies.append(round((time.perf_counter() - begin) * 1000, 1))
print('server requests ms', latencies)
EOF
kill "$server"; wait "$server" 2>/dev/null
seconds[serve]=$(( $(date +%s) - t ))

# 5. The record.
$PY - "$WORK" "$OUT" "$(elapsed)" "${seconds[data]}" "${seconds[train]}" "${seconds[colorize]}" \
    "${seconds[evaluate]}" "${seconds[serve]}" "$ITERATIONS" "${seconds[train_film]}" \
    "${seconds[evaluate_film]}" "$FILM_ITERATIONS" <<'EOF'
import json, sys
(work, out, total, data, train, colorize, evaluate, serve, iterations, train_film, evaluate_film,
 film_iterations) = sys.argv[1:]
def last(path):
    try:
        with open(path) as f:
            return json.load(f)[-1]
    except (OSError, ValueError, IndexError):
        return None
timings = dict(total_s=int(total), data_s=int(data), train_both_s=int(train), colorize_s=int(colorize),
               evaluate_s=int(evaluate), serve_s=int(serve), iterations=int(iterations),
               tag_log_last=last(work + '/tag/log'), notag_log_last=last(work + '/notag/log'),
               train_all_three_s=int(train_film), evaluate_film_s=int(evaluate_film),
               film_iterations=int(film_iterations), film_log_last=last(work + '/film/log'))
with open(out + '/timings.json', 'w') as f:
    json.dump(timings, f, indent=1)
print(json.dumps(timings, indent=1))
EOF
cp "$WORK/report/scores.json" "$WORK/report/REPORT.md" "$WORK/report/fig7_characters.png" "$OUT/" 2>/dev/null
cp "$WORK/report_film/scores.json" "$OUT/scores_film.json" 2>/dev/null
cp "$WORK/report_film/REPORT.md" "$OUT/REPORT_film.md" 2>/dev/null
cp "$WORK/tag/loss.png" "$OUT/" 2>/dev/null
cp "$(ls -t "$WORK"/tag/preview/*.png | head -1)" "$OUT/preview.png" 2>/dev/null
cp "$WORK/hibiki_akatsuki_sheet.png" "$OUT/" 2>/dev/null
echo "done in $(elapsed) s (the script's wall time); failures: $fail"
exit $fail
