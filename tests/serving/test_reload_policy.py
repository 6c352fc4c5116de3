"""Who may make a node load what: remote reload is opt-in, confined to one directory, and a
different model of the same dimensions is refused unless forced (issue 12, defect 3)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mtm_robot.errors import ConfigError
from mtm_robot.serving.reload_policy import allowed_reload_path, model_differences
from mtm_robot.serving.server import ServeConfig
from mtm_robot.training.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from mtm_robot_client import NodeError

from .conftest import make_checkpoint, wait_for


def finetuned(source: Path, directory: Path, model_id: str) -> Path:
    """What launch/finetune.py writes: new weights, the source's normaliser, config and task."""
    checkpoint = load_checkpoint(source)
    with torch.no_grad():
        for p in checkpoint.model.parameters():
            p.add_(0.01)
    meta = {k: v for k, v in checkpoint.metadata.items() if k in ("task", "training")}
    save_checkpoint(
        directory, checkpoint.model, checkpoint.normalizer, {**meta, "model_id": model_id}
    )
    return directory


def _code(excinfo: pytest.ExceptionInfo[NodeError]) -> str:
    return excinfo.value.code


def test_remote_reload_is_off_by_default(start_node, connect, checkpoint_a):
    assert ServeConfig().allow_reload == ""
    node = start_node()
    client = connect(node.endpoint, timeout_ms=20_000)
    with pytest.raises(NodeError) as excinfo:
        client.reload(str(checkpoint_a))
    assert _code(excinfo) == "forbidden"
    assert "--allow-reload" in str(excinfo.value)
    with pytest.raises(NodeError) as excinfo:
        client.reload()  # the served checkpoint, too
    assert _code(excinfo) == "forbidden"
    assert client.stats()["counters"]["reloads"] == 0


def test_remote_reload_loads_only_from_under_the_allowed_directory(
    start_node, connect, checkpoint_a, tmp_path
):
    allowed = tmp_path / "allowed"
    inside = finetuned(checkpoint_a, allowed / "ft", "tiny-a-ft")
    outside = finetuned(checkpoint_a, tmp_path / "outside", "tiny-a-out")
    (allowed / "link").symlink_to(outside, target_is_directory=True)
    node = start_node(allow_reload=str(allowed))
    client = connect(node.endpoint, timeout_ms=20_000)
    for path in (outside, allowed / ".." / "outside", allowed / "link", Path("relative/x")):
        with pytest.raises(NodeError) as excinfo:
            client.reload(str(path))
        assert _code(excinfo) == "forbidden", path
        assert str(allowed.resolve()) in str(excinfo.value)
    assert client.metadata()["model_id"] == "tiny-a"
    reply = client.reload(str(inside))
    assert reply.model_id == "tiny-a-ft"  # a finetune of the served model is accepted
    assert client.stats()["errors"]["forbidden"] == 4


def test_a_different_model_of_the_same_dims_is_refused_unless_forced(
    start_node, connect, checkpoint_a, tmp_path
):
    other = make_checkpoint(tmp_path / "other", 2, "tiny-other")  # same dims, other data
    node = start_node(allow_reload=str(tmp_path))
    client = connect(node.endpoint, timeout_ms=20_000)
    with pytest.raises(NodeError) as excinfo:
        client.reload(str(other))
    assert _code(excinfo) == "model_mismatch"
    assert "normaliser" in str(excinfo.value) and "force" in str(excinfo.value)
    assert client.act("behavior_cloning", np.zeros(5, np.float32)).model_id == "tiny-a"
    reply = client.reload(str(other), force=True)
    assert reply.model_id == "tiny-other"
    assert client.stats()["errors"]["model_mismatch"] == 1


def test_a_bad_force_flag_is_a_bad_request(start_node, connect, checkpoint_a, tmp_path):
    node = start_node(allow_reload=str(tmp_path))
    client = connect(node.endpoint)
    rid = client.send({"type": "reload", "checkpoint": str(checkpoint_a), "force": "yes"})
    reply = client.poll(rid, 5000)
    assert reply is not None and reply.error_code == "bad_request"


def test_signal_reloads_skip_the_directory_rule_but_not_the_model_check(
    start_node, connect, checkpoint_b
):
    node = start_node()  # remote reload off: the operator's own reloads still work
    client = connect(node.endpoint)
    node.request_reload(str(checkpoint_b))
    assert wait_for(lambda: client.stats()["errors"].get("model_mismatch", 0) == 1)
    assert client.health()["model_id"] == "tiny-a"
    node.request_reload()  # the served checkpoint, re-read from disk
    assert wait_for(lambda: client.stats()["counters"]["reloads"] == 1)
    assert client.health()["model_id"] == "tiny-a"


def test_model_differences_name_what_differs(checkpoint_a, tmp_path):
    served = read_metadata(checkpoint_a)
    same = read_metadata(finetuned(checkpoint_a, tmp_path / "f", "x"))
    assert model_differences(served, same) == []
    other = read_metadata(make_checkpoint(tmp_path / "o", 2, "o"))
    assert any("normaliser" in d for d in model_differences(served, other))
    for key, value, word in (
        ("task", "walker-run", "task"),
        ("model_config", {**served["model_config"], "width": 64}, "width"),
        ("data_spec", {**served["data_spec"], "segment_length": 8}, "segment_length"),
    ):
        changed = {**served, key: value}
        found = model_differences(served, changed)
        assert len(found) == 1 and word in found[0], (key, found)
    # dropout is a training setting: a finetune may change it
    dropout = {**served, "model_config": {**served["model_config"], "dropout": 0.3}}
    assert model_differences(served, dropout) == []


def test_allowed_reload_path_resolves_before_checking(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    assert allowed_reload_path(str(root / "a"), str(root)) == (root / "a").resolve()
    assert allowed_reload_path(str(root / "a" / ".." / "a"), str(root)) == (root / "a").resolve()
    assert allowed_reload_path(str(root / ".."), str(root)) is None
    assert allowed_reload_path(str(tmp_path / "rootx"), str(root)) is None  # not a prefix match
    assert allowed_reload_path("", str(root)) is None
    os.symlink(tmp_path, root / "up")
    assert allowed_reload_path(str(root / "up" / "root" / "a"), str(root)) == (root / "a").resolve()
    assert allowed_reload_path(str(root / "up"), str(root)) is None


def test_allow_reload_is_a_directory_not_a_switch():
    with pytest.raises(ConfigError, match="directory"):
        ServeConfig(allow_reload=True)  # type: ignore[arg-type]
