"""Abuse of the HTTP service, replayed against a real uvicorn on loopback (the fake embedder, the
settings' timeouts and limits as ``qa-search serve`` passes them): oversized lists, a batch of
empty threads, writes without the key, ids no URL can name, ``true`` for a number, slow headers
and idle connections, a client over its rate. Each gets a short 4xx within a second, the worker's
memory barely moves, and normal searches from another client keep answering meanwhile.

Run as a script (``python tests/test_abuse.py INDEX_DIR PORT``) this module is that server."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from email.message import Message
from pathlib import Path

import pytest
from realserver import ROOT, RealServer

from service.schemas import read_body_limit
from service.settings import Settings

KEY = "abuse-key"
READ_RATE = 20
#: How much the worker's resident memory may grow over every attack together.
MAX_RSS_GROWTH_MB = 50


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Server(RealServer):
    """This module as a one-process server (uvicorn.Server, the fake embedder) on a free port,
    started as it is made."""

    ready_every = 0.2
    own_session = False  # one process: SIGTERM to it alone

    def __init__(self, index_dir: Path, log_path: Path, **env: str) -> None:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        super().__init__(log_path, {**os.environ, "PYTHONPATH": path, "QA_SEARCH_API_KEY": KEY, **env})
        self.index_dir = index_dir
        self.start()

    def command(self) -> list[str]:
        return [sys.executable, __file__, str(self.index_dir), str(self.port)]

    def call(self, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None,
             client: str | None = None, timeout: float = 10) -> tuple[int, bytes, Message]:
        """(status, raw body, headers) on a fresh connection; ``client`` is sent as X-Forwarded-For."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        sent = dict(headers or {})
        if client is not None:
            sent["X-Forwarded-For"] = client
        return self.request(method, path, data, sent, timeout)

    def timed(self, *args, **kwargs) -> tuple[int, bytes, Message, float]:
        started = time.perf_counter()
        status, body, headers = self.call(*args, **kwargs)
        return status, body, headers, time.perf_counter() - started


class Searches:
    """A normal client's searches in a thread, a fixed number of them, while attacks run."""

    def __init__(self, server: Server, count: int = 60) -> None:
        self.statuses: list[int] = []
        self.slowest = 0.0

        def run() -> None:
            for n in range(count):
                started = time.perf_counter()
                # under the read rate: 60 searches over about 6 s
                status = server.call("GET", f"/v1/search?q=panic+attack+breathing+{n}", client="10.9.9.9")[0]
                self.slowest = max(self.slowest, time.perf_counter() - started)
                self.statuses.append(status)
                time.sleep(0.1)

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def check(self) -> None:
        self.thread.join(timeout=120)
        assert self.statuses and set(self.statuses) == {200}, self.statuses


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    from conftest import FakeEmbedder

    from qa_search import Answer, ForumIndex, Thread

    index = ForumIndex(FakeEmbedder())
    index.upsert([
        Thread("t1", "How do I calm down before a panic attack?", tags=("anxiety",),
               answers=(Answer("t1-a1", "Slow breathing helps: in for four, out for six."),)),
        Thread("t2", "Is it normal to miss my ex months later?", tags=("relationships",)),
    ])
    path = tmp_path_factory.mktemp("abuse") / "index"
    index.save(path)
    return path


@pytest.fixture(scope="module")
def server(index_dir, tmp_path_factory):
    # behind a "proxy" on loopback, so each test's X-Forwarded-For is a client of its own
    srv = Server(index_dir, tmp_path_factory.mktemp("log") / "server.log",
                 QA_SEARCH_TRUSTED_PROXIES="127.0.0.1", QA_SEARCH_HEADER_TIMEOUT="1",
                 QA_SEARCH_BODY_TIMEOUT="1", QA_SEARCH_KEEP_ALIVE_TIMEOUT="1",
                 QA_SEARCH_READ_RATE=f"{READ_RATE}/second", QA_SEARCH_WRITE_RATE="100/second")
    yield srv
    srv.stop()


def _response(sock: socket.socket, end: bytes = b'{"status":"ok"}') -> bytes:
    """A response read up to ``end`` (headers and body may come in separate packets); by default
    one to /healthz."""
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def _compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _short_4xx(status: int, body: bytes, elapsed: float, expected: int) -> dict:
    assert status == expected, body[:300]
    print(f"[{expected} in {elapsed * 1000:.0f} ms]", end=" ")
    assert elapsed < 1.0, f"{elapsed:.2f} s"
    assert len(body) < 4000, len(body)
    return json.loads(body)


