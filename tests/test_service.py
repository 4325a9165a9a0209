"""The HTTP service with the fake embedder, in process: every route, auth, bad input, privacy."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FakeEmbedder
from fastapi.testclient import TestClient

from qa_search import Answer, ForumIndex, Thread
from service.app import create_app
from service.logs import DropQueryString
from service.settings import Settings

KEY = "s3cret-key"
THREADS = [
    Thread("t1", "How do I calm down before a panic attack?", url="https://f/t1", tags=("anxiety",),
           answers=(Answer("t1-a1", "Slow breathing helps: in for four, out for six."),)),
    Thread("t2", "Is it normal to miss my ex months later?", tags=("relationships",)),
]


@pytest.fixture
def index_dir(tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert(THREADS)
    index.save(tmp_path / "index")
    return tmp_path / "index"


def _client(index_dir, **settings):
    app = create_app(Settings(index_dir=index_dir, max_k=5, **settings), embedder=FakeEmbedder())
    return TestClient(app)


@pytest.fixture
def client(index_dir):
    with _client(index_dir, api_key=KEY) as c:
        yield c


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "generation": 1, "threads": 2}


def test_search_returns_hits_like_the_library(client):
    body = client.get("/v1/search", params={"q": "slow breathing in for four", "k": 2}).json()
    assert [h["thread_id"] for h in body["hits"]] == ["t1", "t2"]
    first = body["hits"][0]
    assert first["matched"] == "answer" and first["answer_id"] == "t1-a1"
    fields = {"thread_id", "score", "title", "matched", "answer_id", "snippet", "url", "relevance",
              "answered"}
    assert set(first) == fields and first["relevance"] is None  # the fake model has no relevance model
    assert first["answered"] is True
    filtered = client.get("/v1/search", params=[("q", "slow breathing"), ("tags", "relationships")]).json()
    assert [h["thread_id"] for h in filtered["hits"]] == ["t2"]
    # empty filter values, as a form sends its blank fields, filter nothing
    blank = client.get("/v1/search", params=[("q", "slow breathing"), ("tags", ""), ("category", "")]).json()
    assert blank == client.get("/v1/search", params={"q": "slow breathing"}).json() and blank["hits"]
    some = client.get("/v1/search", params=[("q", "slow breathing"), ("tags", ""), ("tags", "anxiety")])
    some = some.json()
    assert [h["thread_id"] for h in some["hits"]] == ["t1"]


def test_short_queries_return_nothing_without_the_model_and_repeats_hit_the_cache(client):
    cache = client.app.state.live.cache
    assert client.get("/v1/search", params={"q": " ab "}).json() == {"hits": [], "next_offset": None}
    assert cache.misses == 0
    for _ in range(3):
        client.get("/v1/search", params={"q": "miss my ex"})
    assert (cache.hits, cache.misses) == (2, 1)
    metrics = client.get("/metrics").text
    # the cache's counters go only to a scrape with QA_SEARCH_METRICS_KEY (test_attacker_review)
    assert "qa_search_query_cache" not in metrics
    count = 'qa_search_request_duration_seconds_count{method="GET",route="/v1/search",status="200"}'
    assert f"{count} 4.0" in metrics
    assert "qa_search_index_generation 1.0" in metrics and "qa_search_index_threads 2.0" in metrics


def test_duplicates_get_and_post(client):
    got = client.get("/v1/duplicates", params={"q": "Is it normal to miss my ex months later?"}).json()
    assert got["duplicates"][0]["thread_id"] == "t2"
    assert set(got["duplicates"][0]) == {"thread_id", "score", "title", "url", "probability", "tier"}
    posted = client.post("/v1/duplicates", json={"title": "How do I calm down before a panic attack?"}).json()
    assert [d["thread_id"] for d in posted["duplicates"]] == ["t1"]
    assert client.get("/v1/duplicates", params={"q": "unrelated words entirely"}).json() == {
        "duplicates": [], "scorer": "cosine"
    }
    # a detailed draft is read up to QA_SEARCH_MAX_QUERY_CHARS (2000) characters, not refused
    title = "How do I calm down before a panic attack?"
    body = "calm down before a panic attack " * 100
    long = client.post("/v1/duplicates", json={"title": title, "body": body})
    read = client.post("/v1/duplicates", json={"title": title, "body": body[: 2000 - len(title) - 1]})
    assert long.status_code == 200 and long.json() == read.json()
    assert [d["thread_id"] for d in long.json()["duplicates"]] == ["t1"]
    too_long = client.post("/v1/duplicates", json={"title": "t" * 2001})
    assert too_long.status_code == 422 and "title must be at most 2000 characters" in too_long.text


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"q": "xyz", "k": 6}, 422, "k must be at most 5"),
        ({"q": "xyz", "k": 0}, 422, "greater than or equal to 1"),
        ({"q": "xyz", "k": "many"}, 422, "valid integer"),
        ({}, 422, "Field required"),
        ({"q": "x" * 2001}, 422, "at most 2000 characters"),
    ],
)
def test_bad_search_requests_get_a_4xx_with_a_message(client, params, status, message):
    resp = client.get("/v1/search", params=params)
    assert resp.status_code == status
    assert message in resp.text


def test_invalid_utf8_and_oversize_bodies_get_a_4xx(client):
    resp = client.get("/v1/search?q=%ff%fe")
    assert resp.status_code == 400 and "not valid UTF-8" in resp.json()["detail"]
    big = {"threads": [{"id": "x", "title": "y" * 1_100_000}]}
    resp = client.post("/v1/threads", json=big, headers={"X-API-Key": KEY})
    assert resp.status_code == 413 and "over 1000000 bytes" in resp.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced on the stream itself
        for _ in range(12):
            yield b"x" * 100_000

    resp = client.post("/v1/threads", content=chunks(), headers={"X-API-Key": KEY})
    assert resp.status_code == 413
    resp = client.post("/v1/threads", content=b"{not json", headers={"X-API-Key": KEY,
                                                                        "Content-Type": "application/json"})
    assert resp.status_code == 422 and "JSON" in resp.text


def test_writes_need_the_key(client, index_dir):
    thread = {"id": "t3", "title": "Why do I wake up at 4am worrying about work?"}
    assert client.post("/v1/threads", json={"threads": [thread]}).status_code == 401
    wrong = client.post("/v1/threads", json={"threads": [thread]}, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 403 and wrong.json() == {"detail": "wrong API key"}
    assert client.delete("/v1/threads/t1", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get("/readyz").json()["threads"] == 2
    with _client(index_dir) as keyless:  # no key configured: writes are refused, not open
        resp = keyless.post("/v1/threads", json={"threads": [thread]}, headers={"X-API-Key": ""})
        assert resp.status_code == 403 and "QA_SEARCH_API_KEY" in resp.json()["detail"]


def test_upsert_and_delete_with_the_key(client):
    thread = {"id": "t3", "title": "Why do I wake up at 4am worrying about work?",
              "answers": [{"body": "Keep a notebook by the bed and write the worry down."}]}
    resp = client.post("/v1/threads", json={"threads": [thread]}, headers={"X-API-Key": KEY})
    assert resp.status_code == 200 and resp.json()["threads"] == 1 and resp.json()["seq"] == 1
    hits = client.get("/v1/search", params={"q": "wake up at 4am worrying"}).json()["hits"]
    assert hits[0]["thread_id"] == "t3"

    resp = client.delete("/v1/threads/t1", headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code == 200 and resp.json()["seq"] == 2
    hits = client.get("/v1/search", params={"q": "calm down before a panic attack"}).json()["hits"]
    assert "t1" not in [h["thread_id"] for h in hits]
    resp = client.delete("/v1/threads/t1", headers={"X-API-Key": KEY})
    assert resp.status_code == 404 and "no thread with id 't1'" in resp.json()["detail"]

    answers = [{"id": "a", "body": "b"}, {"id": "a", "body": "c"}]
    bad = {"threads": [{"id": "t4", "title": "x", "answers": answers}]}
    resp = client.post("/v1/threads", json=bad, headers={"X-API-Key": KEY})
    assert resp.status_code == 422 and "threads[0]" in resp.json()["detail"] and "repeated" in resp.text


def test_query_text_is_not_logged_even_on_errors(client, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    client.get("/v1/search", params={"q": "my very private worry"})
    client.get("/v1/search", params={"q": "my very private worry", "k": "x"})
    client.get("/v1/search?q=private%ff")

    def broken(text, **kwargs):
        raise RuntimeError(f"cannot search for {text!r}")

    monkeypatch.setattr(client.app.state.live.index, "search", broken)
    resp = client.get("/v1/search", params={"q": "my very private worry"})
    assert resp.status_code == 500 and "private" not in resp.text
    assert resp.headers["x-qa-search-worker"]  # the guard's own 500 says which worker, too
    server_side = [r for r in caplog.records if not r.name.startswith("httpx")]  # the test's client logs URLs
    assert any("RuntimeError" in r.getMessage() for r in server_side)
    assert not any("private" in r.getMessage() for r in server_side)


def test_access_log_lines_drop_the_query_string():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/v1/search?q=my+secret", "1.1", 200), None)
    assert DropQueryString().filter(record)
    assert "secret" not in record.getMessage() and "/v1/search" in record.getMessage()
    # the line uvicorn's WebSocket protocols log for an upgrade (on uvicorn.error)
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" 403',
                               ("127.0.0.1:5", "/v1/search?q=my+secret"), None)
    assert DropQueryString().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "WebSocket /v1/search" 403'
    # other error-log lines pass untouched
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started server process [%d]",
                               (42,), None)
    assert DropQueryString().filter(record) and record.getMessage() == "Started server process [42]"


def test_demo_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="title"' in page.text and "/static/app.js" in page.text
    head = client.head("/")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-security-policy"] == page.headers["content-security-policy"]
    script = client.get("/static/app.js").text
    assert "debounce" in script.lower() and "matched an answer" in script


def test_cors_allow_list(index_dir):
    with _client(index_dir, cors_origins=["https://forum.example.org"]) as c:
        ok = c.get("/v1/search", params={"q": "panic"}, headers={"Origin": "https://forum.example.org"})
        assert ok.headers["access-control-allow-origin"] == "https://forum.example.org"
        other = c.get("/v1/search", params={"q": "panic"}, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        # the guard's own answers (not UTF-8: 400; too big: 413) are readable by the forum's page
        bad = c.get("/v1/search?q=%ff", headers={"Origin": "https://forum.example.org"})
        assert bad.status_code == 400
        assert bad.headers["access-control-allow-origin"] == "https://forum.example.org"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/duplicates", '{"title": "panic attack", "k": NaN}'),
        ("/v1/duplicates", '{"title": "panic attack", "k": 1e400}'),
        ("/v1/duplicates", '{"title": "panic attack", "k": -Infinity}'),
        ("/v1/duplicates", '{"title": "panic attack \\ud83d"}'),  # half an emoji, cut by a client
        ("/v1/duplicates", '{"title": "panic attack", "body": "\\udfff"}'),
        ("/v1/threads", '{"threads": [{"id": "t9", "title": "x", "score": 1e999}]}'),
        ("/v1/threads", '{"threads": [{"id": "t9", "title": "x \\ud83d"}]}'),
        ("/v1/threads", '{"threads": [{"id": "t9", "title": "x", "score": true}]}'),
        ("/v1/threads", '{"threads": [{"id": "t9", "title": "x", "answers": [{"body": "b", "accepted": 1}]}]}'
         ),
    ],
)
def test_json_that_cannot_be_echoed_back_gets_a_422_not_a_500(client, path, body):
    resp = client.post(path, content=body, headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"]
    assert client.get("/readyz").json()["threads"] == 2  # nothing was written


def test_threads_are_taken_in_the_dump_format_and_any_id_can_be_deleted(client):
    headers = {"X-API-Key": KEY}
    threads = [
        {"id": 4242, "title": "An integer id, as dumps allow", "views": 17,
         "answers": [{"body": "An answer with a field of its own.", "editor": "x"}]},
        {"id": "forum/7", "title": "An id with a slash"},
        {"id": "  padded  ", "title": "An id with spaces around it"},
        {"id": "L" * 300, "title": "A very long id"},
    ]
    resp = client.post("/v1/threads", json={"threads": threads}, headers=headers)
    assert resp.status_code == 200 and resp.json()["threads"] == 4 and resp.json()["generation"] == 1
    live = client.app.state.live
    assert live.index.get("4242").extra == {"views": 17}  # other fields are kept, as a dump's
    for path in ("4242", "forum%2F7", "forum/7", "%20padded%20", "L" * 300):
        resp = client.delete(f"/v1/threads/{path}", headers=headers)
        if path == "forum/7":  # already deleted through its encoded form
            assert resp.status_code == 404 and "forum/7" in resp.json()["detail"]
        else:
            assert resp.status_code == 200, (path, resp.text)
    assert client.get("/readyz").json()["threads"] == 2


def test_filter_values_are_trimmed_and_probes_answer_head(client):
    plain = client.get("/v1/search", params={"q": "slow breathing"}).json()
    blank = client.get("/v1/search", params={"q": "slow breathing", "tags": " ", "category": " "}).json()
    assert blank == plain and plain["hits"]
    padded = client.get("/v1/search", params={"q": "slow breathing", "tags": " anxiety "}).json()
    assert [h["thread_id"] for h in padded["hits"]] == ["t1"]
    assert client.head("/healthz").status_code == 200 and client.head("/readyz").status_code == 200


def test_a_damaged_write_log_suspends_writes_with_a_503_but_searches_go_on(client, index_dir):
    with open(index_dir / "writes.jsonl", "ab") as fh:
        fh.write(b'{"seq": 1, "op": "upsert", "threads": [{"id": "x"}]}\n')
    assert client.get("/v1/search", params={"q": "slow breathing"}).status_code == 200
    thread = {"id": "t3", "title": "Why do I wake up at 4am?"}
    resp = client.post("/v1/threads", json={"threads": [thread]}, headers={"X-API-Key": KEY})
    assert resp.status_code == 503 and "writes are suspended" in resp.json()["detail"]
    assert "damaged entry" in resp.json()["detail"]
    assert client.delete("/v1/threads/t1", headers={"X-API-Key": KEY}).status_code == 503


def test_a_served_snapshot_refuses_writes_with_a_409(index_dir):
    with _client(index_dir / "generations" / "000001", api_key=KEY) as c:
        thread = {"id": "t3", "title": "Why do I wake up at 4am?"}
        resp = c.post("/v1/threads", json={"threads": [thread]}, headers={"X-API-Key": KEY})
        assert resp.status_code == 409 and "read-only" in resp.json()["detail"]
        assert c.delete("/v1/threads/t1", headers={"X-API-Key": KEY}).status_code == 409
        assert c.get("/v1/search", params={"q": "panic attack"}).status_code == 200


def test_search_by_post_keeps_the_text_out_of_the_url_and_answers_as_get(client):
    params = {"q": "slow breathing in for four", "k": 2, "tags": ["anxiety"]}
    posted = client.post("/v1/search", json=params)
    assert posted.status_code == 200
    assert posted.json() == client.get("/v1/search", params=params).json() and posted.json()["hits"]
    assert client.post("/v1/search", json={"q": "  "}).json() == {"hits": [], "next_offset": None}
    assert client.post("/v1/search", json={"q": "panic", "k": 6}).status_code == 422  # max_k is 5
    assert client.post("/v1/search", json={"q": "panic", "sort": "new"}).status_code == 422
    page = client.get("/")
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_metrics_labels_stay_bounded_and_a_vanished_client_is_not_a_500(client):
    import asyncio

    resp = client.request("BREW", "/healthz")
    assert resp.status_code == 405
    app = client.app

    async def gone():
        scope = {"type": "http", "method": "POST", "path": "/v1/threads", "raw_path": b"/v1/threads",
                 "query_string": b"", "root_path": "",
                 # with the key: a keyless write is refused before its body is read
                 "headers": [(b"content-length", b"1000"), (b"x-api-key", KEY.encode())],
                 "scheme": "http", "server": ("testserver", 80), "client": ("testclient", 1),
                 "http_version": "1.1", "asgi": {"version": "3.0"}}
        messages = iter([{"type": "http.request", "body": b"0123456789", "more_body": True},
                         {"type": "http.disconnect"}])

        async def receive():
            return next(messages)

        sent = []

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        return sent

    assert asyncio.run(gone()) == []  # nothing answered to a client that left
    metrics = client.get("/metrics").text
    assert 'method="BREW"' not in metrics and 'method="other"' in metrics
    assert 'status="499"' in metrics and 'route="unmatched",status="500"' not in metrics


def test_extra_fields_every_reader_can_parse_back(client):
    nested: list = [0]
    for _ in range(40):
        nested = [nested]
    deep = {"id": "deep", "title": "deep nesting", "x": nested}
    resp = client.post("/v1/threads", json={"threads": [deep]}, headers={"X-API-Key": KEY})
    assert resp.status_code == 422 and "nest deeper than 32 levels" in resp.text
    resp = client.post("/v1/threads", content='{"threads": [{"id": "n", "title": "t", "x": NaN}]}',
                       headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    assert resp.status_code == 422 and "Out of range float values are not JSON compliant" in resp.text


def test_bad_settings_are_one_line_naming_the_variable_before_any_worker_starts(index_dir, monkeypatch):
    from click.testing import CliRunner
    from pydantic import ValidationError

    from qa_search.cli import main
    from service.settings import describe_errors

    for env, message in [
        ({"QA_SEARCH_MAX_K": "abc"}, "QA_SEARCH_MAX_K: Input should be a valid integer"),
        ({"QA_SEARCH_CORS_ORIGINS": "https://a.org/"}, "QA_SEARCH_CORS_ORIGINS: Value error, 'https://a.org/'"),
        ({"QA_SEARCH_CORS_ORIGINS": "https://a.org https://b.org"}, "is not an origin"),
        ({"QA_SEARCH_POLL_SECONDS": "inf"}, "QA_SEARCH_POLL_SECONDS"),
        ({"QA_SEARCH_MIN_QUERY_CHARS": "5000"}, "every query would find nothing"),
    ]:
        r = CliRunner().invoke(main, ["serve", str(index_dir), "--workers", "2"], env=env)
        assert r.exit_code == 1 and message in r.stderr and "Traceback" not in r.output, env
    assert Settings(index_dir=index_dir, api_key="  ").api_key is None  # blank: writes disabled
    with pytest.raises(ValidationError) as err:
        Settings(index_dir="")
    assert describe_errors(err.value).startswith("QA_SEARCH_INDEX_DIR:")
    origins = "https://a.org, http://b.org:8080, http://[::1]:8080, HTTPS://C.org, *"
    assert Settings(index_dir=index_dir, cors_origins=origins).cors_origins == [
        "https://a.org", "http://b.org:8080", "http://[::1]:8080", "https://c.org", "*"]


def test_the_encoder_keeps_to_qa_search_threads(index_dir, monkeypatch):
    import qa_search.index.persistence as index_module

    calls = []

    def recorded(record, *, threads=None):
        calls.append((record["name"], threads))
        return FakeEmbedder()

    monkeypatch.setattr(index_module, "load_recorded_embedder", recorded)
    with TestClient(create_app(Settings(index_dir=index_dir, threads=1))) as c:
        assert c.get("/readyz").status_code == 200
    assert calls == [("fake-bow", 1)]


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_exits_1_with_the_reason_when_a_worker_cannot_start(tmp_path, workers):
    index = ForumIndex(FakeEmbedder())
    index.upsert(THREADS)
    index.save(tmp_path / "index")
    # damaged after the build: serve's own checks pass, each worker's load refuses it
    with open(tmp_path / "index" / "generations" / "000001" / "questions.faiss", "ab") as fh:
        fh.write(b"x")
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_SEARCH_")}
    env["TMPDIR"] = str(tmp_path / "tmp")  # where serve keeps the workers' startup errors
    (tmp_path / "tmp").mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "qa_search.cli", "serve", str(tmp_path / "index"), "--port", "0",
         "--workers", str(workers)],
        cwd=repo, env=env, capture_output=True, text=True, timeout=300,
    )
    # uvicorn alone exits 3 for one worker and 0 when one of several fails to start
    assert r.returncode == 1, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: the service stopped: a worker could not start: snapshot ")
    assert "failed verification: questions.faiss has" in last
    assert list((tmp_path / "tmp").iterdir()) == []  # and it cleans up after itself


def test_serve_says_at_once_when_the_indexs_local_model_is_gone(tmp_path):
    from click.testing import CliRunner

    from qa_search.cli import main

    index = ForumIndex(FakeEmbedder(name="/no/such/tuned-model"))
    index.upsert(THREADS)
    index.save(tmp_path / "index")
    r = CliRunner().invoke(main, ["serve", str(tmp_path / "index"), "--workers", "2"])
    assert r.exit_code == 1 and "/no/such/tuned-model, which is not there any more" in r.stderr


def test_an_answer_id_given_as_null_gets_the_default(client):
    thread = {"id": "t9", "title": "A thread with an answer", "answers": [{"id": None, "body": "An answer."}]}
    resp = client.post("/v1/threads", json={"threads": [thread]}, headers={"X-API-Key": KEY})
    assert resp.status_code == 200, resp.text
    assert client.app.state.live.index.get("t9").answers[0].id == "t9#1"


def test_one_of_many_concurrent_deletes_of_a_thread_succeeds(client, index_dir):
    import threading

    from qa_search import LiveIndex, UnknownThreadError

    statuses, start = [], threading.Barrier(6)

    def delete() -> None:
        start.wait()
        statuses.append(client.delete("/v1/threads/t1", headers={"X-API-Key": KEY}).status_code)

    workers = [threading.Thread(target=delete) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(statuses) == [200] + [404] * 5
    # another process (a second worker) that has not read the log yet is told too, and logs nothing
    other = LiveIndex(index_dir, FakeEmbedder())
    size = (index_dir / "writes.jsonl").stat().st_size
    with pytest.raises(UnknownThreadError, match="'t1'"):
        other.delete(" t1 ", missing_ok=False)
    assert (index_dir / "writes.jsonl").stat().st_size == size
    assert other.delete("t2", missing_ok=False).ids == ("t2",)
    assert client.delete("/v1/threads/t2", headers={"X-API-Key": KEY}).status_code == 404


def test_posted_duplicates_take_a_threshold_as_get_does(client):
    question = "Is it normal to miss my ex months later?"
    for threshold, found in ((0.99, ["t2"]), (1.0, ["t2"]), (-1, ["t2", "t1"])):
        got = client.get("/v1/duplicates", params={"q": question, "threshold": threshold}).json()
        posted = client.post("/v1/duplicates", json={"title": question, "threshold": threshold}).json()
        assert posted == got and [d["thread_id"] for d in got["duplicates"]] == found, threshold
    for bad in (1.5, -2, "high"):
        assert client.post("/v1/duplicates", json={"title": question, "threshold": bad}).status_code == 422


def test_the_docs_load_nothing_from_elsewhere(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "/static-docs/swagger-ui-bundle.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static-docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static-docs/swagger-ui.css").status_code == 200
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert client.get("/redoc").status_code == 404
    assert "/docs" not in client.get("/openapi.json").json()["paths"]


def test_a_get_search_with_too_many_tags_is_refused_without_echoing_them(client):
    params = [("q", "panic attacks"), *[("tags", f"secret-tag-{i}") for i in range(101)]]
    r = client.get("/v1/search", params=params)
    assert r.status_code == 422
    assert "secret-tag" not in r.text
    assert client.get("/v1/search", params=params[:101]).status_code == 200  # 100 tags
