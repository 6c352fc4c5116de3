#!/usr/bin/env bash
# An evaluation report budget (python -m mtm_robot.report; BUDGET, default full) on one lent GPU machine:
# train every job with the MTMs agreeing on a step count that ends before TRAIN_S seconds,
# evaluate on the machine's CPU cores, and pack the results (and the checkpoints the
# representation study and re-checks need) into $OUT.
#
#   OUT=/tmp/out DATA=.devdata/walker SITE=.devpkgs/site scripts/report_full_gpu.sh
#
# DATA: the walker-walk stores expert/ medium/ medium-replay/ medium-expert/ (launch/collect.py;
# states, actions and rewards suffice). SITE: extra Python packages the machine lacks (mujoco,
# a trimmed dm_control, pyzmq), put first on PYTHONPATH. scripts/device_bundle.sh builds both. Afterwards, on any machine:
#   python -m mtm_robot.report --budget full --out RUN --stages evaluate,report
set -u
OUT=${OUT:?set OUT to the folder the results go to}
DATA=${DATA:-.devdata/walker}
SITE=${SITE:-.devpkgs/site}
RUN=${RUN:-/tmp/report-full}
TRAIN_S=${TRAIN_S:-330}
EVAL_S=${EVAL_S:-140}
BUDGET=${BUDGET:-full}
STUDIES=${STUDIES:-versatility,data_efficiency,masking,heteromodal}
export PYTHONPATH=$PWD/$SITE:$PWD MUJOCO_GL=disable PYTHONUNBUFFERED=1
start=$(date +%s)
mkdir -p "$OUT" "$RUN"

# 1. the machine can do it at all (seconds; stop here otherwise)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 - <<'EOF' 2>&1 | tee -a "$OUT/gpu.txt" || exit 3
import numpy, torch
from mtm_robot.report.page import hardware
from sim import registry
env = registry.make("walker-walk")
obs, _ = env.reset(seed=1)
print("sim ok", env.step(obs[:6] * 0)[1])
print("torch", torch.__version__, "numpy", numpy.__version__, "cuda", torch.cuda.is_available())
print("hardware:", hardware())
EOF

# 2. training: every MTM at once, agreeing on steps; baselines beside them
python3 -m mtm_robot.report --budget "$BUDGET" --studies "$STUDIES" --device cuda --workers 6 --threads 1 \
    --deadline-s "$TRAIN_S" --stages train --data-root "$DATA" --out "$RUN" --no-write \
    2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -40
echo "train stage done after $(( $(date +%s) - start )) s"

# 3. evaluation on the CPU cores, cut at EVAL_S (each job's scores are written as it ends)
timeout "$EVAL_S" python3 -m mtm_robot.report --budget "$BUDGET" --studies "$STUDIES" --device cpu --workers 15 \
    --threads 1 --stages evaluate --data-root "$DATA" --out "$RUN" --no-write \
    2>&1 | tr '\r' '\n' | tail -5
echo "evaluate stage done after $(( $(date +%s) - start )) s"

# 4. pack: every result file; checkpoints of seed 0 (versatility and heteromodal MTMs)
( cd "$RUN" && find . -name '*.json' -o -name '*.jsonl' -o -name '*.log' -o -name '*.yaml' \
    | grep -v '/checkpoints/' | tar czf "$OUT/results.tar.gz" -T - )
( cd "$RUN" && ls jobs/mtm_*seed0/checkpoints/latest/{model.safetensors,checkpoint.yaml} \
    2>/dev/null | grep -v -- '-masks_' | tar cf - -T - | split -b 15M - "$OUT/checkpoints.tar." )
ls -la "$OUT"
echo "done after $(( $(date +%s) - start )) s"
