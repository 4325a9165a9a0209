"""The cross-encoder reranker against the calibrated scorer, on Quora and SemEval-2016 dev pairs.

    python benchmarks/reranker.py [--work DIR] [--quora-train-pairs N] [--train-only] [--json]

Each dataset's reranker is trained by ``qa_search.tools.rerankertraining.train_reranker`` (the
code ``qa-search tune --reranker`` runs: defaults, seed 0, one torch thread) on its train pairs,
and the calibrated scorer is fitted by ``calibrate`` on the same pairs; both then score the
dev pairs, side by side in one run:

- Quora: trained on the 13,789 train pairs (``--quora-train-pairs N`` takes a seeded sample of
  N, for the CPU time), calibrated on all of them in an index of the whole
  137,537-question corpus; measured on the 22,451 labelled dev pairs (``--quora-dev-pairs``
  takes a seeded sample of them, the same for both scorers: 3,000 by default).
- SemEval-2016 Task 3 subtask B: pairs are an original question and each of its 10 candidates
  (PerfectMatch or Relevant = 1), train part 2 to train and calibrate (an index of the train and
  dev questions), the dev file to measure; also dev MAP, each question's candidates ranked by the
  reranker (official scorer rules, ``qa_search.scoring.metrics.semeval_map``).

Figures: AP and recall at precision 0.90 (``qa_search.scoring.metrics``), and the latency of
scoring 20 candidates of one query: the calibrated scorer's pair signals and probability, and the
reranker's 20 pairs in both orders (fp32 and int8 graphs), p50 and p99 over repeated queries.
Trained rerankers and Quora's vectors are kept under ``--work`` for the next run. Prints a
Markdown table, then the JSON (``--json``: the JSON only). :func:`reranker_rows` is what other
benchmarks call for their reranker rows.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import semeval_pairs  # noqa: E402
from progress import log  # noqa: E402

from qa_search import ForumIndex, IndexConfig, Thread, load_embedder  # noqa: E402
from qa_search.embedding.reranker import TRAINED_PAIRS_FILE, Reranker, pair_key  # noqa: E402
from qa_search.operations.lifecycle import build_index  # noqa: E402
from qa_search.scoring.metrics import average_precision, recall_at_precision, semeval_map  # noqa: E402
from qa_search.tools.rerankertraining import train_reranker  # noqa: E402
from qa_search.tools.tuningdata import LabelledPair  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
QUORA = DATA / "quora"
#: Quora train pairs the reranker trains on by default (0: all 13,789): one epoch over all of
#: them (both orders) took 28.5 minutes with one torch thread on 2 shared cores, over a seeded
#: 4,000 of them 9.5 minutes (and 0.07 less AP).
QUORA_TRAIN_PAIRS = 0
#: Quora dev pairs scored by default (a seeded sample, the same for every scorer): the reranker
#: scored about 50 pairs a second (both orders) on 2 busy shared cores, 15 minutes for all 22,451.
QUORA_DEV_PAIRS = 3000
CANDIDATES = 20
LATENCY_QUERIES = 60


def read_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def quora_texts() -> dict[str, str]:
    return {row["id"]: row["text"] for row in read_gz(QUORA / "corpus.jsonl.gz")}


def semeval_train_pairs() -> list[LabelledPair]:
    return [
        LabelledPair(semeval_pairs.text(q), semeval_pairs.text(c), int(c["label"] in semeval_pairs.RELEVANT))
        for q in semeval_pairs.read_questions(semeval_pairs.TRAIN)
        for c in q["candidates"]
    ]


def trained(work: Path, name: str, pairs: Sequence[LabelledPair], max_pairs: int | None) -> Path:
    """The reranker trained on ``pairs`` under ``work/name`` (reused when already there)."""
    out = work / "rerankers" / f"{name}-{max_pairs or 'all'}"
    if (out / "reranker.json").is_file():
        log(f"reusing the reranker in {out}")
        return out
    log(f"training a reranker on {name} ({len(pairs)} pairs, at most {max_pairs or 'all'}) into {out}")
    last = [time.time()]

    def progress(step: int, steps: int) -> None:
        if time.time() - last[0] > 60 or step == steps:
            last[0] = time.time()
            log(f"  {name}: step {step} of {steps}")

    result = train_reranker(pairs, out, max_pairs=max_pairs, threads=1, progress=progress)
    log(f"trained in {result.seconds:.0f} s: {result.to_dict()}")
    return out


def pair_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "ap": round(average_precision(scores, labels), 4),
        "recall_at_precision_0.9": round(recall_at_precision(scores, labels, 0.9).recall, 4),
    }


def latency(fn, queries: Sequence) -> dict:
    """p50 and p99 milliseconds of ``fn(query)`` over ``queries`` (after one warm-up call)."""
    fn(queries[0])
    took = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        took.append((time.perf_counter() - t) * 1000)
    p50, p99 = np.percentile(took, [50, 99])
    return {"p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1)}


def reranker_rows(
    index: ForumIndex,
    reranker_dir: Path,
    dev: Sequence[tuple[str, str, str, str, int]],
    latency_texts: Sequence[str],
    train: Sequence[tuple[str, str, int]] = (),
) -> dict:
    """The calibrated scorer of ``index`` (calibrated already) and the reranker in
    ``reranker_dir`` on ``dev`` pairs ``(id1, id2, text1, text2, label)`` of threads ``index``
    holds: ``{"calibrated": {...}, "reranker fp32": {...}, "reranker int8": {...}}``, each with
    AP, recall at precision 0.90 and the p50/p99 latency of scoring :data:`CANDIDATES`
    candidates of each of ``latency_texts``. With the ``train`` pairs ``(id1, id2, label)`` the
    index was calibrated on, also :func:`blended`'s two rows."""
    labels = np.array([d[4] for d in dev])
    out = {}
    log(f"calibrated scorer on {len(dev)} pairs")
    calibrated = index.pair_scores([(d[0], d[1]) for d in dev])
    cands = [(t, [index.get(h.thread_id).question_text
                  for h in index.find_duplicates(t, k=CANDIDATES, threshold=-1.0)]) for t in latency_texts]
    out["calibrated"] = {**pair_metrics(calibrated, labels), **latency(
        lambda t: index.find_duplicates(t, k=CANDIDATES, threshold=-1.0), list(latency_texts))}
    for precision in ("fp32", "int8"):
        reranker = Reranker.load(reranker_dir, precision=precision)
        log(f"reranker {precision} on {len(dev)} pairs")
        started = time.perf_counter()
        scores = reranker.score([(d[2], d[3]) for d in dev])
        per_pair = (time.perf_counter() - started) / max(len(dev), 1) * 1000
        out[f"reranker {precision}"] = {
            **pair_metrics(scores, labels),
            **latency(lambda tc, r=reranker: r.score([(tc[0], c) for c in tc[1]]), cands),
            "ms_per_pair_bulk": round(per_pair, 2),
        }
        out[f"reranker {precision}"]["_scores"] = scores
    if train:
        out.update(blended(index, reranker_dir, dev, train))
    return out


