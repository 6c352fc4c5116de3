"""The package works installed, without a checkout (issue 14, item 1).

Every ``launch/*.py`` is a shim over a command module in ``mtm_robot.cli`` with an entry point
in ``pyproject.toml``; the package never names the ``launch/`` folder as a path (the node starts
as ``python -m mtm_robot.serving``); the presets ship as package data and ``--config NAME``
finds them. ``scripts/check_installed.sh`` checks the same in a fresh venv outside the checkout.
"""

from __future__ import annotations

import ast
import importlib
import re
from importlib import resources
from pathlib import Path

import pytest
import tomllib

from mtm_robot.config import PRESETS, load_config, preset_path
from mtm_robot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mtm_robot", "controllers", "sim", "calibration", "client/mtm_robot_client")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
SHIMS = sorted((ROOT / "launch").glob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants of a module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def launch_paths(source: str) -> list[str]:
    """String constants in ``source`` that name the launch folder as a path (``"launch"``,
    ``"launch/serve.py"``, ``".../launch/configs"``); docstrings and prose (text with spaces,
    e.g. a hint "run python launch/collect.py") are not paths."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    path = re.compile(r"^(launch|launch/\S*|\S*/launch(/\S*)?)$")
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docs
        and path.match(node.value)
    ]


def test_the_path_check_can_fail() -> None:
    # what mtm_robot/serving/process.py held before: the node started by file path
    before = 'SERVE = Path(__file__).resolve().parents[2] / "launch" / "serve.py"\n'
    assert launch_paths(before) == ["launch"]
    assert launch_paths('CONFIG = ROOT / "launch/configs/mtm_walker.yaml"\n')
    assert not launch_paths('"""Run python launch/serve.py."""\nhint = "python launch/x.py"\n')


def test_no_package_module_names_the_launch_folder() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {value!r}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for value in launch_paths(path.read_text())
    ]
    assert not found, "the installed package has no launch/ folder:\n" + "\n".join(found)


@pytest.mark.parametrize("shim", SHIMS, ids=lambda p: p.stem)
def test_every_launcher_is_a_shim_over_an_entry_point(shim: Path) -> None:
    name = shim.stem
    command = "mtm-" + name.replace("_", "-")
    assert SCRIPTS.get(command) == f"mtm_robot.cli.{name}:entry", f"{command} in [project.scripts]"
    module = importlib.import_module(f"mtm_robot.cli.{name}")
    assert callable(module.entry) and callable(module.main)
    code = [line for line in shim.read_text().splitlines() if line and not line.startswith('"""')]
    assert len(code) <= 4, f"{shim.name} is more than a shim: {code}"
    assert f"from mtm_robot.cli import {name}" in code


def test_every_entry_point_resolves() -> None:
    assert len(SCRIPTS) >= len(SHIMS) + 1  # + mtm-report
    for command, target in SCRIPTS.items():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), command
    packages = PYPROJECT["tool"]["setuptools"]["packages"]
    assert "mtm_robot.cli" in packages


def test_presets_ship_with_the_package_and_launch_configs_is_that_folder() -> None:
    assert PRESETS.parent == Path(str(resources.files("mtm_robot")))
    assert "configs/*.yaml" in PYPROJECT["tool"]["setuptools"]["package-data"]["mtm_robot"]
    assert (ROOT / "launch" / "configs").resolve() == PRESETS.resolve()  # one copy, no duplicates
    assert {"mtm_walker", "serve", "expert_walker"} <= {p.stem for p in PRESETS.glob("*.yaml")}


def test_config_takes_a_preset_name_or_a_file(tmp_path: Path) -> None:
    from mtm_robot.training.train import TrainConfig

    by_name = load_config(TrainConfig, "mtm_walker", ["steps=7"])
    by_file = load_config(TrainConfig, ROOT / "launch/configs/mtm_walker.yaml", ["steps=7"])
    assert by_name == by_file and by_name.steps == 7
    assert preset_path("mtm_walker.yaml") == PRESETS / "mtm_walker.yaml"
    local = tmp_path / "mtm_walker"  # a file of that name in the working folder wins
    local.write_text("steps: 3\n")
    assert preset_path(local) == local
    with pytest.raises(ConfigError, match=r"presets: .*mtm_walker"):
        load_config(TrainConfig, "mtm_walkr")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainConfig, tmp_path / "missing.yaml")  # a path: the file's own error
