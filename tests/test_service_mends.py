"""Four edges of the HTTP service: a JSON body declared as something else (415, saying which
header to send), a 413 whose advice fits its route, read routes' smaller body limit (enforced
before the body is read in full, yet fitting their largest valid request), and a path with a
trailing slash (a 404, never a redirect built from the Host header)."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import FakeEmbedder
from fastapi.testclient import TestClient

from qa_search import ForumIndex, Thread
from service.app import create_app
from service.guard import RequestGuard
from service.metrics import Metrics
from service.schemas import DraftQuestion, SearchRequest, largest_read_requests, read_body_limit
from service.settings import Settings

KEY = "mends-key"
SECRET = "i keep thinking about ending it"
THREADS = [Thread("t1", "how to sleep better at night", tags=("sleep",)),
           Thread("t2", "panic attack before exams", tags=("anxiety",))]
#: A JSON body for each route that takes one, each holding SECRET.
BODIES = {
    "/v1/search": {"q": SECRET},
    "/v1/duplicates": {"title": SECRET},
    "/v1/threads": {"threads": [{"id": "t3", "title": SECRET}]},
}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("mends") / "index"
    index = ForumIndex(FakeEmbedder())
    index.upsert(THREADS)
    index.save(path)
    return path


@pytest.fixture
def client(index_dir):
    app = create_app(Settings(index_dir=index_dir, api_key=KEY, read_rate="0", write_rate="0"),
                     embedder=FakeEmbedder())
    with TestClient(app) as c:
        yield c


# -- a JSON body declared as something else -------------------------------------------------


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize("declared", [None, "application/x-www-form-urlencoded", "text/plain",
                                      "multipart/form-data; boundary=x", "text/json"])
def test_a_json_body_declared_as_another_type_is_a_415_naming_the_header_to_send(client, path, declared):
    # curl -d '{"text": ...}' sends the JSON as a form: the 422 said "Input should be a valid
    # dictionary" with an empty field, which does not tell the caller to fix the header
    headers = {"X-API-Key": KEY} | ({"Content-Type": declared} if declared else {})
    r = client.post(path, content=json.dumps(BODIES[path]), headers=headers)
    assert r.status_code == 415, r.text
    assert "Content-Type: application/json" in r.json()["detail"]
    assert r.headers["accept-post"] == "application/json"
    assert SECRET not in r.text
    assert client.get("/readyz").json()["threads"] == 2  # nothing was written


@pytest.mark.parametrize("declared", ["application/json", "Application/JSON; charset=utf-8",
                                      "application/merge-patch+json"])
def test_a_body_the_app_reads_as_json_is_still_answered(client, declared):
    for path, body in BODIES.items():
        r = client.post(path, content=json.dumps(body), headers={"Content-Type": declared, "X-API-Key": KEY})
        assert r.status_code == 200, (path, r.text)


def test_the_415_is_documented_on_the_json_routes_only(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in BODIES:
        assert "415" in paths[path]["post"]["responses"], path
    assert "415" not in paths["/v1/search"]["get"]["responses"]


# -- a 413 that fits its route --------------------------------------------------------------


def test_an_oversized_read_is_told_to_send_shorter_text_and_a_write_fewer_threads(client):
    search = client.post("/v1/search", json={"q": "x" * 1_100_000})
    assert search.status_code == 413
    assert "shorter query" in search.json()["detail"] and "thread" not in search.json()["detail"]
    draft = client.post("/v1/duplicates", json={"title": "x", "body": "x" * 1_100_000})
    assert draft.status_code == 413
    assert "shorter draft" in draft.json()["detail"] and "thread" not in draft.json()["detail"]
    write = client.post("/v1/threads", json={"threads": [{"id": "x", "title": "y" * 1_100_000}]},
                        headers={"X-API-Key": KEY})
    assert write.status_code == 413 and "fewer or shorter threads" in write.json()["detail"]


# -- read routes' body limit ----------------------------------------------------------------


def _valid(request: dict) -> dict:
    # the widest characters where the route takes any text; dates are ISO 8601, and so ASCII
    dates = {"created_after": "2020-01-01T00:00:00.000000+00:00", "created_before": "2030-01-01"}
    return {**request, **{k: v for k, v in dates.items() if k in request}}


def test_the_read_limit_fits_the_largest_valid_read_requests_and_a_2000_emoji_query():
    settings = Settings()
    limit = read_body_limit(settings.max_query_chars, settings.max_k)
    assert limit < settings.max_body_bytes / 2
    for body in largest_read_requests(settings.max_query_chars, settings.max_k).values():
        assert len(json.dumps(body)) < limit
        assert len(json.dumps(body, indent=2)) < limit  # pretty-printed too
    assert len(json.dumps({"q": "\U0001f622" * 2000, "k": 50, "highlight": True})) < limit / 10


def test_the_largest_valid_read_requests_are_answered(client):
    settings = client.app.state.settings
    largest = largest_read_requests(settings.max_query_chars, settings.max_k)
    # every field the models take, at its bound
    assert set(largest["/v1/search"]) == set(SearchRequest.model_fields)
    assert set(largest["/v1/duplicates"]) == set(DraftQuestion.model_fields)
    for path, body in largest.items():
        r = client.post(path, json=_valid(body))
        assert r.status_code == 200, (path, r.text[:300])
    emoji = client.post("/v1/search", json={"q": "\U0001f622" * 2000})
    assert emoji.status_code == 200


def test_a_read_body_over_the_read_limit_is_a_413_while_a_write_that_size_is_stored(client):
    settings = client.app.state.settings
    limit = read_body_limit(settings.max_query_chars, settings.max_k)
    tag = "t" * (limit + 1000)  # over the read limit, well under QA_SEARCH_MAX_BODY_BYTES
    r = client.post("/v1/search", json={"q": "sleep", "tags": [tag]})
    assert r.status_code == 413 and f"over {limit} bytes" in r.json()["detail"]
    r = client.post("/v1/duplicates", json={"title": "sleep", "body": tag})
    assert r.status_code == 413
    r = client.post("/healthz", content=b"x" * (limit + 1))  # a route that takes no body
    assert r.status_code == 413
    words = "word " * 30_000  # 150,000 characters, under a thread's bound
    threads = [{"id": f"big{n}", "title": "a long story", "body": words} for n in range(limit // 150_000 + 1)]
    assert len(json.dumps({"threads": threads})) > limit
    r = client.post("/v1/threads", json={"threads": threads}, headers={"X-API-Key": KEY})
    assert r.status_code == 200, r.text[:300]


def _guard(index_dir) -> RequestGuard:
    async def app(scope, receive, send):
        raise AssertionError("the app was reached")

    return RequestGuard(app, Settings(index_dir=index_dir), Metrics())


def _run(guard: RequestGuard, path: str, chunks, headers=()) -> tuple[int, int]:
    """(status, body bytes the guard took) for a POST to ``path`` whose body comes as ``chunks``."""
    taken, sent = 0, []

    async def receive():
        nonlocal taken
        chunk = next(chunks)
        taken += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "client": ("10.0.0.1", 1),
             "headers": [(b"content-type", b"application/json"), *headers]}
    asyncio.run(guard(scope, receive, send))
    return sent[0]["status"], taken


def test_an_unfinished_read_body_is_refused_once_past_the_read_limit_not_the_write_limit(index_dir):
    guard = _guard(index_dir)

    def endless():  # a body that never ends, 64 KB at a time, with no declared length
        while True:
            yield b"x" * 65536

    for path in ("/v1/search", "/v1/duplicates"):
        status, taken = _run(guard, path, endless())
        assert status == 413
        assert taken <= guard.read_limit + 65536 < guard.settings.max_body_bytes
    # declared over the limit: refused on its headers, before a byte of it is read
    declared = [(b"content-length", b"%d" % (guard.read_limit + 1))]
    status, taken = _run(guard, "/v1/search", endless(), declared)
    assert (status, taken) == (413, 0)


# -- a trailing slash -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_host_header(client, method):
    # the redirect's Location was built from the Host header, the query's text included: a
    # cache or proxy in front could be made to send users elsewhere, and the text lands in logs
    r = client.request(method, "/v1/search/", params={"q": SECRET}, json={"q": SECRET},
                       headers={"Host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 404
    assert "location" not in r.headers and SECRET not in r.text and "evil.example" not in r.text
    assert client.get("/v1/search", params={"q": "sleep"}).status_code == 200
