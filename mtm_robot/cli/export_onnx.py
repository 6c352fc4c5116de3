"""Export a checkpoint to ONNX (masks as inputs: one graph serves every mode) and check it.

Examples:
  mtm-export-onnx --checkpoint default --out model.onnx
  mtm-serve --checkpoint default --backend onnx --onnx model.onnx
  mtm-export-onnx --checkpoint default --out model.onnx --int8   # + model-int8.onnx

The check runs the graph with ONNX Runtime against the torch model on random inputs with the
mask of every inference mode and prints the largest absolute difference (at most --tolerance
for the float32 graph). --int8 also writes a dynamically quantised copy (about 2.5x faster on a
CPU at the paper size) and prints its difference, which is approximate by design.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np

from mtm_robot.cli import run
from mtm_robot.errors import MTMRobotError
from mtm_robot_client.modes import MODES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory or 'default'")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff accepted")
    parser.add_argument("--int8", action="store_true", help="also write NAME-int8.onnx")
    return parser.parse_args(argv)


def max_difference(checkpoint_path: str, onnx_path: Path, batch: int = 8) -> float:
    """Largest |onnx - torch| over every mask of every mode, at every history length."""
    from mtm_robot.inference import torch_forward
    from mtm_robot.model import masks as mask_lib
    from mtm_robot.serving.backends import OnnxForward
    from mtm_robot.training.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(checkpoint_path)
    spec = checkpoint.spec
    names, L = list(spec.modalities), spec.segment_length
    onnx_fn, torch_fn = OnnxForward(onnx_path, names), torch_forward(checkpoint.model)
    rng = np.random.default_rng(0)
    worst = 0.0
    for mode in MODES:
        for history in range(L - 1):
            try:
                mode_masks = mask_lib.mode_masks(mode, names, L, history)
            except MTMRobotError:
                continue
            for mask in mode_masks:
                masks = mask_lib.stack_masks([mask] * batch)
                inputs = {
                    n: rng.normal(size=(batch, L, d)).astype(np.float32)
                    for n, d in spec.modalities.items()
                }
                got, want = onnx_fn(inputs, masks), torch_fn(inputs, masks)
                worst = max(worst, *(float(np.abs(got[n] - want[n]).max()) for n in names))
    return worst


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # torch loads after the arguments are parsed: --help and a bad flag answer at once
    from mtm_robot.export.onnx import export_onnx, quantize_int8
    from mtm_robot.training.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
    path = export_onnx(checkpoint, args.out, opset=args.opset)
    worst = max_difference(args.checkpoint, path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) for {checkpoint.model_id}")
    print(f"ONNX Runtime vs torch, every mode: max abs difference {worst:.2e}")
    if worst > args.tolerance:
        print(f"error: above the tolerance {args.tolerance:g}", file=sys.stderr)
        return 1
    if args.int8:
        int8 = quantize_int8(path, path.with_name(f"{path.stem}-int8.onnx"))
        print(
            f"wrote {int8} ({int8.stat().st_size / 1e6:.1f} MB), int8 weights; serve it with "
            f"--backend onnx --onnx {int8} --set backend.quantize=int8"
        )
        print(
            f"int8 vs torch: max abs difference {max_difference(args.checkpoint, int8):.2e} "
            "(approximate by design)"
        )
    return 0


def entry() -> NoReturn:
    """The ``mtm-export-onnx`` command (``python launch/export_onnx.py`` from a checkout)."""
    run(main)
