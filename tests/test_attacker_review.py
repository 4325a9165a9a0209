"""The service as an attacker sees it, beyond what test_abuse, test_visibility and test_tokens
already try: what a caller without the right token, key or group can learn from responses
other than the hits (error bodies, metrics, scores), and limits an attacker could step around
(headers that arrive in one read, a rate per IPv6 address), some against a real uvicorn."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import FakeEmbedder
from fastapi.testclient import TestClient
from test_abuse import Server

from qa_search import ForumIndex, Thread
from service.app import create_app
from service.settings import Settings

METRICS_KEY = "metrics-key-for-the-scraper-only"
PUBLIC = [
    Thread("p0", "how to sleep better at night"),
    Thread("p1", "panic attack before exams"),
    Thread("p2", "missing my ex after months"),
    Thread("p3", "sleep problems and quentin"),
]
#: A thread only the "mods" group may see, holding words no public thread holds.
HIDDEN = Thread("h1", "zorblax quentin overdose plan", visible_to=("mods",))


def _index(path: Path, threads: list[Thread]) -> Path:
    index = ForumIndex(FakeEmbedder())
    index.upsert(threads)
    index.save(path)
    return path


def _client(index_dir, **settings) -> TestClient:
    app = create_app(Settings(index_dir=index_dir, read_rate="0", **settings), embedder=FakeEmbedder())
    return TestClient(app)


@pytest.fixture(scope="module")
def forum(tmp_path_factory):
    return _index(tmp_path_factory.mktemp("attacker") / "index", [*PUBLIC, HIDDEN])


# -- 4xx bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/search", {"q": "sleep"}),
    ("/v1/duplicates", {"title": "sleep"}),
])
def test_an_unknown_json_field_is_refused_without_repeating_its_name(forum, path, body):
    # a client that puts the user's text in a key (``{[text]: 1}``) must not get it back, nor
    # leave it in whatever logs the error responses
    secret = "i cannot stop thinking about hurting myself"
    with _client(forum) as client:
        r = client.post(path, json={**body, secret: 1})
        assert r.status_code == 422
        assert secret not in r.text
        [problem] = r.json()["detail"]
        assert problem["type"] == "extra_forbidden" and problem["loc"] == ["body"]
        assert "unknown field" in problem["msg"]


@pytest.mark.parametrize("body", [
    {"q": "sleep", "category": ["anxiety"] * 60},
    {"q": "sleep", "category": 5},
    {"q": "sleep", "category": ["x" * 300]},
])
def test_a_field_of_two_types_is_named_as_the_client_wrote_it_not_by_the_validators_inside(forum, body):
    # pydantic names each member of a union in the error's place, memory addresses included
    with _client(forum) as client:
        r = client.post("/v1/search", json=body)
    assert r.status_code == 422
    assert "0x" not in r.text and "function" not in r.text
    assert {p["field"] for p in r.json()["detail"]} <= {"category", "category[0]"}


def test_an_unknown_field_in_a_signed_webhook_is_not_repeated(forum):
    secret = "the name of my abuser"
    body = json.dumps({"event": "delete", "ids": ["p0"], secret: True}).encode()
    signature = "sha256=" + hmac.new(b"w" * 32, body, hashlib.sha256).hexdigest()
    with _client(forum, webhook_secret="w" * 32) as client:
        r = client.post("/v1/webhooks/generic", content=body,
                        headers={"X-QA-Signature": signature, "Content-Type": "application/json"})
        assert r.status_code == 422 and secret not in r.text
        assert [p["loc"] for p in r.json()["detail"]] == [["body"]]


# -- headers, against a real uvicorn ------------------------------------------------------------


def _exchange(port: int, *parts: bytes) -> bytes:
    """What the server answers to ``parts``, each sent on its own, until it closes or pauses."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for part in parts:
            try:
                sock.sendall(part)
            except OSError:  # closed on us mid-send: the answer is already there
                break
        sock.settimeout(1.0)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return data


