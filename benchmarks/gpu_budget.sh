# Sourced by gpu_bench.sh and gpu_film.sh: the time budget their steps share. The caller
# sets $deadline (epoch seconds) and $OUT (where summary.txt says what was skipped).

# Runs "$@" with what is left of the budget, at most $1 seconds.
step() {
  local limit=$1; shift
  local left=$(( deadline - $(date +%s) ))
  (( left < limit )) && limit=$left
  if (( limit <= 5 )); then echo "skipped (time budget spent): $*" | tee -a "$OUT/summary.txt"; return 124; fi
  timeout "$limit" "$@"
}
