"""The node's settings: :class:`ServeConfig` and its :class:`BackendConfig` (torch-free).

``mtm-serve`` derives its flags and ``--help`` from these dataclasses (a field's docstring is
its help; :mod:`mtm_robot.cli.settings`); YAML presets are ``mtm_robot/configs/serve*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mtm_robot.errors import ConfigError
from mtm_robot.serving.security import is_loopback
from mtm_robot_client import protocol as wire

BACKENDS = ("torch", "onnx")
DEVICES = ("cpu", "cuda")
QUANTIZE = ("none", "int8")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class BackendConfig:
    """How the node runs the model."""

    backend: str = "torch"
    """inference backend: torch or onnx"""
    device: str = "cpu"
    """where the model runs: cpu or cuda"""
    max_batch: int = 32
    """largest batch one forward runs"""
    threads: int = 1
    """CPU threads for torch / ONNX Runtime intra-op"""
    onnx_path: str = ""
    """exported graph for the onnx backend ("": exported at load time)"""
    cuda_graphs: bool = True
    """torch on CUDA: capture one graph per batch bucket"""
    precision: str = "fp32"
    """torch only: fp32, or bf16 / fp16 autocast (faster on a GPU, approximate)"""
    tensorrt: bool = True
    """onnx on cuda: try ONNX Runtime's TensorRT provider before its CUDA provider"""
    quantize: str = "none"
    """onnx only: none, or int8 (dynamic int8 weights: faster, approximate)"""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend '{self.backend}' unknown; expected one of {BACKENDS}")
        if self.device not in DEVICES:
            raise ConfigError(f"device '{self.device}' unknown; expected one of {DEVICES}")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.quantize not in QUANTIZE:
            raise ConfigError(f"quantize '{self.quantize}' unknown; expected one of {QUANTIZE}")
        if self.quantize != "none" and self.backend != "onnx":
            raise ConfigError("quantize applies to the onnx backend only")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision '{self.precision}' unknown; expected one of {PRECISIONS}")
        if self.precision != "fp32" and self.backend != "torch":
            raise ConfigError(
                f"precision {self.precision} applies to the torch backend only (onnx runs "
                "fp32; quantize=int8 is its reduced form)"
            )


@dataclass
class ServeConfig:
    """Everything ``mtm-serve`` configures; YAML presets ``mtm_robot/configs/serve*.yaml``."""

    checkpoint: str = "default"
    """checkpoint directory, or "default" (the shipped walker-walk)"""
    bind: str = "tcp://127.0.0.1:5555"
    """ZeroMQ ROUTER endpoint; ":*" picks a free port"""
    backend: BackendConfig = field(default_factory=BackendConfig)
    max_wait_us: int = 0
    """how long a batch waits for more after its first request (0: greedy)"""
    inline_lone_requests: bool = True
    """run a lone act request on the receive thread when nothing else is queued or running
    (no thread hand-off at batch 1; concurrent requests still go to the batcher together)"""
    max_queue: int = 4096
    """queued act requests beyond which the node answers "overloaded\""""
    max_message_bytes: int = wire.DEFAULT_MAX_MESSAGE_BYTES
    """size cap of a request, checked before decoding"""
    insecure: bool = False
    """allow a non-loopback bind without CurveZMQ (anyone reaching it can query)"""
    curve_secret_key: str = ""
    """the node's .key_secret file (enables CurveZMQ; make keys with mtm-keygen)"""
    curve_allowed_clients: str = ""
    """directory of allowed client public keys (*.key)"""
    allow_reload: str = ""
    """answer remote reloads of checkpoints under this directory ("": refuse; SIGHUP still works)"""
    stats_window: int = 10_000
    """samples per stage kept for percentiles"""
    send_hwm: int = 100_000
    """replies queued per peer before ZeroMQ drops them"""

    def __post_init__(self) -> None:
        if self.max_wait_us < 0:
            raise ConfigError(f"max_wait_us must be >= 0, got {self.max_wait_us}")
        if self.max_queue < 1 or self.max_message_bytes < 1024:
            raise ConfigError("max_queue must be >= 1 and max_message_bytes >= 1024")
        if not isinstance(self.allow_reload, str):
            raise ConfigError(
                f"allow_reload is the directory remote reloads may load from ('' turns them "
                f"off), got {self.allow_reload!r}"
            )
        if bool(self.curve_secret_key) != bool(self.curve_allowed_clients):
            raise ConfigError("curve_secret_key and curve_allowed_clients go together")
        if not is_loopback(self.bind) and not self.curve_secret_key and not self.insecure:
            raise ConfigError(
                f"bind {self.bind} is not loopback: pass CurveZMQ keys "
                "(curve_secret_key + curve_allowed_clients; see mtm-keygen) or --insecure"
            )