def with_training_record(reranker_dir: Path, pairs: Sequence[LabelledPair]) -> None:
    """Rerankers trained by this benchmark before ``tune --reranker`` recorded its training pairs
    lack trained_pairs.txt; the benchmark knows what it gave them (``pairs``, the few held out
    for the tiers included), so it writes the record: ``calibrate`` then leaves those pairs out of
    the blend, as it would for a reranker trained now."""
    record = reranker_dir / TRAINED_PAIRS_FILE
    if not record.is_file():
        log(f"recording the {len(pairs)} pairs {reranker_dir.name} was given in {record.name}")
        keys = sorted({pair_key(p.text1, p.text2) for p in pairs})
        record.write_text("".join(f"{k}\n" for k in keys), encoding="utf-8")


def blended(
    index: ForumIndex,
    reranker_dir: Path,
    dev: Sequence[tuple[str, str, str, str, int]],
    train: Sequence[tuple[str, str, int]],
) -> dict:
    """What ``calibrate`` does with the reranker attached: the index calibrated on the ``train``
    pairs (the reranker learned them, so they fit only the calibrated scorer) and one seeded half
    of the ``dev`` pairs (which also choose and fit the blend), measured on the other half, both
    ways round (the mean of the two halves). Beside it, the calibrated scorer fitted on the same
    pairs without the reranker, on the same halves. Restores the index's calibration after."""
    reranker = Reranker.load(reranker_dir)
    order = np.random.default_rng(0).permutation(len(dev))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    before = (index.calibration, index.reranker)
    rows: dict[str, list] = {"calibrated": [], "blend": []}
    chosen = []
    for fit, held in (halves, halves[::-1]):
        pairs = [(a, b) for a, b, _ in train] + [(dev[i][0], dev[i][1]) for i in fit]
        labels = [y for *_, y in train] + [dev[i][4] for i in fit]
        held_pairs, held_labels = [(dev[i][0], dev[i][1]) for i in held], np.array([dev[i][4] for i in held])
        index.reranker = None
        index.calibrate(pairs, labels)
        rows["calibrated"].append(pair_metrics(index.pair_scores(held_pairs), held_labels))
        index.reranker = reranker
        log(f"calibrating with the reranker attached on {len(pairs)} pairs")
        cal = index.calibrate(pairs, labels)
        blend = cal.reranker_blend
        chosen.append(blend.scorer if blend is not None else f"none: {cal.report.get('reranker_blend')}")
        rows["blend"].append(pair_metrics(index.pair_scores(held_pairs, rerank=True), held_labels))
    index.calibration, index.reranker = before

    def mean(metrics: list[dict]) -> dict:
        return {k: round(float(np.mean([m[k] for m in metrics])), 4) for k in metrics[0]}

    return {
        "calibrated, same halves": mean(rows["calibrated"]),
        "calibrated + reranker (blend)": {**mean(rows["blend"]), "chosen": chosen},
    }


