"""Faults: a training process killed mid-epoch, and memory across many start/stop cycles."""
import gc
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from udd_core import runs
from udd_core.model import load_model
from udd_core.jobs import TrainJob
from udd_core.settings import TrainSettings


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _images(n=12):
    rng = np.random.default_rng(0)
    return (np.kron(rng.random((n, 8, 8, 1)), np.ones((1, 4, 4, 1))) * 255).astype(np.uint8)


def test_sigkill_mid_epoch_leaves_a_loadable_checkpoint_and_an_interrupted_run(tmp_path, tiny_config):
    data = tmp_path / "imgs"
    data.mkdir()
    for i, a in enumerate(_images(16)):
        Image.fromarray(a[..., 0], "L").save(data / f"{i}.png")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(tiny_config))
    out = tmp_path / "runs" / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "udd_core.cli", "train", str(cfg), "--data", str(data), "--out", str(out),
         "--size", "32,32", "--epochs", "100000", "--batch-size", "2", "--device", "cpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not runs.read_history(out):
            time.sleep(0.1)
        assert runs.read_history(out), "no epoch finished in time"
        time.sleep(0.3)  # now mid-way through a later epoch
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    info = {r.name: r for r in runs.list_runs(tmp_path / "runs")}["killed"]
    assert info.status == "interrupted"  # not "running", not "finished"
    model = load_model(out, weights_name=runs.LAST_WEIGHTS)
    assert model.input_shape == (1, 32, 32)
    load_model(out)  # the best checkpoint too
    # and the run can be resumed where it stopped
    done = len(runs.read_history(out))
    job = TrainJob.resume(out, epochs=done + 2).start()
    assert job.join(60)
    # Killed while writing epoch done+1's record, that epoch counts as trained and its record stays lost (README)
    history = runs.read_history(out)
    assert job.snapshot().status == "finished" and history[-1]["epoch"] == done + 2
    assert len(history) in (done + 1, done + 2)


def test_memory_returns_to_its_level_after_20_start_stop_cycles(tmp_path, tiny_config):
    images = _images()
    settings = TrainSettings(epochs=1000, batch_size=4, device="cpu")

    def cycle(i):
        job = TrainJob.create(tmp_path / f"r{i}", tiny_config, (1, 32, 32), images, settings).start()
        time.sleep(0.05)
        job.stop()
        assert job.join(10)

    for i in range(3):  # warm up allocator pools and lazy imports first
        cycle(f"w{i}")
    gc.collect()
    before = _rss_mb()
    for i in range(20):
        cycle(i)
    gc.collect()
    after = _rss_mb()
    assert after - before < 40, f"RSS grew by {after - before:.1f} MB over 20 start/stop cycles"
