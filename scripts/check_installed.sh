#!/usr/bin/env bash
# The package works installed, outside the checkout (issue 14, item 1):
#   a fresh venv in /tmp gets CPU torch, then `pip install <a copy of the checkout>` (a regular,
#   non-editable install; the copy is deleted afterwards). From another folder, with every file
#   open under the checkout refused (an audit hook in the venv's sitecustomize, inherited by the
#   node the run starts), it runs: every entry point's --help, `python -m mtm_robot.serving
#   --help`, a preset by name, one lockstep walker episode through `mtm-sim-control` (node, model
#   and controller: the shipped model), and one expert episode through `mtm-collect` (the shipped
#   experts). Exits non-zero on any failure. About 2-4 minutes with a warm pip cache.
#
#   scripts/check_installed.sh
#   BASE_PYTHON=python3.11 KEEP=1 scripts/check_installed.sh   # KEEP=1: leave the venv in /tmp
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${BASE_PYTHON:-python3}  # the interpreter the fresh venv is made from (not the checkout's)
WORK=$(mktemp -d -t mtm-installed.XXXXXX)
STARTED=$SECONDS
cleanup() { [[ -n "${KEEP:-}" ]] && echo "kept $WORK" || rm -rf "$WORK"; }
trap cleanup EXIT
fail() { echo "check_installed: FAIL: $*" >&2; exit 1; }
step() { echo "[$((SECONDS - STARTED)) s] $*"; }
unset PYTHONPATH PYTHONHOME
export PIP_DISABLE_PIP_VERSION_CHECK=1 MUJOCO_GL=${MUJOCO_GL:-egl}

# 1. a fresh venv: CPU torch first (an unpinned torch resolves to a multi-GB CUDA build), then
#    the package from a copy of the checkout (setuptools would leave build/ and *.egg-info there)
step "venv in $WORK"
"$BASE" -m venv "$WORK/venv"
PY=$WORK/venv/bin/python
"$PY" -m pip install -q torch==2.13.0 || fail "pip install torch==2.13.0"
mkdir -p "$WORK/src"
git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && tar --null --ignore-failed-read -T - -cf - 2>/dev/null) \
    | tar -xf - -C "$WORK/src"
step "pip install (non-editable) of a copy of $ROOT"
"$PY" -m pip install -q "$WORK/src" || fail "pip install <checkout>"
rm -rf "$WORK/src"
"$PY" -m pip show -f mtm-robot >"$WORK/files.txt"
for shipped in mtm_robot/configs/mtm_walker.yaml mtm_robot/checkpoints/walker-walk/ \
        sim/experts/walker-walk/expert.safetensors mtm_robot_client/protocol.schema.json; do
    grep -q "$shipped" "$WORK/files.txt" || fail "$shipped is not in the installed package"
done

# 2. refuse every open under the checkout from now on (a read there is a failure)
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cat >"$SITE/sitecustomize.py" <<'EOF'
import os
import sys

_ROOT = os.environ.get("MTM_FORBIDDEN_ROOT")
if _ROOT:

    def _refuse_checkout(event, args):
        if event == "open" and args and isinstance(args[0], str | bytes | os.PathLike):
            path = os.path.abspath(os.fsdecode(args[0]))
            if path == _ROOT or path.startswith(_ROOT + os.sep):
                with open(os.environ["MTM_FORBIDDEN_LOG"], "a") as log:
                    log.write(f"{os.getpid()} {path}\n")
                raise PermissionError(f"check_installed: read from the checkout: {path}")

    sys.addaudithook(_refuse_checkout)
EOF
export MTM_FORBIDDEN_ROOT=$ROOT MTM_FORBIDDEN_LOG=$WORK/checkout_reads.txt
BIN=$WORK/venv/bin
mkdir -p "$WORK/run" && cd "$WORK/run"

where=$("$PY" -c 'import calibration, controllers, mtm_robot, mtm_robot_client, sim
print(" ".join(m.__file__ for m in (calibration, controllers, mtm_robot, mtm_robot_client, sim)))')
for file in $where; do
    [[ "$file" == "$SITE/"* ]] || fail "$file is not in the venv's site-packages"
done
step "imports from $SITE"

# 3. every entry point answers --help; the node starts as a module
for command in mtm-sim-control mtm-serve mtm-calibrate mtm-train mtm-finetune mtm-collect \
        mtm-record-demos mtm-render mtm-train-expert mtm-export-onnx mtm-keygen mtm-broker \
        mtm-interop mtm-tasks mtm-report; do
    [[ -x "$BIN/$command" ]] || fail "no entry point $command"
    t0=$EPOCHREALTIME
    "$BIN/$command" --help >/dev/null || fail "$command --help"
    awk -v c="$command" -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "  %-18s --help %.2f s\n", c, b - a }'
done
"$PY" -m mtm_robot.serving --help >/dev/null || fail "python -m mtm_robot.serving --help"
"$PY" -c 'from mtm_robot.config import load_config
from mtm_robot.serving.server import ServeConfig
from mtm_robot.training.train import TrainConfig
assert load_config(TrainConfig, "mtm_walker").model.width > 0
load_config(ServeConfig, "serve")' || fail "presets by name"
step "entry points, python -m mtm_robot.serving, presets: OK"

# 4. the main job on one short lockstep episode (starts the node: python -m mtm_robot.serving)
"$BIN/mtm-sim-control" --task walker --episodes 1 --lockstep \
    --out "$WORK/run/sim" >"$WORK/sim.log" 2>&1 || { cat "$WORK/sim.log" >&2; fail "mtm-sim-control"; }
grep -q "walker" "$WORK/sim.log" && [[ -f "$WORK/run/sim/summary.json" ]] \
    || { cat "$WORK/sim.log" >&2; fail "mtm-sim-control wrote no summary"; }
step "mtm-sim-control --task walker --episodes 1 --lockstep (a whole episode): $(grep -m1 -i "score\|return" "$WORK/sim.log" | tr -s " " | cut -c1-120)"

# 5. the shipped experts: one expert episode
"$BIN/mtm-collect" --task walker --recipe expert --episodes 1 --out "$WORK/run/demos" \
    >"$WORK/collect.log" 2>&1 || { cat "$WORK/collect.log" >&2; fail "mtm-collect"; }
step "mtm-collect --recipe expert --episodes 1: OK"

# 6. the Python API example (docs/python-api.md's episode example), from the installed package
"$PY" - >"$WORK/api.log" 2>&1 <<'PYEOF' || { cat "$WORK/api.log" >&2; fail "the Python API example"; }
import numpy as np
import mtm_robot
from sim import registry

env = registry.make("walker-walk")
policy = mtm_robot.load_policy("default", return_target=900)
observation, _ = env.reset(seed=0)
policy.reset()
episode_return = 0.0
for _ in range(50):
    action = policy.act(observation)
    assert np.all(np.abs(action) <= 1.0), action  # clipped to the walker's bounds
    observation, reward, terminated, truncated, _ = env.step(action)
    episode_return += reward
env.close()
print(f"return over 50 steps: {episode_return:.1f}")
PYEOF
step "Python API example (load_policy('default'), 50 walker steps): $(tail -1 "$WORK/api.log")"

if [[ -s "$MTM_FORBIDDEN_LOG" ]]; then
    cat "$MTM_FORBIDDEN_LOG" >&2
    fail "files were opened under the checkout"
fi
echo "check_installed: OK in $((SECONDS - STARTED)) s"
