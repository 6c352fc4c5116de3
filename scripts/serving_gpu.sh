#!/usr/bin/env bash
# Issue 17's GPU serving check, in one go on a lent GPU machine: the parity tests of every GPU
# backend against the CPU fp32 forward, then bench/serve_throughput.py for both model sizes and
# every backend (torch eager, torch CUDA graphs per bucket, ONNX Runtime CUDA and TensorRT
# providers where they load) with same-run baselines. Results land in $OUT as files:
#   env.txt            GPU, versions, which ONNX Runtime providers load and why not
#   parity.txt         pytest -s output: one "parity <backend> <model>: max |diff|" line each
#   serving_gpu.json   every number (python -m bench.serve_throughput --render it again)
#   serving_gpu.md     the docs/benchmarks.md section (--render JSON --docs writes it there)
#   serving_gpu.log    everything this script printed
#
# On a lent GPU (the run tool; build the bundle first with scripts/serving_gpu_bundle.sh):
#   carry [".devpkgs/serving"] (+ ".devpkgs/ortgpu" parts for the CUDA provider), timeout_s 540:
#   bash scripts/serving_gpu.sh
# The dry run on a CPU, proving the script end to end (small counts, CPU numbers meaningless):
#   DEVICE=cpu SITE= PY=python OUT=/tmp/serving-dry bash scripts/serving_gpu.sh   (in the venv)
#
# Budget on an H200 (estimated, not yet measured): env 10 s, parity about 1 min, benchmark
# about 4 min (6-8 nodes x ~30 s); each step has its own timeout (PARITY_S, BENCH_S).
set -u
OUT=${OUT:?set OUT to the folder the results go to}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
SITE=${SITE-.devpkgs/serving/site}  # cp312 builds: the dry run passes SITE= to use its own pyzmq
ORT_PARTS=${ORT_PARTS:-.devpkgs/ortgpu}
ORT_SITE=${ORT_SITE:-/tmp/mtm-ortgpu}
PARITY_S=${PARITY_S:-150}
BENCH_S=${BENCH_S:-330}
if [ "$DEVICE" = cuda ]; then
    BENCH_ARGS=${BENCH_ARGS:---models default,paper --backends torch,torch-graphs,torch-graphs-bf16,onnx,onnx-tensorrt --clients 1,8,64,256 --client-procs 8 --duration-s 1.5 --latency-n 2000 --max-batch 256}
else  # the dry run: one small model, short points, the CPU's two cores
    BENCH_ARGS=${BENCH_ARGS:---models default --backends torch,torch-graphs,onnx --clients 1,8 --client-procs 2 --quick --max-batch 16}
fi
mkdir -p "$OUT"
exec > >(tee -a "$OUT/serving_gpu.log") 2>&1
start=$(date +%s)
export PYTHONPATH=$PWD:$PWD/client${SITE:+:$PWD/$SITE}${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MUJOCO_GL=disable

# 0. onnxruntime-gpu from its parts, when every part came (checked against the bundle's SHA256)
if [ -f "$ORT_PARTS/SHA256" ] && [ "$DEVICE" = cuda ]; then
    if [ "$(cat "$ORT_PARTS"/ort.tar.xz.* | sha256sum | cut -d' ' -f1)" = "$(cat "$ORT_PARTS/SHA256")" ]; then
        rm -rf "$ORT_SITE" && mkdir -p "$ORT_SITE"
        cat "$ORT_PARTS"/ort.tar.xz.* | xz -d | tar -C "$ORT_SITE" -xf - && export PYTHONPATH=$ORT_SITE:$PYTHONPATH
        echo "onnxruntime-gpu unpacked into $ORT_SITE"
    else
        echo "onnxruntime-gpu parts incomplete ($(ls "$ORT_PARTS" | tr '\n' ' ')): ONNX Runtime GPU providers will be skipped"
    fi
fi
# CUDA 13 libraries of the machine's torch wheels (cuBLAS, cuDNN, cuRAND...) for ORT's CUDA provider
NV=$($PY -c "import glob, site; print(':'.join(sorted(glob.glob(site.getsitepackages()[0] + '/nvidia/**/lib', recursive=True))))" 2>/dev/null)
export LD_LIBRARY_PATH=${NV}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# 1. the machine (seconds): GPU, versions, which providers load and why not
{
    [ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    timeout 120 $PY - "$DEVICE" <<'EOF'
import sys

import numpy, onnxruntime as ort, torch, zmq

from mtm_robot.hardware import describe
from mtm_robot.serving.backends import choose_providers, cuda_devices, provider_library_error

print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available(),
      "numpy", numpy.__version__, "onnxruntime", ort.__version__, ort.__file__, "pyzmq", zmq.__version__)
print("hardware:", describe(gpu=sys.argv[1] == "cuda"))
print("onnxruntime providers for device cuda:", choose_providers(
    "cuda", ort.get_available_providers(), cuda_devices(), provider_library_error))
EOF
} 2>&1 | tee "$OUT/env.txt"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "the environment check failed: stopping"; exit 3; }
echo "env done after $(( $(date +%s) - start )) s"

# 2. parity: every GPU backend against the CPU fp32 forward (skips name what did not load)
MTM_PARITY_DEVICE=$DEVICE timeout "$PARITY_S" $PY -m pytest -q -rs -s -p no:cacheprovider \
    tests/serving/test_gpu_parity.py tests/serving/test_bucket_graphs.py 2>&1 | tee "$OUT/parity.txt"
echo "parity done after $(( $(date +%s) - start )) s (rc ${PIPESTATUS[0]})"

# 3. the benchmark (writes its JSON after every backend, so a timeout keeps what finished)
timeout "$BENCH_S" $PY -m bench.serve_throughput --device "$DEVICE" $BENCH_ARGS \
    --json "$OUT/serving_gpu.json" --out "$OUT/serving_gpu.md"
rc=$?
if [ $rc != 0 ] && [ -f "$OUT/serving_gpu.json" ]; then  # cut short: render what finished
    $PY -m bench.serve_throughput --render "$OUT/serving_gpu.json" --out "$OUT/serving_gpu.md"
fi
echo "benchmark done after $(( $(date +%s) - start )) s (rc $rc)"
ls -la "$OUT"
