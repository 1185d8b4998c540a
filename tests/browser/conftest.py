"""Browser fixtures: the app under `streamlit run` on a free port and Playwright's chromium."""
from __future__ import annotations

import os

import pytest
from appdriver import CHROMIUM, CHROMIUM_ARGS, AppServer, need_browser


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    need_browser()
    tmp = tmp_path_factory.mktemp("app")
    server = AppServer(tmp / "runs", tmp / "streamlit.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 2200})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


