#!/usr/bin/env bash
# The GPU check: on a machine with one NVIDIA GPU and no internet, install what the GPU path needs from wheels
# carried with the repository, run the GPU-marked tests, check that CUDA agrees with the CPU, and benchmark
# `tag` at base size (CUDA fp32, CUDA fp16, TensorRT fp16; batches of 64 and 256), writing JSON.
#
#   bash benchmarks/gpu_check.sh pack DIR      # where the package index answers: fetch the wheels into DIR,
#                                              # the onnxruntime-gpu wheel cut into parts of PART_MB (56) MiB
#   bash benchmarks/gpu_check.sh receive DIR   # on the GPU machine, once per transfer: keep DIR's parts in STORE
#   bash benchmarks/gpu_check.sh run [OUT]     # on the GPU machine: join, install, check, benchmark -> OUT/
#
# A transfer to the GPU machine may carry less than the onnxruntime-gpu wheel (~256 MB), hence the parts: carry
# one DIR of parts per call and `receive` each (STORE, default /root/hashtagger-wheels, outlives the calls while
# the machine is held), then `run`. The CUDA and cuDNN libraries come from the machine's CUDA build of torch
# (its nvidia-* packages, which onnxruntime.preload_dlls finds) or from nvidia-* wheels put in DIR by
# `pack` with WITH_NVIDIA=1. Python on both sides must match: PYVER (default: this interpreter's) for `pack`.
#
# `run` stops with exit status 3 and one line when there is no NVIDIA GPU, before installing anything. It stays
# within BUDGET_S (default 480) seconds: the benchmark rows it has no time for are skipped and say so.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${STORE:-/root/hashtagger-wheels}
PART_MB=${PART_MB:-56}
BUDGET_S=${BUDGET_S:-480}
PY=${PYTHON:-python3}
started=$(date +%s)

say() { echo "gpu_check: $*" >&2; }
left() { echo $((BUDGET_S - ($(date +%s) - started))); }

pack() {
    local dir=${1:?pack DIR}
    local pyver=${PYVER:-$($PY -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
    mkdir -p "$dir"
    local get=(pip download --no-deps --only-binary=:all: --python-version "$pyver"
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux2014_x86_64 -d "$dir")
    "${get[@]}" "onnxruntime-gpu>=1.23" onnx wordsegment
    if [ "${WITH_NVIDIA:-0}" = 1 ]; then
        "${get[@]}" "onnxruntime-gpu[cuda,cudnn]>=1.23"
    fi
    local wheel
    for wheel in "$dir"/*.whl; do
        if [ "$(stat -c %s "$wheel")" -gt $((PART_MB * 1024 * 1024)) ]; then
            split -b "${PART_MB}m" -d -a 2 "$wheel" "$wheel.part-"
            sha256sum "$wheel" | awk '{print $1}' >"$wheel.sha256"
            rm "$wheel"
        fi
    done
    ls -l "$dir"
}

receive() {
    local dir=${1:?receive DIR}
    mkdir -p "$STORE"
    cp -v "$dir"/* "$STORE"/
}

join_parts() {
    local first whole
    for first in "$STORE"/*.whl.part-00; do
        [ -e "$first" ] || continue
        whole=${first%.part-00}
        cat "$whole".part-* >"$whole.joining"
        if [ "$(sha256sum "$whole.joining" | awk '{print $1}')" != "$(cat "$whole.sha256")" ]; then
            say "$whole: the parts do not join into the wheel that was packed (a part missing or damaged): $(ls "$whole".part-* | wc -l) parts in $STORE"
            rm -f "$whole.joining"
            exit 2
        fi
        mv "$whole.joining" "$whole"
    done
}

run() {
    local out=${1:-${OUT:-gpu-check}}
    mkdir -p "$out"
    if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >"$out/nvidia-smi.txt" 2>&1; then
        say "no NVIDIA GPU here (nvidia-smi finds none): nothing to check"
        exit 3
    fi
    cat "$out/nvidia-smi.txt" >&2
    join_parts
    # The GPU build replaces the CPU one: both install the same `onnxruntime` module.
    $PY -m pip uninstall -y -q onnxruntime onnxruntime-gpu 2>/dev/null || true
    $PY -m pip install -q --no-index --find-links "$STORE" onnxruntime-gpu onnx wordsegment
    $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null
    $PY - <<'EOF' | tee "$out/providers.txt"
import json, onnxruntime as ort
from hashtagger.bundle.runtime import _preload_cuda_libraries
_preload_cuda_libraries()
print(json.dumps({"onnxruntime": ort.__version__, "providers": ort.get_available_providers()}))
EOF
    say "GPU-marked tests ($(left) s left)"
    timeout "$(($(left) - 240))" $PY -m pytest tests/test_gpu.py -m gpu -q -rs -p no:cacheprovider \
        --junitxml "$out/gpu-tests.xml" 2>&1 | tail -20 | tee "$out/gpu-tests.txt" || true
    local batch
    for batch in 64 256; do
        if [ "$(left)" -lt 90 ]; then
            say "batch $batch: skipped, $(left) s left of BUDGET_S=$BUDGET_S" | tee -a "$out/skipped.txt"
            continue
        fi
        say "benchmark, base size, batch $batch ($(left) s left)"
        timeout "$(($(left) - 30))" $PY benchmarks/tag_throughput.py --size base --device cuda --skip-train \
            --posts "${POSTS:-1024}" --rounds 2 --batch-size "$batch" --workers "$(nproc)" \
            --json "$out/tag-throughput-batch$batch.json" >"$out/tag-throughput-batch$batch.txt" 2>&1 \
            || say "batch $batch: the benchmark stopped (status $?); see $out/tag-throughput-batch$batch.txt"
    done
    say "done in $(($(date +%s) - started)) s; results in $out"
}

case "${1:-}" in
pack) pack "${2:-}" ;;
receive) receive "${2:-}" ;;
run) run "${2:-}" ;;
*)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 64
    ;;
esac
