"""Typeahead while the forum writes: search latency with and without live writes, the writes'
own latency, and how soon a written thread is found.

An index of N threads (Quora's questions by default; ``--synthetic N`` for synthetic questions
whose vectors come from benchmarks/scale.py's generator, so a million need no embedding) is
served by ``qa-search serve`` on loopback (``--in-process``: a :class:`qa_search.LiveIndex` in
this process, no HTTP). K clients type: each sends the prefixes of held-out questions, word by
word, back to back. Two phases of the same traffic, ``--seconds`` each: ``steady`` (no writes),
then ``writes``, where a writer holding the API key posts one new thread a second (another
held-out question), edits an indexed thread every second tick (a new title and an answer) and
deletes one every third tick. After each post a probe searches for the posted question, each
search on a new connection so that it may land on any worker, until every worker has answered
with the thread among its hits: the time from the write's acknowledgement to the first such
answer, and to the last worker's, are the visibility lags. Reported: search p50/p99/max per
phase and just after each write began, write latency per kind, and the lags; printed as a
table, and as JSON (``--json``).

txtai, where it is importable, runs the same phases in process (an ``Embeddings`` index of the
same questions with the same model, dense + BM25); it is skipped with a note otherwise.

The query cache is off (``--cache 0``) so every search runs the model in both phases. Building
the index embeds every question with the real model (cached in ``--cache-dir`` by size): at
137k questions on 2 cores that takes many minutes; ``--limit`` runs smaller. Where speed.py has
cached all 137,537 (``--full-cache``), the full run deletes the held-out questions from a copy of
that snapshot instead, and txtai is given those vectors for the same texts rather than embedding
the corpus again (its queries and writes go through the same weights, the packaged
all-MiniLM-L6-v2, on torch). Loopback only; each phase stops after ``--seconds``.

    .venv/bin/python benchmarks/live.py --limit 50000 --seconds 30 --json live.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from load import free_port, summarise, typed_prefixes, wait_ready
from scale import Synthetic
from speed import QUORA, build_qa_index, read_jsonl

#: Held-out questions: half are typed by the clients, half posted by the writer.
HOLDOUT = 2000
#: A probe gives up on a posted thread after this many seconds (counted as not found).
PROBE_LIMIT_S = 10.0
K = 10
#: Searches that start this soon after a write began are also reported on their own.
AFTER_WRITE_S = 0.25


class Http:
    """A served index on loopback; one keep-alive connection per calling thread."""

    def __init__(self, port: int, key: str, workers: int = 1) -> None:
        self.port, self.key, self.workers = port, key, workers
        self._local = threading.local()

    def _conn(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return conn

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        headers = {"X-API-Key": self.key}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        try:
            conn = self._conn()
            conn.request(method, path, data, headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            self._conn(fresh=True)
            raise

    def search(self, text: str) -> list[str]:
        status, data = self._call("GET", "/v1/search?" + urllib.parse.urlencode({"q": text, "k": K}))
        if status != 200:
            raise RuntimeError(f"search answered {status}")
        return [h["thread_id"] for h in json.loads(data)["hits"]]

    def probe(self, text: str) -> tuple[list[str], str]:
        """A search on a connection of its own, so that it may land on any worker; with the hits,
        the worker that answered (the service names its process in a header)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(
                "GET",
                "/v1/search?" + urllib.parse.urlencode({"q": text, "k": K}),
                None,
                {"X-API-Key": self.key},
            )
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"search answered {resp.status}")
            return [h["thread_id"] for h in json.loads(data)["hits"]], resp.getheader(
                "x-qa-search-worker", ""
            )
        finally:
            conn.close()

    def upsert(self, thread: dict) -> None:
        status, _ = self._call("POST", "/v1/threads", {"threads": [thread]})
        if status != 200:
            raise RuntimeError(f"upsert answered {status}")

    def delete(self, thread_id: str) -> None:
        status, _ = self._call("DELETE", "/v1/threads/" + urllib.parse.quote(thread_id, safe=""))
        if status not in (200, 404):
            raise RuntimeError(f"delete answered {status}")


