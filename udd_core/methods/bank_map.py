"""The memory bank's anomaly map as a pure, traceable `nn.Module` (the glue is memory_bank.py).

Each patch of the backbone's feature map gets its mean distance to the k nearest bank patches,
divided by the nearest one's spread when the bank carries one, and the grid is upsampled bilinearly
to the image. One module serves scoring (chunked, memory bounded) and the ONNX export (one block).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import backbone as bb
from ..coreset import knn_block, knn_distance


def patches(f: torch.Tensor) -> torch.Tensor:
    """Feature maps (B, D, h, w) -> patch rows (B * h * w, D), row-major over (b, y, x)."""
    return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])


class BankMap(nn.Module):
    """x (B, C, H, W) in [0, 1] -> (B, H, W): mean distance of each patch to its k nearest bank rows,
    divided by the nearest row's spread when one is given (`coreset.bank_spread`).

    Self-contained and traceable (ONNX): backbone, bank as a buffer, one matrix product, min/top-k,
    bilinear upsampling. `chunk_rows` bounds memory by splitting the patches (0: one block).
    """

    def __init__(self, features: bb.FeatureExtractor, bank: torch.Tensor, k: int, chunk_rows: int = 0,
                 spread: Optional[torch.Tensor] = None):
        super().__init__()
        self.features, self.k, self.chunk_rows = features, int(k), int(chunk_rows)
        self.register_buffer("bank", bank)  # (M, D)
        self.register_buffer("bank_sq", (bank * bank).sum(1))  # (M,)
        self.register_buffer("spread", spread)  # (M,) or None: plain distances

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # (B, D, h, w)
        b, _, h, w = f.shape
        q = patches(f)  # (B*h*w, D)
        if self.chunk_rows > 0:
            d = knn_distance(q, self.bank, self.k, bank_sq=self.bank_sq, chunk_rows=self.chunk_rows,
                             spread=self.spread)
        else:
            d = knn_block(q, self.bank, self.bank_sq, self.k, self.spread)  # (B*h*w,)
        m = d.reshape(b, 1, h, w)
        m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return m[:, 0]  # (B, H, W)
