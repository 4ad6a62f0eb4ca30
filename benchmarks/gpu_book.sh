#!/usr/bin/env bash
# The gpu profile's book in one command on a lent GPU (issue 21), and the GPU figures still owed.
#
#   benchmarks/gpu_book.sh OUT
#
# Prints the device and versions, checks that this machine renders the synthetic data as pinned,
# generates the profile's data (in the background, while the GPU runs the benchmarks), measures
# training MFU of the four baselines at width 1 on 321-px crops, inference images/s at 473,
# per-image confusion matrices per second and the SSL share of a step, then trains and evaluates
# every run of the book, rewriting the bundle OUT/<profile>.tar.xz after each finished run. Training
# stops when the budget runs out; the bundle then holds every run finished by then. OUT ends with
# at most 7 files (env.json, train_throughput.json, eval_throughput.json, ssl_overhead.json,
# <profile>.tar.xz, runs.json, log.txt), each well under 16 MiB.
#
# Settings (environment):
#   GPU_BOOK_BUDGET_S  seconds the whole script may take (default 480; give the run tool 600)
#   GPU_BOOK_SCALE     "smoke": the gpu-smoke profile and tiny benchmarks (how the tests run it on a CPU)
#   GPU_BOOK_JOBS      runs trained side by side (default: the profile's)
#   GPU_BOOK_COMPILE   1: torch.compile every network (not measured yet: its compile time may not pay)
#   PYTHON             the interpreter (default: python3, the GPU image's, with PyTorch)
#   LIPSTUDY_RESULTS / LIPSTUDY_DATA   where runs and data go (default results/ and data/ of the checkout)
# Wheels in .whl/ (carried to the device; README "Train the gpu profile") are installed first, so the
# synthetic data is rendered by the numpy / Pillow / scipy that requirements.lock pins.
set -euo pipefail

OUT=${1:?usage: benchmarks/gpu_book.sh OUT}
START=$(date +%s)
BUDGET=${GPU_BOOK_BUDGET_S:-480}
RESERVE=30  # seconds kept for the final bundle, the report and the listing
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/log.txt") 2>&1
TEE=$!
trap 'exec >&- 2>&-; wait "$TEE"' EXIT  # log.txt complete before the script returns
elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "[gpu_book $(elapsed) s] $*"; }

PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
  say "installing the carried wheels: $(ls .whl | tr '\n' ' ')"
  SITE=$(mktemp -d)  # the wheels go beside the machine's own packages, not into them
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export LIPSTUDY_RESULTS=${LIPSTUDY_RESULTS:-$PWD/results} LIPSTUDY_DATA=${LIPSTUDY_DATA:-$PWD/data}
# numpy's AVX-512 kernels of sin / cos / exp round differently from its AVX2 ones, which the pinned
# synthetic data was rendered with; a machine that has them renders other bytes unless they are off.
export NPY_DISABLE_CPU_FEATURES=${NPY_DISABLE_CPU_FEATURES-X86_V4 AVX512_ICL AVX512_SPR}

if [ "${GPU_BOOK_SCALE:-}" = smoke ]; then
  PROFILE=gpu-smoke
  TRAIN_ARGS=(--width 0.0625 --size 33 --batch 2 --steps 1 --min-time 0.05)
  EVAL_ARGS=(--width 0.0625 --size 33 --batch 2 --min-time 0.05)
  SSL_ARGS=(--width 0.0625 --size 33 --batch 1 --steps 2 --warmup 1)
else
  PROFILE=gpu
  TRAIN_ARGS=(--width 1 --size 321 --batch 10 --min-time 1)
  EVAL_ARGS=(--width 1 --size 473 --min-time 1)
  SSL_ARGS=(--width 1 --size 321 --batch 10 --steps 20)
fi
BUNDLE=$OUT/$PROFILE.tar.xz

say "profile $PROFILE, budget $BUDGET s, python $("$PY" -c 'import sys; print(sys.version.split()[0])'), in $PWD"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" benchmarks/gpu_book.py env --out "$OUT/env.json"

say "generating the $PROFILE profile's data in the background"
PREPARE_LOG=$(mktemp)
nice -n 10 "$PY" -m lipstudy.cli runs data --profile "$PROFILE" > "$PREPARE_LOG" 2>&1 &
PREPARE=$!

say "benchmarks: training MFU, inference and confusion matrices, the SSL share of a step"
"$PY" benchmarks/train_throughput.py "${TRAIN_ARGS[@]}" --out "$OUT/train_throughput.json"
"$PY" benchmarks/eval_throughput.py "${EVAL_ARGS[@]}" --out "$OUT/eval_throughput.json"
"$PY" benchmarks/ssl_overhead.py "${SSL_ARGS[@]}" --out "$OUT/ssl_overhead.json"

status=0
wait "$PREPARE" || status=$?
cat "$PREPARE_LOG"; rm -f "$PREPARE_LOG"
[ "$status" -eq 0 ] || { say "generating the data failed ($status)"; exit "$status"; }

LEFT=$(( BUDGET - $(elapsed) - RESERVE ))
say "training the $PROFILE profile's book, $LEFT s left for it"
TRAIN=(runs train --profile "$PROFILE" --bundle "$BUNDLE" --checkpoints none --train-committed)  # it replaces a committed bundle
[ -n "${GPU_BOOK_JOBS:-}" ] && TRAIN+=(--jobs "$GPU_BOOK_JOBS")
[ "${GPU_BOOK_COMPILE:-0}" = 1 ] && TRAIN+=(--compile)
trained=0
if [ "$LEFT" -gt 0 ]; then
  # timeout signals its whole process group: the runs trained side by side stop with it.
  timeout -k 10 "$LEFT" "$PY" -m lipstudy.cli "${TRAIN[@]}" || trained=$?
else
  trained=124
fi
if [ "$trained" -ne 0 ]; then
  say "training stopped (exit $trained$([ "$trained" = 124 ] && echo ': the budget ran out')); bundling every run finished by now"
  "$PY" -m lipstudy.cli runs export --profile "$PROFILE" --partial --checkpoints none -o "$BUNDLE"
fi
"$PY" benchmarks/gpu_book.py report --profile "$PROFILE" --bundle "$BUNDLE" --out "$OUT/runs.json"
rm -f "$OUT"/.*.tmp*  # a rewrite cut short by the budget leaves its temporary file
say "done; $OUT holds:"
ls -l "$OUT"
