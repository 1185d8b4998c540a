"""The app starts under `streamlit run` and opens on the Design page with no exception."""
from appdriver import assert_no_exception, open_app, shot
from playwright.sync_api import expect


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


def test_an_out_of_range_table_cell_is_refused_with_a_line_naming_the_field(app_server, page):
    """Typing kernel 0 in the block table: the grid used to drop it without a word (its column minimum)."""
    open_app(page, app_server.url)
    grid = page.locator('[data-testid="stDataFrame"]').first.bounding_box()  # the block table, a canvas
    # The header and each row are 35 px tall; the left edge is the read-only index column of block 1.
    page.mouse.click(grid["x"] + 10, grid["y"] + 35 + 17)
    page.keyboard.press("ArrowRight")  # to block 1's kernel cell
    page.keyboard.type("0")  # typing opens the cell's editor
    page.locator("input.gdg-input").wait_for()
    page.keyboard.press("Enter")
    page.get_by_text("Table edit not applied: block_ker[0]: kernel size must be between 1 and 255, got 0").wait_for()
    shot(page, "00-design-table-kernel-0")
    assert "[3, 3, 3]" in page.get_by_role("textbox", name="Config as JSON").input_value()
    assert_no_exception(page)


def test_a_config_upload_too_large_for_a_config_gets_a_line_naming_the_file(app_server, page, tmp_path):
    """A 2 MB file used to stop at the uploader's own limit (1 MB): a red icon, no words on the page."""
    big = tmp_path / "weights.json"
    big.write_bytes(b" " * 2_000_000)
    open_app(page, app_server.url)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(big))
    page.get_by_text("weights.json: config: text is 2000000 bytes, more than the 1000000 allowed").wait_for()
    shot(page, "00-design-upload-too-large")
    assert_no_exception(page)


def test_a_refresh_keeps_the_edited_design(app_server, page):
    """QA: a browser refresh threw the edited design away (back to the preset); it rides in the URL now."""
    open_app(page, app_server.url)
    height = page.get_by_role("spinbutton", name="Height (H)", exact=True)
    height.fill("96")
    height.press("Enter")
    page.wait_for_url(lambda url: "design=" in url, timeout=30_000)
    page.get_by_text("Edited: the design below is no longer this preset's").wait_for()
    page.reload()
    page.locator('[data-testid="stMain"] h1', has_text="Design").first.wait_for(timeout=60_000)
    page.get_by_text("Edited: the design below is no longer this preset's").wait_for()
    expect(page.get_by_role("spinbutton", name="Height (H)", exact=True)).to_have_value("96")
    assert "design=" in page.url
    assert_no_exception(page)
