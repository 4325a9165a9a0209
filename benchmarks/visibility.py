"""What it costs that a caller's scores read only the threads they may see, side by side in one run.

A search by a caller who may not see some threads reads a view of the lexical index without
them (word statistics and hits; ``IndexContents.lexical_for``), made after each write and kept
until the next. This times, on Quora questions with the packaged encoder, whole searches
(encoder included, in process, one at a time) by:

- the operator (``groups=None``: the index itself, what every caller read before views);
- a visitor (no groups: every restricted thread hidden);
- a member of one group (the other groups' threads hidden);

each between writes and with a write (an upsert of one public thread) after every tenth search,
which makes every view stale. A share of the threads (``--restricted``) is given to one of
four groups; their texts are unchanged, so no vector is embedded again.

Then ``--private-sets`` public threads are made private messages, each read by its own user and
the moderators (a set of groups per thread, every one naming "mods"), and the lookup of each
caller's view (views kept, no write between) is timed alone: what a search pays to find which
view is the caller's.

    .venv/bin/python benchmarks/visibility.py --corpus-size 137537 --cache-dir /tmp/qa-speed [--json F]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import random
import sys
import time
import timeit
from pathlib import Path

from speed import QUORA, build_qa_index, pct, read_jsonl

GROUPS = ("mods", "grief", "teens", "carers")


def timed(index, queries: list[str], groups, write_every: int | None) -> dict:
    """p50/p99 ms of each search; with ``write_every``, an upsert before every such search
    (not timed: what is timed is the search that finds its view stale)."""
    from qa_search import Thread

    for q in queries[:20]:  # warm-up
        index.search(q, 10, groups=groups)
    lat = []
    for i, q in enumerate(queries):
        if write_every and i % write_every == 0:
            index.upsert(Thread(f"bench-write-{i}", q))
        t0 = time.perf_counter()
        index.search(q, 10, groups=groups)
        lat.append((time.perf_counter() - t0) * 1e3)
    return {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "mean_ms": round(sum(lat) / len(lat), 2)}


def lookups(index, callers: dict[str, frozenset[str]], number: int = 2000) -> dict[str, float]:
    """Microseconds per lookup of each caller's lexical view, best of 5 runs of ``number``; the
    groups are a set of their own on each call, as each request's are."""
    out = {}
    for who, groups in callers.items():
        members = list(groups)
        index.lexical_for(frozenset(members))  # the view is made once, then kept
        best = min(timeit.repeat(lambda m=members: index.lexical_for(frozenset(m)), number=number, repeat=5))
        out[who] = round(best / number * 1e6, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus-size", type=int, default=20000, help="Quora questions indexed (at most 137537)")
    ap.add_argument("--queries", type=int, default=300, help="searches timed per row")
    ap.add_argument("--restricted", type=float, default=0.5, help="share of the threads given to a group")
    ap.add_argument("--private-sets", type=int, default=5000,
                    help="public threads then made private messages, each with a set of groups of its own")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/qa-search-speed"))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if not QUORA.is_dir():
        print(f"{QUORA} is missing: the Quora data sits beside the repository", file=sys.stderr)
        return 2
    from qa_search import ForumIndex

    load_before = os.getloadavg()[0]
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    corpus = read_jsonl(QUORA / "corpus.jsonl.gz", args.corpus_size)
    queries = [q["text"] for q in read_jsonl(QUORA / "dev_queries.jsonl.gz", args.queries)]
    index_dir, _ = build_qa_index(corpus, args.cache_dir)
    index = ForumIndex.load(index_dir)
    rng = random.Random(0)
    restricted = [dataclasses.replace(t, visible_to=(rng.choice(GROUPS),))
                  for t in index.threads() if rng.random() < args.restricted]
    index.upsert(restricted)  # same texts: their vectors are kept
    rows = []
    for who, groups in (("operator (every thread)", None), ("visitor (public threads)", frozenset()),
                        ("member of one group", frozenset({"grief"}))):
        for label, every in (("between writes", None), ("a write every 10 searches", 10)):
            rows.append({"caller": who, "writes": label, **timed(index, queries, groups, every)})
    hidden = {t.id for t in restricted}
    public = itertools.islice((t for t in index.threads() if t.id not in hidden), args.private_sets)
    private = [dataclasses.replace(t, visible_to=(f"user{i}", "mods")) for i, t in enumerate(public)]
    index.upsert(private)
    looked_up = lookups(index, {
        "visitor": frozenset(), "member of one group": frozenset({"grief"}), "a user": frozenset({"user7"}),
        "a user in a group": frozenset({"user7", "grief"}), "moderator": frozenset({"mods"}),
        "moderator with a group of their own": frozenset({"mods", "user7"}),
    })
    out = {
        "benchmark": "visibility",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "threads": len(index),
        "restricted": len(restricted),
        "queries": len(queries),
        "rows": rows,
        "private_sets": len(private),
        "view_lookup_us": looked_up,
    }
    print(f"{len(index):,} threads, {len(restricted):,} restricted to one of {len(GROUPS)} groups; "
          f"{len(queries)} Quora dev queries, k=10, in process")
    print("| caller | writes | p50 ms | p99 ms | mean ms |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['caller']} | {r['writes']} | {r['p50_ms']} | {r['p99_ms']} | {r['mean_ms']} |")
    print(f"\n{len(private):,} threads then given a set of groups of their own (a user and the moderators); "
          "microseconds per lookup of the caller's view, views kept")
    print("| caller | lookup us |\n|---|---|")
    for who, us in looked_up.items():
        print(f"| {who} | {us} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
