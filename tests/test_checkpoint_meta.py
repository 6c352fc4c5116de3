"""A checkpoint's metadata is read and verified without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_verifying_the_shipped_checkpoint_loads_no_torch() -> None:
    code = (
        "import json, sys\n"
        "from mtm_robot.checkpoint_meta import verify_checkpoint\n"
        "meta = verify_checkpoint('default')\n"
        "print(json.dumps([meta['data_spec']['modalities'], 'torch' in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    modalities, torch_loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert (modalities["states"], modalities["actions"]) == (24, 6)
    assert not torch_loaded


def test_default_checkpoint_resolves_to_the_tasks_shipped_model(tmp_path: Path) -> None:
    import pytest

    from mtm_robot.checkpoint_meta import (
        DEFAULT_CHECKPOINT,
        SHIPPED_CHECKPOINTS,
        resolve_checkpoint_path,
        shipped_tasks,
    )
    from mtm_robot.errors import CheckpointError

    assert "walker-walk" in shipped_tasks()
    assert resolve_checkpoint_path("default") == DEFAULT_CHECKPOINT
    for task in shipped_tasks():
        assert resolve_checkpoint_path("default", task) == SHIPPED_CHECKPOINTS / task
    with pytest.raises(CheckpointError, match=r"no model ships for task 'hopper-hop'.*walker-walk"):
        resolve_checkpoint_path("default", "hopper-hop")
    assert resolve_checkpoint_path(tmp_path, "hopper-hop") == tmp_path
