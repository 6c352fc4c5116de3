"""mtm_robot.hardware: the one line every measurement names its machine with."""

from __future__ import annotations

import os

from mtm_robot import hardware


def test_the_line_names_cpu_cores_and_whether_a_gpu_was_used(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_model", lambda: "Test CPU 9000")
    line = hardware.describe(gpu=False)
    assert line.startswith(f"Test CPU 9000, {os.cpu_count()} cores, ")
    assert "no GPU used" in line and "torch " in line
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "GPU none found" in hardware.describe(gpu=True)
    assert "GPU" not in hardware.describe()  # none seen, none asked for


def test_the_cpu_model_is_never_empty():
    assert hardware.cpu_model().strip()


def test_device_names_resolve_or_fail_naming_the_bad_value(monkeypatch):
    import pytest
    import torch

    from mtm_robot.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.torch_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="sees no GPU"):
        hardware.torch_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hardware.torch_device("cuda") == torch.device("cuda")
    assert hardware.torch_device("auto") == torch.device("cuda")
    with pytest.raises(ConfigError, match="'gpu0'"):
        hardware.torch_device("gpu0")
