#!/usr/bin/env bash
# Every GPU benchmark of the speed targets (README, "Measured figures"), one after the other, in
# one call: about 6 minutes on an H100 (compilation included). Each bench's output goes to
# $OUT/<name>.log (default folder: logs/bench/gpu-<time>); one that fails or runs past its
# limit is reported and the next one runs.
#
#   bash bench/gpu_suite.sh                 # all of them
#   BENCHES="inference train" bash bench/gpu_suite.sh
#
# The limits below add up to 18 minutes (the runs themselves take about half); where one call may
# run 10 minutes at most, split it: BENCHES="inference inference_compiled eval_e2e", then
# BENCHES="train train_compiled aggregation native search". The search bench uses torch on the GPU
# (faiss-gpu is not needed).
#
# Packages a CUDA image without this project's environment may lack (prettytable, wcwidth,
# pytorch-metric-learning; torch, torchvision, lightning, pandas and Pillow are assumed there) can
# be brought as wheels in .whl/, which this script installs into /tmp/site first, ahead of the
# image's own; timm too, at the version the tests ran with (the DINOv2 backbone builds on its
# VisionTransformer). To fetch them where pip can reach an index:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       prettytable wcwidth pytorch-metric-learning timm==1.0.31
set -uo pipefail

out="${OUT:-logs/bench/gpu-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

# name | time limit in seconds | bench module and flags
suite=(
    "inference|150|inference_speed --device cuda --batch 256"
    "inference_compiled|180|inference_speed --device cuda --batch 256 --compile"
    "eval_e2e|150|eval_throughput --device cuda --gpu_decode --num_images 4096"
    "train|120|train_throughput --device cuda"
    "train_compiled|180|train_throughput --device cuda --compile"
    "aggregation|60|salad_aggregation --device cuda"
    "native|90|native_batching --device cuda"
    "search|150|search_scale --num_db 200000 --reference torch-fp32 --variants torch-fp16"
)
names=()
for entry in "${suite[@]}"; do names+=("${entry%%|*}"); done
selected=" ${BENCHES:-${names[*]}} "
for name in $selected; do
    if [[ " ${names[*]} " != *" $name "* ]]; then
        echo "gpu_suite.sh: BENCHES names an unknown bench '$name'; expected some of: ${names[*]}" >&2
        exit 2
    fi
done

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  "$python" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
} | tee "$out/device.txt"

status=0
for entry in "${suite[@]}"; do
    IFS="|" read -r name limit command <<<"$entry"
    [[ "$selected" == *" $name "* ]] || continue
    echo "=== $name: python -m bench.$command (limit ${limit}s)"
    # shellcheck disable=SC2086  # the flags are meant to split
    timeout "$limit" "$python" -m bench.$command 2>&1 | tee "$out/$name.log"
    code=${PIPESTATUS[0]}
    if [[ $code -eq 124 ]]; then
        echo "=== $name: FAILED (ran past its ${limit}s limit)" | tee -a "$out/$name.log"
        status=1
    elif [[ $code -ne 0 ]]; then
        echo "=== $name: FAILED (exit $code)" | tee -a "$out/$name.log"
        status=1
    fi
done
echo "logs in $out"
exit $status
