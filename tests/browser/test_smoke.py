"""The app starts under `streamlit run` and opens on the Design page with no exception."""
from appdriver import assert_no_exception, open_app, shot


def test_app_opens_on_design_page(app_server, page):
    open_app(page, app_server.url)
    assert "Design" in page.locator('[data-testid="stMain"] h1').first.inner_text()
    assert_no_exception(page)
    shot(page, "00-start")


def test_slash_design_opens_the_design_page(app_server, page):
    open_app(page, app_server.url)  # app.py has run: its st.navigation, not the legacy pages/ folder, routes
    page.goto(app_server.url + "/design")  # Design is the root page; a typed /design used to be "Page not found"
    page.locator('[data-testid="stMain"] h1', has_text="Design").first.wait_for(timeout=60_000)
    page.wait_for_url(lambda url: url.rstrip("/") == app_server.url.rstrip("/"), timeout=30_000)
    nav = page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()
    assert [t.split()[-1] for t in nav] == ["Design", "Train", "Inspect", "Generate", "Compare"]  # alias hidden
    assert_no_exception(page)
