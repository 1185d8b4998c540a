"""The convolutional autoencoder: a pure `nn.Module`, its builder, and its checkpoint format.

The module tree (`encoder.<i>.<j>`, `decoder.<i>.<j>`) matches `defect_detection.AE_cls` 0.4.4
exactly, so a state dict moves between the two unchanged and the outputs agree to float tolerance.

A checkpoint is a folder: `config.json` (the architecture) and `model.safetensors` (weights, plus
metadata such as the input shape), so it rebuilds its own model and never unpickles anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from .atomic import write_text_atomic
from .tensor_files import ModelFileError, read_tensors, write_tensors  # noqa: F401 - ModelFileError re-exported
from .config import AEConfig, ConfigError, Pad, load_config, pad_pair, parse_config  # noqa: F401 - ConfigError re-exported

LEAK = 0.1  # LeakyReLU slope of the reference architecture (in place: saves an allocation per layer)
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
REF_CONFIG_FILE, REF_WEIGHTS_FILE = "AE_config.txt", "AE_state.save"


def encoder_block(features: tuple[int, int, int], kernel: int, drop: float) -> nn.Sequential:
    """Conv(k) -> LeakyReLU -> Conv(k, stride 2) -> Dropout -> LeakyReLU: halves H and W."""
    cin, mid, cout = features
    return nn.Sequential(
        nn.Conv2d(cin, mid, kernel, padding=kernel // 2),
        nn.LeakyReLU(LEAK, inplace=True),
        nn.Conv2d(mid, cout, kernel, padding=kernel // 2, stride=2),
        nn.Dropout(drop),
        nn.LeakyReLU(LEAK, inplace=True),
    )


def decoder_block(features: tuple[int, int, int], kernel: int, drop: float, out_pad: Pad, last: bool) -> nn.Sequential:
    """ConvT(k, stride 2) -> Dropout -> LeakyReLU -> ConvT(k) [-> LeakyReLU]: doubles H and W.

    The last block has no activation, so the reconstruction is not clipped at zero.
    """
    cin, mid, cout = features
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(cin, mid, kernel, padding=kernel // 2, stride=2, output_padding=pad_pair(out_pad)),
        nn.Dropout(drop),
        nn.LeakyReLU(LEAK, inplace=True),
        nn.ConvTranspose2d(mid, cout, kernel, padding=kernel // 2),
    ]
    if not last:
        layers.append(nn.LeakyReLU(LEAK, inplace=True))
    return nn.Sequential(*layers)


class AutoEncoder(nn.Module):
    """The reference package's deep AE: N encoder blocks, a stride-2 latent conv, and the mirror."""

    def __init__(self, config: AEConfig, input_shape: Optional[tuple[int, int, int]] = None):
        super().__init__()
        self.config = config
        self.input_shape = input_shape  # (C, H, W) the model was designed/trained for; None if unknown
        c = config
        self.encoder = nn.Sequential(
            *(encoder_block(bf, k, p) for bf, k, p in zip(c.block_size_in, c.block_ker, c.drop)),
            nn.Conv2d(c.block_size_in[-1][2], c.latent_size, c.latent_ker, padding=c.latent_ker // 2, stride=2),
        )
        k_last = c.block_ker[-1]
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c.latent_size, c.block_size_out[0][0], k_last, padding=k_last // 2, stride=2,
                               output_padding=pad_pair(c.latent_opad)),
            *(
                decoder_block(bf, k, p, op, last=i + 1 == c.n_blocks)
                for i, (bf, k, p, op) in enumerate(zip(c.block_size_out, c.block_ker[::-1], c.drop[::-1], c.out_pad))
            ),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> latent (B, latent_size, h, w)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (B, latent_size, h, w) -> reconstruction (B, C, H', W'), through the config's output."""
        return self.activate(self.decoder(z))

    def activate(self, y: torch.Tensor) -> torch.Tensor:
        """The config's output on raw decoder values (B, C, H, W): unchanged ("linear", the reference
        model), or a softmax over the channels ("softmax": per-pixel probabilities of one-hot values)."""
        # Functional, not a module: the module tree (and so the state dict) stays the reference's.
        return torch.softmax(y, dim=1) if self.config.output == "softmax" else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(x))  # (B, C, H, W) -> (B, C, H, W) when the shapes mirror