class InProcess:
    """A :class:`qa_search.LiveIndex` over the index directory, called directly."""

    workers = 1

    def __init__(self, live) -> None:
        self.live = live

    def search(self, text: str) -> list[str]:
        return [h.thread_id for h in self.live.search(text, K)]

    def probe(self, text: str) -> tuple[list[str], str]:
        return self.search(text), "in-process"

    def upsert(self, thread: dict) -> None:
        from qa_search import Answer, Thread

        answers = tuple(Answer(a["id"], a["body"]) for a in thread.get("answers", ()))
        self.live.upsert(Thread(thread["id"], thread["title"], answers=answers))

    def delete(self, thread_id: str) -> None:
        self.live.delete(thread_id)


class Txtai:
    """txtai ``Embeddings`` (dense + BM25, content stored) behind one lock: it is not documented
    as safe for searches concurrent with writes."""

    workers = 1

    def __init__(self, embeddings) -> None:
        self.embeddings = embeddings
        self._lock = threading.Lock()

    def search(self, text: str) -> list[str]:
        with self._lock:
            return [str(r["id"]) for r in self.embeddings.search(text, K)]

    def probe(self, text: str) -> tuple[list[str], str]:
        return self.search(text), "in-process"

    def upsert(self, thread: dict) -> None:
        text = " ".join([thread["title"], *(a["body"] for a in thread.get("answers", ()))])
        with self._lock:
            self.embeddings.upsert([(thread["id"], text, None)])

    def delete(self, thread_id: str) -> None:
        with self._lock:
            self.embeddings.delete([thread_id])


def client_loop(
    search: Callable[[str], list[str]], queries: list[str], seed: int, stop: threading.Event, out: list
) -> None:
    """Type until ``stop``: append (start, seconds, 200 or the error's name) per search."""
    rng = random.Random(seed)
    i = rng.randrange(len(queries))
    while not stop.is_set():
        q = queries[i % len(queries)]
        i += 1
        started = time.perf_counter()
        try:
            search(q)
            outcome: int | str = 200
        except Exception as exc:  # noqa: BLE001 - counted and reported, the clients go on
            outcome = f"{type(exc).__name__}: {exc}"  # a status or an error's own words, never the query
        out.append((started, time.perf_counter() - started, outcome))


class Writer:
    """One tick a second: post a new thread, edit one (every 2nd tick), delete one (every 3rd)."""

    def __init__(self, backend, posts: list[dict], indexed: list[dict], seed: int = 0) -> None:
        self.backend, self.posts = backend, posts
        self.rng = random.Random(seed)
        self.targets = [r["id"] for r in indexed]
        self.rng.shuffle(self.targets)
        self.texts = {r["id"]: r["text"] for r in indexed}
        self.writes: list[tuple[str, float, float]] = []  # (kind, started, seconds)
        #: per post: seconds from acknowledgement to found by the first worker, and by every one
        self.lags: list[tuple[float | None, float | None]] = []
        self._probes: list[threading.Thread] = []

    def _timed(self, kind: str, call: Callable[[], None]) -> float:
        started = time.perf_counter()
        call()
        acked = time.perf_counter()
        self.writes.append((kind, started, acked - started))
        return acked

    def _probe(self, thread: dict, acked: float) -> None:
        """Search until every worker has answered with the thread among its hits. A worker's lag
        is when one of its answers first had it: probes land on workers at random, so this can
        overstate it by the gap between two probes reaching that worker, never understate it."""
        found: dict[str, float] = {}
        while time.perf_counter() - acked < PROBE_LIMIT_S and len(found) < self.backend.workers:
            try:
                ids, worker = self.backend.probe(thread["title"])
                if thread["id"] in ids and worker not in found:
                    found[worker] = time.perf_counter() - acked
            except Exception:  # noqa: BLE001, S110 - a failed probe search is retried
                pass
            time.sleep(0.005)
        every = max(found.values()) if len(found) >= self.backend.workers else None
        self.lags.append((min(found.values()) if found else None, every))

    def run(self, stop: threading.Event, every: float) -> None:
        tick, start = 0, time.perf_counter()
        while not stop.is_set() and tick < len(self.posts):
            post = self.posts[tick]
            acked = self._timed("post", lambda p=post: self.backend.upsert(p))
            probe = threading.Thread(target=self._probe, args=(post, acked))
            probe.start()
            self._probes.append(probe)
            if tick % 2 == 1 and self.targets:
                tid = self.targets.pop()
                edited = {
                    "id": tid,
                    "title": self.texts[tid] + " (edited)",
                    "answers": [{"id": f"{tid}-live", "body": "An answer posted while people search."}],
                }
                self._timed("edit", lambda e=edited: self.backend.upsert(e))
            if tick % 3 == 2 and self.targets:
                tid = self.targets.pop()
                self._timed("delete", lambda t=tid: self.backend.delete(t))
            tick += 1
            stop.wait(max(0.0, start + tick * every - time.perf_counter()))
        for probe in self._probes:
            probe.join()


