"""Benchmark: analytic `propagate` against `torchinfo.summary` on the same config and input.

Run: .venv/bin/python bench/bench_shapes.py   (records nothing itself; copy the lines to RESULTS.md)
"""
from __future__ import annotations

import platform
import time

import torch
from torchinfo import summary

from udd_core import build_model, parse_config, propagate

CONFIG = {  # 4 blocks, 3x1024x1024: the size where a forward-pass summary starts to hurt
    "block_ker": [3, 3, 3, 3], "drop": [0.0] * 4,
    "block_size_in": [[3, 32, 32], [32, 64, 64], [64, 128, 128], [128, 128, 128]],
    "block_size_out": [[128, 128, 128], [128, 128, 64], [64, 64, 32], [32, 32, 3]],
    "latent_size": 32, "latent_ker": 3, "latent_opad": 1, "out_pad": [1, 1, 1, 1],
}
SHAPE = (3, 1024, 1024)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    cfg = parse_config(CONFIG)
    report = propagate(cfg, SHAPE)
    model = build_model(cfg).eval()
    info = summary(model, input_size=(1, *SHAPE), verbose=0, device="cpu")
    assert info.total_params == report.params, (info.total_params, report.params)
    t_ours = best_of(lambda: propagate(CONFIG, SHAPE), 200)
    t_ti = best_of(lambda: summary(model, input_size=(1, *SHAPE), verbose=0, device="cpu"), 3)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"config: 4 blocks, input {SHAPE}, params {report.params:,}, MACs {report.macs:,} (torchinfo mult-adds {info.total_mult_adds:,})")
    print(f"propagate (from a dict, incl. parsing): {t_ours * 1e3:.3f} ms")
    print(f"torchinfo.summary:                      {t_ti * 1e3:.1f} ms")
    print(f"speed-up: {t_ti / t_ours:,.0f}x")


if __name__ == "__main__":
    main()
