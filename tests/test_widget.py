"""The ask-page widget (/widget.js) in headless Chromium, on a page shaped like Question2Answer's
ask form served from another loopback port than the service (so every search is a CORS request),
under a strict Content-Security-Policy, against uvicorn serving a small index with the fake
embedder. The forum's token endpoint is the static server's; Chromium resolves no other host."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from browser import headless_chromium, needs_chromium, served
from conftest import FakeEmbedder
from fastapi.testclient import TestClient
from realserver import free_port

from qa_search import Answer, ForumIndex, Thread
from service.app import create_app
from service.settings import Settings

ASK_PAGE = Path(__file__).parent / "fixtures" / "q2a_ask.html"
SECRET = "widget-test-secret-0123456789abcdef-0123456789"
MEMBERS_ONLY = "t5"
DUPLICATE_TITLE = "How do therapists handle their own mistakes?"
# the page as Question2Answer's theme would style it: fields the width of the column
PAGE_CSS = (b"body{margin:8px;font-family:sans-serif}.qa-form-tall-table{width:100%;border-collapse:collapse}"
            b".qa-form-tall-text,.qa-form-tall-tags,.qa-form-tall-select{width:100%;box-sizing:border-box}")


def _threads(forum: str) -> list[Thread]:
    def url(tid: str) -> str:
        return f"{forum}/thread/{tid}"

    return [
        Thread("t1", "How do I calm down during a panic attack?", "My heart races.", url=url("t1"),
               answers=(Answer("t1-a1", "Slow breathing helps me calm down.", accepted=True),)),
        Thread("t2", "Breathing exercises for a panic attack at night", url=url("t2")),
        Thread("t3", "😟 Is it normal to have a panic attack at work?", url=url("t3")),
        Thread("t4", DUPLICATE_TITLE, "My counsellor forgot what I told her.", category="Psychotherapists",
               url=url("t4")),
        Thread(MEMBERS_ONLY, "Panic attack group: what helps you calm down?", url=url(MEMBERS_ONLY),
               visible_to=("members",)),
        Thread("t6", "My friend lost his father last week", url="javascript:alert(1)"),
    ]


class Forum:
    """The forum's side, on its own loopback port: the ask page (with a strict CSP that allows
    the service's origin), its stylesheet, the search-token endpoint (the first token it hands
    out has expired, so the widget must fetch another on the 401) and the form's target."""

    def __init__(self, port: int, service: str) -> None:
        self.service = service
        self.origin = f"http://127.0.0.1:{port}"
        self.token_requests: list[str | None] = []  # the Cookie header each one carried
        self.tokens: list[str] = []
        self.posted: list[dict] = []
        forum = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, kind: str, body: bytes, **headers: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = urlsplit(self.path).path
                if path == "/ask":
                    page = ASK_PAGE.read_text().replace("SERVICE_ORIGIN", forum.service).encode()
                    policy = (f"default-src 'self'; script-src 'self' {forum.service}; "
                              f"connect-src 'self' {forum.service}; style-src 'self' {forum.service}; "
                              "base-uri 'none'; object-src 'none'; frame-ancestors 'none'")
                    self._send(200, "text/html; charset=utf-8", page, Content_Security_Policy=policy,
                               Set_Cookie="qa_session=abc123; Path=/; HttpOnly; SameSite=Lax")
                elif path == "/qa-styles.css":
                    self._send(200, "text/css", PAGE_CSS)
                elif path == "/qa-search-token":
                    forum.token_requests.append(self.headers.get("Cookie"))
                    # the first has expired (past the service's leeway): a stale token in a tab left open
                    expires = time.time() + (-600 if not forum.tokens else 600)
                    token = jwt.encode({"groups": ["members"], "exp": int(expires)}, SECRET, "HS256")
                    forum.tokens.append(token)
                    self._send(200, "application/json", json.dumps({"token": token}).encode(),
                               Cache_Control="no-store")
                elif path == "/favicon.ico":
                    self._send(204, "image/x-icon", b"")
                elif path.startswith("/thread/"):
                    self._send(200, "text/html", b"<!DOCTYPE html><title>thread</title><p>a thread</p>")
                else:
                    self._send(404, "text/plain", b"not found")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                forum.posted.append(parse_qs(self.rfile.read(length).decode()))
                self._send(200, "text/html", b"<!DOCTYPE html><title>posted</title><p>posted</p>")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Forum:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sites(tmp_path):
    """(the forum, the service's origin): uvicorn serving the index, allowing the forum's origin."""
    forum_port = free_port()
    forum_origin = f"http://127.0.0.1:{forum_port}"
    index = ForumIndex(FakeEmbedder())
    index.upsert(_threads(forum_origin))
    index.save(tmp_path / "index")
    settings = Settings(index_dir=tmp_path / "index", cors_origins=[forum_origin], token_secret=SECRET,
                        require_token=True, read_rate="0")
    app = create_app(settings, embedder=FakeEmbedder())
    with served(app) as service, Forum(forum_port, service) as forum:
        yield forum, service