def run_phase(
    backend,
    queries: list[str],
    clients: int,
    seconds: float,
    writer: Writer | None = None,
    every: float = 1.0,
) -> dict:
    stop, results = threading.Event(), [[] for _ in range(clients)]
    threads = [
        threading.Thread(target=client_loop, args=(backend.search, queries, n, stop, results[n]))
        for n in range(clients)
    ]
    if writer is not None:
        threads.append(threading.Thread(target=writer.run, args=(stop, every)))
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    samples = [s for r in results for s in r]
    summary = summarise(samples, time.perf_counter() - t0)
    if writer is not None and writer.writes:
        starts = np.array(sorted(w[1] for w in writer.writes))
        # searches that started just after a write began: where a rebuild would show
        at = np.searchsorted(starts, [s[0] for s in samples], side="right") - 1
        near = [s for s, i in zip(samples, at, strict=True) if i >= 0 and s[0] - starts[i] <= AFTER_WRITE_S]
        summary["after_write"] = summarise(near, AFTER_WRITE_S * len(starts))
        summary["writes"] = {
            kind: _latency([w[2] for w in writer.writes if w[0] == kind])
            for kind in ("post", "edit", "delete")
        }
        for key, n in (("visible", 0), ("visible_everywhere", 1)):
            found = [lags[n] for lags in writer.lags if lags[n] is not None]
            summary[key] = {
                **_latency(found),
                "posted": len(writer.lags),
                "not_found": len(writer.lags) - len(found),
            }
    return summary


def _latency(seconds: list[float], digits: int = 1) -> dict:
    ms = np.array(seconds) * 1000
    if not len(ms):
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), digits),
        "p99_ms": round(float(np.percentile(ms, 99)), digits),
        "max_ms": round(float(ms.max()), digits),
    }


