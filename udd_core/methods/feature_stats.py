"""What the feature autoencoder keeps of its normal training features, in one safetensors file of the run.

- the per-channel mean and std that standardise the backbone's features before the AE sees them;
- the per-channel error weights of the "channel" error (1 / each channel's mean error on normal
  features), so channels the AE never rebuilds well do not drown the rest;
- the latent codes of the training features and their spread, behind the image score's latent-novelty
  factor (`latent_knn.CodeNovelty`). They exist only once a fit has ended.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ..tensor_files import ModelFileError, read_tensors, write_tensors

STATS_FILE = "feature_stats.safetensors"
CODE_SPREAD_K = 9  # training codes that measure each code's spread (as the memory bank's spread_k)
_BATCH = 32  # feature tensors per AE pass when the statistics are computed


@dataclass
class FeatureStats:
    """The normal features' statistics a feature-AE run scores with."""

    mean: torch.Tensor  # (Cf,) per-channel mean of the raw training features
    std: torch.Tensor  # (Cf,) their per-channel std
    weight: torch.Tensor  # (Cf,) channel error weights, harmonic mean 1; ones for the "plain" error
    codes: Optional[torch.Tensor] = None  # (N, D) flattened latent codes of the training features, after the fit
    code_spread: Optional[torch.Tensor] = None  # (N,) each code's spread (`coreset.bank_spread`)

    @classmethod
    def neutral(cls, channels: int) -> "FeatureStats":
        """No standardisation, equal weights and no codes: a detector that has not been fitted yet."""
        return cls(torch.zeros(channels), torch.ones(channels), torch.ones(channels))

    def to(self, device: Union[str, torch.device]) -> "FeatureStats":
        """The same statistics on `device`."""
        return FeatureStats(*(None if v is None else v.to(device) for v in self._values()))

    def standardise(self, f: torch.Tensor) -> torch.Tensor:
        """Raw features (B, Cf, h, w) -> standardised, in `f`'s dtype and device (the cache stays float16)."""
        m, s = (v.reshape(1, -1, 1, 1).to(f.device, f.dtype) for v in (self.mean, self.std))
        return (f - m) / s

    def _values(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self))

    def save(self, run_dir: Union[str, Path]) -> None:
        """feature_stats.safetensors in `run_dir`, written atomically (the codes only once they exist)."""
        keys = ("mean", "std", "weight") + (("codes", "code_spread") if self.codes is not None else ())
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        write_tensors(Path(run_dir) / STATS_FILE, {k: getattr(self, k).float() for k in keys})

    @classmethod
    def load(cls, run_dir: Union[str, Path], channels: int,
             device: Union[str, torch.device] = "cpu") -> "FeatureStats":
        """The statistics saved in `run_dir` for an AE of `channels` input channels; ModelFileError naming the
        file when it is missing, damaged or of other shapes."""
        path = Path(run_dir) / STATS_FILE
        state, _ = read_tensors(path)
        codes, spread = state.pop("codes", None), state.pop("code_spread", None)
        if set(state) != {"mean", "std", "weight"} or any(tuple(v.shape) != (channels,) for v in state.values()):
            raise ModelFileError(f"{path}: expected mean, std and weight of {channels} channels")
        if codes is not None and (spread is None or codes.ndim != 2 or tuple(spread.shape) != (len(codes),)):
            raise ModelFileError(f"{path}: expected training codes (N, D) and their spread (N,)")
        return cls(state["mean"], state["std"], state["weight"], codes, spread).to(device)


def channel_error_weight(model: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """1 / each channel's mean squared reconstruction error on normal standardised features (N, Cf, h, w),
    scaled to a harmonic mean of 1 (the map keeps the plain error's scale): (Cf,) on the model's device."""
    dev = next(model.parameters()).device
    total = torch.zeros(feats.shape[1], dtype=torch.float64, device=dev)
    with torch.inference_mode():
        for s in range(0, len(feats), _BATCH):
            f = feats[s:s + _BATCH].to(dev, torch.float32)  # (b, Cf, h, w)
            total += (model(f) - f).square().mean(dim=(2, 3)).sum(dim=0).double()
    err = (total / max(len(feats), 1)).float().clamp_min(1e-6)
    return err.mean() / err


def latent_codes(model: nn.Module, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The flattened latent codes (N, D) of standardised training features (N, Cf, h, w), and their spread
    (N,): each code's mean distance to its `CODE_SPREAD_K` nearest other codes."""
    from ..coreset import bank_spread

    dev = next(model.parameters()).device
    with torch.inference_mode():
        codes = torch.cat([model.encode(feats[s:s + _BATCH].to(dev, torch.float32)).flatten(1)
                           for s in range(0, len(feats), _BATCH)]).float()
    return codes, bank_spread(codes, CODE_SPREAD_K)
