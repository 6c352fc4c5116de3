#!/usr/bin/env bash
# The heteromodal data loop, end to end (docs/data-loop.md):
#
#   1. serve CHECKPOINT in an inference node (it keeps running throughout);
#   2. score the controller against that node (lockstep, EPISODES episodes, MODE);
#   3. record DEMOS action-free demonstrations (states + rewards, no actions), from the sim
#      expert directly (DEMO_SOURCE=expert) or streamed over ZeroMQ by a stand-in robot stack
#      (DEMO_SOURCE=zmq: the expert in a simulator PUSHing state messages to record_demos);
#   4. finetune CHECKPOINT on LABELLED expert episodes with actions plus the demos (action-free)
#      for STEPS steps, and hot-swap the result into the running node (--push);
#   5. score the controller again against the same node, now serving the finetuned model.
#
# Usage: scripts/data_loop_demo.sh            (knobs below, as environment variables)
#   CHECKPOINT=runs/report-heteromodal/jobs/mtm_expert_1ep_seed0/checkpoints/latest STEPS=1500 \
#       scripts/data_loop_demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKPOINT=${CHECKPOINT:-default}   # the model to improve (any walker-walk checkpoint)
OUT=${OUT:-runs/data_loop}          # everything this run writes
DEMOS=${DEMOS:-20}                  # action-free demonstrations to record
DEMO_SOURCE=${DEMO_SOURCE:-expert}  # expert | zmq
LABELLED=${LABELLED:-2}             # labelled expert episodes (collect recipe, seed 0)
STEPS=${STEPS:-1000}                # finetuning steps
EPISODES=${EPISODES:-5}             # evaluation episodes before and after
MODE=${MODE:-two_stage}             # controller mode scored before and after
PY=${PYTHON:-python}
export MUJOCO_GL=${MUJOCO_GL:-egl}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run() { echo "+ $*" >&2; "$@"; }

mkdir -p "$OUT"
NODE="tcp://127.0.0.1:$(free_port)"
echo "== 1. inference node: $CHECKPOINT at $NODE (log $OUT/node.log)"
# --allow-reload: step 4 hot-swaps the finetuned checkpoint (written under $OUT) into this node
"$PY" launch/serve.py --checkpoint "$CHECKPOINT" --bind "$NODE" --allow-reload "$OUT" \
    >"$OUT/node.log" 2>&1 &
NODE_PID=$!
RECORDER_PID=""
cleanup() {
    kill "$NODE_PID" $RECORDER_PID 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
}
trap cleanup EXIT
"$PY" -c "
import sys
from mtm_robot_client import NodeClient
with NodeClient('$NODE') as c:
    c.wait_ready(timeout_s=180)
    print('node ready, serving', c.metadata()['model_id'])
"

echo "== 2. controller score before ($MODE, $EPISODES lockstep episodes)"
run "$PY" launch/sim_control.py --task walker --server "$NODE" --lockstep --mode "$MODE" \
    --episodes "$EPISODES" --out "$OUT/before" >"$OUT/before.log"
tail -n "$((EPISODES + 4))" "$OUT/before.log"

echo "== 3. action-free demonstrations ($DEMOS, source $DEMO_SOURCE)"
rm -rf "$OUT/demos"
if [ "$DEMO_SOURCE" = zmq ]; then
    STREAM="tcp://127.0.0.1:$(free_port)"
    run "$PY" launch/record_demos.py --task walker --source zmq --bind "$STREAM" \
        --out "$OUT/demos" --episodes "$DEMOS" --idle-timeout-s 60 --timeout-s 10 &
    RECORDER_PID=$!
    # a stand-in robot stack: the sim expert publishing its states (never its actions)
    "$PY" - "$STREAM" "$DEMOS" <<'EOF'
import sys
import numpy as np
from mtm_robot.serving.state_stream import StatePublisher
from sim import registry
from sim.datasets import PolicySource, RecipeActors, default_policy_dir, reset_seed, rollout

endpoint, episodes, seed = sys.argv[1], int(sys.argv[2]), 3
with registry.make("walker") as env, StatePublisher(endpoint) as pub:
    actors = RecipeActors(env, "expert", PolicySource(default_policy_dir(env.task)))
    for i in range(episodes):
        act, _ = actors.for_episode(i)
        r = rollout(env, act, reset_seed(seed, i), np.random.default_rng([seed, i]))
        for t, state in enumerate(r.states):
            if not pub.send_state(f"robot-{i}", t, state, float(r.rewards[t]),
                                  t / env.control_hz, timeout_ms=30_000):
                sys.exit("the recorder is not taking messages")
        pub.send_end(f"robot-{i}", r.terminated, r.truncated, timeout_ms=30_000)
print(f"published {episodes} episodes to {endpoint}")
EOF
    wait "$RECORDER_PID"
else
    run "$PY" launch/record_demos.py --task walker --source expert --out "$OUT/demos" \
        --episodes "$DEMOS" --seed 3 | tail -n 2
fi

echo "== 4. finetune on $LABELLED labelled episodes + $DEMOS action-free demos, push to the node"
rm -rf "$OUT/labelled" "$OUT/finetune"
run "$PY" launch/collect.py --task walker --recipe expert --episodes "$LABELLED" --seed 0 \
    --out "$OUT/labelled" >/dev/null 2>&1
run "$PY" launch/finetune.py --checkpoint "$CHECKPOINT" --data "$OUT/labelled" \
    --data "$OUT/demos" --action-free --out "$OUT/finetune" --steps "$STEPS" \
    --set data.validation_fraction=0.0 --eval-episodes 0 --push "$NODE" --no-progress

echo "== 5. controller score after (same node, hot-swapped model)"
run "$PY" launch/sim_control.py --task walker --server "$NODE" --lockstep --mode "$MODE" \
    --episodes "$EPISODES" --out "$OUT/after" >"$OUT/after.log"
tail -n "$((EPISODES + 4))" "$OUT/after.log"

"$PY" - "$OUT" <<'EOF'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
rows = {k: json.loads((out / k / "summary.json").read_text()) for k in ("before", "after")}
print(f"\n  {'':<8}  {'model':<44} {'score (mean ± std)':<20} deadline misses")
for name, s in rows.items():
    score = f"{s['score_mean']:.1f} ± {s['score_std']:.1f}"
    print(f"  {name:<8}  {s['model_id']:<44} {score:<20} {s['deadline_misses']}")
result = {k: {f: v[f] for f in ("model_id", "score_mean", "score_std", "episodes")}
          for k, v in rows.items()}
(out / "data_loop.json").write_text(json.dumps(result, indent=2) + "\n")
if rows["before"]["model_id"] == rows["after"]["model_id"]:
    sys.exit("the node still serves the old model: the hot swap did not happen")
EOF
