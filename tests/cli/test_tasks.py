"""``mtm-tasks``: every registered task with what ships for it, found from the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtm_robot.cli import tasks
from sim.registry import known_tasks


def test_walker_ships_everything_and_every_task_is_listed(capsys: pytest.CaptureFixture[str]):
    assert tasks.main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)  # --json: stdout is the JSON alone
    assert [r["task"] for r in rows] == known_tasks()
    walker = next(r for r in rows if r["task"] == "walker-walk")
    assert walker["expert"] and walker["model"] and walker["demonstration"]
    assert walker["recipes"] == ["random", "medium", "medium-replay", "medium-expert", "expert"]
    pointmass = next(r for r in rows if r["task"] == "mujoco-pointmass")
    assert pointmass["recipes"] == ["random"] and not pointmass["expert"]
    assert tasks.main([]) == 0
    assert "walker-walk" in capsys.readouterr().out


def test_a_shipped_expert_and_model_are_found_from_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cheetah-run").mkdir()
    (tmp_path / "cheetah-run" / "expert.safetensors").write_bytes(b"")
    monkeypatch.setattr(tasks, "default_policy_dir", lambda task: tmp_path / task)
    monkeypatch.setattr(tasks, "shipped_tasks", lambda: ["cheetah-run"])
    rows = {r["task"]: r for r in tasks.inventory()}
    assert rows["cheetah-run"]["expert"] and rows["cheetah-run"]["model"]
    assert rows["cheetah-run"]["recipes"] == ["random", "expert"]  # medium-*: no medium policy
    assert not rows["walker-walk"]["expert"] and not rows["walker-walk"]["model"]
