"""The interactive API docs work with no network: /docs, served by uvicorn on loopback and
opened in headless Chromium that can resolve no other host, lists the API's operations, and
no request the page makes leaves loopback."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
from browser import headless_chromium, needs_chromium, served
from conftest import FakeEmbedder

from qa_search import ForumIndex, Thread
from service.app import create_app
from service.settings import Settings

pytestmark = needs_chromium


@pytest.fixture
def base_url(tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("t1", "How do I calm down before a panic attack?")])
    index.save(tmp_path / "index")
    app = create_app(Settings(index_dir=tmp_path / "index"), embedder=FakeEmbedder())
    with served(app) as url:
        yield url


def test_docs_render_the_operations_with_the_network_cut(base_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # every host but loopback fails to resolve: a CDN asset would not load
    browser = headless_chromium(tmp_path / "profile", logs=("performance", "browser"))
    try:
        browser.get(base_url + "/docs")
        WebDriverWait(browser, 30).until(
            lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock .opblock-summary-path")) >= 6)
        paths = {e.get_attribute("data-path") or e.text
                 for e in browser.find_elements(By.CSS_SELECTOR, ".opblock .opblock-summary-path")}
        assert {"/v1/search", "/v1/duplicates", "/v1/threads", "/healthz"} <= {p.strip() for p in paths}
        assert browser.find_element(By.CSS_SELECTOR, ".info .title").text.startswith("qa_search")
        requested = []
        for entry in browser.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                requested.append(message["params"]["request"]["url"])
        assert any(u.endswith("/static-docs/swagger-ui-bundle.js") for u in requested)
        assert any(u.endswith("/openapi.json") for u in requested)
        # the browser's own chrome:// pages and inline data: URLs touch no network
        away = [u for u in requested if urlsplit(u).scheme not in ("chrome", "data", "blob")
                and urlsplit(u).hostname != "127.0.0.1"]
        assert away == []
        # nothing the page needed failed to load (a blocked CDN would show here)
        errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
    finally:
        browser.quit()
