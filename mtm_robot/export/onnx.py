"""Export an MTM checkpoint to ONNX with the masks as inputs.

The graph takes, per modality ``<name>``, the normalised inputs ``<name>`` (B, L, k) float32
and the visibility ``mask_<name>`` (B, L) bool, and returns ``pred_<name>`` (B, L, k). The
batch axis is dynamic. Because the mask is an input (the model's per-sample-mask path), one
graph serves every inference mode. Provenance (model id, weights sha256, data spec) is
stored in the ONNX ``metadata_props`` so the node can check a graph against its checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtm_robot.errors import CheckpointError
from mtm_robot.model.mtm import MTM
from mtm_robot.training.checkpoint import Checkpoint

log = logging.getLogger(__name__)

OPSET = 17


class _PositionalMTM(nn.Module):
    """``(inputs..., masks...)`` positional in modality order -> ``(outputs...)``."""

    def __init__(self, model: MTM) -> None:
        super().__init__()
        self.model = model
        self.names = list(model.spec.modalities)

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        m = len(self.names)
        inputs = dict(zip(self.names, tensors[:m]))
        masks = dict(zip(self.names, tensors[m:]))
        out = self.model(inputs, masks)
        return tuple(out[n] for n in self.names)


def io_names(model: MTM) -> tuple[list[str], list[str]]:
    """(input names, output names) of the exported graph."""
    names = list(model.spec.modalities)
    return [*names, *(f"mask_{n}" for n in names)], [f"pred_{n}" for n in names]


def export_onnx(checkpoint: Checkpoint, out: str | Path, opset: int = OPSET) -> Path:
    """Write ``checkpoint``'s model to ``out`` (ONNX, dynamic batch). Returns the path."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = checkpoint.model.float().cpu().eval()
    spec = model.spec
    L, batch = spec.segment_length, 2
    example = tuple(torch.zeros(batch, L, d) for d in spec.modalities.values()) + tuple(
        torch.ones(batch, L, dtype=torch.bool) for _ in spec.modalities
    )
    inputs, outputs = io_names(model)
    dynamic = {name: {0: "batch"} for name in [*inputs, *outputs]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape asserts in _check
        torch.onnx.export(
            _PositionalMTM(model),
            example,
            str(out),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    graph = onnx.load(str(out))
    props = {
        "model_id": checkpoint.model_id,
        "weights_sha256": checkpoint.weights_sha256,
        "data_spec": json.dumps(
            {"modalities": dict(spec.modalities), "segment_length": spec.segment_length}
        ),
        "exporter": "mtm_robot.export.onnx",
    }
    for key, value in props.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))
    log.info("exported %s to %s (opset %d)", checkpoint.model_id, out, opset)
    return out


def quantize_int8(source: str | Path, out: str | Path) -> Path:
    """Dynamic int8 quantisation of the graph's weights (activations stay float).

    Approximate by design: outputs move by about 1e-2 of their scale, so the 1e-4 parity with
    torch does not hold. Worth it where the forward is compute-bound on a CPU (about 2.5x
    faster at the paper configuration on one core); measure the deviation on your model with
    ``launch/export_onnx.py --int8``. Provenance metadata is kept and ``quantized=int8`` added.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8)
    graph = onnx.load(str(out))
    del graph.metadata_props[:]
    for key, value in {**meta, "quantized": "int8"}.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(out))
    log.info("quantised %s to int8 weights: %s", source, out)
    return out


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The provenance stored by :func:`export_onnx` (``data_spec`` decoded)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    graph = onnx.load(str(path), load_external_data=False)
    meta: dict[str, Any] = {p.key: p.value for p in graph.metadata_props}
    if "data_spec" in meta:
        meta["data_spec"] = json.loads(meta["data_spec"])
    return meta


def onnx_cache_dir() -> Path:
    """Where exported graphs are kept: ``$MTM_CACHE_DIR/onnx``, else
    ``$XDG_CACHE_HOME/mtm-robot/onnx``, else ``~/.cache/mtm-robot/onnx`` (never the package)."""
    if root := os.environ.get("MTM_CACHE_DIR"):
        return Path(root) / "onnx"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mtm-robot" / "onnx"


def cached_export(checkpoint: Checkpoint, quantize: str = "none") -> Path:
    """The checkpoint's graph from the user cache (keyed by weights sha256, opset and
    quantisation), exported there on first use (a few seconds; written to a temporary file
    and renamed, so concurrent nodes never read half a file). An unwritable cache falls back
    to a temporary directory."""
    suffix = "-int8" if quantize == "int8" else ""
    name = f"{checkpoint.weights_sha256[:32]}-opset{OPSET}{suffix}.onnx"
    directory = onnx_cache_dir()
    path = directory / name
    if path.is_file():
        meta = read_onnx_metadata(path)
        if meta.get("weights_sha256") == checkpoint.weights_sha256:
            log.info("ONNX graph of %s from the cache: %s", checkpoint.model_id, path)
            return path
    try:
        directory.mkdir(parents=True, exist_ok=True)
        work, cached = Path(tempfile.mkdtemp(prefix=".export-", dir=directory)), True
    except OSError as exc:
        log.warning("ONNX cache %s not writable (%s): exporting to a temporary directory",
                    directory, exc)  # fmt: skip
        work, cached = Path(tempfile.mkdtemp(prefix="mtm-onnx-")), False
    start = time.perf_counter()
    exported = export_onnx(checkpoint, work / "model.onnx")
    if quantize == "int8":
        exported = quantize_int8(exported, work / "model-int8.onnx")
    log.info("exported %s to ONNX in %.1f s", checkpoint.model_id, time.perf_counter() - start)
    if not cached:
        return exported
    os.replace(exported, path)  # atomic: a reader sees no file or the whole file
    shutil.rmtree(work, ignore_errors=True)
    return path
