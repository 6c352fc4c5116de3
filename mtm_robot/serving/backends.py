"""Inference backends: each is a :data:`~mtm_robot.inference.ForwardFn` behind the Predictor.

* ``torch`` on CPU: eager forward of the per-sample-mask path, any batch size.
* ``torch`` on CUDA: one CUDA graph per batch bucket (1, 2, 4, ... ``max_batch``); a batch is
  zero-padded up to its bucket, copied into the graph's static inputs and replayed.
* ``onnx``: ONNX Runtime on a graph exported by :mod:`mtm_robot.export.onnx` whose masks are
  inputs, so one graph serves every mode (CPU provider; CUDA provider when a GPU is found).

An :class:`Engine` bundles a backend with its checkpoint's Predictor and identity; the node
swaps whole engines on reload.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtm_robot.checkpoint_meta import action_bounds
from mtm_robot.errors import ConfigError
from mtm_robot.inference import Context, ForwardFn, Prediction, Predictor, torch_forward
from mtm_robot.model.mtm import MTM
from mtm_robot.serving.config import BackendConfig
from mtm_robot.serving.contexts import ReturnScale
from mtm_robot.training.checkpoint import Checkpoint, load_checkpoint
from mtm_robot_client.modes import ARRAYS, MODES
from mtm_robot_client.protocol import PROTOCOL_VERSION

log = logging.getLogger(__name__)


def batch_buckets(max_batch: int) -> list[int]:
    """Powers of two below ``max_batch``, then ``max_batch`` itself."""
    buckets, b = [], 1
    while b < max_batch:
        buckets.append(b)
        b *= 2
    return [*buckets, max_batch]


def _pad(x: np.ndarray, size: int) -> np.ndarray:
    if len(x) == size:
        return x
    pad = np.zeros((size - len(x), *x.shape[1:]), dtype=x.dtype)
    return np.concatenate([x, pad])


def bucketed(forward: ForwardFn, buckets: Sequence[int]) -> ForwardFn:
    """Pad every batch up to the next bucket (split batches larger than the last one).

    Padded samples have every slot masked; their outputs are discarded.
    """
    largest = buckets[-1]

    def run(inputs: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        if n > largest:
            parts = [
                run(
                    {k: v[i : i + largest] for k, v in inputs.items()},
                    {k: v[i : i + largest] for k, v in masks.items()},
                )
                for i in range(0, n, largest)
            ]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        size = next(b for b in buckets if b >= n)
        out = forward(
            {k: _pad(v, size) for k, v in inputs.items()},
            {k: _pad(v, size) for k, v in masks.items()},
        )
        return {k: v[:n] for k, v in out.items()}

    return run


class CudaGraphForward:
    """A torch model captured as one CUDA graph per batch bucket (needs a GPU).

    Masks are always per-sample (B, L), so the forward has no data-dependent shapes and can be
    captured. Not exercised by the CPU-only test suite.
    """

    def __init__(self, model: MTM, buckets: Sequence[int], device: str = "cuda") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.buckets = list(buckets)
        self.graphs: dict[int, tuple[Any, dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
        L = model.spec.segment_length
        for b in self.buckets:
            inputs = {
                n: torch.zeros(b, L, d, device=self.device)
                for n, d in model.spec.modalities.items()
            }
            masks = {n: torch.ones(b, L, dtype=torch.bool, device=self.device) for n in inputs}
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.inference_mode(), torch.cuda.stream(stream):
                for _ in range(3):  # warm up kernels and allocator before capture
                    self.model(inputs, masks)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
                outputs = self.model(inputs, masks)
            self.graphs[b] = (graph, inputs, masks, outputs)
        log.info("captured CUDA graphs for batch buckets %s", self.buckets)

    def __call__(
        self, inputs: dict[str, np.ndarray], masks: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        graph, static_in, static_masks, static_out = self.graphs[n]  # callers pad to buckets
        with torch.inference_mode():
            for name, value in inputs.items():
                static_in[name].copy_(torch.from_numpy(value), non_blocking=True)
                static_masks[name].copy_(torch.from_numpy(masks[name]), non_blocking=True)
            graph.replay()
            return {name: v.float().cpu().numpy() for name, v in static_out.items()}


class OnnxForward:
    """ONNX Runtime session over an exported MTM (inputs ``<name>``, ``mask_<name>``)."""

    def __init__(
        self, path: str | Path, names: Sequence[str], device: str = "cpu", threads: int = 1
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise ConfigError(f"device cuda: onnxruntime has no CUDA provider ({available})")
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.names = list(names)
        self.outputs = [f"pred_{n}" for n in self.names]
        self.providers = self.session.get_providers()

    def __call__(
        self, inputs: dict[str, np.ndarray], masks: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        feed: dict[str, np.ndarray] = {n: inputs[n] for n in self.names}
        feed.update({f"mask_{n}": masks[n] for n in self.names})
        results = self.session.run(self.outputs, feed)
        return dict(zip(self.names, results))


@dataclass
class Engine:
    """A servable model: Predictor plus identity, swapped as a whole on reload."""

    predictor: Predictor
    checkpoint: Checkpoint
    backend: str
    description: dict[str, Any] = field(default_factory=dict)
    warmup_s: float = 0.0

    @property
    def model_id(self) -> str:
        return self.checkpoint.model_id

    @property
    def return_scale(self) -> ReturnScale:
        """Return-target units and accepted range, from the checkpoint's metadata."""
        return ReturnScale.from_metadata(self.checkpoint.metadata)

    def action_bounds(self) -> dict[str, Any] | None:
        """``{low, high, clipped}`` from the checkpoint's ``action_bounds``, or None.

        The node reports the bounds and never clips (``clipped: false``): clipping, rate
        limits and fallbacks belong to the controller (``controllers/safety.py``).
        """
        da = self.checkpoint.spec.modalities["actions"]
        bounds = action_bounds(self.checkpoint.metadata, da)
        if bounds is None:
            return None
        return {"low": bounds[0], "high": bounds[1], "clipped": False}

    def metadata(self) -> dict[str, Any]:
        """The body of a ``metadata`` reply."""
        spec = self.checkpoint.spec
        return {
            "protocol_version": PROTOCOL_VERSION,
            "model_id": self.model_id,
            "weights_sha256": self.checkpoint.weights_sha256,
            "modalities": dict(spec.modalities),
            "segment_length": spec.segment_length,
            "max_history": spec.segment_length - 1,
            "modes": list(self.predictor.modes),
            "backend": self.description,
            "task": self.checkpoint.metadata.get("task"),
            # for clients: the return range seen in training (return targets, reference 4.6)
            # and the state scale (to normalise prediction errors)
            "return_stats": self.checkpoint.metadata.get("return_stats", {}),
            "return_target": self.return_scale.describe(),
            "action_bounds": self.action_bounds(),
            "state_std": self.checkpoint.normalizer.std["states"].tolist(),
        }


