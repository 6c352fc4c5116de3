"""fp32 linear layers on oneDNN's GEMM for training on a CPU.

torch's fp32 ``mm``/``addmm`` on a CPU go to its BLAS (MKL in the PyPI wheels), which on AMD
CPUs takes a 256-bit code path; oneDNN, which torch already carries for bf16 and convolutions,
runs its AVX-512 kernels there: about twice the GEMM rate on this project's AMD EPYC
(``docs/benchmarks.md``, "Training throughput"). :class:`OneDNNLinearMode` routes every fp32
``F.linear`` called inside it (forward, and the two GEMMs of its backward) to oneDNN. Same
precision (strict fp32, no reduced-precision accumulation), same operations; only the GEMM's
summation order differs, so values differ from torch's BLAS in the last bits, as they do
between thread counts. Anything else (bf16 autocast, CUDA, empty inputs) runs as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

log = logging.getLogger(__name__)


def _onednn_linear() -> Callable[..., Tensor] | None:
    """``torch.ops.mkldnn._linear_pointwise`` (x @ w.T + b), or None where torch lacks it."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # a build without the op
        return None


_LINEAR = _onednn_linear()


def available() -> bool:
    """Whether this torch build can run fp32 linear layers on oneDNN."""
    return _LINEAR is not None


def _gemm(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (T, in) @ weight(out, in).T + bias, on oneDNN; strided operands are read in place."""
    assert _LINEAR is not None
    return _LINEAR(x, weight, bias, "none", [], "")


class _Linear(torch.autograd.Function):
    """``F.linear`` with its forward and backward GEMMs on oneDNN."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        flat = x.reshape(-1, x.shape[-1])  # (T, in)
        return _gemm(flat, weight, bias).view(*x.shape[:-1], weight.shape[0])  # (..., out)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])  # (T, out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _gemm(g, weight.t(), None).view(x.shape)  # g @ W: (T, in)
        if ctx.needs_input_grad[1]:
            grad_w = _gemm(g.t(), x.reshape(-1, x.shape[-1]).t(), None)  # g.T @ x: (out, in)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)  # (out,)
        return grad_x, grad_w, grad_b


def _eligible(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and (bias is None or bias.dtype == torch.float32)
        and x.dim() >= 1
        and x.numel() > 0  # oneDNN has no empty GEMM
        and not torch.is_autocast_enabled("cpu")  # bf16 autocast: torch's own (oneDNN) path
    )


class OneDNNLinearMode(TorchFunctionMode):
    """Inside it, fp32 ``F.linear`` on a CPU runs on oneDNN (see the module docstring)."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.linear and _LINEAR is not None:
            x, weight, *rest = (*args, *kwargs.values())
            bias = rest[0] if rest else None
            if _eligible(x, weight, bias):
                return _Linear.apply(x, weight, bias)
        return func(*args, **kwargs)