def test_every_attack_gets_a_short_4xx_quickly_with_little_memory_and_searches_go_on(server):
    rss_before = _rss_mb(server.proc.pid)
    searches = Searches(server)

    # 499,000 tags: over a read's body limit (what the largest valid search needs), on its length
    tags = _compact({"q": "panic", "tags": [1] * 499_000})
    assert 990_000 < len(tags) < 1_000_000
    status, body, _, elapsed = server.timed("POST", "/v1/search", tags, client="10.0.0.1")
    assert "send a shorter query" in _short_4xx(status, body, elapsed, 413)["detail"]
    # as many tags as that limit holds: the list's length alone refuses it
    tags = _compact({"q": "panic", "tags": [1] * 210_000})
    assert 400_000 < len(tags) < read_body_limit(Settings().max_query_chars, Settings().max_k)
    status, body, _, elapsed = server.timed("POST", "/v1/search", tags, client="10.0.0.1")
    problem = _short_4xx(status, body, elapsed, 422)
    assert len(problem["detail"]) == 1 and problem["detail"][0]["field"] == "tags"
    assert "at most 100 items" in problem["detail"][0]["msg"]

    # 333,000 empty threads with the key: the batch cap, before any thread is validated
    empties = b'{"threads":[' + b",".join([b"{}"] * 333_000) + b"]}"
    status, body, _, elapsed = server.timed("POST", "/v1/threads", empties, headers={"X-API-Key": KEY},
                                            client="10.0.0.2")
    assert "at most 500 threads per request" in _short_4xx(status, body, elapsed, 413)["detail"]

    # many bad items: a few problems listed, the rest counted, no input echoed
    bad = {"threads": [{"id": f"secret-{n}", "title": n} for n in range(50)]}
    status, body, _, elapsed = server.timed("POST", "/v1/threads", bad, headers={"X-API-Key": KEY},
                                            client="10.0.0.2")
    problem = _short_4xx(status, body, elapsed, 422)
    assert len(problem["detail"]) == 5 and problem["omitted"] == 45 and b"secret-" not in body
    assert all(set(p) == {"loc", "field", "msg", "type"} for p in problem["detail"])

    # a write without the key is refused on its headers: the body is never waited for
    for headers, expected in (({}, 401), ({"X-API-Key": "wrong"}, 403)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            lines = [b"POST /v1/threads HTTP/1.1", b"Host: x", b"Content-Type: application/json",
                     b"Content-Length: 900000", b"X-Forwarded-For: 10.0.0.3",
                     *(f"{k}: {v}".encode() for k, v in headers.items())]
            started = time.perf_counter()
            sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + b'{"threads": [')
            answer = sock.recv(4096)
            assert answer.startswith(f"HTTP/1.1 {expected} ".encode()), answer[:100]
            assert time.perf_counter() - started < 1.0

    # ids that no URL can name: refused where they stand, the value not echoed
    for bad_id in ("line\nbreak", "tab\there", "bidi\u202eflip", "nul\x00"):
        threads = [{"id": f"ok-{n}", "title": "fine"} for n in range(3)] + [{"id": bad_id, "title": "x"}]
        status, body, _, elapsed = server.timed("POST", "/v1/threads", {"threads": threads},
                                                headers={"X-API-Key": KEY}, client="10.0.0.4")
        problem = _short_4xx(status, body, elapsed, 422)
        assert [p["field"] for p in problem["detail"]] == ["threads[3].id"], problem
        assert "printable" in problem["detail"][0]["msg"] and bad_id.encode() not in body
    assert json.loads(server.call("GET", "/readyz")[1])["threads"] == 2  # nothing was written

    # JSON types are strict: true is not a number
    for path, body_ in (("/v1/search", {"q": "panic", "k": True}),
                        ("/v1/duplicates", {"title": "panic attack", "k": True}),
                        ("/v1/duplicates", {"title": "panic attack", "threshold": True})):
        status, body, _, elapsed = server.timed("POST", path, body_, client="10.0.0.5")
        assert _short_4xx(status, body, elapsed, 422)["detail"][0]["type"] in ("int_type", "float_type")

    # 1 MB of answers would be 75,000 models to validate on the event loop: counted first
    answers = [{"body": "x"}] * 150
    many = _compact({"threads": [{"id": f"w{n}", "title": "t", "answers": answers} for n in range(499)]})
    assert 900_000 < len(many) < 1_000_000
    status, body, _, elapsed = server.timed("POST", "/v1/threads", many, headers={"X-API-Key": KEY},
                                            client="10.0.0.6")
    assert "at most 5000 answers per request" in _short_4xx(status, body, elapsed, 413)["detail"]

    # the most a body can make the event loop validate: as many threads, answers and tags as
    # the caps allow, the last thread invalid so that every other is validated first
    answers, tags = [{"body": "x"}] * 10, ["t"] * 100
    threads = [{"id": f"w{n}", "title": "t", "answers": answers, "tags": tags} for n in range(499)]
    worst = _compact({"threads": [*threads, {"id": "bad\n", "title": "t"}]})
    status, body, _, elapsed = server.timed("POST", "/v1/threads", worst, headers={"X-API-Key": KEY},
                                            client="10.0.0.6")
    _short_4xx(status, body, elapsed, 422)
    print(f"\nworst-case body ({len(worst)} bytes: 500 threads, 4990 answers, 49,900 tags) refused "
          f"after {elapsed * 1000:.0f} ms")

    searches.check()
    growth = _rss_mb(server.proc.pid) - rss_before
    print(f"worker RSS growth over the attacks: {growth:.1f} MB; slowest search {searches.slowest:.3f} s")
    assert growth < MAX_RSS_GROWTH_MB


