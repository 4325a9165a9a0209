"""qa_search against the by-hand recipe, side by side in one run, on Quora questions.

The baseline (benchmarks/baseline_server.py) is FastAPI + sentence-transformers on torch + a
FAISS IndexFlatIP. qa_search is ``qa-search serve`` over an index built by ``ForumIndex`` with
its default encoder. Measured for both, one after the other on the same machine:

- single-query latency in process (p50/p99), typeahead-style, one query at a time, and for
  qa_search its breakdown: the encoder alone, the ANN search alone, the whole search;
- HTTP end-to-end latency and throughput on loopback against a real uvicorn, 1 and 4 clients
  (the service without its per-client rate limit, every client being one address, and without
  its query cache, the clients repeating queries the recipe has to embed each time);
- bulk build throughput (texts embedded and indexed per second);
- resident memory of each server after its load test (peak RSS).

``--corpus-size`` bounds the run (137537: every Quora question). The qa_search index and the
corpus vectors are cached in ``--cache-dir`` by corpus size, so only the first run embeds the
corpus. The baseline's flat index holds the same vectors as qa_search's (its search cost does
not depend on their values); its encoder is torch, timed live.

    .venv/bin/python benchmarks/speed.py --corpus-size 137537 --cache-dir /tmp/qa-speed
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
from load import free_port

ROOT = Path(__file__).resolve().parent.parent
QUORA = ROOT.parent / "shared" / "data" / "quora"


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            out.append(json.loads(line))
            if limit is not None and len(out) >= limit:
                break
    return out


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def build_qa_index(corpus: list[dict], cache: Path) -> tuple[Path, np.ndarray]:
    """The qa_search snapshot of the corpus (cached), and its question vectors in corpus order."""
    from qa_search import ForumIndex, Thread, load_embedder

    index_dir = cache / f"qa-index-{len(corpus)}"
    if not (index_dir / "CURRENT").is_file():
        print(
            f"building the qa_search index of {len(corpus)} questions (cached for next time)...",
            file=sys.stderr,
        )
        index = ForumIndex(load_embedder())
        index.upsert(Thread(c["id"], c["text"]) for c in corpus)
        index.save(index_dir)
    vectors_path = cache / f"vectors-{len(corpus)}.npy"
    if not vectors_path.is_file():
        index = ForumIndex.load(index_dir)
        np.save(vectors_path, index._questions.vectors()[1])
    return index_dir, np.load(vectors_path, mmap_mode="r")


def in_process_latency(search, queries: list[str]) -> dict:
    for q in queries[:20]:  # warm-up
        search(q)
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        search(q)
        lat.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}


def in_process_breakdown(index, queries: list[str], k: int = 10) -> dict:
    """qa_search's query path in process, one query at a time: the encoder alone, the question
    index's ANN search alone (the first fetch a search makes, max(4k, 32) ids, with the query's
    vector made beforehand) and the whole ``search``, taken in turn for each query so that load
    from other jobs falls on all three alike. ``overhead_ratio`` is search p50 over (encode p50
    + ANN p50): what fusion, the lexical head, exact rescoring and hit assembly add. The same is
    measured in the calling thread's CPU time (``cpu``; the encoder and FAISS run single-threaded
    in it for one query), which time spent waiting for a core on a shared machine leaves out."""
    encoder, questions = index.query_embedder, index.question_index
    fetch = max(4 * k, 32)  # as qa_search.index.search._search_exact
    vectors = {q: encoder.encode([q])[0][None, :] for q in queries}
    for q in queries[:20]:  # warm-up
        index.search(q, k=k)
    wall: dict[str, list[float]] = {"encode": [], "ann": [], "search": []}
    cpu: dict[str, list[float]] = {"encode": [], "ann": [], "search": []}
    for q in queries:
        t0, c0 = time.perf_counter(), time.thread_time()
        encoder.encode([q])
        t1, c1 = time.perf_counter(), time.thread_time()
        questions.search(vectors[q], fetch)
        t2, c2 = time.perf_counter(), time.thread_time()
        index.search(q, k=k)
        t3, c3 = time.perf_counter(), time.thread_time()
        for out, a, b_, c, d in ((wall, t0, t1, t2, t3), (cpu, c0, c1, c2, c3)):
            out["encode"].append((b_ - a) * 1e3)
            out["ann"].append((c - b_) * 1e3)
            out["search"].append((d - c) * 1e3)

    def summary(times: dict[str, list[float]]) -> dict:
        out = {f"{name}_ms": {"p50": pct(v, 50), "p99": pct(v, 99)} for name, v in times.items()}
        floor = float(np.percentile(times["encode"], 50) + np.percentile(times["ann"], 50))
        out["encode_plus_ann_p50_ms"] = round(floor, 2)
        out["overhead_ratio"] = round(float(np.percentile(times["search"], 50)) / floor, 2)
        return out

    return {**summary(wall), "cpu": summary(cpu)}


def wait_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server did not start in time")


def http_load(port: int, route: str, queries: list[str], clients: int, per_client: int) -> dict:
    """Each client sends ``per_client`` requests over one keep-alive connection."""
    latencies: list[float] = []
    errors = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for i in range(per_client):
            q = queries[(offset + i) % len(queries)]
            t0 = time.perf_counter()
            conn.request("GET", f"{route}?{urllib.parse.urlencode({'q': q, 'k': 10})}")
            resp = conn.getresponse()
            resp.read()
            mine.append((time.perf_counter() - t0) * 1e3)
            if resp.status != 200:
                errors.append(resp.status)
        conn.close()
        with lock:
            latencies.extend(mine)

    for q in queries[:10]:  # warm-up on one connection
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"{route}?{urllib.parse.urlencode({'q': q, 'k': 10})}")
        conn.getresponse().read()
    threads = [threading.Thread(target=client, args=(c * per_client,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {errors[:5]}")
    return {
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "requests_per_s": round(len(latencies) / elapsed, 1),
    }


def serve_and_load(cmd: list[str], route: str, ready: str, queries: list[str], requests: int) -> dict:
    port = free_port()
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # every request comes from one address: no rate limit; and no query cache, since the
        # clients repeat the queries and the by-hand recipe has none
        env={**os.environ, "QA_SEARCH_READ_RATE": "0", "QA_SEARCH_CACHE_SIZE": "0"},
    )
    try:
        wait_ready(port, ready, proc)
        one = http_load(port, route, queries, 1, requests)
        four = http_load(port, route, queries, 4, requests // 2)
        return {"http_1_client": one, "http_4_clients": four, "server_peak_rss_mb": peak_rss_mb(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus-size", type=int, default=20000, help="Quora questions indexed (at most 137537)")
    ap.add_argument("--queries", type=int, default=300, help="queries timed per measurement")
    ap.add_argument("--build-texts", type=int, default=1000, help="texts embedded to time bulk builds")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/qa-search-speed"))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if not QUORA.is_dir():
        print(f"{QUORA} is missing: the Quora data sits beside the repository", file=sys.stderr)
        return 2
    import faiss
    from sentence_transformers import SentenceTransformer

    from qa_search import ForumIndex, Thread
    from qa_search.embedding.models import resolve_model

    load_before = os.getloadavg()[0]
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    corpus = read_jsonl(QUORA / "corpus.jsonl.gz", args.corpus_size)
    queries = [q["text"] for q in read_jsonl(QUORA / "dev_queries.jsonl.gz", args.queries)]
    index_dir, vectors = build_qa_index(corpus, args.cache_dir)
    vectors_path = args.cache_dir / f"vectors-{len(corpus)}.npy"
    sample = [c["text"] for c in corpus[: args.build_texts]]

    # -- the baseline, in process ------------------------------------------------------------
    model = SentenceTransformer(resolve_model(None)[1], device="cpu")
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors))
    model.encode(sample[:64], batch_size=64)
    t0 = time.perf_counter()
    built = faiss.IndexFlatIP(vectors.shape[1])
    built.add(model.encode(sample, normalize_embeddings=True))  # batch 32, its default
    base_build = len(sample) / (time.perf_counter() - t0)
    del built
    base = {
        "system": "by-hand recipe (torch + IndexFlatIP)",
        "in_process": in_process_latency(
            lambda q: flat.search(model.encode([q], normalize_embeddings=True), 10), queries
        ),
        "build_texts_per_s": round(base_build, 1),
    }

    # -- qa_search, in process -----------------------------------------------------------------
    index = ForumIndex.load(index_dir)
    embedder = index.embedder
    scratch = ForumIndex(embedder, index.config)
    scratch.upsert([Thread(f"w{i}", t) for i, t in enumerate(sample[:64])])
    scratch = ForumIndex(embedder, index.config)
    t0 = time.perf_counter()
    scratch.upsert([Thread(f"b{i}", t) for i, t in enumerate(sample)])
    qa_build = len(sample) / (time.perf_counter() - t0)
    qa = {
        "system": f"qa_search ({getattr(embedder, 'backend', '?')} + {index._questions.kind})",
        "in_process": in_process_latency(lambda q: index.search(q, k=10), queries),
        "in_process_breakdown": in_process_breakdown(index, queries),
        "build_texts_per_s": round(qa_build, 1),
    }

    # -- both over HTTP, one server at a time --------------------------------------------------
    py = sys.executable
    base.update(
        serve_and_load(
            [py, str(ROOT / "benchmarks" / "baseline_server.py"), "--vectors", str(vectors_path)],
            "/search",
            "/search?q=warm",
            queries,
            args.queries,
        )
    )
    qa.update(
        serve_and_load(
            [py, "-m", "qa_search.cli", "serve", str(index_dir)],
            "/v1/search",
            "/healthz",
            queries,
            args.queries,
        )
    )

    ratios = {
        "http_p50_1_client": round(base["http_1_client"]["p50_ms"] / qa["http_1_client"]["p50_ms"], 2),
        "http_p99_1_client": round(base["http_1_client"]["p99_ms"] / qa["http_1_client"]["p99_ms"], 2),
        "http_p99_4_clients": round(base["http_4_clients"]["p99_ms"] / qa["http_4_clients"]["p99_ms"], 2),
        "throughput_4_clients": round(
            qa["http_4_clients"]["requests_per_s"] / base["http_4_clients"]["requests_per_s"], 2
        ),
        "build_throughput": round(qa["build_texts_per_s"] / base["build_texts_per_s"], 2),
        "in_process_p50": round(base["in_process"]["p50_ms"] / qa["in_process"]["p50_ms"], 2),
    }
    targets = {"http_p99_1_client": 4.0, "throughput_4_clients": 5.0, "build_throughput": 3.0}
    breakdown = qa["in_process_breakdown"]
    report = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        # other jobs share the cores: the 1-minute load average before the run and after it
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "corpus_size": len(corpus),
        "queries": len(queries),
        "baseline": base,
        "qa_search": qa,
        "ratios": ratios,
        "targets": targets,
        "targets_met": {k: ratios[k] >= v for k, v in targets.items()},
    }
    rows = [
        ("in-process p50 / p99 (ms)", "in_process", "p50_ms", "p99_ms"),
        ("HTTP 1 client p50 / p99 (ms)", "http_1_client", "p50_ms", "p99_ms"),
        ("HTTP 4 clients p50 / p99 (ms)", "http_4_clients", "p50_ms", "p99_ms"),
    ]
    print(
        f"{len(corpus)} Quora questions, {len(queries)} queries; {report['date']}, {report['machine']}, "
        f"load average {report['load_average'][0]} -> {report['load_average'][1]}"
    )
    cpu = breakdown["cpu"]
    print("\n| qa_search in process | p50 / p99 ms | CPU p50 / p99 ms |\n|---|---|---|")
    for label, key in (("encode alone", "encode_ms"), ("ANN alone", "ann_ms"), ("search", "search_ms")):
        print(f"| {label} | {breakdown[key]['p50']} / {breakdown[key]['p99']} | "
              f"{cpu[key]['p50']} / {cpu[key]['p99']} |")
    print(
        f"search p50 / (encode + ANN p50 = {breakdown['encode_plus_ann_p50_ms']} ms): "
        f"{breakdown['overhead_ratio']}x; in CPU time {cpu['overhead_ratio']}x\n"
    )
    print(f"| measure | {base['system']} | {qa['system']} | ratio |")
    print("|---|---|---|---|")
    for label, key, a, b in rows:
        ratio = base[key][b] / qa[key][b]
        print(f"| {label} | {base[key][a]} / {base[key][b]} | {qa[key][a]} / {qa[key][b]} | {ratio:.1f}x |")
    for label, get in (
        ("HTTP 4 clients requests/s", lambda r: r["http_4_clients"]["requests_per_s"]),
        ("bulk build texts/s", lambda r: r["build_texts_per_s"]),
        ("server peak RSS (MB)", lambda r: r["server_peak_rss_mb"]),
    ):
        print(f"| {label} | {get(base)} | {get(qa)} | {get(qa) / get(base):.1f}x |")
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