def synthetic_corpus(n: int, quora: list[dict], seed: int = 0) -> list[dict]:
    """``n`` questions of Quora's words (each a mix of two real questions' words), ids ``syn…``."""
    rng = np.random.default_rng(seed)
    words = [r["text"].rstrip("?").split() for r in quora]
    out = []
    for i in range(n):
        a, b = words[rng.integers(len(words))], words[rng.integers(len(words))]
        text = " ".join(a[: max(1, len(a) // 2)] + b[len(b) // 2 :]) + "?"
        out.append({"id": f"syn{i:07d}", "text": text})
    return out


def build_synthetic_index(corpus: list[dict], cache: Path) -> Path:
    """A snapshot of ``corpus`` whose question vectors come from scale.py's generator (cached)."""
    from qa_search import ForumIndex, Thread, load_embedder

    index_dir = cache / f"synthetic-index-{len(corpus)}"
    if (index_dir / "CURRENT").is_file():
        return index_dir
    print(f"building the synthetic index of {len(corpus)} questions (cached)...", file=sys.stderr)
    embedder = load_embedder()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, embedder.dimension)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data = Synthetic(len(corpus), centres, (0.3, 1.2))
    index = ForumIndex(embedder)
    for start, vectors in data.chunks():
        rows = corpus[start : start + len(vectors)]
        index.upsert(
            [Thread(r["id"], r["text"]) for r in rows],
            vectors={r["text"]: v for r, v in zip(rows, vectors, strict=True)},
        )
    index.save(index_dir)
    return index_dir


def lexical_costs(indexed: list[dict], posts: list[dict], repeats: int = 200) -> dict:
    """What the lexical index costs on a write, measured on its own over the indexed questions:
    a full build (what the first search after every write paid while writes discarded it), one
    added question, one removed, and a merge of the new-document segment into the main one."""
    from qa_search.scoring.lexical import LexicalIndex

    t0 = time.perf_counter()
    lexical = LexicalIndex.build([r["id"] for r in indexed], [r["text"] for r in indexed])
    build = time.perf_counter() - t0
    adds, removes = [], []
    for post, gone in zip(posts[:repeats], indexed[:repeats], strict=False):
        t0 = time.perf_counter()
        lexical.add([post["id"]], [post["title"]])
        adds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        lexical.remove([gone["id"]])
        removes.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    lexical.merge()
    merge = time.perf_counter() - t0
    return {
        "documents": len(indexed),
        "full_build_s": round(build, 2),
        "add_one": _latency(adds, 3),
        "remove_one": _latency(removes, 3),
        "merge_after_writes_ms": round(merge * 1000, 1),
    }


def serve(index_dir: Path, work: Path, args, key: str) -> tuple[Http, subprocess.Popen, float]:
    port = free_port()
    # every client here is one loopback address: a per-client rate limit would measure itself
    env = {
        **os.environ,
        "QA_SEARCH_API_KEY": key,
        "QA_SEARCH_CACHE_SIZE": str(args.cache),
        "QA_SEARCH_POLL_SECONDS": "0.5",
        "QA_SEARCH_READ_RATE": "0",
        "QA_SEARCH_WRITE_RATE": "0",
    }
    if args.threads:
        env["QA_SEARCH_THREADS"] = str(args.threads)
    log = (work / "server.log").open("ab")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qa_search.cli",
            "serve",
            str(index_dir),
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        cwd=work,  # the packages come from the environment (PYTHONPATH, the install), not the cwd
    )
    log.close()
    try:
        wait_ready(port, proc, timeout=1800)
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    return Http(port, key, args.workers), proc, time.perf_counter() - started


def phases(backend, queries: list[str], posts: list[dict], indexed: list[dict], args) -> dict:
    run_phase(backend, queries[:50], args.clients, 2)  # warm-up, not reported
    steady = run_phase(backend, queries, args.clients, args.seconds)
    writer = Writer(backend, posts, indexed)
    writes = run_phase(backend, queries, args.clients, args.seconds, writer, args.write_every)
    return {"steady": steady, "writes": writes}


def txtai_phases(
    indexed: list[dict], queries: list[str], posts: list[dict], args, known: dict[str, np.ndarray]
) -> dict:
    try:
        from txtai import Embeddings
    except ImportError:
        return {"skipped": "txtai is not importable here (not installed); only qa_search was measured"}
    from sentence_transformers import SentenceTransformer

    from qa_search.embedding.models import packaged_model_path

    path = packaged_model_path()
    if path is None:
        return {
            "skipped": "the packaged all-MiniLM-L6-v2 is not installed; txtai would download another copy"
        }
    started = time.perf_counter()
    model = SentenceTransformer(str(path), device="cpu")
    dimension = model.encode(["dimension"]).shape[1]
    if known and not _agrees(model, known):
        known = {}

    def encode(texts: list[str]) -> np.ndarray:
        """The packaged model's normalised vectors, as txtai's sentence-transformers path gives
        them; a question already embedded for qa_search's index is looked up instead."""
        out = np.empty((len(texts), dimension), np.float32)
        todo = []
        for i, text in enumerate(texts):
            if text in known:
                out[i] = known[text]
            else:
                todo.append(i)
        if todo:
            out[todo] = model.encode([texts[i] for i in todo], normalize_embeddings=True)
        return out

    # "external": txtai's own ANN, BM25 and content store, fed by the function above, so the same
    # weights serve both systems and the corpus need not be embedded a second time
    embeddings = Embeddings(method="external", transform=encode, content=True, hybrid=True)
    embeddings.index((r["id"], r["text"], None) for r in indexed)
    built = time.perf_counter() - started
    return {
        "build_s": round(built, 1),
        "corpus_vectors": "reused from qa_search's cache" if known else "embedded here",
        **phases(Txtai(embeddings), queries, posts, indexed, args),
    }


def _agrees(model, known: dict[str, np.ndarray]) -> bool:
    """Whether cached vectors belong to their texts (cosine > 0.95 with the model's own, allowing
    for the int8 encoder that built them): a cache out of step with the corpus is not used."""
    texts = list(known)[:8]
    fresh = model.encode(texts, normalize_embeddings=True)
    return bool(np.all(np.sum(fresh * np.stack([known[t] for t in texts]), axis=1) > 0.95))


def known_vectors(rows: list[dict], full_cache: Path) -> dict[str, np.ndarray]:
    """Text -> vector from speed.py's cache of every question (``rows`` in the file's order), or
    nothing where that cache is absent."""
    path = full_cache / f"vectors-{len(rows)}.npy"
    if not path.is_file():
        return {}
    vectors = np.load(path, mmap_mode="r")
    if len(vectors) != len(rows):
        return {}
    return {r["text"]: np.asarray(v) for r, v in zip(rows, vectors, strict=True)}


def derive_held_out_index(rows: list[dict], held: list[dict], cache: Path, full_cache: Path) -> None:
    """Where speed.py has cached a snapshot of every question, the index less the held-out ones
    is that snapshot with them deleted: nothing is embedded again (a fresh build of 135k
    questions takes about 20 minutes on 2 cores)."""
    from qa_search import ForumIndex

    target = cache / f"qa-index-{len(rows) - len(held)}"
    full = full_cache / f"qa-index-{len(rows)}"
    if (target / "CURRENT").is_file() or not (full / "CURRENT").is_file():
        return
    print(f"deriving the index of {len(rows) - len(held)} questions from {full}...", file=sys.stderr)
    index = ForumIndex.load(full)
    index.delete(r["id"] for r in held)
    index.save(target)


def print_table(name: str, result: dict) -> None:
    print(f"\n{name}")
    header = ("phase", "searches", "errors", "req/s", "p50 ms", "p99 ms", "max ms")
    print(f"{header[0]:<16} {header[1]:>9}" + "".join(f" {h:>8}" for h in header[2:]))
    writes = result["writes"]
    rows = [("steady", result["steady"]), ("writes", writes)]
    if "after_write" in writes:
        rows.append((f"  {AFTER_WRITE_S * 1000:.0f} ms after", writes["after_write"]))
    for label, s in rows:
        rate = s["throughput_rps"] if label in ("steady", "writes") else ""  # windows overlap
        print(
            f"{label:<16} {s['requests']:>9} {s['errors']:>8} {rate:>8} "
            f"{s['p50_ms']!s:>8} {s['p99_ms']!s:>8} {s['max_ms']!s:>8}"
        )
    for kind, s in writes.get("writes", {}).items():
        if s["n"]:
            print(
                f"{kind + ' latency':<16} {s['n']:>9} {'':>8} {'':>8} "
                f"{s['p50_ms']!s:>8} {s['p99_ms']!s:>8} {s['max_ms']!s:>8}"
            )
    for label, key in (("ack -> found", "visible"), ("  every worker", "visible_everywhere")):
        v = writes.get(key)
        if v and v["n"]:
            print(
                f"{label:<16} {v['n']:>9} {v['not_found']:>8} {'':>8} "
                f"{v['p50_ms']!s:>8} {v['p99_ms']!s:>8} {v['max_ms']!s:>8}"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, help="index only this many Quora questions [all 137,537]")
    ap.add_argument(
        "--synthetic",
        type=int,
        metavar="N",
        help="index N synthetic questions (vectors from scale.py's generator) instead",
    )
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each phase [60]")
    ap.add_argument("--clients", type=int, default=4, help="clients typing at once [4]")
    ap.add_argument("--write-every", type=float, default=1.0, help="seconds between writer ticks [1]")
    ap.add_argument("--in-process", action="store_true", help="call a LiveIndex here instead of HTTP")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes [1]")
    ap.add_argument("--threads", type=int, help="QA_SEARCH_THREADS per worker [the libraries' default]")
    ap.add_argument("--cache", type=int, default=0, help="query-embedding cache size [0: off]")
    ap.add_argument(
        "--cache-dir",
        default=str(Path(tempfile.gettempdir()) / "qa-live"),
        help="where built indexes are kept between runs",
    )
    ap.add_argument(
        "--full-cache",
        default=str(Path(tempfile.gettempdir()) / "qa-speed"),
        help="speed.py's --cache-dir: its snapshot and vectors of every question are reused [/tmp/qa-speed]",
    )
    ap.add_argument("--no-txtai", action="store_true", help="do not run txtai even where importable")
    ap.add_argument("--json", help="also write the JSON result here")
    args = ap.parse_args(argv)

    load_before = os.getloadavg()  # the machine may be shared: say how busy it was
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    in_order = read_jsonl(QUORA / "corpus.jsonl.gz")
    rows = list(in_order)
    rng = random.Random(0)
    rng.shuffle(rows)
    held, quora = rows[:HOLDOUT], rows[HOLDOUT:]
    started = time.perf_counter()
    if args.synthetic:
        indexed = synthetic_corpus(args.synthetic, quora)
        snapshot = build_synthetic_index(indexed, cache)
        source = f"synthetic ({args.synthetic} questions of Quora's words, vectors from scale.py)"
    else:
        indexed = quora[: args.limit] if args.limit else quora
        if not args.limit:
            derive_held_out_index(rows, held, cache / "quora", Path(args.full_cache))
        snapshot, _ = build_qa_index([{"id": r["id"], "text": r["text"]} for r in indexed], cache / "quora")
        source = f"Quora questions ({len(indexed)} of {len(rows)}, {HOLDOUT} held out)"
    build_s = time.perf_counter() - started
    queries = typed_prefixes([r["text"] for r in held[: HOLDOUT // 2]])
    posts = [{"id": f"live-{r['id']}", "title": r["text"]} for r in held[HOLDOUT // 2 :]]

    work = Path(tempfile.mkdtemp(prefix="qa-search-live-"))
    index_dir = work / "index"
    shutil.copytree(snapshot, index_dir)  # the live writes go into this copy's log
    key = secrets.token_urlsafe(24)
    result: dict = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "load_average_at_start": [round(x, 2) for x in load_before],
        "corpus": source,
        "threads_indexed": len(indexed),
        "clients": args.clients,
        "seconds_per_phase": args.seconds,
        "write_every_s": args.write_every,
        "cache_size": args.cache,
        "mode": "in-process" if args.in_process else f"HTTP, {args.workers} worker(s)",
        "index_ready_s": round(build_s, 1),
    }
    try:
        if args.in_process:
            from qa_search import LiveIndex

            t0 = time.perf_counter()
            live = LiveIndex(index_dir, cache_size=args.cache, threads=args.threads, min_query_chars=3)
            result["load_s"] = round(time.perf_counter() - t0, 1)
            result["qa_search"] = phases(InProcess(live), queries, posts, indexed, args)
        else:
            backend, proc, ready_s = serve(index_dir, work, args, key)
            result["load_s"] = round(ready_s, 1)
            try:
                result["qa_search"] = phases(backend, queries, posts, indexed, args)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["lexical_write_costs"] = lexical_costs(indexed, posts)
    result["txtai"] = (
        {"skipped": "--no-txtai"}
        if args.no_txtai
        else txtai_phases(
            indexed,
            queries,
            posts,
            args,
            {} if args.synthetic else known_vectors(in_order, Path(args.full_cache)),
        )
    )

    print(
        f"{result['corpus']}; {result['mode']}; {args.clients} clients; {args.seconds:g} s per phase; "
        f"load average at start {result['load_average_at_start']}"
    )
    print_table("qa_search", result["qa_search"])
    lex = result["lexical_write_costs"]
    print(
        f"\nlexical index of {lex['documents']} questions: a full build {lex['full_build_s']} s; "
        f"add one p50 {lex['add_one']['p50_ms']} ms, remove one p50 {lex['remove_one']['p50_ms']} ms, "
        f"merge after {lex['add_one']['n']} adds {lex['merge_after_writes_ms']} ms"
    )
    if "skipped" in result["txtai"]:
        print(f"\ntxtai: skipped ({result['txtai']['skipped']})")
    else:
        print_table("txtai (in process, one lock)", result["txtai"])
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
