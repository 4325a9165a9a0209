"""Duplicates already in the forum, on Quora: pairwise precision and recall of ``dedupe``.

    nice .venv/bin/python benchmarks/dedupe.py [--vectors-cache IDS.json VECS.npy] \
        [--index-dir DIR] [--json]

The whole Quora corpus (137,537 questions) is indexed as threads (embedded with the default
encoder, or taken from ``--vectors-cache``: corpus ids in a JSON list and an (n, 384) ``.npy`` of
the same encoder's vectors), saved and loaded back (so the question index is HNSW, as the CLI
would find it), and its duplicate scorer is calibrated on the **train** pairs only. ``dedupe``
then runs with its defaults (raw cosine) and with ``--min-probability`` at the "duplicate" tier,
each timed end to end. With ``--index-dir`` the built, calibrated index is
kept there and reused by the next run.

Truth: the dev clusters, each dev query with its ``relevant_ids`` (disjoint by construction).
Pairwise recall: of all pairs inside a dev cluster, the fraction put in one predicted cluster.
Pairwise precision: of the predicted same-cluster pairs whose two ends are both dev-cluster
members, the fraction inside one dev cluster. Quora's labels are incomplete (two dev clusters,
or a dev question and an unlabelled one, can be real duplicates), so precision is a lower bound.

Side by side on the same neighbour graph (each question's 10 nearest): connected components of
raw cosine >= the index's duplicate_threshold (the by-hand recipe), dedupe's defaults (average
linkage of the same cosines), then components, average and complete linkage of the calibrated scores at the
"duplicate" tier and at probability 0.5.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from qa_search import ForumIndex, SnapshotError, Thread, find_duplicate_clusters, load_embedder
from qa_search.scoring.ann import single_threaded
from qa_search.storage.generations import resolve_snapshot
from qa_search.tools.dedupe import cluster_edges, neighbour_pairs, symmetric_scorer

QUORA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "quora"
NEIGHBOURS = 10


def read_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def build(index_dir: Path, vectors_cache: tuple[str, str] | None) -> dict:
    """Index the corpus, calibrate on the train pairs, publish into ``index_dir``."""
    corpus = read_jsonl(QUORA / "corpus.jsonl.gz")
    threads = [Thread(c["id"], c["text"]) for c in corpus]
    index = ForumIndex(load_embedder())
    vectors = None
    if vectors_cache:
        ids = json.loads(Path(vectors_cache[0]).read_text())
        vecs = np.load(vectors_cache[1], mmap_mode="r")
        if ids != [c["id"] for c in corpus]:
            raise SystemExit(f"{vectors_cache[0]} does not list the corpus ids in corpus order")
        vectors = {t.question_text: vecs[i] for i, t in enumerate(threads)}
    started = time.perf_counter()
    index.upsert(threads, vectors=vectors)
    embed_s = time.perf_counter() - started
    pairs = read_jsonl(QUORA / "train_pairs.jsonl.gz")
    cal = index.calibrate([(p["id1"], p["id2"]) for p in pairs], [p["label"] for p in pairs])
    index.save(index_dir)
    return {
        "index_seconds": round(embed_s, 1),
        "vectors_from_cache": vectors is not None,
        "train_pairs": cal.report,
    }


def dev_truth() -> dict[str, int]:
    """Dev-cluster member -> its cluster's number."""
    truth = {}
    for n, q in enumerate(read_jsonl(QUORA / "dev_queries.jsonl.gz")):
        for tid in (q["query_id"], *q["relevant_ids"]):
            truth[tid] = n
    return truth


