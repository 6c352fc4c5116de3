"""One line naming the machine a measurement came from: CPU model, cores, GPU if one is used.

Every benchmark section, calibration file and report names its hardware with this line.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def cpu_model() -> str:
    """The CPU's model name (``lscpu``, then /proc/cpuinfo, then ``platform``)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        match = re.search(r"Model name:\s*(.+)", out)
        if match:
            return match.group(1).strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(gpu: bool | None = None) -> str:
    """``CPU, N cores, OS arch[, GPU name], torch version``.

    ``gpu``: name the GPU (True), say none was used (False), or name it when torch sees one
    (None)."""
    line = f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"
    try:
        import torch
    except ImportError:
        return line + ("; no GPU used" if gpu is False else "")
    seen = torch.cuda.is_available()
    if gpu or (gpu is None and seen):
        line += f", GPU {torch.cuda.get_device_name() if seen else 'none found'}"
    elif gpu is False:
        line += ", no GPU used"
    return f"{line}, torch {torch.__version__}"


def torch_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when torch sees a GPU) as a torch device."""
    import torch

    from mtm_robot.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu, cuda or auto, got '{name}'")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' asked for, but torch sees no GPU here (a CPU build, or no driver): "
            "use device=cpu or device=auto"
        )
    return torch.device(name)