@pytest.fixture
def browser(tmp_path):
    # every host but loopback fails to resolve
    driver = headless_chromium(tmp_path / "profile", logs=("performance", "browser"))
    try:
        yield driver
    finally:
        driver.quit()


def _requests(browser) -> list[dict]:
    out = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            out.append(message["params"]["request"])
    return out


@needs_chromium
def test_widget_on_a_question2answer_ask_page(sites, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    forum, service = sites
    wait = WebDriverWait(browser, 20)
    browser.get(forum.origin + "/ask")
    title = browser.find_element(By.ID, "title")
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".qa-search [role=status]"))
    box = browser.find_element(By.CSS_SELECTOR, ".qa-search")
    # inserted right after the title field, in the form's cell
    assert browser.execute_script("return arguments[0].previousElementSibling.id", box) == "title"
    status = box.find_element(By.CSS_SELECTOR, "[role=status]")
    listing = box.find_element(By.CSS_SELECTOR, "ul.qa-search-results")
    assert title.get_attribute("aria-controls") == listing.get_attribute("id")
    assert status.get_attribute("id") in title.get_attribute("aria-describedby").split()

    title.send_keys("panic attack calm")
    wait.until(lambda b: re.fullmatch(r"\d+ similar questions?", status.text))
    hits = listing.find_elements(By.CSS_SELECTOR, "li.qa-search-hit")
    assert status.text == f"{len(hits)} similar question{'s' if len(hits) != 1 else ''}"
    ids = [h.get_attribute("data-thread-id") for h in hits]
    assert "t1" in ids
    # the refreshed token's groups were honoured: the members' thread is among the hits
    assert MEMBERS_ONLY in ids
    first = hits[ids.index("t1")].find_element(By.TAG_NAME, "a")
    assert first.text == "How do I calm down during a panic attack?"
    # the query's words are marked in the title, as elements (the service's highlights)
    assert [m.text for m in first.find_elements(By.TAG_NAME, "mark")] == ["calm", "panic", "attack"]
    # offsets count code points: an emoji (two UTF-16 units) before the words shifts nothing
    assert "t3" in ids
    t3_link = hits[ids.index("t3")].find_element(By.TAG_NAME, "a")
    assert [m.text for m in t3_link.find_elements(By.TAG_NAME, "mark")] == ["panic", "attack"]
    assert first.get_attribute("href") == forum.origin + "/thread/t1"
    assert first.get_attribute("rel") == "noopener"
    # the answered badge only where the thread has an accepted answer
    badges = {h.get_attribute("data-thread-id") for h in hits if h.find_elements(By.CSS_SELECTOR,
                                                                                  ".qa-search-badge")}
    assert badges == {"t1"}
    assert all(h.find_element(By.CSS_SELECTOR, ".qa-search-meta").text.startswith("matched") for h in hits)

    # the keyboard: down into the list, through it, back up to the title; Escape closes
    links = listing.find_elements(By.CSS_SELECTOR, "a.qa-search-link")
    assert len(links) >= 2
    title.send_keys(Keys.ARROW_DOWN)
    assert browser.switch_to.active_element == links[0]
    # the focused link is visibly outlined (widget.css's focus style)
    outline = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    links[0].send_keys(Keys.ARROW_DOWN)
    assert browser.switch_to.active_element == links[1]
    links[1].send_keys(Keys.ARROW_UP)
    links[0].send_keys(Keys.ARROW_UP)
    assert browser.switch_to.active_element == title
    title.send_keys(Keys.ARROW_DOWN)
    links[0].send_keys(Keys.ENTER)  # opens the thread in a new tab: the draft stays
    wait.until(lambda b: len(b.window_handles) == 2)
    assert browser.current_url == forum.origin + "/ask"
    links[0].send_keys(Keys.ESCAPE)
    assert not listing.is_displayed()
    assert browser.switch_to.active_element == title

    # leaving the title field checks for a duplicate
    title.clear()
    title.send_keys(DUPLICATE_TITLE)
    browser.find_element(By.ID, "content").send_keys("My counsellor forgot what I told her.")
    browser.find_element(By.ID, "tags").click()
    warning = box.find_element(By.CSS_SELECTOR, ".qa-search-duplicate")
    wait.until(lambda b: warning.is_displayed())
    assert warning.text.startswith("This looks like a duplicate of " + DUPLICATE_TITLE)
    assert warning.get_attribute("data-thread-id") == "t4"
    # a submit after the warning stays on the page once, then posts the question
    submit = browser.find_element(By.CSS_SELECTOR, "input[type=submit]")
    submit.click()
    wait.until(lambda b: "Submit again" in warning.text)
    assert browser.current_url == forum.origin + "/ask" and forum.posted == []
    submit.click()
    wait.until(lambda b: b.current_url.endswith("/posted"))
    assert forum.posted[0]["title"] == [DUPLICATE_TITLE]

    # a thread whose url is not a web address is shown without a link
    browser.get(forum.origin + "/ask")
    title = browser.find_element(By.ID, "title")
    title.send_keys("friend lost father")
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "li[data-thread-id=t6]"))
    assert browser.find_element(By.CSS_SELECTOR, "li[data-thread-id=t6] a").get_attribute("href") is None

    # the token: fetched from the forum with its cookie, refreshed on the 401, sent on every search
    assert len(forum.token_requests) >= 2
    assert all("qa_session=abc123" in (cookie or "") for cookie in forum.token_requests)
    requests = _requests(browser)
    calls = [r for r in requests if r["url"].startswith(service + "/v1/") and r["method"] == "POST"]
    assert calls and all(r["headers"].get("X-QA-Token") in forum.tokens for r in calls)
    assert any(r["headers"].get("X-QA-Token") == forum.tokens[-1] for r in calls)
    assert {urlsplit(r["url"]).path for r in calls} == {"/v1/search", "/v1/duplicates"}
    # the typeahead's text is searched as typed so far: an unknown unfinished last word left out
    searches = [json.loads(r["postData"]) for r in calls if urlsplit(r["url"]).path == "/v1/search"]
    assert searches and all(body["typing"] is True for body in searches)
    # nothing the person typed is in a URL
    assert not any("panic" in r["url"] or "therapists" in r["url"] for r in requests)
    away = [r["url"] for r in requests if urlsplit(r["url"]).scheme not in ("chrome", "data", "blob")
            and urlsplit(r["url"]).hostname != "127.0.0.1"]
    assert away == []
    # the page's strict CSP blocked nothing; the one expected error is the stale token's 401
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [e for e in errors if "401" not in e] == []


