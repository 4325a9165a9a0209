"""Several workers on one port, for real: `qa-search serve DIR --workers 2` in a subprocess on
loopback, with the fake embedder (a sitecustomize on the workers' path puts it in place of the
model, since uvicorn's workers are fresh interpreters). Writes landing on either worker, a
publish while they serve, a worker killed with SIGKILL, rate limits, search tokens,
restricted threads, and Discourse events about one topic reaching both workers at once."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jwt
import pytest
from conftest import FakeEmbedder
from realserver import ROOT, Serve

from qa_search import ForumIndex, LiveIndex, Thread, update_index, write_dump

TESTS = Path(__file__).resolve().parent
KEY = "multiworker-key"
SECRET = "a-token-secret-of-at-least-32-characters"
POLL = 0.5  # QA_SEARCH_POLL_SECONDS as documented by default

#: Put into each worker (and each CLI run) before anything loads a model.
SITECUSTOMIZE = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from conftest import FakeEmbedder
from realserver import ROOT, Serve
import qa_search.embedding.loading as loading
import qa_search.operations.lifecycle as lifecycle
loading.load_embedder = lifecycle.load_embedder = lambda name=None, **options: FakeEmbedder()

# a generation loads slowly (as a large one does) while the file QA_TEST_LOAD_GATE names exists
import os, time
from pathlib import Path
from qa_search.index.forum import ForumIndex
_load = ForumIndex.load.__func__

def _gated(cls, *args, **kwargs):
    gate = os.environ.get("QA_TEST_LOAD_GATE")
    deadline = time.monotonic() + 30
    while gate and Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return _load(cls, *args, **kwargs)

ForumIndex.load = classmethod(_gated)
"""


def forum(n: int) -> list[Thread]:
    return [Thread(f"t{i}", f"question {i} about word{i} and topic{i % 7}", body=f"body of thread {i}")
            for i in range(n)]