def test_slow_headers_and_idle_connections_are_closed_while_searches_go_on(server):
    rss_before = _rss_mb(server.proc.pid)
    slow = []
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(b"GET /v1/search?q=panic HTTP/1.1\r\nHost: x\r\n")  # and never the end
        slow.append(sock)
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(20)]
    searches = Searches(server, count=20)
    try:
        started = time.perf_counter()
        for sock in slow:  # the header timeout is 1 s
            assert sock.recv(4096).startswith(b"HTTP/1.1 408 ")
            assert sock.recv(4096) == b""  # closed
        for sock in idle:  # nothing sent: closed without an answer
            assert sock.recv(4096) == b""
        took = time.perf_counter() - started
        print(f"\n200 slow-header connections answered 408 and closed after {took:.2f} s")
        searches.check()
    finally:
        for sock in slow + idle:
            sock.close()
    assert _rss_mb(server.proc.pid) - rss_before < MAX_RSS_GROWTH_MB

    # a kept-alive connection: its next request's headers have the same deadline, and an idle
    # one is closed after the keep-alive timeout (1 s)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 408 ")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200 ")
        started = time.perf_counter()
        assert sock.recv(4096) == b""
        assert 0.5 < time.perf_counter() - started < 4


def test_a_body_that_trickles_in_gets_408(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"X-Forwarded-For: 10.4.4.4\r\nContent-Length: 100\r\n\r\n" + b'{"q": "pan')
        started = time.perf_counter()
        answer = _response(sock, b'did not arrive within 1 s"}')
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert time.perf_counter() - started < 3


def test_a_client_over_its_rate_gets_429_with_retry_after_and_others_do_not(server):
    statuses, retry = [], None
    for _ in range(READ_RATE + 10):
        status, _, headers = server.call("GET", "/v1/search?q=panic", client="10.1.1.1")
        statuses.append(status)
        if status == 429:
            retry = headers["Retry-After"]
    assert statuses.count(200) <= READ_RATE and 429 in statuses
    assert retry is not None and 1 <= int(retry) <= 2
    assert server.call("GET", "/v1/search?q=panic", client="10.1.1.2")[0] == 200  # another client
    assert server.call("GET", "/healthz", client="10.1.1.1")[0] == 200  # probes are not limited
    time.sleep(int(retry))
    assert server.call("GET", "/v1/search?q=panic", client="10.1.1.1")[0] == 200


def test_forwarded_headers_are_ignored_unless_the_proxy_is_trusted(index_dir, tmp_path):
    srv = Server(index_dir, tmp_path / "server.log", QA_SEARCH_READ_RATE="5/minute")
    try:
        statuses = [srv.call("GET", "/v1/search?q=panic", client=f"10.2.2.{n}")[0] for n in range(8)]
    finally:
        srv.stop()
    # every request came from 127.0.0.1, whatever X-Forwarded-For said
    assert statuses == [200] * 5 + [429] * 3


def test_several_rates_in_one_setting_all_apply():
    from service.guard import RateLimits
    from service.settings import Settings

    limits = RateLimits(Settings(read_rate="3/second;4/minute", write_rate="0"))
    waits = [limits.retry_after("read", "10.3.3.3") for _ in range(6)]
    assert waits[:3] == [None] * 3 and waits[3] is not None  # the second's limit
    assert waits[5] is not None and waits[5] > 2  # the minute's, waited out in seconds
    assert limits.retry_after("read", "10.3.3.4") is None  # another client
    assert all(limits.retry_after("write", "10.3.3.3") is None for _ in range(50))  # "0": no limit


def test_the_library_refuses_unprintable_ids_in_a_dump(tmp_path):
    from qa_search import DumpFormatError, read_dump

    dump = tmp_path / "threads.jsonl"
    dump.write_text(json.dumps({"id": "a\nb", "title": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(DumpFormatError, match="'id' must hold printable characters only") as err:
        list(read_dump(dump))
    assert "a\nb" not in str(err.value)


def _serve(index_dir: str, port: int) -> None:
    import uvicorn
    from conftest import FakeEmbedder

    from service.app import create_app
    from service.guard import uvicorn_options
    from service.settings import Settings

    settings = Settings(index_dir=Path(index_dir))
    app = create_app(settings, embedder=FakeEmbedder())
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            **uvicorn_options(settings))
    uvicorn.Server(config).run()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
