#!/usr/bin/env bash
# What scripts/report_full_gpu.sh needs on a lent GPU machine that has torch but no simulator
# and no registry access, built here (both folders are git-ignored; they travel as `carry`):
#
#   .devpkgs/site  cp312 wheels of mujoco (trimmed: parts `import mujoco` never loads removed),
#                  dm_env and pyzmq, plus this machine's dm_control with only what the suite
#                  needs (no locomotion, no dog assets): about 23 MB;
#   .devdata/walker  the walker-walk stores (DATA_ROOT) with states, actions and rewards only
#                  (physics dropped): about 25 MB for expert, medium, medium-replay, medium-expert.
#
#   scripts/device_bundle.sh [DATA_ROOT]        (default /work/data/walker)
# Then, on the device: PYTHONPATH=$PWD/.devpkgs/site:$PWD MUJOCO_GL=disable (the script sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${1:-/work/data/walker}
PY=${PYTHON:-python}
WHEELS=$(mktemp -d)
SITE=.devpkgs/site
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
for pkg in "mujoco==$(version mujoco)" dm-env "pyzmq==$(version pyzmq)"; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp $platforms -d "$WHEELS" "$pkg"
done
rm -rf "$SITE" && mkdir -p "$SITE"
for whl in "$WHEELS"/*.whl; do unzip -q -o "$whl" -d "$SITE"; done
M=$SITE/mujoco
rm -rf "$M"/experimental "$M"/include "$M"/introspect "$M"/sysid "$M"/usd "$M"/testdata \
    "$M"/plugin "$M"/_render_filament.*.so "$M"/_batch.*.so "$M"/_rollout.*.so \
    "$M"/_simulate.*.so "$M"/rendering/filament "$M"/viewer.py "$M"/batch.py "$M"/rollout.py \
    "$M"/minimize.py "$M"/mjrf.py "$M"/msh2obj.py "$M"/cgl "$M"/glfw
find "$M" -name '*_test.py' -delete
SRC=$("$PY" -c "import dm_control, os; print(os.path.dirname(dm_control.__file__))")
D=$SITE/dm_control && mkdir -p "$D" && cp "$SRC"/__init__.py "$D"/
for sub in _render mujoco rl utils suite; do cp -r "$SRC/$sub" "$D/"; done
rm -rf "$D"/suite/dog_assets "$D"/suite/all_domains.png "$D"/mujoco/testing
find "$D" -depth \( -name tests -o -name __pycache__ -o -name testdata \) -type d -exec rm -rf {} +
find "$D" -name '*_test.py' -delete
rm -rf "$WHEELS"
"$PY" - "$DATA_ROOT" <<'PYEOF'
import sys
from pathlib import Path

from mtm_robot.data.episodes import Episode, episode_file, load_episodes, save_episode

root, out = Path(sys.argv[1]), Path(".devdata/walker")
for name in ("expert", "medium", "medium-replay", "medium-expert"):
    for i, e in enumerate(load_episodes(root / name)):
        save_episode(episode_file(out / name, i), Episode(e.states, e.actions, e.rewards, meta=e.meta))
PYEOF
du -sh .devpkgs .devdata
