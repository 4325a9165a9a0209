"""The service end to end: the real model, `qa-search serve` with two workers on loopback, the
sample forum; writes, restarts, a generation published under load, and the demo page in Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from browser import headless_chromium, needs_chromium
from conftest import SAMPLE_DUMP
from realserver import Serve

from qa_search import ForumIndex, Thread, read_dump

pytestmark = pytest.mark.slow

KEY = "e2e-key"
PARAPHRASE = "how can I stop being so hard on myself? the critical voice in my head never lets up"
TARGET = "t061"  # "How do I quiet my harsh inner critic?"
DEMO_TARGET = "t121"  # "How do I support a friend whose father just died?"
DEMO_PARAPHRASE = "my mate lost his dad last week, how can I be there for him"
DEMO_DUPLICATE = "How can I support a friend whose father has just died?"


class Server(Serve):
    """`qa-search serve DIR --workers 2` in a subprocess, on a free loopback port, the real model."""

    ready_seconds, ready_every = 180, 0.3  # two workers load the model
    stop_seconds = 60
    timeout = 60

    def __init__(self, index_dir: Path, log_path: Path) -> None:
        super().__init__(index_dir, log_path, {
            **os.environ, "QA_SEARCH_API_KEY": KEY, "QA_SEARCH_POLL_SECONDS": "0.2", "QA_SEARCH_THREADS": "1",
            "QA_SEARCH_READ_RATE": "0"})  # the load tests search from one address

    def search_ids(self, q: str, k: int = 5) -> tuple[list[str], str]:
        status, body, worker = self.call("GET", "/v1/search", q=q, k=k)
        assert status == 200, body
        return [h["thread_id"] for h in body["hits"]], worker

    def on_every_worker(self, check, workers: int = 2, seconds: float = 60) -> None:
        """Run ``check() -> worker pid or None`` (it asserts) until it has returned both workers."""
        seen, deadline = set(), time.monotonic() + seconds
        while len(seen) < workers:
            assert time.monotonic() < deadline, f"only workers {seen} passed in {seconds} s"
            worker = check()
            if worker is not None:
                seen.add(worker)


@pytest.fixture(scope="module")
def built(tmp_path_factory, real_embedder) -> tuple[Path, ForumIndex]:
    index = ForumIndex(real_embedder)
    index.upsert(read_dump(SAMPLE_DUMP))
    index_dir = tmp_path_factory.mktemp("e2e") / "index"
    index.save(index_dir)
    return index_dir, index


@pytest.fixture(scope="module")
def server(built):
    srv = Server(built[0], built[0].parent / "server.log").start()
    yield srv
    srv.stop()
    # privacy: nothing the tests typed reached the log, only the routes
    log = srv.log_path.read_text()
    assert "GET /v1/search" in log
    assert "critic" not in log and "voice" not in log


def test_every_endpoint(server):
    assert server.call("GET", "/healthz")[:2] == (200, {"status": "ok"})
    status, ready, _ = server.call("GET", "/readyz")
    assert status == 200 and ready["generation"] == 1 and ready["threads"] == 150
    ids, _ = server.search_ids(PARAPHRASE, k=3)
    assert TARGET in ids
    assert server.search_ids("hi")[0] == []  # under the minimum length
    _, dups, _ = server.call("GET", "/v1/duplicates", q="How can I quiet my harsh inner critic?")
    assert dups["duplicates"][0]["thread_id"] == TARGET
    _, dups, _ = server.call("POST", "/v1/duplicates", {"title": "How do I silence my harsh inner critic?",
                                                        "body": "It never stops."})
    assert TARGET in [d["thread_id"] for d in dups["duplicates"]]
    status, page, _ = server.call("GET", "/")
    assert status == 200 and "<title>" in page
    # metrics are per worker and a scrape reaches either one (the kernel may keep handing the
    # connections to the same worker): once both workers have served a search, any scrape shows it
    server.on_every_worker(lambda: server.search_ids(PARAPHRASE, k=3)[1])
    status, metrics, _ = server.call("GET", "/metrics")
    assert status == 200 and "qa_search_index_threads 150.0" in metrics
    assert 'route="/v1/search"' in metrics
    assert server.call("GET", "/openapi.json")[1]["paths"]["/v1/threads"]["post"]


def test_writes_need_the_key_reach_every_worker_and_survive_a_restart(server):
    new = {"id": "live-1", "title": "Can a weighted blanket help with restless legs at night?",
           "answers": [{"body": "Some people find the pressure calming; stretching before bed helps too."}]}
    assert server.call("POST", "/v1/threads", {"threads": [new]})[0] == 401
    assert server.call("POST", "/v1/threads", {"threads": [new]}, key="wrong")[0] == 403
    assert server.call("DELETE", f"/v1/threads/{TARGET}", key="wrong")[0] == 403
    status, written, _ = server.call("POST", "/v1/threads", {"threads": [new]}, key=KEY)
    assert status == 200 and written["threads"] == 1
    status, deleted, _ = server.call("DELETE", f"/v1/threads/{TARGET}", key=KEY)
    assert status == 200 and deleted["seq"] == written["seq"] + 1
    assert server.call("DELETE", f"/v1/threads/{TARGET}", key=KEY)[0] == 404

    def check() -> str | None:
        # the worker that took the writes has them at once; the other applies them in its
        # watcher, well within a second (searches never wait for it), so it is given a while
        written_ids, worker = server.search_ids("weighted blanket for restless legs", k=3)
        paraphrase_ids, same = server.search_ids(PARAPHRASE, k=10)
        if written_ids[:1] != ["live-1"] or TARGET in paraphrase_ids or same != worker:
            time.sleep(0.05)
            return None
        return worker

    server.on_every_worker(check, seconds=10)
    server.stop()
    server.start()
    server.on_every_worker(check, seconds=10)


def test_a_generation_published_under_load_fails_no_request(server, built):
    index_dir, index = built
    stop, errors, done = threading.Event(), [], [0]
    queries = [PARAPHRASE, "my partner and I argue about chores", "I can't sleep because of work stress"]

    def client(n: int) -> None:
        while not stop.is_set():
            try:
                if n % 2:
                    status, body, _ = server.call("GET", "/v1/search", q=queries[done[0] % 3], k=5)
                else:
                    status, body, _ = server.call("GET", "/v1/duplicates", q=queries[done[0] % 3])
                if status != 200:
                    errors.append((status, body))
                done[0] += 1
            except Exception as exc:  # noqa: BLE001 - a failed request is what the test counts
                errors.append(repr(exc))

    clients = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for c in clients:
        c.start()
    try:
        time.sleep(1)
        before = done[0]
        index.upsert([Thread("gen-2", "Does journaling before bed actually reduce nighttime anxiety?")])
        path = index.save(index_dir)  # an operator publishes the next generation
        generation = int(path.name)

        def check() -> str:
            status, ready, worker = server.call("GET", "/readyz")
            assert status == 200
            if ready["generation"] != generation:
                time.sleep(0.1)
                return None
            return worker

        server.on_every_worker(check)
    finally:
        stop.set()
        for c in clients:
            c.join()
    assert errors == []
    assert done[0] > before > 0
    ids, _ = server.search_ids("journaling before bed for nighttime anxiety", k=3)
    assert ids[0] == "gen-2"
    ids, _ = server.search_ids("weighted blanket for restless legs", k=3)
    assert ids[0] == "live-1"  # the live write survived the swap


def test_configure_changes_what_the_service_serves_without_a_restart(server, built):
    index_dir, _ = built
    query = "journaling before bed for nighttime anxiety"
    before = server.call("GET", "/v1/search", q=query, k=1)[1]["hits"][0]
    cli = [sys.executable, "-m", "qa_search.cli"]
    command = [*cli, "configure", str(index_dir), "--set", "lexical_weight=0"]
    proc = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300, check=True)
    out = json.loads(proc.stdout)
    assert out["changed"] == {"lexical_weight": 0.0}

    def check() -> str | None:
        # each call may reach either worker, so the answer itself must show the new settings:
        # the same thread, scored without its lexical part (which was positive)
        status, body, worker = server.call("GET", "/v1/search", q=query, k=1)
        assert status == 200 and body["hits"][0]["thread_id"] == before["thread_id"] == "gen-2"
        if body["hits"][0]["score"] > before["score"] - 0.05:
            time.sleep(0.1)  # this worker has not taken the new generation yet
            return None
        return worker

    server.on_every_worker(check)  # fails after 60 s if a worker never serves the new settings
    assert server.call("GET", "/readyz")[1]["generation"] == out["generation"]
    ids, _ = server.search_ids("weighted blanket for restless legs", k=3)
    assert ids[0] == "live-1"  # the live write survived the new generation


@needs_chromium
def test_demo_page_in_headless_chromium(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = headless_chromium(tmp_path / "profile", window="1000,900", loopback_only=False,
                                logs=("performance",))
    try:
        browser.get(server.base + "/")
        wait = WebDriverWait(browser, 30)
        box = browser.find_element(By.ID, "title")

        def listed(b) -> list[str]:
            items = b.find_elements(By.CSS_SELECTOR, "#results li")
            return [li.get_attribute("data-thread-id") for li in items]

        # a thread whose data tries to run script: its title must show as text, its url not link
        hostile = {"id": "hostile", "title": DEMO_PARAPHRASE + " <img src=x onerror=alert(1)>",
                   "url": "javascript:alert(1)"}
        assert server.call("POST", "/v1/threads", {"threads": [hostile]}, key=KEY)[0] == 200
        box.send_keys(DEMO_PARAPHRASE)  # typed a key at a time: the page debounces
        wait.until(lambda b: DEMO_TARGET in listed(b) and "hostile" in listed(b))
        # each keystroke's search is of the text typed so far: an unknown unfinished word left out
        messages = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
        sent = [json.loads(m["params"]["request"]["postData"]) for m in messages
                if m["method"] == "Network.requestWillBeSent"
                and m["params"]["request"]["url"].endswith("/v1/search")]
        assert sent and all(body["typing"] is True for body in sent)
        assert not browser.find_element(By.ID, "duplicate").is_displayed()
        item = browser.find_element(By.CSS_SELECTOR, '#results li[data-thread-id="hostile"] a')
        assert item.text.endswith("<img src=x onerror=alert(1)>") and not browser.find_elements(
            By.CSS_SELECTOR, "#results img")
        assert item.get_attribute("href").endswith("#hostile")
        assert server.call("DELETE", "/v1/threads/hostile", key=KEY)[0] == 200
        box.clear()
        box.send_keys(DEMO_DUPLICATE)
        wait.until(lambda b: b.find_element(By.ID, "duplicate").is_displayed())
        warning = browser.find_element(By.ID, "duplicate")
        assert warning.get_attribute("data-thread-id") == DEMO_TARGET
        assert "may already have been asked" in warning.text
        browser.save_screenshot(str(tmp_path / "demo.png"))
    finally:
        browser.quit()