def non_finite_output(prediction: Prediction) -> str | None:
    """The name of the first output array holding NaN or infinity, or None: a reply carrying
    one must never be ``ok`` (inputs far outside the training data can overflow a forward)."""
    for name in ("action", "action_chunk", "next_states"):
        if not np.isfinite(getattr(prediction, name)).all():
            return name
    return None


def _onnx_path(checkpoint: Checkpoint, config: BackendConfig) -> Path:
    from mtm_robot.export.onnx import export_onnx, quantize_int8, read_onnx_metadata

    if config.onnx_path:
        path = Path(config.onnx_path)
        meta = read_onnx_metadata(path)
        if meta.get("weights_sha256") != checkpoint.weights_sha256:
            raise ConfigError(
                f"{path} was exported from weights {meta.get('weights_sha256', '?')[:12]}, "
                f"the checkpoint has {checkpoint.weights_sha256[:12]}: re-export it"
            )
        if meta.get("quantized", "none") != config.quantize:
            raise ConfigError(
                f"{path} has quantized={meta.get('quantized', 'none')}, the config asks for "
                f"{config.quantize}"
            )
        return path
    directory = Path(tempfile.mkdtemp(prefix="mtm-onnx-"))
    path = export_onnx(checkpoint, directory / "model.onnx")
    if config.quantize == "int8":
        path = quantize_int8(path, directory / "model-int8.onnx")
    return path