class Server(Serve):
    """`qa-search serve DIR --workers N` in a subprocess (its own session), the fake model."""

    # its tests judge how the workers end (the last one kills serve itself); a stop past 30 s is killed
    slow_stop_fails = False

    def __init__(self, index_dir: Path, workdir: Path, workers: int = 2, **settings: str) -> None:
        site = workdir / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QA_SEARCH_")}
        env.update({"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "QA_SEARCH_API_KEY": KEY,
                    "QA_SEARCH_POLL_SECONDS": str(POLL), "QA_SEARCH_THREADS": "1", **settings})
        super().__init__(index_dir, workdir / "server.log", env, workers)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """A `qa-search` command beside the server, with the same fake model."""
        env = {k: v for k, v in self.env.items() if k != "QA_TEST_LOAD_GATE"}  # the workers' alone
        return subprocess.run([sys.executable, "-m", "qa_search.cli", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    def upsert(self, *threads: Thread) -> tuple[dict, str]:
        status, body, worker = self.call("POST", "/v1/threads", {"threads": [t.to_dict() for t in threads]},
                                         key=KEY)
        assert status == 200, body
        return body, worker

    def delete(self, thread_id: str) -> tuple[int, dict, str]:
        return self.call("DELETE", f"/v1/threads/{urllib.parse.quote(thread_id, safe='')}", key=KEY)

    def found(self, q: str, thread_id: str, token: str | None = None) -> tuple[bool, str]:
        """Whether a search for ``q`` finds ``thread_id`` first, and the worker that answered."""
        status, body, worker = self.call("POST", "/v1/search", {"q": q, "k": 3, "min_relevance": 0},
                                         headers={"X-QA-Token": token} if token else None)
        assert status == 200, body
        return bool(body["hits"]) and body["hits"][0]["thread_id"] == thread_id, worker

    def each_worker(self, check, seconds: float = 10) -> dict[str, object]:
        """Call ``check() -> (value, worker)`` on fresh connections until every worker has answered;
        the first value each gave."""
        seen: dict[str, object] = {}
        deadline = time.monotonic() + seconds
        while len(seen) < self.workers:
            assert time.monotonic() < deadline, f"only workers {sorted(seen)} answered in {seconds} s"
            value, worker = check()
            seen.setdefault(worker, value)
        return seen


def build(index_dir: Path, threads: list[Thread]) -> None:
    index = ForumIndex(FakeEmbedder())
    index.upsert(threads)
    index.save(index_dir)


def token(groups: list[str], seconds: float = 300) -> str:
    return jwt.encode({"groups": groups, "exp": int(time.time() + seconds)}, SECRET, algorithm="HS256")


class Pinned:
    """One kept-alive connection to each worker, so a request goes to the worker chosen."""

    def __init__(self, server: Server, seconds: float = 10) -> None:
        self.server = server
        self.conns: dict[str, http.client.HTTPConnection] = {}
        deadline = time.monotonic() + seconds
        while len(self.conns) < server.workers:
            assert time.monotonic() < deadline, f"reached only workers {sorted(self.conns)}"
            # connections opened together are accepted by whichever worker is free at that moment
            batch = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(8)]
            for conn in batch:
                conn.connect()
            for conn in batch:
                worker = self._send(conn, "GET", "/healthz", None, {})[2]
                if worker in self.conns:
                    conn.close()
                else:
                    self.conns[worker] = conn

    @property
    def workers(self) -> list[str]:
        return sorted(self.conns)

    @staticmethod
    def _send(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None,
              headers: dict) -> tuple[int, dict | str, str]:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        text = resp.read().decode()
        parsed = json.loads(text) if "json" in resp.headers.get("Content-Type", "") else text
        return resp.status, parsed, resp.headers.get("X-QA-Search-Worker")

    def call(self, worker: str, method: str, path: str, body: dict | None = None,
             headers: dict | None = None) -> tuple[int, dict | str]:
        status, parsed, answered = self._send(self.conns[worker], method, path, body, headers or {})
        assert answered == worker
        return status, parsed

    def upsert(self, worker: str, *threads: Thread) -> dict:
        status, body = self.call(worker, "POST", "/v1/threads", {"threads": [t.to_dict() for t in threads]},
                                 {"X-API-Key": KEY})
        assert status == 200, body
        return body

    def search(self, worker: str, q: str, token: str | None = None, k: int = 3) -> list[dict]:
        status, body = self.call(worker, "POST", "/v1/search", {"q": q, "k": k, "min_relevance": 0},
                                 {"X-QA-Token": token} if token else None)
        assert status == 200, body
        return body["hits"]

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()


def metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def until(check, seconds: float = 10, every: float = 0.02):
    """``check()``'s first true value, polled; fails after ``seconds`` (a bound, not a target)."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(every)


def top(pinned: Pinned, worker: str, q: str, token: str | None = None) -> str | None:
    hits = pinned.search(worker, q, token)
    return hits[0]["thread_id"] if hits else None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("multiworker")
    build(work / "index", forum(60))
    srv = Server(work / "index", work, QA_SEARCH_TOKEN_SECRET=SECRET, QA_SEARCH_READ_RATE="0",
                 QA_SEARCH_KEEP_ALIVE_TIMEOUT="120", QA_TEST_LOAD_GATE=str(work / "gate"))
    srv.start()
    yield srv
    srv.stop()
    log = srv.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "secretword" not in log and "gatedword" not in log  # no query or thread text logged


@pytest.fixture
def pinned(server):
    p = Pinned(server)
    yield p
    p.close()


def test_a_write_through_one_worker_is_searched_and_deleted_through_the_other(server, pinned):
    a, b = pinned.workers
    for n, (writer, reader) in enumerate([(a, b), (b, a)]):
        q = f"crossword{n} unique{n}"
        body = pinned.upsert(writer, Thread(f"c{n}", q))
        assert until(lambda: top(pinned, reader, q) == f"c{n}")  # noqa: B023
        # the other worker deletes it at once: it reads the log before deciding the id is unknown
        status, deleted = pinned.call(reader, "DELETE", f"/v1/threads/c{n}", headers={"X-API-Key": KEY})
        assert status == 200 and deleted["seq"] > body["seq"], deleted
        assert top(pinned, reader, q) != f"c{n}"
        assert until(lambda: top(pinned, writer, q) != f"c{n}")  # noqa: B023
        status, again = pinned.call(writer, "DELETE", f"/v1/threads/c{n}", headers={"X-API-Key": KEY})
        assert status == 404, again


def test_two_edits_of_one_thread_through_two_workers_end_with_the_later_on_both(server, pinned):
    a, b = pinned.workers
    for n in range(3):
        pinned.upsert(a, Thread(f"e{n}", f"editword{n} first"))
        acks: dict[str, dict] = {}

        def edit(worker: str, version: str) -> None:
            acks[version] = pinned.upsert(worker, Thread(f"e{n}", f"editword{n} {version}"))  # noqa: B023

        racers = [threading.Thread(target=edit, args=args) for args in ((a, "alpha"), (b, "beta"))]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=10)
        later = max(acks, key=lambda v: acks[v]["seq"])
        for worker in (a, b):
            assert until(lambda: pinned.search(worker, f"editword{n}")[0]["title"]  # noqa: B023
                         == f"editword{n} {later}")  # noqa: B023
        time.sleep(2 * POLL)  # and it stays so: no worker applies the earlier edit after it
        assert {pinned.search(w, f"editword{n}")[0]["title"] for w in (a, b)} == {f"editword{n} {later}"}


def test_a_restricted_thread_written_through_one_worker_stays_hidden_on_the_other(server, pinned):
    a, b = pinned.workers
    member, outsider = token(["grief"]), token(["anxiety"])
    q = "secretword private matter"
    pinned.upsert(a, Thread("r1", q, visible_to=("grief",)))
    assert until(lambda: top(pinned, b, q, member) == "r1")
    for worker in (a, b):
        for caller in (None, outsider):
            assert "r1" not in [h["thread_id"] for h in pinned.search(worker, q, caller, k=50)]
            status, body = pinned.call(worker, "POST", "/v1/duplicates",
                                       {"title": q, "body": "", "k": 50, "threshold": -1},
                                       {"X-QA-Token": caller} if caller else None)
            assert status == 200 and "r1" not in [d["thread_id"] for d in body["duplicates"]]
    # made public through the second worker, then restricted again through the first
    pinned.upsert(b, Thread("r1", q))
    assert until(lambda: top(pinned, a, q) == "r1")
    pinned.upsert(a, Thread("r1", q, visible_to=("grief",)))
    assert top(pinned, a, q) != "r1"
    assert until(lambda: top(pinned, b, q) != "r1" and top(pinned, b, q, outsider) != "r1")
    assert top(pinned, b, q, member) == "r1"


def test_every_worker_checks_search_tokens_alike(server, pinned):
    expired = token(["grief"], seconds=-120)
    forged = jwt.encode({"groups": ["grief"], "exp": int(time.time()) + 300}, "another-secret-" * 3,
                        algorithm="HS256")
    for worker in pinned.workers:
        for sent, reason in [(expired, "the search token has expired"),
                             (forged, "the search token's signature is wrong"),
                             ("not-a-token", "the search token is malformed")]:
            status, body = pinned.call(worker, "GET", "/v1/search?q=question+about",
                                       headers={"X-QA-Token": sent})
            assert (status, body) == (401, {"detail": reason})


def test_the_write_rate_is_counted_per_worker(server, pinned):
    first, second = pinned.workers[:2]
    wrong = {"X-API-Key": "wrong"}  # refused writes count: a wrong key writes nothing
    time.sleep(1.1)  # out of the moving window of the writes before
    got: list[int] = []
    while 429 not in got and len(got) < 60:  # until the first worker's window is full, however slow
        got.append(pinned.call(first, "DELETE", "/v1/threads/t1", headers=wrong)[0])
    # 10/second, the default: at least 10 answered before the first refusal (more where the box
    # is so slow that the earliest leave the window)
    assert got[-1] == 429 and set(got[:-1]) == {403} and len(got) >= 11, got
    # at once, while that window is full: a count kept in total would refuse this one too
    assert pinned.call(second, "DELETE", "/v1/threads/t1", headers=wrong)[0] == 403


def test_a_publish_while_both_workers_take_writes_loses_none(server, pinned, tmp_path):
    generation = pinned.call(pinned.workers[0], "GET", "/readyz")[1]["generation"]
    export = tmp_path / "export.jsonl"
    write_dump([*forum(60), Thread("x1", "exported extra thread")], export)
    write_dump([Thread("u1", "an operator update")], tmp_path / "update.jsonl")
    time.sleep(1.1)  # the writes below come after the export: the build keeps them
    acked: dict[str, int] = {}

    def write(worker: str, prefix: str) -> None:
        for n in range(20):
            tid = f"{prefix}{n}"
            acked[tid] = pinned.upsert(worker, Thread(tid, f"liveword {tid}"))["generation"]
            time.sleep(0.13)  # within the write rate, 10/second per worker

    writers = [threading.Thread(target=write, args=(w, f"p{i}-")) for i, w in enumerate(pinned.workers)]
    for writer in writers:
        writer.start()
    update = server.cli("update", str(server.index_dir), str(tmp_path / "update.jsonl"), "--json")
    rebuilt = server.cli("build", str(export), "--index", str(server.index_dir), "--json")
    for writer in writers:
        writer.join(timeout=30)
    assert update.returncode == 0 and rebuilt.returncode == 0, update.stderr + rebuilt.stderr
    summary = json.loads(rebuilt.stdout)
    assert summary["generation"] == generation + 2 and len(acked) == 40
    for worker in pinned.workers:
        def settled() -> tuple[dict, str] | None:
            # the worker may still be applying the other worker's last writes: the two reads
            # agree once it has applied them all
            ready = pinned.call(worker, "GET", "/readyz")[1]  # noqa: B023
            metrics = pinned.call(worker, "GET", "/metrics")[1]  # noqa: B023
            agree = ready["generation"] == generation + 2 and metric(
                metrics, "qa_search_index_threads") == ready["threads"]
            return (ready, metrics) if agree else None

        ready, metrics = until(settled)
        assert metric(metrics, "qa_search_index_generation") == generation + 2
        assert metric(metrics, "qa_search_generation_loading") == -1
        assert metric(metrics, "qa_search_generation_load_failing") == 0
        assert metric(metrics, "qa_search_index_threads") == ready["threads"]
        # every acknowledged write, on this worker within the bound (the other's moments later)
        assert until(lambda: all(top(pinned, worker, f"liveword {t}") == t for t in acked))  # noqa: B023
        assert top(pinned, worker, "exported extra thread") == "x1"


def test_writes_through_another_worker_are_applied_while_a_generation_loads(server, pinned, tmp_path):
    a, b = pinned.workers
    gate = Path(server.env["QA_TEST_LOAD_GATE"])
    write_dump([Thread("u2", "another operator update")], tmp_path / "update.jsonl")
    before = pinned.call(a, "GET", "/readyz")[1]["generation"]
    gate.touch()  # both workers' loads of the next generation wait, as a large one's would
    try:
        assert server.cli("update", str(server.index_dir), str(tmp_path / "update.jsonl")).returncode == 0
        for worker in (a, b):
            until(lambda: metric(pinned.call(worker, "GET", "/metrics")[1],  # noqa: B023
                                 "qa_search_generation_loading") == before + 1)
        pinned.upsert(a, Thread("g1", "gatedword arrives"))
        status, _ = pinned.call(a, "DELETE", "/v1/threads/t7", headers={"X-API-Key": KEY})
        assert status == 200
        # the other worker, still serving the generation before, applies both all the same
        assert until(lambda: top(pinned, b, "gatedword arrives") == "g1")
        assert until(lambda: top(pinned, b, "question 7 about word7 and topic0") != "t7")
        metrics = pinned.call(b, "GET", "/metrics")[1]
        assert metric(metrics, "qa_search_index_generation") == before
        assert metric(metrics, "qa_search_generation_loading") == before + 1
    finally:
        gate.unlink(missing_ok=True)
    for worker in (a, b):
        until(lambda: pinned.call(worker, "GET", "/readyz")[1]["generation"] == before + 1)  # noqa: B023
        assert top(pinned, worker, "gatedword arrives") == "g1"
        assert top(pinned, worker, "question 7 about word7 and topic0") != "t7"
        assert top(pinned, worker, "another operator update") == "u2"


@contextmanager
def loading_held(tmp_path: Path) -> Iterator[tuple[LiveIndex, LiveIndex, threading.Event]]:
    """Two processes' LiveIndex on one index: ``taker`` writes and publishes, ``other`` watches
    with no tick (only a request wakes it) and holds every load until ``release`` is set."""
    build(tmp_path / "index", forum(20))
    taker, other = (LiveIndex(tmp_path / "index", FakeEmbedder()) for _ in range(2))
    release = threading.Event()
    load = other._loader
    other._loader = lambda path, embedder: release.wait(10) and load(path, embedder)
    other.start(3600)
    try:
        yield taker, other, release
    finally:
        release.set()
        other.stop()


def test_a_write_logged_just_before_a_publish_is_served_by_a_worker_that_had_not_read_it(tmp_path):
    """The publish compacts the write out of the log before the other worker has read it; that
    worker must not lose it until its load of the new generation (which holds it) is done."""
    with loading_held(tmp_path) as (taker, other, release):
        taker.upsert(Thread("w1", "lateword written"))
        taker.delete("t3")
        update_index(tmp_path / "index", [Thread("u1", "an operator update")], FakeEmbedder())

        def applied() -> bool:
            with other.reading() as index:
                return "w1" in index and "t3" not in index

        assert until(applied)
        assert (other.generation, other.loading_generation) == (1, 2)  # still loading the publish
        release.set()
        until(lambda: other.generation == 2)
        with other.reading() as index:
            assert "w1" in index and "t3" not in index and "u1" in index


def test_writes_two_publishes_compacted_before_a_worker_read_them_are_served_while_it_loads(tmp_path):
    """Two publishes in a row, each compacting writes out of the log, before the other worker
    reads it: the writes the first folded in are served too (from that generation's record), not
    only the second's, while the worker loads the newest."""
    with loading_held(tmp_path) as (taker, other, release):
        taker.upsert(Thread("w1", "lateword written"))
        taker.delete("t3")
        update_index(tmp_path / "index", [Thread("u1", "an operator update")], FakeEmbedder())
        taker.upsert(Thread("w2", "another lateword"))
        update_index(tmp_path / "index", [Thread("u2", "another operator update")], FakeEmbedder())

        def applied() -> bool:
            with other.reading() as index:
                return "w2" in index and "w1" in index and "t3" not in index

        assert until(applied), "writes the first of two publishes folded in are missing until the swap"
        assert (other.generation, other.loading_generation) == (1, 3)  # still loading the newest
        release.set()
        until(lambda: other.generation == 3)
        with other.reading() as index:
            assert all(t in index for t in ("w1", "w2", "u1", "u2")) and "t3" not in index


def test_a_worker_killed_with_sigkill_is_replaced_and_its_writes_stay(server, pinned):
    a, b = pinned.workers
    acked = [pinned.upsert(a, Thread(f"k{n}", f"killword k{n}"))["seq"] for n in range(5)]
    os.kill(int(a), signal.SIGKILL)
    with pytest.raises(OSError):  # its connections go with it
        pinned.call(a, "GET", "/healthz")
    # the port answers throughout: the other worker takes every connection until a new one is up
    answered: set[str] = set()

    def replaced() -> bool:
        status, _, worker = server.call("GET", "/readyz")
        assert status == 200
        answered.add(worker)
        return len(answered - {a, b}) > 0

    until(replaced, seconds=30, every=0.05)
    assert a not in answered
    (new,) = answered - {a, b}
    # the new worker replayed the log: every write the killed one acknowledged is there
    found = server.each_worker(lambda: server.found("killword k4", "k4"), seconds=30)
    assert set(found) >= {new} and all(found.values()), found
    assert len(acked) == 5


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has ended
    except FileNotFoundError:
        return False


def test_when_serve_itself_is_killed_its_workers_end_and_free_the_port(server, pinned):
    a, b = pinned.workers
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)  # the supervisor, as an out-of-memory kill might
    server.proc.wait(timeout=10)
    # workers left without it would serve unsupervised and hold the port: a restart would fail
    until(lambda: not _running(int(a)) and not _running(int(b)), seconds=30, every=0.05)
    with socket.socket() as s:  # as `qa-search serve` checks the address before it starts
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", server.port))
    assert "has ended: shutting this worker down" in server.log_path.read_text()


DISCOURSE_SECRET = "multiworker-discourse-secret"


def discourse(pinned: Pinned, worker: str, event: str, payload: dict) -> dict:
    """One signed Discourse event to ``worker``; a 503 (another write to the topic kept coming
    first) is sent again, as Discourse does, within a bound."""
    body = json.dumps(payload).encode()  # the bytes Pinned sends
    signature = "sha256=" + hmac.new(DISCOURSE_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Discourse-Event": event, "X-Discourse-Event-Signature": signature}
    for _ in range(5):
        status, answer = pinned.call(worker, "POST", "/v1/webhooks/discourse", payload, headers)
        if status != 503:
            assert status == 200, answer
            return answer
    raise AssertionError(f"still 503 after 5 deliveries: {answer}")


def test_events_about_one_topic_at_two_workers_at_once_keep_both_parts(tmp_path):
    """Pairs of post events about one topic, one to each worker at the same moment, so that a
    worker often reads the topic before the other's answer lands: neither answer is lost (each
    pair loses one where an event's write does not check that its read still holds)."""
    build(tmp_path / "index", forum(5))
    srv = Server(tmp_path / "index", tmp_path, QA_SEARCH_DISCOURSE_SECRET=DISCOURSE_SECRET,
                 QA_SEARCH_WRITE_RATE="1000/second").start()
    pinned = Pinned(srv)
    try:
        a, b = pinned.workers
        topics = range(100, 130)
        for n in topics:
            discourse(pinned, a, "topic_created", {"topic": {"id": n, "title": f"pairword topic {n}"}})
        for worker in (a, b):  # both hold the topics: the race is the answers' alone
            until(lambda: pinned.call(worker, "GET", "/readyz")[1]["threads"] == 5 + len(topics))  # noqa: B023
        together = threading.Barrier(2, timeout=10)
        answers: dict[str, list[dict]] = {a: [], b: []}

        def reply(worker: str, offset: int) -> None:
            for n in topics:
                post = {"id": n * 10 + offset, "topic_id": n, "post_number": offset + 1,
                        "raw": f"answer {offset} to topic {n}"}
                together.wait()
                answers[worker].append(discourse(pinned, worker, "post_created", {"post": post}))

        racers = [threading.Thread(target=reply, args=(worker, i)) for i, worker in enumerate((a, b), 1)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=60)
        assert all(r["action"] == "upserted" for w in (a, b) for r in answers[w]), answers
        assert len(answers[a]) == len(answers[b]) == len(topics)
        replayed = LiveIndex(tmp_path / "index", FakeEmbedder())  # the log, as a new worker reads it
        lost = {n: sorted(x.id for x in replayed.current(str(n)).answers) for n in topics}
        assert {n: ids for n, ids in lost.items() if ids != [f"{n}1", f"{n}2"]} == {}
    finally:
        pinned.close()
        srv.stop()
    log = srv.log_path.read_text()
    assert "Traceback" not in log and "pairword" not in log and "answer 1 to" not in log, log[-3000:]
