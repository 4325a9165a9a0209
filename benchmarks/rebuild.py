"""Full build versus incremental rebuild after editing 1% of the threads, with the real model.

    .venv/bin/python benchmarks/rebuild.py [--threads 10000] [--edit 0.01] [--workdir DIR]

The forum is made of Quora questions (../shared/data/quora/corpus.jsonl.gz) as thread titles,
each with one or two synthetic answers made of two other Quora questions. The first build embeds
everything; then 1% of the threads are edited (half retitled, half with an answer rewritten) and
the index is rebuilt into the same directory, where the embedding cache supplies every unchanged
text. Both times are wall time of ``build_index`` (reading the dump, embedding, writing and
publishing), the model already loaded. Prints a table, then the same figures as JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qa_search import Answer, Thread, load_embedder, read_dump, write_dump
from qa_search.operations.lifecycle import build_index

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "quora" / "corpus.jsonl.gz"


def make_forum(n: int, seed: int = 0) -> list[Thread]:
    texts = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        for line in fh:
            texts.append(json.loads(line)["text"])
            if len(texts) >= 5 * n:
                break
    rng = np.random.default_rng(seed)
    pool = texts[n:]
    threads = []
    for i in range(n):
        answers = tuple(
            Answer(
                f"q{i}-a{j}", " ".join(pool[k] for k in rng.integers(0, len(pool), 2)) + " Hope this helps."
            )
            for j in range(int(rng.integers(1, 3)))
        )
        threads.append(Thread(f"q{i}", texts[i], answers=answers))
    return threads


def edit(threads: list[Thread], fraction: float, seed: int = 1) -> tuple[list[Thread], int]:
    """Edit ``fraction`` of the threads; returns the edited forum and the number of texts changed."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(threads), int(round(fraction * len(threads))), replace=False)
    out = list(threads)
    for k, i in enumerate(sorted(chosen.tolist())):
        t = out[i]
        if k % 2 == 0:
            out[i] = Thread(t.id, t.title + " (edited)", answers=t.answers)
        else:
            first = Answer(t.answers[0].id, t.answers[0].body + " Edited to add a source.")
            out[i] = Thread(t.id, t.title, answers=(first, *t.answers[1:]))
    return out, len(chosen)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=10_000)
    ap.add_argument("--edit", type=float, default=0.01, help="fraction of threads edited")
    ap.add_argument(
        "--workdir", type=Path, default=None, help="where the dumps and index go (default: a temp dir)"
    )
    args = ap.parse_args()
    if not CORPUS.is_file():
        print(f"skipped: {CORPUS} is missing (the shared Quora data sits beside the repository)")
        return 0

    work = args.workdir or Path(tempfile.mkdtemp(prefix="qa-search-rebuild-"))
    work.mkdir(parents=True, exist_ok=True)
    index_dir = work / "index"
    shutil.rmtree(index_dir, ignore_errors=True)
    threads = make_forum(args.threads)
    edited, n_changed = edit(threads, args.edit)
    write_dump(threads, work / "forum.jsonl")
    write_dump(edited, work / "forum-edited.jsonl")

    started = time.perf_counter()
    embedder = load_embedder()
    load_s = time.perf_counter() - started
    full = build_index(index_dir, read_dump(work / "forum.jsonl"), embedder)
    rebuild = build_index(index_dir, read_dump(work / "forum-edited.jsonl"), embedder)

    rows = [("full build", full), ("rebuild, 1% edited", rebuild)]
    print(f"{args.threads} threads, {full.vectors} vectors; model load {load_s:.1f} s (not counted)")
    print(f"{'run':<22} {'seconds':>9} {'embedded':>9} {'reused':>8} {'generation':>10}")
    for name, r in rows:
        print(f"{name:<22} {r.seconds:>9.1f} {r.embedded:>9} {r.reused:>8} {r.generation:>10}")
    speedup = full.seconds / rebuild.seconds
    print(f"rebuild takes {100 / speedup:.1f}% of the full build's time ({speedup:.0f}x faster)")
    print(
        json.dumps(
            {
                "threads": args.threads,
                "vectors": full.vectors,
                "edited_threads": n_changed,
                "full": {"seconds": full.seconds, "embedded": full.embedded, "reused": full.reused},
                "rebuild": {
                    "seconds": rebuild.seconds,
                    "embedded": rebuild.embedded,
                    "reused": rebuild.reused,
                },
                "speedup": round(speedup, 1),
                "model_load_seconds": round(load_s, 1),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
            }
        )
    )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if rebuild.embedded == n_changed else 1


if __name__ == "__main__":
    sys.exit(main())
