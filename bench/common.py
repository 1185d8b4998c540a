"""Shared helpers of the speed benchmarks: data sets on disk, child processes, medians, tables.

Both benchmarks run udd and the reference package `defect_detection` side by side as separate
processes (or separate calls) under the same thread pinning, alternating them, so that other
load on the machine hits both sides alike.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
UDD = str(Path(PYTHON).with_name("udd"))
# The `udd` console script of this venv; on a machine where udd_core is only on PYTHONPATH
# (the GPU machine, see bench/gpu_check.sh) the same entry point through `python -m`.
UDD_CMD = [UDD] if Path(UDD).exists() else [PYTHON, "-m", "udd_core.cli"]
MAGNETIC = ROOT.parent / "shared" / "data" / "magnetic_tile"


def thread_env(threads: int) -> dict[str, str]:
    """Environment that pins every thread pool a child may use (OpenMP, MKL, OpenBLAS) to `threads`."""
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[k] = str(threads)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@dataclass
class Child:
    """One finished child process: its cost and where its output went."""

    wall_s: float
    cpu_s: float  # user + system CPU time of the child (and the children it waited for)
    max_rss_mb: float  # peak resident memory of the child, MiB
    returncode: int
    log: Path

    def check(self, what: str) -> "Child":
        if self.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"{what} failed with exit code {self.returncode}; log {self.log}:\n{tail}")
        return self


# A small launcher starts the measured command and reports its wait4 rusage. Linux carries the
# parent's peak RSS into a child that is (v)forked and exec'd straight from it, so a bench process
# holding a model would mask the child's own peak; forked from this ~10 MiB launcher it cannot.
_LAUNCHER = (
    "import json, os, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.Popen(sys.argv[2:])\n"
    "_, st, ru = os.wait4(p.pid, 0)\n"
    "json.dump({'wall': time.perf_counter() - t, 'cpu': ru.ru_utime + ru.ru_stime, 'rss_kb': ru.ru_maxrss,\n"
    "           'rc': os.waitstatus_to_exitcode(st)}, open(sys.argv[1], 'w'))\n"
)


def run_child(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Child:
    """Run `argv` to completion with stdout+stderr in `log`; its wall time, CPU time and peak RSS."""
    usage = log.with_suffix(".usage.json")
    with open(log, "wb") as out:
        rc = subprocess.call([PYTHON, "-S", "-c", _LAUNCHER, str(usage), *argv], env=env, cwd=cwd,
                             stdout=out, stderr=subprocess.STDOUT)
    if rc != 0 and not usage.exists():
        return Child(0.0, 0.0, 0.0, rc, log)
    u = json.loads(usage.read_text())
    return Child(u["wall"], u["cpu"], u["rss_kb"] / 1024.0, u["rc"], log)


def last_json_line(path: Path) -> dict:
    """The last line of a log that parses as a JSON object (the reference scripts print their result so)."""
    for line in reversed(path.read_text(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise SystemExit(f"{path}: no JSON result line")


def _tint(gray: np.ndarray, k: int) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8 with channels that differ (a warm tint and a channel gradient)."""
    g = gray.astype(np.float32)
    ramp = np.linspace(-12, 12, g.shape[1], dtype=np.float32)[None, :]
    rgb = np.stack([g * 1.0 + 8, g * 0.85 + ramp + 10 + (k % 5), g * 0.7 - ramp + 25], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def write_rgb_tiles(folder: Path, n: int, size: int, source: str = "auto", seed: int = 0) -> str:
    """Write `n` RGB JPEG tiles of size x size as folder/0000.jpg ...; returns the source used.

    "magnetic_tile": the shared real photos (grayscale) resized and tinted to three distinct
    channels; "synthetic": udd's textured-surface generator, tinted the same way; "auto": the
    photos when present, else synthetic. JPEG quality 95, like typical inspection exports.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if source == "auto":
        source = "magnetic_tile" if (MAGNETIC / "train" / "good").is_dir() else "synthetic"
    if source == "magnetic_tile":
        files = sorted((MAGNETIC / "train" / "good").glob("*.jpg"))
        if not files:
            raise SystemExit(f"{MAGNETIC}: no train/good/*.jpg (use --source synthetic)")
        # A seeded random sample: consecutive photos look alike, and the reference validates on the
        # last files of its listing, which would then resemble its last training batch.
        pick = np.random.default_rng(seed).permutation(max(n, len(files)))[:n] % len(files)
        grays = (np.asarray(Image.open(files[i]).convert("L").resize((size, size), Image.BILINEAR)) for i in pick)
    elif source == "synthetic":
        from udd_core.synthetic import write_surface_dataset

        with tempfile.TemporaryDirectory(prefix="udd-bench-src-") as tmp:
            write_surface_dataset(Path(tmp), n_train=n, n_test_good=0, n_per_defect=0, size=size, seed=seed)
            files = sorted((Path(tmp) / "train" / "good").glob("*.png"))
            grays = [np.asarray(Image.open(p).convert("L")) for p in files]  # read before the folder goes
    else:
        raise SystemExit(f"--source: expected auto, synthetic or magnetic_tile, got {source!r}")
    for i, g in enumerate(grays):
        Image.fromarray(_tint(g, i), "RGB").save(folder / f"{i:04d}.jpg", quality=95)
    return source


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def sync(device: str) -> None:
    """Wait for queued GPU work, so a timer read afterwards covers it (no-op on the CPU)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def machine_note(threads: int, device: str = "cpu") -> str:
    """CPU model, cores, GPU, torch version, load average: the context every timing needs."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    bf16 = "avx512_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else False
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.startswith("cuda") else ""
    return (f"{cpu}, {os.cpu_count()} cores{' (avx512_bf16)' if bf16 else ''}{gpu}, torch {torch.__version__}, "
            f"{threads} thread(s) per side, device {device}, load average {load:.1f} at start")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
