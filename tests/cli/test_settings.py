"""Settings declared once (issue 14, item 2): the flags, their help, ``--set`` and ``--config``
come from the config dataclasses (``mtm_robot/cli/settings.py``), in-process and fast."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mtm_robot.cli import calibrate, finetune, serve, sim_control
from mtm_robot.cli.settings import expand_aliases
from mtm_robot.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _flags(cls: type, prefix: str = "") -> list[str]:
    """Every settings field of dataclass ``cls`` as the flag it should have."""
    flags = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name.replace("_", "-")
        factory = f.default_factory
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):  # a section
            flags += _flags(factory, name + ".")
        else:
            flags.append("--" + name)
    return flags


@pytest.mark.parametrize(
    ("command", "settings"),
    [(sim_control, "SessionConfig"), (serve, "ServeConfig"), (calibrate, "CalibrationConfig")],
)
def test_every_setting_is_a_flag_with_help(
    command: ModuleType, settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        command.parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in _flags(getattr(command, settings)):
        assert flag in text, f"{flag} missing from --help"
    for alias in command.ALIASES:
        assert alias in text  # the short names are listed


def test_flags_set_and_config_in_order(tmp_path: Path) -> None:
    preset = tmp_path / "session.yaml"
    preset.write_text("episodes: 9\ntask: walker-run\ncontroller:\n  history: 3\n")
    args = sim_control.parse_args(
        ["--config", str(preset), "--set", "episodes=4", "--set", "controller.history=1",
         "--episodes", "2", "--lockstep", "--mode", "two_stage", "--max-steps=50"]
    )  # fmt: skip
    session = args.session
    assert session.task == "walker-run"  # the file
    assert session.controller.history == 1  # --set over the file
    assert session.episodes == 2  # the flag over --set
    assert session.controller.realtime is False and session.controller.mode == "two_stage"
    assert session.controller.max_steps == 50
    assert sim_control.parse_args(["--realtime"]).session.controller.realtime is True


def test_serve_flags_keep_their_names() -> None:
    args = serve.parse_args(
        ["--config", "serve", "--backend", "onnx", "--onnx", "m.onnx", "--quantize", "int8",
         "--max-batch", "64", "--threads", "2", "--max-wait-us", "100", "--parent-pid", "7",
         "--allow-reload", "runs", "--set", "max_queue=10"]
    )  # fmt: skip
    config = serve.build_config(args)
    assert (config.backend.backend, config.backend.onnx_path) == ("onnx", "m.onnx")
    assert (config.backend.quantize, config.backend.max_batch, config.backend.threads) == (
        "int8", 64, 2,
    )  # fmt: skip
    assert (config.max_wait_us, config.allow_reload, config.max_queue) == (100, "runs", 10)
    assert args.parent_pid == 7


def test_calibrate_procedures_and_their_sections() -> None:
    args = calibrate.parse_args(
        ["--latency", "--rates", "40", "80", "--return-target", "--episodes", "2",
         "--fractions", "0.5", "1.0", "--no-progress"]
    )  # fmt: skip
    assert calibrate.procedures(args) == ["latency", "return_target"]
    assert args.calibration.latency.rates_hz == [40.0, 80.0]
    assert args.calibration.return_target.fractions == [0.5, 1.0]
    assert args.calibration.return_target.episodes == 2 and args.progress is False
    with pytest.raises(ConfigError, match="choose procedures"):
        calibrate.parse_args(["--task", "walker"])


def test_finetune_data_sources_keep_their_order() -> None:
    args = finetune.parse_args(
        ["--checkpoint", "default", "--data", "a", "--action-free", "--data", "b", "--out", "o",
         "--steps", "5", "--no-progress", "--set", "batch_size=4"]
    )  # fmt: skip
    assert [str(p) for p in args.data] == ["a", "b"] and args.action_free == {0}
    assert (args.steps, args.progress, args.set) == (5, False, ["batch_size=4"])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--episodes", "abc"], "--episodes"),
        (["--episodes", "0"], "episodes must be >= 1, got 0"),
        (["--control-hz", "nan"], "control_hz"),
        (["--controller.mod", "x"], "--controller.mod"),
    ],
)
def test_a_bad_value_is_one_config_error(argv: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        sim_control.parse_args(argv)
    message = str(error.value)
    assert expected in message and "\n" not in message and "─" not in message


def test_aliases_expand_with_and_without_equals() -> None:
    aliases = {"--mode": ["--controller.mode"], "--lockstep": ["--controller.no-realtime"]}
    assert expand_aliases(["--mode=x", "--lockstep", "--mode", "y", "--model", "z"], aliases) == [
        "--controller.mode=x", "--controller.no-realtime", "--controller.mode", "y", "--model",
        "z",
    ]  # fmt: skip


#: Every command: the checkout's shims (launch/X.py) and the two run as modules.
COMMANDS = [
    *sorted(p.name for p in (ROOT / "launch").glob("*.py")),
    "-m mtm_robot.report",
    "-m mtm_robot.serving",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_imports_no_torch(command: str) -> None:
    """--help answers before any model code loads, for every command."""
    if command.startswith("-m "):
        run = f"runpy.run_module({command[3:]!r}, run_name='__main__')"
    else:
        run = f"runpy.run_path({str(ROOT / 'launch' / command)!r}, run_name='__main__')"
    code = (
        "import runpy, sys\n"
        "sys.argv = ['command', '--help']\n"
        "try:\n"
        f"    {run}\n"
        "except SystemExit as exit_:\n"
        "    assert not exit_.code, exit_.code\n"
        "heavy = sorted({'torch', 'mujoco', 'dm_control'} & set(sys.modules))\n"
        "print('IMPORTED', *heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert "torch" not in last.split(), f"{command} --help imported torch"
    assert "usage:" in result.stdout  # the help itself was printed