def build_model(config: Any, input_shape: Optional[tuple[int, int, int]] = None) -> AutoEncoder:
    """Build an `AutoEncoder` from a config (dict, text or `AEConfig`).

    With `input_shape`, the shapes are checked first (`shapes.propagate`), so a model whose
    decoder does not mirror its encoder is refused with the fix in the message.
    """
    c = parse_config(config)
    if input_shape is not None:
        from .shapes import propagate  # shapes imports nothing from here; kept local to stay one-way

        report = propagate(c, tuple(input_shape))
        if not report.ok:
            raise ValueError(report.problems[0].message)
    return AutoEncoder(c, tuple(input_shape) if input_shape is not None else None)


def save_model(model: AutoEncoder, path: Union[str, Path], metadata: Optional[Mapping[str, str]] = None,
               weights_name: str = WEIGHTS_FILE) -> Path:
    """Write `config.json` and the weights into folder `path`, each atomically (temp file, then rename)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": "udd-ae-1"}
    if model.input_shape is not None:
        meta["input_shape"] = ",".join(map(str, model.input_shape))
    meta.update(metadata or {})
    write_tensors(path / weights_name, model.state_dict(), meta)
    write_text_atomic(path / CONFIG_FILE, model.config.to_json() + "\n")
    return path


def is_model_dir(path: Union[str, Path]) -> bool:
    """True for a udd model/run folder or a reference-package model folder."""
    p = Path(path)
    return (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file() or (
        (p / REF_CONFIG_FILE).is_file() and (p / REF_WEIGHTS_FILE).is_file())


def load_model(path: Union[str, Path], weights_name: str = WEIGHTS_FILE, device: str = "cpu") -> AutoEncoder:
    """Load a udd model folder (`config.json` + `model.safetensors`) or a reference-package one.

    Reference weights (`AE_state.save`) are read with `torch.load(weights_only=True)`, which
    refuses any pickled object that is not plain tensors. The model comes back in eval mode.
    """
    p = Path(path)
    if (p / CONFIG_FILE).is_file() and (p / weights_name).is_file():
        config = load_config(p / CONFIG_FILE)
        wfile = p / weights_name
        state, meta = read_tensors(wfile)
        shape = tuple(int(v) for v in meta["input_shape"].split(",")) if meta.get("input_shape") else None
        model = AutoEncoder(config, shape)  # type: ignore[arg-type]
        model.metadata = dict(meta)
    elif (p / REF_CONFIG_FILE).is_file() and (p / REF_WEIGHTS_FILE).is_file():
        config = load_config(p / REF_CONFIG_FILE)
        wfile = p / REF_WEIGHTS_FILE
        try:
            state = torch.load(wfile, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - an unpickler refusal surfaces as several types
            why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            if "weights only" in str(e).lower():  # torch's message goes on to suggest running the file's code
                why = "it holds objects other than tensors, and loading them would run code from the file"
            raise ModelFileError(f"{wfile}: refused to load ({why})") from None
        model = AutoEncoder(config, None)
        model.metadata = {"format": "defect_detection"}
    else:
        raise ModelFileError(
            f"{p}: not a model folder (expected {CONFIG_FILE} + {weights_name}, or {REF_CONFIG_FILE} + {REF_WEIGHTS_FILE})")
    if not isinstance(state, Mapping):
        raise ModelFileError(f"{wfile}: holds no state dict")
    if problem := _misfit(model.state_dict(), state):
        raise ModelFileError(f"{wfile}: weights do not fit the config ({problem})")
    model.load_state_dict(state)
    return model.to(device).eval()


def _misfit(ours: Mapping[str, torch.Tensor], theirs: Mapping[str, Any]) -> str:
    """Why a state dict does not fit a model ("" when it does): the first missing, unexpected and misshapen keys."""
    def some(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

    missing = [k for k in ours if k not in theirs]
    extra = [k for k in theirs if k not in ours]
    shaped = [f"{k} {tuple(getattr(theirs[k], 'shape', ()))} vs {tuple(ours[k].shape)}"
              for k in ours if k in theirs and tuple(getattr(theirs[k], "shape", ())) != tuple(ours[k].shape)]
    parts = [f"missing {some(missing)}" if missing else "", f"unexpected {some(extra)}" if extra else "",
             f"shape in file vs config: {some(shaped)}" if shaped else ""]
    return "; ".join(p for p in parts if p)


__all__ = ["AutoEncoder", "ConfigError", "ModelFileError", "build_model", "decoder_block", "encoder_block",
           "is_model_dir", "load_model", "save_model"]