@needs_chromium
def test_widget_fits_a_phone_screen(sites, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    forum, _ = sites
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 360, "height": 740, "deviceScaleFactor": 2, "mobile": True})
    browser.get(forum.origin + "/ask")
    assert browser.execute_script("return window.innerWidth") == 360
    title = browser.find_element(By.ID, "title")
    # a long title with no space to break at, and the results and the warning both shown
    title.send_keys("Is it normal to have a panic attack at work?")
    WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, "li.qa-search-hit"))
    browser.execute_script("document.querySelector('li.qa-search-hit a').textContent = 'x'.repeat(300)")
    browser.find_element(By.ID, "content").click()
    WebDriverWait(browser, 20).until(
        lambda b: b.find_element(By.CSS_SELECTOR, ".qa-search-duplicate").is_displayed())
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 360


def test_widget_files_are_served_for_other_sites(tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("t1", "How do I calm down before a panic attack?")])
    index.save(tmp_path / "index")
    with TestClient(create_app(Settings(index_dir=tmp_path / "index"), embedder=FakeEmbedder())) as client:
        for path, kind in (("/widget.js", "text/javascript"), ("/widget.css", "text/css")):
            resp = client.get(path)
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith(kind)
            assert resp.headers["cache-control"] == "public, max-age=3600"
            assert resp.headers["x-content-type-options"] == "nosniff"
            # loadable by a page that isolates itself (Cross-Origin-Embedder-Policy)
            assert resp.headers["cross-origin-resource-policy"] == "cross-origin"
            assert resp.headers["etag"]
            again = client.get(path, headers={"If-None-Match": resp.headers["etag"]})
            assert again.status_code == 304
    script = (Path(__file__).parents[1] / "service" / "static" / "widget.js").read_text()
    # server text is set as text only, and the widget adds no inline handler or style
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "eval(" not in script
    assert ".style." not in script and "setAttribute(\"on" not in script