def quora(work: Path, max_pairs: int | None, dev_pairs: int | None, train_only: bool) -> dict:
    texts = quora_texts()
    train = [
        LabelledPair(texts[r["id1"]], texts[r["id2"]], int(r["label"]))
        for r in read_gz(QUORA / "train_pairs.jsonl.gz")
    ]
    reranker_dir = trained(work, "quora-train", train, max_pairs)
    if train_only:
        return {}
    index_dir = work / "quora-index"
    embedder = load_embedder()
    if not (index_dir / "CURRENT").exists():
        log(f"Quora: building the whole corpus's index in {index_dir}")
        build_index(index_dir, [Thread(i, t) for i, t in texts.items()], embedder, config=IndexConfig())
    index = ForumIndex.load(index_dir, embedder)
    train_rows = read_gz(QUORA / "train_pairs.jsonl.gz")
    log(f"Quora: calibrating on {len(train_rows)} train pairs")
    train_ids = [(r["id1"], r["id2"], int(r["label"])) for r in train_rows]
    index.calibrate([(a, b) for a, b, _ in train_ids], [y for *_, y in train_ids])
    with_training_record(reranker_dir, train)
    dev = [(r["id1"], r["id2"], texts[r["id1"]], texts[r["id2"]], int(r["label"]))
           for r in read_gz(QUORA / "dev_pairs.jsonl.gz")]
    if dev_pairs and len(dev) > dev_pairs:
        dev = random.Random(0).sample(dev, dev_pairs)
    queries = [r["text"] for r in read_gz(QUORA / "dev_queries.jsonl.gz")]
    latency_texts = random.Random(0).sample(queries, LATENCY_QUERIES)
    rows = reranker_rows(index, reranker_dir, dev, latency_texts, train_ids)
    for row in rows.values():
        row.pop("_scores", None)
    return {"train_pairs_used": max_pairs or len(train), "dev_pairs": len(dev), "rows": rows}


