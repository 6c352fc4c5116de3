"""The Masked Trajectory Model: an MAE-style encoder-decoder over trajectory segments.

Tokens: one per (modality, timestep), modality-major: ``[m0 t0..tL-1, m1 t0..tL-1, ...]``.
Masks are 1 = visible (encoder input), 0 = masked (reconstructed). A mask of shape (L,) is
shared by the whole batch and takes the *compact* path (the reference's formulation: the
encoder only sees the visible tokens). A mask of shape (B, L) is per sample and takes the
*padded* path: every token enters the encoder but attention only reaches visible keys, so
visible-token outputs equal the compact path, and one fixed-shape forward serves a batch that
mixes modes and context lengths. After the paper (Wu et al., "Masked Trajectory Models for
Prediction, Representation, and Control", ICML 2023, arXiv 2305.02968) and its code
(github.com/facebookresearch/mtm, ``research/mtm/models/mtm_model.py`` and
``research/mtm/tokenizers/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtm_robot.config import at_least
from mtm_robot.errors import SpecMismatchError

_NEG = -1e9  # additive attention bias for masked keys; exp() underflows to exactly 0


@dataclass
class DataSpec:
    """What the model sees: modality name -> feature dim (ordered), and segment length."""

    modalities: dict[str, int] = field(
        default_factory=lambda: {"states": 24, "actions": 6, "returns": 1}
    )
    segment_length: int = 4

    def __post_init__(self) -> None:
        if self.segment_length < 1:
            raise SpecMismatchError(f"segment_length must be >= 1, got {self.segment_length}")
        if not self.modalities:
            raise SpecMismatchError("a DataSpec needs at least one modality")
        for name, dim in self.modalities.items():
            if dim < 1:
                raise SpecMismatchError(f"modality '{name}': dim must be >= 1, got {dim}")


@dataclass
class ModelConfig:
    """Transformer sizes; the defaults are a small CPU-friendly MTM."""

    width: int = 128  # token width d
    encoder_layers: int = 2
    decoder_layers: int = 1
    heads: int = 4
    ffn_multiplier: int = 4  # FFN hidden = ffn_multiplier * width
    dropout: float = 0.1

    def __post_init__(self) -> None:
        at_least(1, width=self.width, heads=self.heads, encoder_layers=self.encoder_layers)
        at_least(1, decoder_layers=self.decoder_layers, ffn_multiplier=self.ffn_multiplier)
        if not 0.0 <= self.dropout < 1.0:
            raise SpecMismatchError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.width % self.heads:
            raise SpecMismatchError(f"width {self.width} not divisible by heads {self.heads}")
        if self.width % 2:
            raise SpecMismatchError(f"width must be even (sinusoidal table), got {self.width}")


def sinusoid_table(length: int, width: int) -> Tensor:
    """Fixed table (length, width): first half sin(t w_i), second half cos(t w_i)."""
    half = width // 2
    omega = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


class Block(nn.Module):
    """Pre-LayerNorm transformer block with an optional additive key bias."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.width
        self.heads = config.heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ffn_in = nn.Linear(d, config.ffn_multiplier * d)
        self.ffn_out = nn.Linear(config.ffn_multiplier * d, d)
        self.dropout = config.dropout

    def forward(self, x: Tensor, key_bias: Tensor | None = None) -> Tensor:
        B, N, d = x.shape  # (B, N, d)
        h = self.heads
        q, k, v = self.qkv(self.norm1(x)).view(B, N, 3, h, d // h).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias, dropout_p=p)
        attn = attn.transpose(1, 2).reshape(B, N, d)  # (B, N, d)
        x = x + F.dropout(self.proj(attn), p, self.training)
        y = self.ffn_out(F.dropout(F.gelu(self.ffn_in(self.norm2(x))), p, self.training))
        return x + F.dropout(y, p, self.training)


class Head(nn.Module):
    """Per-modality output head: LayerNorm -> Linear -> GELU -> Linear."""

    def __init__(self, width: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.hidden = nn.Linear(width, width)
        self.out = nn.Linear(width, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.gelu(self.hidden(self.norm(x))))


class MTM(nn.Module):
    """Masked Trajectory Model over the modalities of a ``DataSpec``."""

    def __init__(self, spec: DataSpec, config: ModelConfig) -> None:
        super().__init__()
        self.spec = spec
        self.config = config
        self.names = list(spec.modalities)
        d, L, M = config.width, spec.segment_length, len(self.names)
        self.embed = nn.ModuleDict({n: nn.Linear(k, d) for n, k in spec.modalities.items()})
        self.decode_proj = nn.ModuleDict({n: nn.Linear(d, d) for n in self.names})
        self.heads = nn.ModuleDict({n: Head(d, k) for n, k in spec.modalities.items()})
        # modality-type embeddings and mask tokens: zero-initialised, never weight-decayed
        self.enc_modality = nn.Parameter(torch.zeros(M, d))
        self.dec_modality = nn.Parameter(torch.zeros(M, d))
        self.mask_token = nn.Parameter(torch.zeros(M, d))
        self.time_embedding: Tensor
        self.register_buffer("time_embedding", sinusoid_table(L, d) / 2, persistent=False)
        self.encoder = nn.ModuleList(Block(config) for _ in range(config.encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.decoder = nn.ModuleList(Block(config) for _ in range(config.decoder_layers))
        self.decoder_norm = nn.LayerNorm(d)

    # -- tokens ---------------------------------------------------------------------------
    def _tokens(self, inputs: dict[str, Tensor]) -> Tensor:
        """Embedded tokens (B, M*L, d), modality-major."""
        per_modality = []
        for i, name in enumerate(self.names):
            x = inputs[name]  # (B, L, k)
            per_modality.append(self.embed[name](x) + self.enc_modality[i] + self.time_embedding)
        return torch.cat(per_modality, dim=1)

    def _flat_mask(self, masks: dict[str, Tensor]) -> Tensor:
        """Concatenated visibility (L*M,) or (B, L*M) as bool."""
        return torch.cat([masks[name].bool() for name in self.names], dim=-1)

    def _check(self, inputs: dict[str, Tensor], masks: dict[str, Tensor]) -> None:
        L = self.spec.segment_length
        for name, dim in self.spec.modalities.items():
            if name not in inputs or name not in masks:
                raise SpecMismatchError(f"missing modality '{name}' (model has {self.names})")
            if inputs[name].shape[1:] != (L, dim):
                raise SpecMismatchError(
                    f"{name}: expected shape (B, {L}, {dim}), got {tuple(inputs[name].shape)}"
                )

    # -- forward --------------------------------------------------------------------------
    def encode(self, inputs: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
        """Encoder outputs at every slot (B, M*L, d); only visible slots are meaningful."""
        tokens = self._tokens(inputs)  # (B, N, d)
        visible = self._flat_mask(masks)
        if visible.dim() == 1:  # shared mask: the reference's drop-the-masked-tokens form
            index = visible.nonzero().squeeze(1)
            x = tokens[:, index]  # (B, n_vis, d)
            for block in self.encoder:
                x = block(x)
            out = tokens.new_zeros(tokens.shape)
            out[:, index] = self.encoder_norm(x)
            return out
        # per-sample mask: attention only reaches visible keys; a sample with nothing visible
        # attends to every key (its encoder output is discarded by the decoder anyway)
        key_visible = visible | ~visible.any(dim=1, keepdim=True)  # (B, N)
        bias = torch.zeros(key_visible.shape, dtype=tokens.dtype, device=tokens.device)
        bias = bias.masked_fill(~key_visible, _NEG)[:, None, None, :]  # (B, 1, 1, N)
        x = tokens
        for block in self.encoder:
            x = block(x, bias)
        return self.encoder_norm(x)

    def forward(self, inputs: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        """Reconstruct every slot. inputs: name -> (B, L, k) normalised; masks: (L,) or (B, L)."""
        self._check(inputs, masks)
        L = self.spec.segment_length
        encoded = self.encode(inputs, masks)  # (B, N, d)
        visible = self._flat_mask(masks)
        vis = visible.view(1, -1, 1) if visible.dim() == 1 else visible[:, :, None]
        # mask token per modality in every masked slot, then the decoder's own embeddings
        mask_tokens = self.mask_token.repeat_interleave(L, dim=0)  # (N, d)
        x = torch.where(vis, encoded, mask_tokens)
        # per-modality slices made contiguous: under vmap over stacked weights
        # (mtm_robot.training.stacked) a strided input turns each Linear into a per-sample
        # matmul with the weight copied B times; contiguous, it stays one batched matmul
        decoded = []
        for i, name in enumerate(self.names):
            xi = self.decode_proj[name](x[:, i * L : (i + 1) * L].contiguous())  # (B, L, d)
            decoded.append(xi + self.dec_modality[i] + self.time_embedding)
        x = torch.cat(decoded, dim=1)  # (B, N, d)
        for block in self.decoder:
            x = block(x)
        x = self.decoder_norm(x)
        return {
            name: self.heads[name](x[:, i * L : (i + 1) * L].contiguous())
            for i, name in enumerate(self.names)
        }

    def represent(self, states: Tensor) -> Tensor:
        """State representation (B, d): encoder output of one visible state token in slot 0."""
        B = states.shape[0]
        d = self.config.width
        i = self.names.index("states")
        x = self.embed["states"](states) + self.enc_modality[i] + self.time_embedding[0]
        x = x.view(B, 1, d)
        for block in self.encoder:
            x = block(x)
        return self.encoder_norm(x)[:, 0]

    def parameter_groups(self, weight_decay: float) -> list[dict[str, object]]:
        """AdamW groups: decay on Linear weights only (not biases, norms, embeddings, tokens)."""
        decay, no_decay = [], []
        for module in self.modules():
            for pname, param in module.named_parameters(recurse=False):
                if isinstance(module, nn.Linear) and pname == "weight":
                    decay.append(param)
                else:
                    no_decay.append(param)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]


def reconstruction_loss(
    predictions: dict[str, Tensor],
    targets: dict[str, Tensor],
    loss_weights: dict[str, Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """MSE on all tokens, mean per modality, summed over modalities (reference 3.5).

    ``loss_weights[name]`` (B,) in {0, 1} drops samples that lack a modality (action-free
    episodes contribute only to the modalities they have). Returns (total, per-modality).
    """
    per_modality: dict[str, Tensor] = {}
    total = next(iter(predictions.values())).new_zeros(())
    for name, pred in predictions.items():
        err = (pred.float() - targets[name].float()).pow(2).mean(dim=(1, 2))  # (B,)
        if loss_weights is not None and name in loss_weights:
            w = loss_weights[name].to(err.dtype)
            value = (err * w).sum() / w.sum().clamp_min(1.0)
        else:
            value = err.mean()
        per_modality[name] = value
        total = total + value
    return total, per_modality
