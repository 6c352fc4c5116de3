#!/usr/bin/env bash
# What scripts/serving_gpu.sh needs on a lent GPU machine (Python 3.12, torch + CUDA 13, onnx and a
# CPU-only onnxruntime, no pyzmq, no registry access), built here; .devpkgs/ is git-ignored, so
# both folders travel as `carry`:
#
#   .devpkgs/serving/site   pyzmq (cp312 wheel, unpacked): under 4 MB. Enough for every torch
#                           backend, the ONNX Runtime CPU provider and the parity tests.
#   .devpkgs/ortgpu/ort.tar.xz.aa, .ab, ...   onnxruntime-gpu (cp312, CUDA 13 build, this venv's
#                           version) without its C-API library, xz-compressed and split into parts
#                           of PART_MB (default 56 MB): the CUDA provider library alone is 284 MB, over
#                           one call's 64 MiB, so the parts travel one per call to a machine kept
#                           warm (docs/benchmarks.md, "GPU serving", says how). ORT=0 skips it.
#
#   scripts/serving_gpu_bundle.sh            # ~1 min for pyzmq; add a few minutes for the ORT parts
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
ORT=${ORT:-1}
PART_MB=${PART_MB:-56}
WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
fetch() {
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp $platforms -d "$WHEELS" "$1"
}

fetch "pyzmq==$(version pyzmq)"
rm -rf .devpkgs/serving && mkdir -p .devpkgs/serving/site
unzip -q -o "$WHEELS"/pyzmq-*.whl -d .devpkgs/serving/site

if [ "$ORT" = 1 ]; then
    fetch "onnxruntime-gpu==$(version onnxruntime-gpu)"
    mkdir -p "$WHEELS/ort" && unzip -q "$WHEELS"/onnxruntime_gpu-*.whl -d "$WHEELS/ort"
    # the Python binding links ONNX Runtime statically; libonnxruntime.so is the C API only
    rm -f "$WHEELS"/ort/onnxruntime/capi/libonnxruntime.so.*
    rm -rf .devpkgs/ortgpu && mkdir -p .devpkgs/ortgpu
    tar -C "$WHEELS/ort" -cf - onnxruntime onnxruntime_gpu-*.dist-info \
        | xz -T2 -1 | tee >(sha256sum | cut -d' ' -f1 > .devpkgs/ortgpu/SHA256) \
        | split -b "${PART_MB}M" - .devpkgs/ortgpu/ort.tar.xz.
    sleep 1  # the checksum's process substitution finishes after the pipeline
fi
du -sh .devpkgs/serving .devpkgs/ortgpu/* 2>/dev/null || true
