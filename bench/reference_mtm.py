"""A plain eager PyTorch re-implementation of the reference MTM, written from its code
(github.com/facebookresearch/mtm, ``research/mtm/models/mtm_model.py`` and the training step of
``research/mtm/train.py``), used as the same-run baseline of
``bench/train_throughput.py``. It follows the reference's structure: one mask per batch, the
visible tokens gathered per modality with ``nonzero()``, ``nn.TransformerEncoderLayer`` blocks,
mask tokens scattered back per modality, per-modality heads, loss on all tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtm_robot.model.mtm import sinusoid_table


def _layer(width: int, heads: int, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        width, heads, 4 * width, dropout, activation="gelu", batch_first=True, norm_first=True
    )


class ReferenceMTM(nn.Module):
    def __init__(
        self,
        dims: dict[str, int],
        L: int,
        width: int = 512,
        heads: int = 4,
        enc_layers: int = 2,
        dec_layers: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.dims, self.L = dims, L
        self.enc_embed = nn.ModuleDict({k: nn.Linear(d, width) for k, d in dims.items()})
        self.enc_type = nn.ParameterDict({k: nn.Parameter(torch.zeros(1, width)) for k in dims})
        self.dec_type = nn.ParameterDict({k: nn.Parameter(torch.zeros(1, width)) for k in dims})
        self.mask_token = nn.ParameterDict({k: nn.Parameter(torch.zeros(width)) for k in dims})
        self.dec_embed = nn.ModuleDict({k: nn.Linear(width, width) for k in dims})
        self.encoder = nn.Sequential(*[_layer(width, heads, dropout) for _ in range(enc_layers)])
        self.enc_norm = nn.LayerNorm(width)
        self.decoder = nn.Sequential(*[_layer(width, heads, dropout) for _ in range(dec_layers)])
        self.dec_norm = nn.LayerNorm(width)
        self.heads = nn.ModuleDict(
            {
                k: nn.Sequential(
                    nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, d)
                )
                for k, d in dims.items()
            }
        )
        self.register_buffer("pe", sinusoid_table(L, width) / 2)

    def forward(self, batch: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        kept, counts = [], {}
        for k in self.dims:
            x = self.enc_embed[k](batch[k]) + self.enc_type[k] + self.pe  # (B, L, d)
            idx = masks[k].nonzero().squeeze(-1)
            counts[k] = len(idx)
            kept.append(x[:, idx])
        z = self.enc_norm(self.encoder(torch.cat(kept, dim=1)))
        parts = torch.split(z, [counts[k] for k in self.dims], dim=1)
        tokens = []
        for k, part in zip(self.dims, parts):
            B, d = part.shape[0], part.shape[2]
            full = self.mask_token[k].expand(B, self.L, d).clone()
            full[:, masks[k].nonzero().squeeze(-1)] = part
            tokens.append(self.dec_embed[k](full) + self.dec_type[k] + self.pe)
        h = self.dec_norm(self.decoder(torch.cat(tokens, dim=1)))
        outs = torch.split(h, [self.L] * len(self.dims), dim=1)
        return {k: self.heads[k](o) for k, o in zip(self.dims, outs)}


def reference_loss(pred: dict[str, Tensor], target: dict[str, Tensor]) -> Tensor:
    return sum(((pred[k] - target[k]) ** 2).mean() for k in pred)  # type: ignore[return-value]
