"""Another detection method end to end in a real browser: a memory-bank run picked on the Train page,
fitted with its progress shown, then inspected, and refused by Generate in one line.

sample_data/surface at 64x64: the bank is fitted in seconds on a CPU (the backbone's weights come
from the installed weights package; nothing is downloaded).
"""
import json
import time

from appdriver import assert_no_exception, go_to, open_app, shot, wait_idle
from test_e2e_flow import set_number, status_of, wait_for_text


def pick(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option).first.click()
    wait_idle(page)


def wait_finished(page, app_server, run: str, timeout: float) -> None:
    """Until the run's status.json says finished (failing on a page exception or the timeout)."""
    deadline = time.time() + timeout
    while not ((app_server.runs_dir / run / "status.json").is_file() and status_of(app_server, run) == "finished"):
        assert time.time() < deadline, f"{run} did not finish"
        assert_no_exception(page)
        page.wait_for_timeout(500)
    wait_idle(page)


def test_memory_bank_train_inspect_and_generate_refusal(app_server, page):
    open_app(page, app_server.url)
    go_to(page, "Train")
    wait_for_text(page, "MVTec folder", 30)  # sample_data/surface, the first data set offered
    pick(page, "Method", "memory-bank")
    set_number(page, "Height", 64)
    set_number(page, "Width", 64)
    box = page.get_by_label("Method options (JSON)", exact=True)
    box.fill('{"coreset": 0.5}')
    box.press("Enter")
    name = page.get_by_label("Run name", exact=True)
    name.fill("e2e-bank")
    name.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    wait_finished(page, app_server, "e2e-bank", 240)
    info = json.loads((app_server.runs_dir / "e2e-bank" / "train.json").read_text())
    assert info["method"] == "memory-bank" and info["options"] == {"coreset": 0.5}
    assert not page.get_by_role("button", name="Resume").count()  # a one-shot fit
    assert_no_exception(page)
    shot(page, "m1-train-memory-bank")

    go_to(page, "Inspect")
    wait_idle(page, 120)
    page.locator('[data-testid="stImage"]').first.wait_for(timeout=120_000)
    assert page.get_by_label("Run", exact=True).input_value().startswith("e2e-bank")
    wait_for_text(page, "Method memory-bank", 60)
    assert page.get_by_text("anomaly map", exact=True).count() >= 1  # the gallery's panel headers ...
    assert page.get_by_text("reconstruction", exact=True).count() == 0  # ... without a reconstruction
    auroc = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text("image AUROC", exact=True)).first
    assert float(auroc.inner_text().split()[-1]) > 0.8  # the bank finds sample_data's defects
    assert_no_exception(page)
    shot(page, "m2-inspect-memory-bank")

    go_to(page, "Generate")
    wait_for_text(page, "(e2e-bank: memory-bank) do not generate images", 60)  # the only run: one line names it
    assert_no_exception(page)
    shot(page, "m3-generate-refuses")


def test_feature_autoencoder_train_and_inspect(app_server, page, tmp_path):
    """A feature AE from a config file (one block over the backbone's 152 x 8 x 8 features of 64 x 64
    images), trained two epochs on the Train page, then inspected with its feature-error map."""
    config = {"block_ker": [3], "drop": [0.0], "block_size_in": [[152, 16, 16]], "block_size_out": [[16, 16, 152]],
              "latent_size": 8, "latent_ker": 3, "latent_opad": 1, "out_pad": [1],
              "input": {"kind": "features", "backbone": "lite0", "layers": ["s8", "s16"], "pool": 3}}
    path = tmp_path / "feature-ae.json"
    path.write_text(json.dumps(config))
    open_app(page, app_server.url)
    go_to(page, "Train")
    wait_for_text(page, "MVTec folder", 30)
    pick(page, "Method", "feature-ae")
    page.get_by_text("Config file", exact=True).click()
    wait_idle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').last.set_input_files(str(path))
    wait_idle(page)
    set_number(page, "Height", 64)
    set_number(page, "Width", 64)
    set_number(page, "Epochs", 2)
    set_number(page, "Batch size", 8)
    name = page.get_by_label("Run name", exact=True)
    name.fill("e2e-featae")
    name.press("Enter")
    wait_idle(page)
    shot(page, "m4-train-feature-ae-ready")
    page.get_by_role("button", name="Start training").click()
    wait_finished(page, app_server, "e2e-featae", 300)  # not "finished" on the page: another run may say it
    info = json.loads((app_server.runs_dir / "e2e-featae" / "train.json").read_text())
    assert info["method"] == "feature-ae"
    assert len((app_server.runs_dir / "e2e-featae" / "history.jsonl").read_text().splitlines()) == 2
    assert_no_exception(page)
    shot(page, "m4-train-feature-ae")

    go_to(page, "Inspect")
    wait_idle(page, 120)
    page.locator('[data-testid="stImage"]').first.wait_for(timeout=120_000)
    wait_for_text(page, "Method feature-ae", 60)
    wait_for_text(page, "times the latent novelty squared", 30)  # the caption says what the image score is
    auroc = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text("image AUROC", exact=True)).first
    assert float(auroc.inner_text().split()[-1]) > 0.5  # above chance after two epochs on sample_data
    assert_no_exception(page)
    shot(page, "m5-inspect-feature-ae")