def semeval(work: Path, train_only: bool) -> dict:
    train_pairs = semeval_train_pairs()
    reranker_dir = trained(work, "semeval-train2", train_pairs, None)
    if train_only:
        return {}
    train_q = semeval_pairs.read_questions(semeval_pairs.TRAIN)
    dev_q = semeval_pairs.read_questions(semeval_pairs.DEV)
    threads: dict[str, Thread] = {}
    for q in train_q + dev_q:
        for item in (q, *q["candidates"]):
            key = item.get("query_id") or item["id"]
            title = item["subject"].strip() or item["body"].strip() or key
            threads[key] = Thread(key, title, body=item["body"].strip())
    index = ForumIndex(load_embedder(), IndexConfig())
    index.upsert(threads.values())
    log(f"SemEval: calibrating on {len(train_pairs)} train pairs ({len(threads)} questions indexed)")
    train_ids = [
        (q["query_id"], c["id"], int(c["label"] in semeval_pairs.RELEVANT))
        for q in train_q
        for c in q["candidates"]
    ]
    index.calibrate([(a, b) for a, b, _ in train_ids], [y for *_, y in train_ids])
    with_training_record(reranker_dir, train_pairs)
    dev = [(q["query_id"], c["id"], index.get(q["query_id"]).question_text, index.get(c["id"]).question_text,
            int(c["label"] in semeval_pairs.RELEVANT)) for q in dev_q for c in q["candidates"]]
    rows = reranker_rows(
        index, reranker_dir, dev, [index.get(q["query_id"]).question_text for q in dev_q], train_ids
    )
    # dev MAP: each question's 10 candidates in search-engine order, ranked by each scorer
    calibrated = index.pair_scores([(d[0], d[1]) for d in dev])
    by_pair = {"calibrated": dict(zip([(d[0], d[1]) for d in dev], calibrated, strict=True))}
    for name in ("reranker fp32", "reranker int8"):
        by_pair[name] = dict(zip([(d[0], d[1]) for d in dev], rows[name].pop("_scores"), strict=True))
    for name, scores in by_pair.items():
        runs = []
        for q in dev_q:
            cands = sorted(q["candidates"], key=lambda c: c["ir_rank"])
            runs.append(([float(scores[(q["query_id"], c["id"])]) for c in cands],
                         [c["label"] in semeval_pairs.RELEVANT for c in cands]))
        rows[name]["map"] = round(semeval_map(runs), 2)
    return {"train_pairs": len(train_pairs), "dev_pairs": len(dev), "rows": rows}


def table(result: dict) -> str:
    lines = [
        "| data | scorer | AP | recall @ P0.90 | MAP | p50 ms (20 cand.) | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for data in ("quora", "semeval"):
        for name, row in result.get(data, {}).get("rows", {}).items():
            lines.append(
                f"| {data} | {name} | {row['ap']:.4f} | {row['recall_at_precision_0.9']:.4f} | "
                f"{row.get('map', '')} | {row.get('p50_ms', '')} | {row.get('p99_ms', '')} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "qa_search" / "reranker")
    ap.add_argument("--quora-train-pairs", type=int, default=QUORA_TRAIN_PAIRS, help="0: all 13,789")
    ap.add_argument("--quora-dev-pairs", type=int, default=QUORA_DEV_PAIRS, help="0: all 22,451")
    ap.add_argument("--only", choices=("quora", "semeval"), default=None)
    ap.add_argument("--train-only", action="store_true", help="train (or find) the rerankers and stop")
    ap.add_argument("--json", action="store_true", help="print only the JSON")
    args = ap.parse_args(argv)
    for needed in (QUORA, semeval_pairs.DEV):
        if not needed.exists():
            ap.error(f"{needed} is missing: this benchmark reads ../shared/data beside the repository")
    result: dict = {"date": time.strftime("%Y-%m-%d"), "machine": "2 shared cores"}
    if args.only in (None, "semeval"):
        result["semeval"] = semeval(args.work, args.train_only)
    if args.only in (None, "quora"):
        result["quora"] = quora(
            args.work, args.quora_train_pairs or None, args.quora_dev_pairs or None, args.train_only
        )
    if not args.json:
        print(table(result))
        print()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
