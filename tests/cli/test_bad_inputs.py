"""Every launcher, given a bad input, ends in one line that names it and a non-zero exit.

Each case runs the launcher as a user would (``python launch/X.py ...`` in a fresh process)
and checks: a non-zero exit, no Python traceback, a last stderr line that says ``error`` and
names the bad value, and the fixture files byte-identical afterwards (nothing given to a
launcher is written to or deleted), and nothing left in the scratch folder (the working
directory, where default run directories go): a run that fails before starting leaves no run
directory. Cases that would need an inference node fail before one
starts. Fixtures: ``tests/cli/conftest.py``; the issue these come from: #13.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import tree_digest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

# (id, launcher, arguments ({name} = a fixture path, {tmp} = a scratch folder), what the
# error line must contain (case-insensitive))
# fmt: off
CASES: list[tuple[str, str, list[str], list[str]]] = [
    # 1. YAML syntax errors: the file and the line
    ("serve-config-yaml", "serve", ["--config", "{bad_yaml}"], ["bad.yaml", "line 3"]),
    ("sim-config-yaml", "sim_control", ["--config", "{bad_yaml}"], ["bad.yaml", "line 3"]),
    ("sim-calibration-yaml", "sim_control", ["--calibration", "{bad_yaml}"], ["bad.yaml"]),
    ("train-config-yaml", "train", ["--config", "{bad_yaml}", "--data", "{empty}"], ["bad.yaml"]),
    ("calibrate-io-map-yaml", "calibrate", ["--io-map-check", "--io-map", "{bad_yaml}",
                                            "--out", "{tmp}/cal"], ["bad.yaml"]),
    ("train-expert-config-yaml", "train_expert", ["--config", "{bad_yaml}"], ["bad.yaml"]),
    # 2. config values the dataclasses reject
    ("sim-control-hz-negative", "sim_control", ["--control-hz", "-40"], ["control_hz", "-40"]),
    ("sim-control-hz-nan", "sim_control", ["--control-hz", "nan"], ["control_hz", "nan"]),
    ("sim-mode-unknown", "sim_control", ["--set", "controller.mode=flying"], ["flying"]),
    ("sim-history-yaml", "sim_control", ["--config", "{history_yaml}"], ["history", "-1"]),
    ("sim-history-set", "sim_control", ["--set", "controller.history=-1"], ["history", "-1"]),
    # 3. episodes
    ("sim-episodes-zero", "sim_control", ["--episodes", "0"], ["episodes", "0"]),
    ("sim-episodes-negative", "sim_control", ["--episodes", "-2"], ["episodes", "-2"]),
    # 4. a corrupt reference episode
    ("sim-reference-corrupt", "sim_control", ["--mode", "inverse_dynamics", "--reference",
                                              "{corrupt_npz}"], ["corrupt.npz"]),
    # a model for another task, found once its node has started (its node.log is removed too)
    ("sim-model-other-task", "sim_control", ["--task", "cartpole", "--checkpoint",
                                             "{walker_ckpt}", "--lockstep"],
     ["states dim 24", "cartpole"]),
    # 5. an output folder that is an existing file
    ("sim-record-file", "sim_control", ["--record", "{a_file}"], ["a_file.txt"]),
    ("sim-out-file", "sim_control", ["--out", "{a_file}"], ["a_file.txt"]),
    ("train-out-file", "train", ["--data", "{mixed}", "--out", "{a_file}"], ["a_file.txt"]),
    ("calibrate-out-file", "calibrate", ["--io-map-check", "--out", "{a_file}"], ["a_file.txt"]),
    ("collect-out-file", "collect", ["--recipe", "random", "--episodes", "1", "--out",
                                     "{a_file}"], ["a_file.txt"]),
    ("record-demos-out-file", "record_demos", ["--source", "expert", "--out", "{a_file}"],
     ["a_file.txt"]),
    ("finetune-out-file", "finetune", ["--checkpoint", "default", "--data", "{mixed}", "--out",
                                       "{a_file}"], ["a_file.txt"]),
    ("keygen-out-file", "keygen", ["--out", "{a_file}", "--name", "node"], ["a_file.txt"]),
    # 6. training data
    ("train-data-mixed-dims", "train", ["--data", "{mixed}", "--out", "{tmp}/run"],
     ["states", "17", "24"]),
    ("train-data-strings", "train", ["--data", "{strings}", "--out", "{tmp}/run"],
     ["episode_000000.npz", "states"]),
    ("train-data-corrupt-hdf5", "train", ["--data", "{corrupt_hdf5}", "--out", "{tmp}/run"],
     ["corrupt.hdf5"]),
    ("train-data-missing-hdf5", "train", ["--data", "{missing_hdf5}", "--out", "{tmp}/run"],
     ["nonexistent.hdf5", "does not exist"]),
    ("train-data-empty-dir", "train", ["--data", "{empty}", "--out", "{tmp}/run"],
     ["empty", "no episodes", "episode_*.npz"]),
    # 7. launchers that lacked the one error exit
    ("collect-task-unknown", "collect", ["--task", "nosuchtask", "--recipe", "random",
                                         "--episodes", "1", "--out", "{tmp}/c"], ["nosuchtask"]),
    ("collect-policy-dir-missing", "collect", ["--recipe", "expert", "--episodes", "1",
                                               "--out", "{tmp}/c", "--policy-dir",
                                               "/nonexistent"], ["/nonexistent"]),
    ("render-corrupt-npz", "render", ["{corrupt_npz}", "--out", "{tmp}/v.gif"], ["corrupt.npz"]),
    ("record-demos-task-unknown", "record_demos", ["--task", "nosuchtask", "--source", "expert",
                                                   "--out", "{tmp}/d"], ["nosuchtask"]),
    # 8. seeds: any non-negative integer works, a negative one is an error
    ("collect-seed-negative", "collect", ["--recipe", "random", "--episodes", "1", "--seed",
                                          "-1", "--out", "{tmp}/c"], ["seed", "-1"]),
    # 9. a task without a shipped expert: which recipes need one and the command that trains it
    ("collect-no-expert", "collect", ["--task", "hopper", "--recipe", "expert", "--episodes",
                                      "1", "--out", "{tmp}/c"],
     ["hopper-hop", "python launch/train_expert.py --task hopper-hop"]),
    # silently accepted before
    ("train-steps-negative", "train", ["--data", "{mixed}", "--steps", "-5", "--out",
                                       "{tmp}/run"], ["steps", "-5"]),
    ("train-batch-size-zero", "train", ["--data", "{mixed}", "--set", "batch_size=0", "--out",
                                        "{tmp}/run"], ["batch_size", "0"]),
    ("serve-segment-length-mismatch", "serve", ["--checkpoint", "{seglen_ckpt}", "--bind",
                                                "tcp://127.0.0.1:*"], ["segment_length", "8", "4"]),
    ("sim-fallback-safe-after-zero", "sim_control", ["--set",
                                                     "controller.fallback.safe_after_misses=0"],
     ["safe_after_misses", "0"]),
    ("sim-fallback-hold-negative", "sim_control", ["--set", "controller.fallback.hold_ticks=-3"],
     ["hold_ticks", "-3"]),
    ("calibrate-truncated-checkpoint", "calibrate", ["--io-map-check", "--checkpoint",
                                                     "{truncated_ckpt}", "--out", "{tmp}/cal"],
     ["truncated_ckpt", "model.safetensors"]),
    ("record-demos-flush-negative", "record_demos", ["--source", "expert", "--out", "{tmp}/d",
                                                     "--flush-interval-s", "-1"],
     ["flush_interval_s", "-1"]),
    ("export-onnx-truncated-checkpoint", "export_onnx", ["--checkpoint", "{truncated_ckpt}",
                                                         "--out", "{tmp}/m.onnx"],
     ["truncated_ckpt", "model.safetensors"]),
    ("finetune-truncated-checkpoint", "finetune", ["--checkpoint", "{truncated_ckpt}", "--data",
                                                   "{mixed}", "--out", "{tmp}/ft"],
     ["truncated_ckpt", "model.safetensors"]),
    ("broker-no-curve", "broker", ["--bind", "tcp://0.0.0.0:0", "--node", "tcp://127.0.0.1:1"],
     ["0.0.0.0", "insecure"]),
]
# fmt: on


@pytest.mark.parametrize(
    ("launcher", "arguments", "expected"),
    [pytest.param(launcher, args, expected, id=name) for name, launcher, args, expected in CASES],
)
def test_bad_input_ends_in_one_clear_line(
    bad_inputs: dict[str, Path],
    tmp_path: Path,
    launcher: str,
    arguments: list[str],
    expected: list[str],
) -> None:
    names = {k: str(v) for k, v in bad_inputs.items()} | {"tmp": str(tmp_path)}
    argv = [a.format(**names) for a in arguments]
    before = tree_digest(bad_inputs["root"])
    result = subprocess.run(
        [sys.executable, str(ROOT / "launch" / f"{launcher}.py"), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,  # anything written to a default location lands in the scratch folder
        env={**__import__("os").environ, "MUJOCO_GL": "egl"},
    )
    stderr = result.stderr
    assert "Traceback" not in stderr, stderr
    assert result.returncode != 0, f"exit 0\nstdout:\n{result.stdout}\nstderr:\n{stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, f"no message on stderr (exit {result.returncode})\nstdout:\n{result.stdout}"
    last = lines[-1]
    assert "error" in last.lower(), stderr
    for text in expected:
        assert text.lower() in last.lower(), f"{text!r} not in the error line: {last}"
    assert tree_digest(bad_inputs["root"]) == before, "a fixture file was changed"
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert not left, f"a run that failed before starting left {left}"
