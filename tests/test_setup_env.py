"""scripts/setup-env.sh: installs only when a requirements or project file changed, per set (app, test)."""
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout(tmp_path: Path) -> Path:
    """A copy of the files the script reads, with a fake .venv/bin/python that logs each call instead of pip."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup-env.sh", tmp_path / "scripts")
    for name in ("requirements.txt", "requirements-test.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/pip.log"\n')
    python.chmod(0o755)
    return tmp_path


def stamp_of(root: Path, req: str) -> str:
    data = b"".join((root / n).read_bytes() for n in ("requirements.txt", req, "pyproject.toml"))
    return hashlib.sha256(data).hexdigest()


def run(root: Path, kind: str) -> list[str]:
    subprocess.run(["bash", str(root / "scripts" / "setup-env.sh"), kind], check=True, capture_output=True,
                   env={**os.environ, "PYTHON": "false"})  # creating a venv would be a failure here
    log = root / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_current_test_install_serves_the_app_without_reinstalling(tmp_path):
    """QA: ./run-app after the test set-up reinstalled everything, and .venv/bin/udd vanished meanwhile."""
    root = checkout(tmp_path)
    (root / ".venv" / ".udd-installed-test").write_text(stamp_of(root, "requirements-test.txt") + "\n")
    assert run(root, "app") == []  # the test set holds the app's: nothing to install
    assert run(root, "test") == []  # and the test set is current
    (root / "requirements-test.txt").write_text((root / "requirements-test.txt").read_text() + "\n# changed\n")
    assert run(root, "app")[0].endswith("-r requirements.txt")  # stale test stamp: the app set installs itself
    assert (root / ".venv" / ".udd-installed-app").read_text().strip() == stamp_of(root, "requirements.txt")
    assert len(run(root, "app")) == 1  # and only once
    assert run(root, "test")[-1].endswith("-r requirements-test.txt")