def make_forward(checkpoint: Checkpoint, config: BackendConfig) -> tuple[ForwardFn, dict[str, Any]]:
    """The ForwardFn for ``config`` and a description of it (for ``metadata``)."""
    buckets = batch_buckets(config.max_batch)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but torch finds no CUDA device")
    description: dict[str, Any] = {"name": config.backend, "device": config.device}
    if config.backend == "onnx":
        path = _onnx_path(checkpoint, config)
        onnx_forward = OnnxForward(
            path, list(checkpoint.spec.modalities), config.device, config.threads
        )
        description["providers"] = onnx_forward.providers
        description["quantize"] = config.quantize
        forward: ForwardFn = onnx_forward
        if config.device == "cuda":
            forward, description["buckets"] = bucketed(onnx_forward, buckets), buckets
        return forward, description
    if config.device == "cuda" and config.cuda_graphs:
        graphs = CudaGraphForward(checkpoint.model, buckets)
        description.update(cuda_graphs=True, buckets=buckets)
        return bucketed(graphs, buckets), description
    torch.set_num_threads(config.threads)
    return torch_forward(checkpoint.model.to(config.device), config.device), description


def warmup_contexts(predictor: Predictor, batch: int) -> list[Context]:
    """``batch`` synthetic contexts cycling through every mode, at the normaliser's means."""
    spec = predictor.spec
    ds, da = spec.modalities["states"], spec.modalities["actions"]
    mean = predictor.normalizer.mean
    state = np.asarray(mean.get("states", np.zeros(ds)), dtype=np.float32).reshape(ds)
    action = np.asarray(mean.get("actions", np.zeros(da)), dtype=np.float32).reshape(da)
    mean_of = {"states": state, "actions": action}
    modes = [
        MODES[m]
        for m in predictor.modes
        if spec.segment_length >= 2 or not MODES[m].needs_future_slot
    ]
    contexts = []
    for i in range(batch):
        mode = modes[i % len(modes)]
        inputs = {}  # each array the mode needs: one row (or one vector) at its modality's mean
        for name in mode.arrays:
            value = mean_of[ARRAYS[name].modality]
            inputs[name] = value[None] if ARRAYS[name].rows else value
        target = 0.0 if mode.needs_return_target else None
        contexts.append(Context(mode=mode.name, state=state, return_target=target, **inputs))
    return contexts


def warm_up(predictor: Predictor, max_batch: int, rounds: int = 2) -> float:
    """Run every batch bucket ``rounds`` times; returns the seconds it took."""
    start = time.perf_counter()
    for _ in range(rounds):
        for b in batch_buckets(max_batch):
            predictor.predict_batch(warmup_contexts(predictor, b))
    return time.perf_counter() - start


def load_engine(checkpoint_path: str | Path, config: BackendConfig, warm: bool = True) -> Engine:
    """Load a checkpoint, build its backend and (by default) warm it up."""
    checkpoint = load_checkpoint(checkpoint_path)
    forward, description = make_forward(checkpoint, config)
    predictor = Predictor(checkpoint.spec, checkpoint.normalizer, forward)
    engine = Engine(predictor, checkpoint, config.backend, description)
    if warm:
        engine.warmup_s = warm_up(predictor, config.max_batch)
        log.info(
            "engine %s (%s) warmed up in %.2f s", engine.model_id, description, engine.warmup_s
        )
    return engine
