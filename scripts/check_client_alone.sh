#!/usr/bin/env bash
# The robot-side client installs and works alone (issue 12):
#   a fresh venv gets `pip install ./client` only (pyzmq + numpy), torch, mujoco and mtm_robot
#   must NOT import there, and its python runs client/examples/every_mode.py (act in every
#   mode, metadata, health, stats, error codes as exceptions) against a node started with the
#   main environment's python. Exits non-zero on any failure. About 15-30 s (pip download).
#
#   scripts/check_client_alone.sh              # main python: .venv/bin/python, else python3
#   MAIN_PYTHON=/path/to/python scripts/check_client_alone.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [[ -n "${MAIN_PYTHON:-}" ]]; then
    MAIN=$MAIN_PYTHON
elif [[ -x "$ROOT/.venv/bin/python" ]]; then
    MAIN=$ROOT/.venv/bin/python
else
    MAIN=$(command -v python3)
fi
BASE=${CLIENT_BASE_PYTHON:-python3}  # the interpreter the fresh venv is made from
WORK=$(mktemp -d -t mtm-client-alone.XXXXXX)
NODE_PID=""

cleanup() {
    if [[ -n "$NODE_PID" ]] && kill -0 "$NODE_PID" 2>/dev/null; then
        kill -TERM "$NODE_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$NODE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "check_client_alone: FAIL: $*" >&2; exit 1; }

# 1. the node, started first so that it warms up while pip works (dies with this script)
PORT=$("$MAIN" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ENDPOINT="tcp://127.0.0.1:$PORT"
"$MAIN" launch/serve.py --checkpoint default --bind "$ENDPOINT" --parent-pid $$ \
    >"$WORK/node.log" 2>&1 &
NODE_PID=$!

# 2. a fresh venv with the client only
"$BASE" -m venv "$WORK/venv"
ALONE=$WORK/venv/bin/python
# from a copy: setuptools would leave build/ and *.egg-info in the checkout
(cd "$ROOT/client" && tar --exclude=build --exclude='*.egg-info' --exclude=__pycache__ -cf - .) \
    | (mkdir -p "$WORK/client" && tar -xf - -C "$WORK/client")
PIP_DISABLE_PIP_VERSION_CHECK=1 "$ALONE" -m pip install -q "$WORK/client" \
    || fail "pip install ./client"
"$ALONE" -m pip list --format=freeze >"$WORK/installed.txt"
echo "installed alone: $(tr '\n' ' ' <"$WORK/installed.txt")"
for heavy in torch mujoco dm_control onnxruntime mtm_robot; do
    if (cd "$WORK" && "$ALONE" -c "import $heavy" 2>/dev/null); then
        fail "'import $heavy' works in the client-only venv"
    fi
done
LOCATION=$(cd "$WORK" && "$ALONE" -c 'import mtm_robot_client; print(mtm_robot_client.__file__)')
[[ "$LOCATION" == "$WORK/venv/"* ]] || fail "mtm_robot_client imported from $LOCATION, not the venv"
(cd "$WORK" && "$ALONE" -c 'import mtm_robot_client as m; assert m.load_schema()["$defs"]["error_code"]') \
    || fail "the schema is not shipped with the client"
echo "torch, mujoco, mtm_robot: not importable; mtm_robot_client from $LOCATION"

# 3. every mode against the node, from the client-only venv (outside the checkout)
kill -0 "$NODE_PID" 2>/dev/null || { cat "$WORK/node.log" >&2; fail "the node did not start"; }
if ! (cd "$WORK" && "$ALONE" "$ROOT/client/examples/every_mode.py" --endpoint "$ENDPOINT" \
        --ready-timeout-s 60); then
    echo "--- node log" >&2; cat "$WORK/node.log" >&2
    fail "client/examples/every_mode.py"
fi
kill -0 "$NODE_PID" 2>/dev/null || { cat "$WORK/node.log" >&2; fail "the node died"; }
echo "check_client_alone: OK"
