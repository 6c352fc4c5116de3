"""The dependency arrows of the architecture, checked: a test fails when one runs backwards.

Each :class:`Rule` names some modules (a package folder, or single modules) and the top-level
modules they must not import. It is checked two ways:

* **statically**: no ``import`` statement in the rule's files (lazy ones inside functions
  included) names a forbidden module;
* **at runtime**: importing every module of the rule in a fresh interpreter loads none of them
  (this catches an arrow that runs through another package).

To add a rule, append a ``Rule`` to ``RULES``; nothing else changes.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Rule:
    name: str
    modules: tuple[str, ...]  # a package ("controllers": all its modules) or single modules
    forbidden: tuple[str, ...]  # top-level modules they must not import
    why: str
    static: bool = True  # no import statement names a forbidden module
    runtime: bool = True  # importing the modules loads no forbidden module

    def files(self) -> list[Path]:
        found: list[Path] = []
        for module in self.modules:
            path = ROOT / module.replace(".", "/")
            found += sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
        return found

    def module_names(self) -> list[str]:
        names = []
        for path in self.files():
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        return names


RULES = [
    Rule(
        "controllers-no-calibration-no-torch",
        ("controllers",),
        ("calibration", "torch", "launch"),
        "a control process starts fast on a robot computer without a deep-learning stack; "
        "calibration builds on the controller, never the reverse; nothing imports launch/",
    ),
    Rule(
        "controllers-no-simulator-at-import",
        ("controllers",),
        ("mujoco", "dm_control", "gymnasium"),
        "a robot is not a MuJoCo simulator: the loop, the I/O map and the session load a "
        "simulator only when a session builds a registered task",
        static=False,  # controllers.session imports sim lazily, for registered tasks
    ),
    Rule(
        "controllers-no-viewer-at-import",
        ("controllers",),
        ("rerun",),
        "the rerun view is an optional extra: controllers.viz imports rerun when a session "
        "opens a view (--viz), so a control process without it starts as before",
        static=False,  # controllers.viz imports rerun lazily, in RerunView
    ),
    Rule(
        "calibration-no-torch",
        ("calibration",),
        ("torch", "launch"),
        "calibration runs beside the controller and talks to a node; reading a checkpoint's "
        "metadata (mtm_robot.checkpoint_meta) needs no deep-learning stack",
    ),
    Rule(
        "package-no-launch",
        ("mtm_robot", "sim"),
        ("launch",),
        "the installed package works without a checkout: launch/*.py are shims over "
        "mtm_robot.cli, never the reverse (tests/test_installable.py checks paths too)",
        runtime=False,  # importing every module of the package loads torch: slow, and static
    ),
    Rule(
        "checkpoint-metadata-no-torch",
        ("mtm_robot.checkpoint_meta",),
        ("torch",),
        "reading and verifying a checkpoint's metadata needs no deep-learning stack",
    ),
]


def _top_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import statement in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def _loaded_by(modules: list[str], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """Import ``modules`` in order in a fresh interpreter: which forbidden modules each one
    brought in first (a module listed under the first import that loaded it)."""
    code = (
        "import importlib, json, sys\n"
        f"forbidden = {list(forbidden)!r}\n"
        "def bad():\n"
        "    return sorted(m for m in sys.modules if m.split('.')[0] in forbidden)\n"
        "seen, out = set(bad()), {}\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    new = [m for m in bad() if m not in seen]\n"
        "    seen.update(new)\n"
        "    if new:\n"
        "        out[name] = new\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("rule", [r for r in RULES if r.static], ids=lambda r: r.name)
def test_no_import_statement_breaks_the_rule(rule: Rule) -> None:
    assert rule.files(), f"{rule.name}: no files found for {rule.modules}"
    broken = [
        f"{path.relative_to(ROOT)}:{line} imports {top}"
        for path in rule.files()
        for line, top in _top_level_imports(path)
        if top in rule.forbidden
    ]
    assert not broken, f"{rule.name} ({rule.why}):\n" + "\n".join(broken)


@pytest.mark.slow
@pytest.mark.parametrize("rule", [r for r in RULES if r.runtime], ids=lambda r: r.name)
def test_importing_the_modules_loads_nothing_forbidden(rule: Rule) -> None:
    loaded = _loaded_by(rule.module_names(), rule.forbidden)
    detail = "\n".join(f"import {m} loads {', '.join(new[:5])}" for m, new in loaded.items())
    assert not loaded, f"{rule.name} ({rule.why}):\n{detail}"


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The two checks see a forbidden import, direct or lazy, and a transitive load."""
    module = tmp_path / "probe.py"
    module.write_text("import json\n\ndef late():\n    from calibration.io_check import x\n")
    assert [top for _, top in _top_level_imports(module)] == ["json", "calibration"]
    loaded = _loaded_by(["json", "calibration.io_check"], ("calibration",))
    assert list(loaded) == ["calibration.io_check"]
