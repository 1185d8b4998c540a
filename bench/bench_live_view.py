"""What watching a training costs it: epoch seconds of a run started in the app, with the Train page open
in a browser against the same run with the browser on another page (the job trains on regardless).

The app runs under `streamlit run` and Debian's chromium drives it (tests/browser/appdriver.py), both on
this machine, as for a user with the app on a laptop. Each mode trains the Design page's default preset
at 64x64 on sample_data/surface for 60 epochs (batch 8); the median epoch time leaves out the first two.

    .venv/bin/python bench/bench_live_view.py [--epochs 60]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from appdriver import CHROMIUM, CHROMIUM_ARGS, AppServer, open_app  # noqa: E402
from test_e2e_flow import go_to, set_number, start_run, wait_for_text  # noqa: E402


def median_epoch_s(run: Path) -> float:
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return statistics.median(r["seconds"] for r in history[2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    runs_dir = Path(tempfile.mkdtemp(prefix="udd-live-view-"))
    server = AppServer(runs_dir, runs_dir / "streamlit.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 2200}).new_page()
            open_app(page, server.url)
            set_number(page, "Height (H)", 64)
            set_number(page, "Width (W)", 64)
            for mode in ("watched", "not watched", "watched again"):
                name = "live-" + mode.replace(" ", "-")
                go_to(page, "Train")
                wait_for_text(page, "MVTec folder: 60 images", 30)
                start_run(page, name, args.epochs)
                while not (runs_dir / name / "history.jsonl").exists():
                    time.sleep(0.5)
                if mode == "not watched":
                    go_to(page, "Design")
                while json.loads((runs_dir / name / "status.json").read_text())["status"] == "running":
                    time.sleep(1)
                print(f"{mode:14s} median epoch {median_epoch_s(runs_dir / name):.3f} s", flush=True)
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
