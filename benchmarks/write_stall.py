"""A large live write beside small ones: does either worker's small write wait for it?

Two workers (processes) serve one index directory with the real model. Worker A takes one large
upsert (a thread with --answers answers of ~200 characters, ~416 KB at 2,000); worker B, in this
process, takes a small upsert and a search every 0.25 s meanwhile and after. Reports A's write
time and B's small-write and search latencies while A embeds and after A's write is logged.

    python benchmarks/write_stall.py [--answers 2000] [--threads 300]

Runs against whatever ``qa_search`` is importable (PYTHONPATH=an older tree measures that one).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

from qa_search import Answer, LiveIndex, Thread, build, load_embedder

WORDS = ("sleep", "worry", "panic", "therapy", "breathing", "anxious", "tired", "work", "family",
         "friend", "doctor", "night", "morning", "walk", "talk", "feel", "better", "worse", "week",
         "month", "help")


def _text(i: int, n: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n))


def big_write(index_dir: str, answers: int, ready, out) -> None:
    live = LiveIndex(Path(index_dir), load_embedder())
    thread = Thread("big", "a very long thread", answers=tuple(
        Answer(f"big-{i}", f"{i} " + _text(i, 30)) for i in range(answers)))
    ready.set()
    started = time.perf_counter()
    live.upsert([thread])
    out.put(time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "idx"
        build(index_dir, [Thread(f"t{i}", _text(i, 8), answers=(Answer(f"t{i}-a", _text(i + 1, 20)),))
                          for i in range(args.threads)])
        b = LiveIndex(index_dir, load_embedder())
        ctx = mp.get_context("spawn")
        ready, out = ctx.Event(), ctx.Queue()
        worker = ctx.Process(target=big_write, args=(str(index_dir), args.answers, ready, out))
        worker.start()
        ready.wait(600)
        during, after, searches = [], [], []
        n, big_seconds, done_at = 0, None, None
        while done_at is None or time.perf_counter() - done_at < 3:
            t0 = time.perf_counter()
            b.upsert([Thread(f"small{n}", f"a small write {n} about sleep")])
            took = time.perf_counter() - t0
            (during if big_seconds is None else after).append(took)
            t0 = time.perf_counter()
            b.search("trouble sleeping at night", k=5)
            searches.append(time.perf_counter() - t0)
            n += 1
            if big_seconds is None and not out.empty():
                big_seconds, done_at = out.get(), time.perf_counter()
            time.sleep(0.25)
        worker.join()

        def summary(xs: list[float]) -> dict:
            return {"n": len(xs), "median_s": round(statistics.median(xs), 3) if xs else None,
                    "max_s": round(max(xs), 3) if xs else None}

        print(json.dumps({
            "answers": args.answers,
            "big_write_s": round(big_seconds, 2),
            "small_writes_while_big_embeds": summary(during),
            "small_writes_after_big_logged": summary(after),
            "searches": summary(searches),
        }, indent=2))


if __name__ == "__main__":
    main()
