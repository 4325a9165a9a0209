"""The moderators' view: duplicate clusters as JSON (newest first, paginated) and CSV behind the
moderator key, cached until the index changes, and the page in headless Chromium."""

from __future__ import annotations

import csv
import io

import pytest
from browser import headless_chromium, needs_chromium, served
from conftest import FakeEmbedder
from fastapi.testclient import TestClient

from qa_search import ForumIndex, Thread
from service.app import create_app
from service.settings import Settings

KEY = "moderator-key"
API_KEY = "api-key"
THREADS = [
    # two clusters of near-identical questions, one older, one newer, and a thread on its own
    Thread("a1", "How do I stop panic attacks at night", created_at="2025-01-01T00:00:00Z",
           url="https://forum.example.org/t/a1"),
    Thread("a2", "How do I stop panic attacks at night?", created_at="2025-01-03T00:00:00Z"),
    Thread("b1", "=HYPERLINK(\"x\") Is it normal to miss my ex months later",
           created_at="2026-05-01T00:00:00Z"),
    Thread("b2", "Is it normal to miss my ex months later", created_at="2026-05-02T00:00:00Z",
           answers=()),
    Thread("b3", "is it normal to miss my ex months later", created_at="2026-04-01T00:00:00Z"),
    Thread("c1", "Which vitamins help with winter fatigue", created_at="2026-06-01T00:00:00Z"),
]


@pytest.fixture
def index_dir(tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert(THREADS)
    index.save(tmp_path / "index")
    return tmp_path / "index"


def _app(index_dir, **settings):
    return create_app(Settings(index_dir=index_dir, **settings), embedder=FakeEmbedder())


@pytest.fixture
def client(index_dir):
    with TestClient(_app(index_dir, moderator_key=KEY, api_key=API_KEY)) as c:
        yield c


def test_clusters_are_listed_newest_first_with_their_canonical_thread(client):
    body = client.get("/v1/moderation/duplicates", headers={"X-API-Key": KEY}).json()
    assert body["total"] == 2 and body["threads"] == len(THREADS) and body["by"] == "cosine"
    first, second = body["clusters"]
    assert {m["thread_id"] for m in first["threads"]} == {"b1", "b2", "b3"}
    assert first["newest"] == "2026-05-02T00:00:00Z"
    assert {m["thread_id"] for m in second["threads"]} == {"a1", "a2"}
    canonical = first["threads"][0]
    assert canonical["thread_id"] == first["canonical"] and canonical["score"] is None
    assert all(m["score"] >= body["threshold"] for m in first["threads"][1:])
    assert second["threads"][[m["thread_id"] for m in second["threads"]].index("a1")]["url"] \
        == "https://forum.example.org/t/a1"


def test_pages_split_the_clusters(client):
    headers = {"X-API-Key": KEY}
    one = client.get("/v1/moderation/duplicates", params={"per_page": 1}, headers=headers).json()
    two = client.get("/v1/moderation/duplicates", params={"per_page": 1, "page": 2}, headers=headers).json()
    three = client.get("/v1/moderation/duplicates", params={"per_page": 1, "page": 3}, headers=headers).json()
    assert one["total"] == two["total"] == 2 and three["clusters"] == []
    assert one["clusters"][0]["canonical"] != two["clusters"][0]["canonical"]


def test_csv_parses_one_row_per_thread_and_defuses_formulas(client):
    forms = (("/v1/moderation/duplicates.csv", {}), ("/v1/moderation/duplicates", {"format": "csv"}))
    for url, params in forms:
        response = client.get(url, params=params, headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert sorted(r["thread_id"] for r in rows) == ["a1", "a2", "b1", "b2", "b3"]
        assert {r["cluster"] for r in rows} == {"1", "2"}
        b1 = next(r for r in rows if r["thread_id"] == "b1")
        assert b1["title"].startswith("'=HYPERLINK")  # a spreadsheet shows it, never runs it


def test_without_the_moderator_key_nothing_is_listed(client, index_dir):
    assert client.get("/v1/moderation/duplicates").status_code == 401
    assert client.get("/v1/moderation/duplicates.csv").status_code == 401
    assert client.get("/v1/moderation/duplicates", headers={"X-API-Key": "wrong"}).status_code == 403
    # with a moderator key of its own, the API key is not a moderator's
    assert client.get("/v1/moderation/duplicates", headers={"X-API-Key": API_KEY}).status_code == 403
    with TestClient(_app(index_dir, api_key=API_KEY)) as c:
        assert c.get("/v1/moderation/duplicates", headers={"X-API-Key": API_KEY}).status_code == 200
    with TestClient(_app(index_dir)) as c:
        assert c.get("/v1/moderation/duplicates", headers={"X-API-Key": KEY}).status_code == 403


def test_the_clusters_are_cached_until_the_index_changes(client, monkeypatch):
    import service.routes.moderation as moderation

    calls = []
    real = moderation.find_duplicate_clusters
    monkeypatch.setattr(moderation, "find_duplicate_clusters", lambda index: calls.append(1) or real(index))
    headers = {"X-API-Key": KEY}
    for _ in range(3):
        assert client.get("/v1/moderation/duplicates", headers=headers).json()["total"] == 2
    assert len(calls) == 1
    write = client.post("/v1/threads", headers={"X-API-Key": API_KEY},
                        json={"threads": [{"id": "c2", "title": "Which vitamins help with winter fatigue?",
                                           "created_at": "2026-07-01T00:00:00Z"}]})
    assert write.status_code == 200
    body = client.get("/v1/moderation/duplicates", headers=headers).json()
    assert len(calls) == 2 and body["total"] == 3
    assert {m["thread_id"] for m in body["clusters"][0]["threads"]} == {"c1", "c2"}


@needs_chromium
def test_the_page_asks_for_the_key_and_lists_the_clusters(index_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    app = _app(index_dir, moderator_key=KEY)
    with served(app) as base:
        browser = headless_chromium(tmp_path / "profile")
        try:
            browser.get(f"{base}/moderation")
            box = browser.find_element(By.ID, "key")
            box.send_keys("wrong")
            browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            WebDriverWait(browser, 30).until(lambda b: "403" in b.find_element(By.ID, "status").text)
            box.clear()
            box.send_keys(KEY)
            browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            listed = (By.CSS_SELECTOR, "#clusters > li")
            WebDriverWait(browser, 30).until(lambda b: len(b.find_elements(*listed)) == 2)
            clusters = browser.find_elements(*listed)
            rows = [r.get_attribute("data-thread-id")
                    for r in clusters[0].find_elements(By.CSS_SELECTOR, "tr")[1:]]
            assert sorted(rows) == ["b1", "b2", "b3"]
            # a title is shown as text, never as markup
            assert "=HYPERLINK" in clusters[0].text
            assert "2 groups of duplicates among 6 threads" in browser.find_element(By.ID, "summary").text
            assert KEY not in browser.current_url
            # the refused key's 403 and the absent favicon are expected
            errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"
                      and "403" not in e["message"] and "favicon.ico" not in e["message"]]
            assert errors == []
        finally:
            browser.quit()
