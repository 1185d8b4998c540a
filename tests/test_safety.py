"""House rules that protect users: safe server defaults, no code execution on user data, a UI-free engine."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "udd_core").glob("*.py")) + sorted((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]


def test_server_defaults_bind_localhost_keep_xsrf_and_cap_uploads():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert cfg["address"] == "localhost"
    assert cfg["enableXsrfProtection"] is True
    assert 0 < cfg["maxUploadSize"] <= 1024


def test_no_full_garbage_collection_after_every_script_run():
    # Streamlit's default gc.collect(2) after each rerun, live fragments included, held the GIL ~0.3 s at a time
    # and slowed a run trained with the Train page open 1.5-2x (bench/RESULTS.md).
    assert tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["runner"]["postScriptGC"] is False


def test_no_eval_exec_or_pickle_anywhere_in_the_product():
    bad = re.compile(r"(?<![\w.])(eval|exec)\(|pickle\.loads?\(|weights_only\s*=\s*False|allow_pickle\s*=\s*True")
    hits = [f"{p.name}:{i}: {line.strip()}" for p in SOURCES
            for i, line in enumerate(p.read_text().splitlines(), 1) if bad.search(line)]
    assert hits == []


def test_every_torch_load_is_weights_only():
    for p in SOURCES:
        for line in p.read_text().splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{p.name}: {line.strip()}"


def test_the_engine_never_imports_streamlit():
    for p in (ROOT / "udd_core").glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+streamlit", p.read_text(), re.M), p.name
