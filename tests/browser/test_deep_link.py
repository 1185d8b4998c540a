"""A deep link as the very first request of a fresh server still gets app.py's navigation and layout.

Streamlit runs a `pages/` file on its own (its legacy multipage mode) until some session has run
app.py; each page then hands over to app.py, which comes back to the same page and query.
This module has its own fresh server (the fixture is per module), so its first request is the link.
"""
from appdriver import assert_no_exception, wait_idle

NAV_TITLES = ["Design", "Train", "Inspect", "Generate", "Compare"]


def test_first_request_deep_link_gets_the_app_navigation(app_server, page):
    page.goto(app_server.url + "/train?run=no-such-run")
    page.locator('[data-testid="stMain"] h1', has_text="Train").first.wait_for(timeout=60_000)
    wait_idle(page)
    nav = page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
    assert [t.split()[-1] for t in nav] == NAV_TITLES  # app.py's titles (after their icons), not file names
    assert page.url.split("?")[0].endswith("/train") and "run=no-such-run" in page.url
    assert page.locator('[data-testid="stMain"]').bounding_box()["width"] > 1000  # app.py's wide layout
    assert_no_exception(page)
