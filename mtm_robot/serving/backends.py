"""Inference backends: each is a :data:`~mtm_robot.inference.ForwardFn` behind the Predictor.

* ``torch`` on CPU: eager forward of the per-sample-mask path, any batch size.
* ``torch`` on CUDA: one CUDA graph per batch bucket (1, 2, 4, ... ``max_batch``), masks as
  inputs, all captured at start-up (:class:`BucketGraphs`); a batch is padded up to its bucket
  (padded rows fully masked), copied into the graph's static inputs, replayed, and sliced back.
  The same buffers, padding and slicing run on a CPU with an eager stand-in for the capture.
* ``onnx``: ONNX Runtime on a graph exported by :mod:`mtm_robot.export.onnx` whose masks are
  inputs, so one graph serves every mode. Device ``cuda`` asks for the TensorRT, CUDA and CPU
  providers in that order, keeping those that load; with no usable GPU it runs on the CPU
  provider after one warning.

An :class:`Engine` bundles a backend with its checkpoint's Predictor and identity; the node
swaps whole engines on reload.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
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


def bucket_for(n: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket holding a batch of ``n``, or None when ``n`` exceeds them all."""
    return next((b for b in buckets if b >= n), None)


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
        size = bucket_for(n, buckets) or largest
        out = forward(
            {k: _pad(v, size) for k, v in inputs.items()},
            {k: _pad(v, size) for k, v in masks.items()},
        )
        return {k: v[:n] for k, v in out.items()}

    return run


Step = Callable[[], dict[str, torch.Tensor]]
"""One forward over a bucket's static buffers, returning its outputs."""
Capture = Callable[[Step], tuple[Callable[[], None], dict[str, torch.Tensor]]]
"""Turns a :data:`Step` into (its replay, the output tensors every replay refreshes)."""

PRECISION_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
#: Stated agreement with the fp32 CPU forward, absolute, on normalised outputs (O(1)): fp32 on
#: any device or provider; bf16 / fp16 autocast (tests/serving/test_gpu_parity.py checks them).
PRECISION_ATOL = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 5e-3}


def cuda_graph_capture(step: Step) -> tuple[Callable[[], None], dict[str, torch.Tensor]]:
    """Capture ``step`` as one CUDA graph (CUDA only): replay reruns its kernels in place."""
    current = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(current)
    with torch.cuda.stream(side):
        for _ in range(3):  # warm up kernels and the allocator before capture
            step()
    current.wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        outputs = step()
    return graph.replay, outputs


def eager_capture(step: Step) -> tuple[Callable[[], None], dict[str, torch.Tensor]]:
    """The CPU stand-in for :func:`cuda_graph_capture`: replay reruns ``step`` eagerly and
    refreshes the same output dict, so the static-buffer path runs (and is tested) anywhere."""
    outputs = dict(step())

    def replay() -> None:
        outputs.update(step())

    return replay, outputs


@dataclass
class _Bucket:
    """One bucket's static buffers: packed inputs (B, L, sum k), masks (B, M, L), outputs."""

    host_inputs: torch.Tensor
    host_masks: torch.Tensor
    inputs: torch.Tensor
    masks: torch.Tensor
    outputs: dict[str, torch.Tensor]
    replay: Callable[[], None]


