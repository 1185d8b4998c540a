"""The whole flow a user follows, in a real browser: design, train, stop, inspect, generate.

Each step saves a screenshot under test-artifacts/browser/ and checks that no page shows an
exception. Training runs on sample_data/surface at 64x64 so two epochs take seconds on a CPU.
"""
import json
import time

from appdriver import assert_no_exception, go_to, open_app, shot, wait_idle


def set_number(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def wait_for_text(page, text: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while text not in page.inner_text("body"):
        assert time.time() < deadline, f"timed out waiting for {text!r}"
        assert_no_exception(page)
        page.wait_for_timeout(500)


def start_run(page, name: str, epochs: int) -> None:
    set_number(page, "Epochs", epochs)
    set_number(page, "Batch size", 8)
    name_box = page.get_by_label("Run name", exact=True)
    name_box.fill(name)
    name_box.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()


def status_of(app_server, name: str) -> str:
    return json.loads((app_server.runs_dir / name / "status.json").read_text())["status"]


def test_design_train_stop_inspect_generate(app_server, page):
    # 1. the Design page opens with a preset
    open_app(page, app_server.url)
    assert_no_exception(page)
    shot(page, "01-design")

    # 2. a smaller input, then break a padding: the mismatch shows; one click fixes it
    set_number(page, "Height (H)", 64)
    set_number(page, "Width (W)", 64)
    assert "do not mirror" not in page.inner_text("body")
    set_number(page, "latent_opad (h)", 0)
    wait_for_text(page, "do not mirror", 30)
    shot(page, "02-design-mismatch")
    page.get_by_role("button", name="Apply suggested paddings").click()
    wait_idle(page)
    assert "do not mirror" not in page.inner_text("body")
    assert_no_exception(page)
    shot(page, "03-design-fixed")

    # 3. train two epochs on sample_data with the Design page's model, and watch the curve
    go_to(page, "Train")
    wait_for_text(page, "MVTec folder: 60 images", 30)  # the estimate for sample_data/surface
    start_run(page, "e2e-first", 2)
    wait_for_text(page, "Epoch", 120)  # the live progress bar
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=120_000)
    shot(page, "04-train-running")
    wait_for_text(page, "finished", 240)
    wait_idle(page)
    assert status_of(app_server, "e2e-first") == "finished"
    history = (app_server.runs_dir / "e2e-first" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2
    losses = [json.loads(line)["train_loss"] for line in history]
    assert losses[1] < losses[0]  # the curve moved, downwards
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1
    shot(page, "05-train-finished")

    # 4. a second run, stopped midway
    start_run(page, "e2e-stopped", 500)
    wait_for_text(page, "step", 120)
    page.get_by_role("button", name="Stop").click()
    deadline = time.time() + 60
    while status_of(app_server, "e2e-stopped") != "stopped":
        assert time.time() < deadline, "the run did not stop"
        time.sleep(0.5)
    wait_for_text(page, "stopped", 60)
    assert_no_exception(page)
    shot(page, "06-train-stopped")

    # 5. Inspect: heatmaps for the finished run, then move the threshold
    go_to(page, "Inspect")
    run_box = page.get_by_label("Run", exact=True)
    run_box.click()
    page.get_by_role("option", name="e2e-first").first.click()
    wait_idle(page, 120)
    page.locator('[data-testid="stImage"]').first.wait_for(timeout=120_000)
    assert page.locator('[data-testid="stImage"]').count() >= 4  # input, reconstruction, heatmap, overlay
    assert_no_exception(page)
    shot(page, "07-inspect")
    page.get_by_text("manual", exact=True).click()
    wait_idle(page)
    # The top row's "threshold" metric (the One-image tab has a "score ... vs threshold" one too).
    metric = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text("threshold", exact=True)).first
    before = metric.inner_text()
    thumb = page.locator('[data-testid="stSlider"]', has_text="Image-score threshold").get_by_role("slider")
    thumb.wait_for(timeout=30_000)
    thumb.focus()
    thumb.press("End")  # to the highest score: one change, however busy the machine
    deadline = time.time() + 60
    while metric.inner_text() == before:  # the threshold, and the FPR/TPR shown with it, follow the slider
        assert time.time() < deadline, "the threshold did not follow the slider"
        page.wait_for_timeout(300)
    wait_idle(page)
    assert_no_exception(page)
    shot(page, "08-inspect-threshold")

    # 6. Generate samples from a noised latent, with the run picked on Inspect (not the newest one)
    go_to(page, "Generate")
    wait_idle(page, 120)
    page.locator('[data-testid="stImage"]').first.wait_for(timeout=120_000)
    assert_no_exception(page)
    assert page.get_by_label("Run", exact=True).input_value().startswith("e2e-first ")
    assert "run=e2e-first" in page.url
    shot(page, "09-generate")


def test_two_sessions_train_at_once_without_clobbering(app_server, browser):
    pages = []
    for i in range(2):
        context = browser.new_context(viewport={"width": 1400, "height": 2200})
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        open_app(pg, app_server.url + "/train")
        pages.append(pg)
    for i, pg in enumerate(pages):
        start_run(pg, f"session-{i}", 2)
    for i, pg in enumerate(pages):
        wait_for_text(pg, "finished", 240)
        assert_no_exception(pg)
        shot(pg, f"10-session-{i}")
    for i in range(2):
        assert status_of(app_server, f"session-{i}") == "finished"
        assert len((app_server.runs_dir / f"session-{i}" / "history.jsonl").read_text().splitlines()) == 2
    for pg in pages:
        pg.context.close()