def test_a_request_whose_headers_pass_64_kb_is_refused_however_they_arrive(forum, tmp_path):
    # h11 bounds only headers still arriving; ones that arrive in one read went through whole

    head = b"GET /v1/search?q=sleep HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-QA-Token: "
    server = Server(forum, tmp_path / "server.log")
    try:
        for parts in ((head + b"a" * 100_000 + b"\r\n\r\n",),  # at once
                      (head + b"a" * 40_000, b"a" * 40_000 + b"\r\n\r\n")):  # in two reads
            answer = _exchange(server.port, *parts)
            assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
            assert b"a" * 20 not in answer
        # under the limit, also in two reads, and a body arriving with its headers, are answered
        assert _exchange(server.port, head + b"a" * 30_000, b"\r\n\r\n").startswith(b"HTTP/1.1 401 ")
        emoji = quote("\U0001f622" * 2000).encode()  # the longest query, 4 bytes a character
        assert _exchange(server.port, b"GET /v1/search?q=" + emoji + b" HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        body = b'{"q": "sleep", "tags": ["' + b"t" * 400_000 + b'"]}'
        post = (b"POST /v1/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        assert _exchange(server.port, post).startswith(b"HTTP/1.1 422 ")
        kept = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"  # pipelined on one connection
        answer = _exchange(server.port, kept * 50 + head + b"a" * 100_000 + b"\r\n\r\n")
        assert answer.count(b"HTTP/1.1 200 ") == 50
        assert answer.rindex(b"HTTP/1.1 400 ") > answer.rindex(b"HTTP/1.1 200 ")
    finally:
        server.stop()
    assert b"aaaa" not in (tmp_path / "server.log").read_bytes()


def test_an_ipv6_client_cannot_take_a_new_rate_for_each_address_of_its_network(forum, tmp_path):
    # a subscriber is given a whole /64: counted per address, one client would have 2**64 rates
    server = Server(forum, tmp_path / "server.log", QA_SEARCH_TRUSTED_PROXIES="127.0.0.1",
                    QA_SEARCH_READ_RATE="3/minute")
    try:
        def status(client: str) -> int:
            return server.call("GET", "/v1/search?q=sleep", client=client)[0]

        assert [status(f"2001:db8:0:7::{n:x}") for n in range(1, 6)] == [200] * 3 + [429] * 2
        assert status("2001:db8:0:8::1") == 200  # another subscriber
        # IPv4 clients are still counted one address each, also written as IPv6
        assert [status(f"192.0.2.{n}") for n in range(1, 5)] == [200] * 4
        assert [status("::ffff:198.51.100.7") for _ in range(3)] == [200] * 3
        assert status("198.51.100.7") == 429
        assert status("::ffff:198.51.100.8") == 200
    finally:
        server.stop()


# -- metrics ---------------------------------------------------------------------------------


def _cache_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("qa_search_query_cache")]


def test_metrics_do_not_tell_a_stranger_whether_a_text_was_searched_before(forum):
    # the query cache is shared by every caller: its hit counter, read before and after one
    # search, says whether anyone had searched that exact text
    victim = "my stepfather hits me when he drinks"
    with _client(forum) as client:
        client.get("/v1/search", params={"q": victim})  # someone else, earlier
        before = client.get("/metrics").text
        client.get("/v1/search", params={"q": victim})  # the attacker tries a guess
        after = client.get("/metrics").text
        assert _cache_lines(before) == _cache_lines(after) == []
        assert "qa_search_index_threads" in after  # the rest of the page is as it was
        assert 'route="/v1/search"' in after


def test_with_a_metrics_key_the_scraper_alone_gets_every_metric(forum):
    with _client(forum, metrics_key=METRICS_KEY) as client:
        for _ in range(3):
            client.get("/v1/search", params={"q": "miss my ex"})
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        for headers in ({"Authorization": f"Bearer {METRICS_KEY}"}, {"X-API-Key": METRICS_KEY}):
            r = client.get("/metrics", headers=headers)
            assert r.status_code == 200
            assert 'qa_search_query_cache_total{result="hit"} 2.0' in r.text
            assert "qa_search_query_cache_hit_ratio 0.666" in r.text
            assert "qa_search_index_threads 5.0" in r.text
        # the probes stay open: load balancers send no key
        assert client.get("/readyz").status_code == 200
    # guesses at the key count against the client's read rate
    app = create_app(Settings(index_dir=forum, metrics_key=METRICS_KEY, read_rate="3/minute"),
                     embedder=FakeEmbedder())
    with TestClient(app) as client:
        guesses = [client.get("/metrics", headers={"X-API-Key": f"guess-{n}"}).status_code for n in range(5)]
        assert guesses == [403] * 3 + [429] * 2


# -- scores ----------------------------------------------------------------------------------


def test_a_public_callers_scores_do_not_depend_on_hidden_threads(tmp_path):
    without = _index(tmp_path / "without", PUBLIC)
    with_hidden = _index(tmp_path / "with", [*PUBLIC, HIDDEN])
    rng = random.Random(5)
    queries = ["quentin overdose", "zorblax sleep", "sleep quentin plan"]
    queries += [" ".join(rng.sample(["zorblax", "quentin", "overdose", "plan", "sleep", "night", "exams"], 3))
                for _ in range(5)]

    def scores(index_dir) -> list[list[tuple[str, float]]]:
        with _client(index_dir) as client:
            return [[(h["thread_id"], h["score"]) for h in client.get(
                "/v1/search", params={"q": q, "min_relevance": 0, "k": 4}).json()["hits"]] for q in queries]

    # an anonymous caller tries "quentin <word>": whether <word> is in a hidden thread shows
    assert scores(with_hidden) == scores(without)
