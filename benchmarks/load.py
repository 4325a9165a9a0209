"""Load benchmark of the HTTP service on loopback: typeahead traffic, with and without a publish.

Starts ``qa-search serve`` (real model, N workers) over a copy of an index, then runs two
phases of the same traffic side by side: ``steady`` (nothing happens) and ``publish`` (an
operator publishes a new generation halfway through, which every worker loads and swaps to).
Each client is a keep-alive connection sending what a person typing sends: growing prefixes of
sample questions (80% searches, 20% duplicate checks), back to back. The query cache is off by
default (``--cache``), so every request runs the model: the worst case, and a fair comparison.
Reports p50/p99 latency, throughput and errors per phase, and latency in the seconds around the
swap; prints a table and JSON.

    .venv/bin/python benchmarks/load.py [--workers 2] [--clients 8] [--seconds 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DUMP = ROOT / "indexes" / "sample" / "threads.jsonl"


def typed_prefixes(titles: list[str], min_chars: int = 3) -> list[str]:
    """What a front end sends while someone types each title: the text at every word end."""
    out = []
    for title in titles:
        words = title.split()
        for n in range(1, len(words) + 1):
            prefix = " ".join(words[:n])
            if len(prefix) >= min_chars:
                out.append(prefix)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited during start-up; see its log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not become ready")


def client_loop(port: int, queries: list[str], seed: int, stop: threading.Event, out: list) -> None:
    """Send requests back to back until ``stop``; append (start, seconds, status or error)."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = rng.randrange(len(queries))
    while not stop.is_set():
        q = queries[i % len(queries)]
        i += 1
        if rng.random() < 0.8:
            path = "/v1/search?" + urllib.parse.urlencode({"q": q, "k": 5})
        else:
            path = "/v1/duplicates?" + urllib.parse.urlencode({"q": q})
        started = time.perf_counter()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            outcome: int | str = resp.status
        except (OSError, http.client.HTTPException) as exc:
            outcome = type(exc).__name__
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        out.append((started, time.perf_counter() - started, outcome))
    conn.close()


def summarise(samples: list, seconds: float) -> dict:
    lat = np.array([s[1] for s in samples if s[2] == 200]) * 1000
    errors = [s for s in samples if s[2] != 200]
    return {
        "requests": len(samples),
        "errors": len(errors),
        "error_kinds": sorted({str(e[2]) for e in errors}),
        "throughput_rps": round(len(samples) / seconds, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "max_ms": round(float(lat.max()), 1) if len(lat) else None,
    }


def run_phase(port: int, queries: list[str], clients: int, seconds: float, publish=None) -> dict:
    stop, results = threading.Event(), [[] for _ in range(clients)]
    threads = [threading.Thread(target=client_loop, args=(port, queries, n, stop, results[n]))
               for n in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    swap = None
    if publish is not None:
        time.sleep(seconds / 2)
        swap = publish()  # (published at, every worker serving it at), perf_counter seconds
    time.sleep(max(0.0, t0 + seconds - time.perf_counter()))
    stop.set()
    for t in threads:
        t.join()
    samples = [s for r in results for s in r]
    summary = summarise(samples, time.perf_counter() - t0)
    if swap is not None:
        published, swapped = swap
        window = [s for s in samples if published - 1 <= s[0] <= swapped + 1]
        summary["swap"] = {
            "publish_to_all_workers_s": round(swapped - published, 2),
            "window": summarise(window, swapped - published + 2),
        }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", default=str(SAMPLE_DUMP), help="forum dump to index [the sample forum]")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    ap.add_argument("--threads", type=int, default=1, help="QA_SEARCH_THREADS per worker")
    ap.add_argument("--cache", type=int, default=0,
                    help="QA_SEARCH_CACHE_SIZE [0: every request runs the model, so the phases compare "
                         "fairly; the second would otherwise find the first's queries cached]")
    ap.add_argument("--json", help="also write the JSON result here")
    args = ap.parse_args()

    from qa_search import ForumIndex, Thread, load_embedder, read_dump

    load_before = os.getloadavg()  # the machine may be shared: say how busy it was
    work = Path(tempfile.mkdtemp(prefix="qa-search-load-"))
    index_dir = work / "index"
    threads = list(read_dump(args.dump))
    index = ForumIndex(load_embedder())
    index.upsert(threads)
    index.save(index_dir)
    queries = typed_prefixes([t.title for t in threads])

    port = free_port()
    env = {**os.environ, "QA_SEARCH_THREADS": str(args.threads), "QA_SEARCH_POLL_SECONDS": "0.5",
           "QA_SEARCH_CACHE_SIZE": str(args.cache), "QA_SEARCH_READ_RATE": "0"}  # one address, no rate
    log = (work / "server.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, "-m", "qa_search.cli", "serve", str(index_dir), "--port", str(port),
         "--workers", str(args.workers)],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    try:
        wait_ready(port, server)
        run_phase(port, queries[:50], args.clients, 2)  # warm-up, not reported

        def publish() -> tuple[float, float]:
            index.upsert([Thread("load-new", "Does journaling before bed help with nighttime anxiety?")])
            published = time.perf_counter()
            generation = int(index.save(index_dir).name)
            seen: set[str] = set()
            while len(seen) < args.workers:  # until every worker reports the new generation
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/readyz")
                resp = conn.getresponse()
                if json.loads(resp.read())["generation"] == generation:
                    seen.add(resp.getheader("X-QA-Search-Worker"))
                conn.close()
                time.sleep(0.05)
            return published, time.perf_counter()

        steady = run_phase(port, queries, args.clients, args.seconds)
        published = run_phase(port, queries, args.clients, args.seconds, publish=publish)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "threads_indexed": len(threads),
        "load_average_at_start": [round(x, 2) for x in load_before],
        "workers": args.workers, "clients": args.clients, "seconds_per_phase": args.seconds,
        "threads_per_worker": args.threads, "cache_size": args.cache,
        "phases": {"steady": steady, "publish": published},
    }
    header = ("phase", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms")
    print(f"{header[0]:<10} {header[1]:>9}" + "".join(f" {h:>8}" for h in header[2:]))
    rows = [("steady", steady), ("publish", published)]
    if "swap" in published:
        rows.append(("  swap±1s", published["swap"]["window"]))
    for name, s in rows:
        print(f"{name:<10} {s['requests']:>9} {s['errors']:>7} {s['throughput_rps']:>8} "
              f"{s['p50_ms']!s:>8} {s['p99_ms']!s:>8} {s['max_ms']!s:>8}")
    if "swap" in published:
        took = published["swap"]["publish_to_all_workers_s"]
        print(f"publish -> every worker serving the new generation: {took} s")
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
