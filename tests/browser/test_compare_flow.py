"""Compare two runs in a real browser: the run picked on Inspect is in focus on Compare, the config diff
names the one changed field, and loss curves, ROC curves and the heatmap rows render.

The two runs are tiny (32x32, one epoch) and made before the app opens, so the flow takes seconds.
"""
import sys
from pathlib import Path

from appdriver import assert_no_exception, go_to, open_app, shot, wait_idle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared tiny-run fixtures
from inspect_fixtures import make_mvtec, make_run, tiny_config  # noqa: E402


def test_compare_two_runs(app_server, page, tmp_path):
    data = make_mvtec(tmp_path / "parts")
    make_run(app_server.runs_dir / "latent4", data)
    make_run(app_server.runs_dir / "latent8", data, config={**tiny_config(), "latent_size": 8})

    # Inspect the older run: it becomes the run in focus.
    open_app(page, app_server.url + "/inspect?run=latent4")
    page.locator('[data-testid="stImage"]').first.wait_for(timeout=120_000)
    assert page.get_by_label("Run", exact=True).input_value().startswith("latent4")

    go_to(page, "Compare", idle=120)
    page.locator('[data-testid="stImage"]').first.wait_for(timeout=120_000)
    wait_idle(page, 60)
    assert_no_exception(page)
    assert "run=latent4" in page.url
    picked = page.locator('[data-testid="stMultiSelect"]').first.inner_text()
    assert picked.index("latent4") < picked.index("latent8")  # the focus first, the other run beside it
    body = page.inner_text("body")
    assert "1 field differs: latent_size." in body  # the config diff: exactly the changed field
    assert page.locator('[data-testid="stDataFrame"]').count() >= 4  # config, shapes, settings, metrics
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 2  # loss curves, ROC
    images = page.locator('[data-testid="stImage"]')
    # the colour bar, then per image: the input and one heatmap per run
    assert images.count() >= 4 and (images.count() - 1) % 3 == 0
    assert "Colours from low (left) to high (right)" in body
    shot(page, "11-compare")
    images.last.scroll_into_view_if_needed()
    page.screenshot(path=str(shot(page, "12-compare-heatmaps")))  # the viewport at the heatmap rows
