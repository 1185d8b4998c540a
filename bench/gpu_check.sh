#!/usr/bin/env bash
# The training and scoring speed benchmarks on a GPU machine (the workplace's `device` tool), in one
# call that fits its 10-minute limit. That machine has torch, numpy, pillow, safetensors, scipy,
# scikit-learn and opencv, but no network: the reference package travels as a wheel, and udd_core
# is used from the checkout through PYTHONPATH.
#
# Once, here (the wheel folder is ignored, so it travels only when carried):
#     echo /.whl/ >> .git/info/exclude
#     .venv/bin/pip download --no-deps -d .whl defect-detection==0.4.4
# Then, through the device tool:
#     run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=600)
# The logs and JSON come back under $OUT; copy the tables into bench/RESULTS.md with this command.
#
# Sizes: on a GPU the convolutions of these models take milliseconds, so each process's start-up
# (imports, CUDA context: a few seconds on both sides) would hide the work on a short run. 512
# tiles and 12 epochs give the reference about 6,000 image reads and noise paintings to do.
# A dry run on a CPU (the same steps, tiny sizes, plain `python3` with torch and udd's deps):
#     PATH=$PWD/.venv/bin:$PATH UDD_BENCH_DEVICE=cpu UDD_BENCH_IMAGES=32 UDD_BENCH_EPOCHS=1 bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/udd-gpu-check}"
mkdir -p "$out"
if ! python3 -c "import defect_detection" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt" || true

# Synthetic tiles: ../shared/data does not travel to that machine.
device="${UDD_BENCH_DEVICE:-cuda}" images="${UDD_BENCH_IMAGES:-512}"
timeout 330 python3 bench/bench_train.py --device "$device" --threads 8 --source synthetic \
    --configs rgb-tile-256 --images "$images" --batch-size 16 --epochs "${UDD_BENCH_EPOCHS:-12}" --repeats 2 \
    --json "$out/train.json" 2>&1 | tee "$out/train.log" || echo "bench_train.py failed or timed out; scoring next"
timeout 200 python3 bench/bench_score.py --device "$device" --threads 8 --source synthetic \
    --images "$images" --few 16 --repeats 3 --json "$out/score.json" 2>&1 | tee "$out/score.log"
