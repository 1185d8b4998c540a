"""The app starts under `streamlit run` and opens on the Design page with no exception."""
from appdriver import assert_no_exception, open_app, shot


def test_app_opens_on_design_page(app_server, page):
    open_app(page, app_server.url)
    assert "Design" in page.locator('[data-testid="stMain"] h1').first.inner_text()
    assert_no_exception(page)
    shot(page, "00-start")
