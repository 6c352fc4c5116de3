"""Issue 18: the main job asks its node for ONNX; the graph is exported once into the user cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mtm_robot.export import onnx as onnx_export
from mtm_robot.serving.backends import BackendConfig, load_engine
from mtm_robot.training.checkpoint import load_checkpoint


@pytest.mark.slow
def test_the_graph_is_exported_once_then_read_from_the_cache(checkpoint_a, tmp_path, monkeypatch):
    monkeypatch.setenv("MTM_CACHE_DIR", str(tmp_path / "cache"))
    engine = load_engine(checkpoint_a, BackendConfig(backend="onnx", max_batch=2), warm=False)
    cached = list((tmp_path / "cache" / "onnx").iterdir())
    assert [p.suffix for p in cached] == [".onnx"]  # no temporary export directory left
    assert engine.description["name"] == "onnx"

    def no_export(*args: object, **kwargs: object) -> Path:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    again = onnx_export.cached_export(load_checkpoint(checkpoint_a))
    assert again == cached[0]


@pytest.mark.slow
def test_an_unwritable_cache_falls_back_to_a_temporary_directory(
    checkpoint_a, tmp_path, monkeypatch
):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache directory would be")
    monkeypatch.setenv("MTM_CACHE_DIR", str(blocked))
    path = onnx_export.cached_export(load_checkpoint(checkpoint_a))
    assert path.is_file() and not str(path).startswith(str(blocked))
    assert os.path.commonpath([path, blocked]) != str(blocked)


def test_the_cache_is_the_users(monkeypatch, tmp_path):
    monkeypatch.delenv("MTM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert onnx_export.onnx_cache_dir() == tmp_path / "mtm-robot" / "onnx"
    monkeypatch.setenv("MTM_CACHE_DIR", str(tmp_path / "x"))
    assert onnx_export.onnx_cache_dir() == tmp_path / "x" / "onnx"


def test_the_main_job_asks_its_node_for_onnx_unless_its_node_args_choose():
    from controllers.session import SessionConfig, node_arguments

    assert SessionConfig().backend == "onnx"
    assert node_arguments(SessionConfig()) == ["--backend", "onnx"]
    assert node_arguments(SessionConfig(backend="torch", node_args=["--max-batch", "8"])) == [
        "--backend",
        "torch",
        "--max-batch",
        "8",
    ]
    for chosen in (["--backend", "torch"], ["--backend=torch"], ["--config", "serve_gpu"]):
        assert node_arguments(SessionConfig(node_args=chosen)) == chosen
