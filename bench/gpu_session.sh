#!/usr/bin/env bash
# One GPU lease, one command (repo root, on the GPU machine):
#   bash bench/gpu_session.sh          # OUT=... for the results folder (default /tmp/gpu_session)
#   DRY=1 bash bench/gpu_session.sh    # every step, tiny and on the CPU
# 1. bench/gpu_check.py builds the CUDA extension and runs the GPU tests, while
# 2. bench/gpu_train.py trains the recipe sweep on the same GPU (its CPU side is data loading);
# 3. then bench/bench_score_head.py times the score head alone on the GPU.
# Wheels in .whl/ (e.g. the transformers release the project pins) are installed first, to /tmp/site.
set -u
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT/check" "$OUT/train"
exec > >(tee "$OUT/session.log") 2>&1
T0=$SECONDS
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if [ -z "${DRY:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
fi
python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
'transformers', transformers.__version__)"
if [ -n "${DRY:-}" ]; then
  python3 bench/gpu_check.py --out "$OUT/check" --dry-run --skip-bench > /tmp/gpu_check.out 2>&1 &
else
  MAX_JOBS=${MAX_JOBS:-6} python3 bench/gpu_check.py --out "$OUT/check" --skip-bench ${GPU_TESTS:+--tests "$GPU_TESTS"} \
    --time-limit "${CHECK_LIMIT:-400}" > /tmp/gpu_check.out 2>&1 &
fi
CHECK=$!
python3 bench/gpu_train.py --out "$OUT/train" --minutes "${TRAIN_MINUTES:-5}" ${DRY:+--dry-run --workers 1}
wait $CHECK
tail -4 /tmp/gpu_check.out
echo "[gpu_session] check and sweep done at $((SECONDS - T0)) s"
if [ -n "${DRY:-}" ]; then
  python3 bench/bench_score_head.py --tiny --device cpu --reps 2 --modes fwd --out "$OUT/score_head_gpu.json" | tail -8
else
  python3 bench/bench_score_head.py --device cuda --out "$OUT/score_head_gpu.json" --time-limit "${BENCH_LIMIT:-50}" \
    | tail -15
fi
rm -f "$OUT/check/gpu_tests.xml"  # the summary in gpu_check.json holds the counts; 8 files come back at most
echo "[gpu_session] done in $((SECONDS - T0)) s"