def _pairs(counts) -> int:
    return sum(c * (c - 1) // 2 for c in counts)


def pairwise(groups: list[list[str]], truth: dict[str, int]) -> dict:
    """Pairwise precision and recall of predicted clusters (thread ids) against the dev clusters."""
    gold = _pairs(Counter(truth.values()).values())
    predicted = correct = 0
    for g in groups:
        labels = [truth[t] for t in g if t in truth]
        predicted += _pairs([len(labels)])
        correct += _pairs(Counter(labels).values())
    return {
        "precision": round(correct / predicted, 4) if predicted else None,
        "recall": round(correct / gold, 4),
        "predicted_pairs": predicted,
        "correct_pairs": correct,
        "gold_pairs": gold,
    }


def sizes(groups: list[list[str]]) -> dict:
    s = np.array([len(g) for g in groups]) if groups else np.zeros(0, int)
    return {
        "clusters": len(groups),
        "clustered_threads": int(s.sum()),
        "max_size": int(s.max()) if len(s) else 0,
        "mean_size": round(float(s.mean()), 2) if len(s) else 0.0,
        "size_2": int((s == 2).sum()),
        "size_3_5": int(((s >= 3) & (s <= 5)).sum()),
        "size_6_20": int(((s >= 6) & (s <= 20)).sum()),
        "size_over_20": int((s > 20).sum()),
    }


class CachedScorer:
    """The index's symmetric pair scorer with every score kept, shared by the variants."""

    def __init__(self, index: ForumIndex, tids: list[str]) -> None:
        self.score = symmetric_scorer(index, tids)
        self.known: dict[tuple[int, int], float] = {}

    def __call__(self, pairs):
        missing = [p for p in pairs if p not in self.known]
        if missing:
            self.known.update(zip(missing, self.score(missing).tolist(), strict=True))
        return np.array([self.known[p] for p in pairs])


def measure(index: ForumIndex, truth: dict[str, int]) -> tuple[dict, list[dict], dict]:
    rows = []
    for label, by in (("defaults: raw cosine", "cosine"), ("--min-probability at the tier", "probability")):
        t0 = time.perf_counter()
        result = find_duplicate_clusters(index, by=by)
        if by == "cosine":
            headline = {k: v for k, v in result.to_dict().items() if k != "clusters"}
        groups = [[t.thread_id for t in c.threads] for c in result.clusters]
        rows.append(
            {
                "method": f"qa_search dedupe ({label}, {result.linkage} linkage)",
                "threshold": round(result.threshold, 4),
                **pairwise(groups, truth),
                **sizes(groups),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )

    with single_threaded():  # as dedupe itself scores: many small neighbourhood searches
        return headline, *variants(index, truth, result, rows)


def variants(index: ForumIndex, truth: dict[str, int], result, rows: list[dict]) -> tuple[list[dict], dict]:
    """The baselines and other clusterings on one neighbour graph, and the cosine floor's check."""
    tids, cos, nbr = index.question_neighbours(NEIGHBOURS)
    cosine_threshold = index.config.duplicate_threshold
    edges, ecos = neighbour_pairs(nbr, cos, cosine_threshold)
    nodes, _ = cluster_edges(len(tids), edges, ecos, cosine_threshold, "single")
    groups = [[tids[i] for i in g] for g in nodes]
    rows.insert(
        0,
        {
            "method": "baseline: components of raw cosine",
            "threshold": cosine_threshold,
            **pairwise(groups, truth),
            **sizes(groups),
            "seconds": None,
        },
    )

    scorer = CachedScorer(index, tids)
    edges, ecos = neighbour_pairs(nbr, cos, result.cosine_floor)
    scores = scorer([tuple(e) for e in edges.tolist()])
    for threshold in (result.threshold, 0.5):
        for linkage in ("single", "average", "complete"):
            if threshold == result.threshold and linkage == result.linkage:
                continue  # the --min-probability row above
            nodes, _ = cluster_edges(len(tids), edges, scores, threshold, linkage, scorer)
            groups = [[tids[i] for i in g] for g in nodes]
            name = "components" if linkage == "single" else f"{linkage} linkage"
            rows.append(
                {
                    "method": f"calibrated, {name}",
                    "threshold": round(threshold, 4),
                    **pairwise(groups, truth),
                    **sizes(groups),
                    "seconds": None,
                }
            )

    # what the cosine floor leaves out: the best score among neighbour pairs just below it
    rng = np.random.default_rng(0)
    below, bcos = neighbour_pairs(nbr, cos, result.cosine_floor - 0.1)
    below = below[bcos < result.cosine_floor]
    sample = below[rng.choice(len(below), min(5000, len(below)), replace=False)]
    probs = scorer([tuple(e) for e in sample.tolist()])
    floor = {
        "cosine_floor": result.cosine_floor,
        "sampled_pairs_just_below": len(sample),
        "cosine_range": [round(result.cosine_floor - 0.1, 2), result.cosine_floor],
        "max_score": round(float(probs.max()), 4) if len(probs) else None,
        "share_reaching_0.5": round(float((probs >= 0.5).mean()), 5) if len(probs) else None,
    }
    return rows, floor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--vectors-cache", nargs=2, metavar=("IDS_JSON", "VECS_NPY"), help="precomputed corpus vectors"
    )
    ap.add_argument("--index-dir", type=Path, help="keep the calibrated index here (reused when present)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = args.index_dir or Path(tmp) / "quora"
        try:
            resolve_snapshot(index_dir)
            built = {"reused": str(index_dir)}
        except SnapshotError:  # nothing published there yet: build it
            built = build(index_dir, args.vectors_cache)
        t0 = time.perf_counter()
        index = ForumIndex.load(index_dir)
        built["load_seconds"] = round(time.perf_counter() - t0, 1)
        if index.calibration is None:
            raise SystemExit(f"{index_dir} holds an uncalibrated index; remove it to rebuild")
        built["tiers"] = {k: round(v, 4) for k, v in index.calibration.tiers.items()}
        truth = dev_truth()
        headline, rows, floor = measure(index, truth)
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "corpus": headline["threads"],
        "dev_clusters": len(set(truth.values())),
        "index": built,
        "dedupe": headline,
        "rows": rows,
        "floor_check": floor,
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"Quora: {out['corpus']} questions, {out['dev_clusters']} dev clusters "
        f"({rows[0]['gold_pairs']} gold pairs); dedupe {headline['seconds']:.1f} s "
        f"({headline['candidate_pairs']} candidate pairs, {headline['scored_pairs']} scored)"
    )
    head = f"{'method':<44} {'thresh':>7} {'prec':>6} {'recall':>6} {'clusters':>8} {'threads':>7} {'max':>5}"
    print(head)
    for r in rows:
        p = "-" if r["precision"] is None else f"{r['precision']:.3f}"
        print(
            f"{r['method']:<44} {r['threshold']:>7.3f} {p:>6} {r['recall']:>6.3f} {r['clusters']:>8} "
            f"{r['clustered_threads']:>7} {r['max_size']:>5}"
        )
    print(f"floor check: {json.dumps(floor)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
