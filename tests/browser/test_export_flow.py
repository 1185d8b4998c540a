"""Export a run to ONNX from the Inspect page in a real browser: the Export tab's button, the parity
figures, and a download whose file onnxruntime runs to udd's scores.

The run is tiny (32x32, one epoch) and made before the app opens, so the flow takes seconds.
"""
import json
import sys
from pathlib import Path

import numpy as np
from appdriver import assert_no_exception, open_app, shot, wait_idle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared tiny-run fixtures
from inspect_fixtures import make_mvtec, make_run  # noqa: E402


def test_export_onnx_from_inspect(app_server, page, tmp_path):
    import onnxruntime as ort

    from udd_core.data import load_dataset, to_tensor
    from udd_core.inspection import inspect_run

    data = make_mvtec(tmp_path / "parts")
    run = make_run(app_server.runs_dir / "to-the-line", data)

    open_app(page, app_server.url + "/inspect?run=to-the-line")
    page.locator('[data-testid="stImage"]').first.wait_for(timeout=120_000)
    page.get_by_role("tab", name="Export").click()
    page.get_by_role("button", name="Export to ONNX").click()
    button = page.get_by_role("button", name="Download to-the-line.onnx")
    button.wait_for(timeout=180_000)
    wait_idle(page, 60)
    assert_no_exception(page)
    assert "Parity on 3 validation images" in page.inner_text("body")
    shot(page, "13-inspect-export-onnx")

    with page.expect_download() as dl:
        button.click()
    model = tmp_path / "downloaded.onnx"
    dl.value.save_as(model)
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download to-the-line.json (input, threshold, parity)").click()
    info = json.loads(Path(dl.value.path()).read_text())
    assert info["input"]["shape"] == ["N", 1, 32, 32] and info["parity"]["max_rel_score_diff"] <= 1e-4

    # The downloaded file scores the test images as `udd score` does.
    images = load_dataset(data, (1, 32, 32), split="test").images
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    _, scores = sess.run(None, {"images": to_tensor(images).contiguous().numpy()})
    np.testing.assert_allclose(scores, inspect_run(run, data).scores, rtol=1e-4)