class BucketGraphs:
    """A torch model captured once per batch bucket, masks as inputs (a :data:`ForwardFn`).

    Every bucket gets static device buffers (inputs packed into one tensor, masks into another,
    so a request costs two host-to-device copies) and one capture, all at construction, so no
    request pays a capture (``captures`` counts them). Masks are per-sample (B, L) inputs like
    the states, so the shapes do not depend on the mode and one graph per bucket serves every
    mode. Callers pad a batch up to its bucket (:func:`bucketed`); any other size is refused.

    ``capture``: :func:`cuda_graph_capture` on CUDA, :func:`eager_capture` elsewhere (the CPU
    stand-in that runs the same buffers, padding and slicing without a GPU).
    ``precision``: ``fp32``, or ``bf16`` / ``fp16`` under autocast (approximate).
    """

    def __init__(
        self,
        model: MTM,
        buckets: Sequence[int],
        device: str = "cuda",
        precision: str = "fp32",
        capture: Capture | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.names = list(model.spec.modalities)
        self.dims = list(model.spec.modalities.values())
        self.buckets = sorted(buckets)
        self.precision = precision
        if capture is None:
            capture = cuda_graph_capture if self.device.type == "cuda" else eager_capture
        self.captures = 0
        self._buckets: dict[int, _Bucket] = {}
        for b in self.buckets:
            self._buckets[b] = self._build(b, capture)
            self.captures += 1
        log.info(
            "%s: %d forwards captured for batch buckets %s (%s)",
            capture.__name__,
            self.captures,
            self.buckets,
            precision,
        )

    def _build(self, batch: int, capture: Capture) -> _Bucket:
        L, pin = self.model.spec.segment_length, self.device.type == "cuda"
        host_inputs = torch.zeros(batch, L, sum(self.dims), pin_memory=pin)
        host_masks = torch.zeros(batch, len(self.names), L, dtype=torch.bool, pin_memory=pin)
        inputs = torch.zeros_like(host_inputs, device=self.device)  # (B, L, sum k)
        masks = torch.zeros_like(host_masks, device=self.device)  # (B, M, L)
        edges = np.cumsum([0, *self.dims])
        by_name = {n: inputs[:, :, edges[i] : edges[i + 1]] for i, n in enumerate(self.names)}
        mask_by_name = {n: masks[:, i] for i, n in enumerate(self.names)}
        dtype = PRECISION_DTYPES[self.precision]

        def step() -> dict[str, torch.Tensor]:
            with torch.inference_mode():
                if dtype is None:
                    out = self.model(by_name, mask_by_name)
                else:
                    with torch.autocast(self.device.type, dtype=dtype):
                        out = self.model(by_name, mask_by_name)
                return {n: out[n].float() for n in self.names}

        replay, outputs = capture(step)
        return _Bucket(host_inputs, host_masks, inputs, masks, outputs, replay)

    def __call__(
        self, inputs: dict[str, np.ndarray], masks: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        n = len(next(iter(inputs.values())))
        bucket = self._buckets.get(n)
        if bucket is None:
            raise ValueError(
                f"batch of {n} is not a captured bucket {self.buckets}: pad it with bucketed()"
            )
        host_in, host_masks = bucket.host_inputs.numpy(), bucket.host_masks.numpy()
        offset = 0
        for i, (name, k) in enumerate(zip(self.names, self.dims)):
            host_in[:, :, offset : offset + k] = inputs[name]
            host_masks[:, i] = masks[name]
            offset += k
        with torch.inference_mode():
            bucket.inputs.copy_(bucket.host_inputs, non_blocking=True)
            bucket.masks.copy_(bucket.host_masks, non_blocking=True)
            bucket.replay()
            # .cpu() copies off a GPU; on the CPU stand-in numpy() shares memory, so copy
            return {n: v.cpu().numpy().copy() for n, v in bucket.outputs.items()}


GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_PROVIDER_LIBRARY = {
    "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so",
    "CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
}


def cuda_devices() -> tuple[int, str]:
    """(GPUs the CUDA driver reports, why none when 0), asked of the driver itself (no torch:
    a CPU build of torch says no GPU on a machine that has one)."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0, "no CUDA driver (libcuda.so.1 not found)"
    status = driver.cuInit(0)
    if status != 0:
        return 0, f"the CUDA driver did not initialise (cuInit error {status})"
    count = ctypes.c_int(0)
    status = driver.cuDeviceGetCount(ctypes.byref(count))
    if status != 0 or count.value == 0:
        return 0, f"the CUDA driver sees no device (cuDeviceGetCount {status}, {count.value})"
    return count.value, ""


def provider_library_error(provider: str) -> str | None:
    """Why ONNX Runtime's ``provider`` library does not load here (a CUDA, cuDNN or TensorRT
    library missing), or None. Probed with ``dlopen`` so ONNX Runtime prints nothing."""
    import onnxruntime as ort

    capi = Path(ort.__file__).parent / "capi"
    library = capi / _PROVIDER_LIBRARY[provider]
    if not library.is_file():
        return f"{library.name} is not installed"
    try:
        # the provider libraries take Provider_GetHost from this one, as ONNX Runtime loads them
        ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(library))
    except OSError as exc:
        return str(exc).replace(f"{capi}/", "")  # e.g. "libcublasLt.so.13: cannot open ..."
    return None


def choose_providers(
    device: str,
    available: Sequence[str],
    gpus: tuple[int, str],
    library_error: Callable[[str], str | None],
    tensorrt: bool = True,
) -> tuple[list[str], list[str]]:
    """(ONNX Runtime providers to ask for, in order; why each GPU one was left out).

    ``cuda`` asks for TensorRT, then CUDA, then the CPU provider, keeping those this machine
    can load (``available`` from onnxruntime, ``gpus`` from :func:`cuda_devices`).
    """
    if device == "cpu":
        return ["CPUExecutionProvider"], []
    chosen, skipped = [], []
    for provider in GPU_PROVIDERS:
        short = provider.removesuffix("ExecutionProvider")
        if provider == "TensorrtExecutionProvider" and not tensorrt:
            continue
        if provider not in available:
            skipped.append(f"{short}: not in this onnxruntime (install onnxruntime-gpu)")
        elif gpus[0] == 0:
            skipped.append(f"{short}: {gpus[1]}")
        elif (error := library_error(provider)) is not None:
            skipped.append(f"{short}: {error}")
        else:
            chosen.append(provider)
    return [*chosen, "CPUExecutionProvider"], skipped


def provider_options(provider: str, path: str | Path, max_batch: int) -> dict[str, Any]:
    """Settings per provider: CUDA keeps fp32 exact (no TF32); TensorRT caches its engine and
    gets one optimisation profile for batches 1..``max_batch`` (built once, at warm-up)."""
    if provider == "CUDAExecutionProvider":
        return {"device_id": 0, "use_tf32": 0}
    if provider != "TensorrtExecutionProvider":
        return {}
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    trailing = {  # every input's shape after the batch axis
        i.name: [d.dim_value for d in i.type.tensor_type.shape.dim[1:]] for i in graph.input
    }

    def shapes(batch: int) -> str:
        return ",".join(f"{n}:" + "x".join(map(str, [batch, *t])) for n, t in trailing.items())

    return {
        "device_id": 0,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": tempfile.mkdtemp(prefix="mtm-trt-"),
        "trt_profile_min_shapes": shapes(1),
        "trt_profile_opt_shapes": shapes(max_batch),
        "trt_profile_max_shapes": shapes(max_batch),
    }


class OnnxForward:
    """ONNX Runtime session over an exported MTM (inputs ``<name>``, ``mask_<name>``).

    ``device="cuda"``: TensorRT, then CUDA, then the CPU provider, whichever load here
    (:func:`choose_providers`); with none of the GPU ones usable it runs on the CPU provider
    and says so in one warning (a machine with onnxruntime-gpu and no GPU).
    """

    def __init__(
        self,
        path: str | Path,
        names: Sequence[str],
        device: str = "cpu",
        threads: int = 1,
        tensorrt: bool = True,
        max_batch: int = 32,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: node placement notes are not news
        wanted, skipped = choose_providers(
            device,
            ort.get_available_providers(),
            cuda_devices() if device == "cuda" else (0, ""),
            provider_library_error,
            tensorrt,
        )
        if device == "cuda" and wanted == ["CPUExecutionProvider"]:
            log.warning(
                "onnx backend asked for device cuda, but no GPU provider is usable here (%s): "
                "running on ONNX Runtime's CPU provider",
                "; ".join(skipped),
            )
        elif skipped:
            log.info("onnx backend: %s; using %s", "; ".join(skipped), wanted[0])
        self.names = list(names)
        providers: list[Any] = [(p, provider_options(p, path, max_batch)) for p in wanted]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.outputs = [f"pred_{n}" for n in self.names]
        self.providers = self.session.get_providers()
        lost = [p for p in wanted if p not in self.providers]
        if lost:
            log.warning("onnxruntime did not start %s; running on %s", lost, self.providers)

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

    @functools.cached_property
    def return_scale(self) -> ReturnScale:
        """Return-target units and accepted range, from the checkpoint's metadata (read once:
        every act request checks its return target against it)."""
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
    from mtm_robot.export.onnx import cached_export, read_onnx_metadata

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
    return cached_export(checkpoint, config.quantize)  # the user cache, never the package


def make_forward(checkpoint: Checkpoint, config: BackendConfig) -> tuple[ForwardFn, dict[str, Any]]:
    """The ForwardFn for ``config`` and a description of it (for ``metadata``)."""
    buckets = batch_buckets(config.max_batch)
    description: dict[str, Any] = {"name": config.backend, "device": config.device}
    if config.backend == "onnx":
        path = _onnx_path(checkpoint, config)
        onnx_forward = OnnxForward(
            path,
            list(checkpoint.spec.modalities),
            config.device,
            config.threads,
            tensorrt=config.tensorrt,
            max_batch=config.max_batch,
        )
        description["providers"] = onnx_forward.providers
        description["quantize"] = config.quantize
        forward: ForwardFn = onnx_forward
        if onnx_forward.providers[0] != "CPUExecutionProvider":  # fixed shapes for the GPU
            forward, description["buckets"] = bucketed(onnx_forward, buckets), buckets
        return forward, description
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device cuda requested but torch finds no CUDA device: use device cpu, or the "
            "onnx backend (which falls back to its CPU provider)"
        )
    description["precision"] = config.precision
    if config.device == "cuda" and config.cuda_graphs:
        graphs = BucketGraphs(checkpoint.model, buckets, "cuda", config.precision)
        description.update(cuda_graphs=True, buckets=buckets, captures=graphs.captures)
        return bucketed(graphs, buckets), description
    torch.set_num_threads(config.threads)
    eager = torch_forward(checkpoint.model.to(config.device), config.device)
    dtype = PRECISION_DTYPES[config.precision]
    if dtype is None:
        return eager, description

    def autocast_forward(
        inputs: dict[str, np.ndarray], masks: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        with torch.autocast(torch.device(config.device).type, dtype=dtype):
            return eager(inputs, masks)

    return autocast_forward, description


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
