"""Retrieval and duplicate quality, side by side, on the three dev sets.

    python benchmarks/quality.py [--tuned-model DIR] [--work DIR] [--skip-tuned] [--json]
                                [--duplicates] [--reranker-work DIR] [--only-duplicates]

Four systems, measured in one run on the same data:

- **by hand**: all-MiniLM-L6-v2 in fp32 (ONNX Runtime, identical to torch: cosine >= 0.9999999,
  see benchmarks/encoders.py) and exact cosine between question texts; for duplicate pairs the
  raw cosine;
- **BM25**: bm25s with Snowball stemming (qa_search.scoring.lexical) alone;
- **qa_search**: the library's defaults, ``IndexConfig()`` (ONNX int8 encoder, dense + BM25
  weighted by the query's best lexical coverage, answer-aware thread score, chosen by
  benchmarks/defaults.py; snapshot built and loaded as `qa-search build` does it: HNSW over
  8-bit vectors for the 137k Quora questions); duplicate pairs scored by `calibrate`'s scorer;
- **qa_search tuned**: the same with a model fine-tuned by `qa_search.tools.tuning.tune` (defaults,
  seed 0) on SemEval-2016 train part 2 (``--tuned-model`` reuses one made earlier), and the
  index settings it recommends (``qa_search.json`` beside it: lexical weight 0.25), as
  `qa-search build --model` applies them. Quora's train pairs are left out: the model was
  trained on Quora already, and one epoch on them measured -0.1 nDCG@10.

Datasets (../shared/data, see its README):

- Quora dev: the whole 137,537-question corpus indexed, 5,000 queries, the query's own id removed;
  recall@1/10, MRR@10, nDCG@10. Duplicate pairs: the 22,451 dev pairs split in two halves by
  connected component; calibrate on one half, measure AP and recall at precision 0.90 on the
  other, both ways round, mean of the two (by hand and BM25: their raw scores on the same halves).
- SemEval-2016 Task 3 subtask B dev: each question's 10 candidates reranked, official MAP.
- CounselChat: threads indexed as title + answers, each body a query for its own thread
  (benchmarks/counselchat.py); BM25 indexes title + answers as one document.

Two summary rows: each system's worst relative change against by hand over the three sets'
main metrics (Quora nDCG@10, SemEval MAP, CounselChat nDCG@10), and the share of off-topic
queries (benchmarks/relevance.py's written list: gibberish, other languages, emoji, long junk,
off-topic English) that find nothing on CounselChat at the cut the model ships with (by hand
and BM25 always return k threads; a model without a relevance model, such as a tuned one, too).

Duplicate verdicts, in two more tables:

- ``--duplicates``: out of the box, what an index with no calibration of its own answers with the
  calibration shipped for the default model (on the forum's cosine scale), as
  benchmarks/default_calibration.py measures it, on data it was not fitted on: Quora dev pairs
  (relevance.py's 20,000-question subset), SemEval-2016 dev and the sample forum's documented
  groups; AP and precision / recall at each tier, and the worst set;
- ``--reranker-work DIR``: the cross-encoder reranker beside the calibrated scorer, from
  benchmarks/reranker.py (rerankers trained on Quora train and SemEval train part 2, kept under
  DIR; training one takes about half an hour on 2 cores): AP, recall at precision 0.90, SemEval
  MAP and the latency of 20 candidates.

``--only-duplicates`` runs only those. Vectors are cached under ``--work`` (default
~/.cache/qa_search/quality), so a second run skips the embedding. Prints the Markdown tables,
then the JSON (``--json``: the JSON only).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import counselchat  # noqa: E402
import default_calibration  # noqa: E402
import relevance  # noqa: E402
import reranker as reranker_benchmark  # noqa: E402
import semeval  # noqa: E402
import semeval_pairs  # noqa: E402
from progress import log  # noqa: E402

from qa_search import ForumIndex, IndexConfig, Thread, load_embedder  # noqa: E402
from qa_search.embedding.cache import CachedEmbedder, EmbeddingCache  # noqa: E402
from qa_search.embedding.model_defaults import model_defaults  # noqa: E402
from qa_search.embedding.models import (  # noqa: E402
    DEFAULT_MODEL,  # noqa: E402
    model_fingerprint,
    probe_vectors,
)
from qa_search.embedding.tuned import model_index_settings  # noqa: E402
from qa_search.index.relevance import relevance_model  # noqa: E402
from qa_search.operations.lifecycle import build_index  # noqa: E402
from qa_search.scoring.calibration import Calibration, pair_groups  # noqa: E402
from qa_search.scoring.fusion import brute_force_topk  # noqa: E402
from qa_search.scoring.lexical import LexicalIndex  # noqa: E402
from qa_search.scoring.metrics import average_precision, recall_at_precision, semeval_map  # noqa: E402
from qa_search.tools.evaluation import (  # noqa: E402
    LabelledPair,
    evaluate_pairs,
    evaluate_queries,
    read_queries,
    score_rankings,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
QUORA = DATA / "quora"
SEMEVAL_DEV = DATA / "semeval_cqa" / "semeval2016_subtaskB_dev.jsonl"
SEMEVAL_TRAIN = DATA / "semeval_cqa" / "semeval2016_subtaskB_train_part2.jsonl"
SYSTEMS = ("by hand", "BM25", "qa_search", "qa_search tuned")


def cached(embedder, work: Path, tag: str):
    """``embedder`` answering from a disk cache under ``work/vectors`` (one per model and runtime)."""
    fingerprint = f"{model_fingerprint(probe_vectors(embedder))}-{tag}"
    return CachedEmbedder(embedder, EmbeddingCache(work / "vectors", fingerprint, embedder.dimension))


def quora_corpus() -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with gzip.open(QUORA / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            ids.append(row["id"])
            texts.append(row["text"])
    return ids, texts


def quora_pair_halves() -> list[tuple[list[LabelledPair], list[LabelledPair]]]:
    """Dev pairs split in two by connected component: [(calibrate on, measure on)] both ways."""
    with gzip.open(QUORA / "dev_pairs.jsonl.gz", "rt", encoding="utf-8") as fh:
        pairs = [LabelledPair(**json.loads(line)) for line in fh if line.strip()]
    side = [zlib.crc32(str(g).encode()) % 2 for g in pair_groups([(p.id1, p.id2) for p in pairs])]
    halves = [[p for p, s in zip(pairs, side, strict=True) if s == h] for h in (0, 1)]
    return [(halves[0], halves[1]), (halves[1], halves[0])]


def ranking_metrics(ranked: list[list[str]], relevant: list[frozenset[str]]) -> dict:
    return pick(score_rankings(ranked, relevant))


def pair_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "ap": average_precision(scores, labels),
        "recall_at_precision_0.9": recall_at_precision(scores, labels, 0.9).recall,
    }


def mean_of(halves: list[dict]) -> dict:
    return {k: round(float(np.mean([h[k] for h in halves])), 6) for k in halves[0]}


# -- Quora ------------------------------------------------------------------------------


def quora_by_hand_and_bm25(fp32, queries) -> dict:
    ids, texts = quora_corpus()
    pos = {d: i for i, d in enumerate(ids)}
    log(f"Quora: embedding {len(texts)} questions in fp32 (cached after the first run)")
    vectors = fp32.encode(texts, batch_size=128)
    qrows = np.array([pos[q.query_id] for q in queries])
    _, top = brute_force_topk(vectors[qrows], vectors, 11)
    dense = [[ids[j] for j in row if ids[j] != q.query_id][:10] for q, row in zip(queries, top, strict=True)]
    log("Quora: BM25")
    lexical = LexicalIndex.build(ids, texts)
    bm25 = []
    for q in queries:
        s = lexical.scores(q.text)
        s[pos[q.query_id]] = -1.0
        best = np.argpartition(-s, 10)[:10]
        best = best[np.argsort(-s[best], kind="stable")]
        bm25.append([ids[j] for j in best])
    relevant = [q.relevant_ids for q in queries]
    result = {"by hand": ranking_metrics(dense, relevant), "BM25": ranking_metrics(bm25, relevant)}
    pairs_by_hand, pairs_bm25 = [], []
    for _, measure in quora_pair_halves():
        a = np.array([pos[p.id1] for p in measure])
        b = np.array([pos[p.id2] for p in measure])
        labels = np.array([p.label for p in measure])
        pairs_by_hand.append(pair_metrics(np.einsum("ij,ij->i", vectors[a], vectors[b]), labels))
        lex = lexical.score_pairs([texts[i] for i in a], [ids[i] for i in b])
        pairs_bm25.append(pair_metrics(lex, labels))
    result["by hand"].update(mean_of(pairs_by_hand))
    result["BM25"].update(mean_of(pairs_bm25))
    return result


def quora_qa_search(embedder, config: IndexConfig, work: Path, name: str, queries) -> dict:
    ids, texts = quora_corpus()
    index_dir = work / f"quora-{name}"
    log(f"Quora: building the {name} index in {index_dir} (embeddings cached there)")
    threads = [Thread(i, t) for i, t in zip(ids, texts, strict=True)]
    report = build_index(index_dir, threads, embedder, config=config)
    log(f"Quora: built ({report.embedded} embedded, {report.reused} reused); searching")
    index = ForumIndex.load(index_dir, embedder)
    result = pick(evaluate_queries(index, queries))
    halves = []
    for fit_on, measure in quora_pair_halves():
        log(f"Quora: calibrating on {len(fit_on)} pairs, measuring on {len(measure)}")
        index.calibrate([(p.id1, p.id2) for p in fit_on], [p.label for p in fit_on])
        got = evaluate_pairs(index, measure)
        halves.append({"ap": got["ap"], "recall_at_precision_0.9": got["recall_at_precision_0.9"]})
    result.update(mean_of(halves))
    return result


# -- SemEval ----------------------------------------------------------------------------


def semeval_runs(questions, score) -> float:
    return round(100 * semeval_map(semeval.rank_runs(questions, score)), 2)


def semeval_by_hand_and_bm25(fp32) -> dict:
    questions = semeval.read_semeval(SEMEVAL_DEV)

    def text(item: dict) -> str:
        return semeval.question_text(item["subject"], item["body"])

    def dense(q, cands):
        vecs = fp32.encode([text(q)] + [text(c) for c in cands])
        return (vecs[1:] @ vecs[0]).tolist()

    all_cands = [c for q in questions for c in q["candidates"]]
    lexical = LexicalIndex.build([c["id"] for c in all_cands], [text(c) for c in all_cands])

    def bm25(q, cands):
        s = lexical.scores(text(q))
        return [float(s[lexical.position[c["id"]]]) for c in cands]

    return {"by hand": semeval_runs(questions, dense), "BM25": semeval_runs(questions, bm25)}


# -- CounselChat ------------------------------------------------------------------------


def counselchat_bm25() -> dict:
    rows = counselchat.read_counselchat()
    docs = [" ".join([r["title"], *(a["text"] for a in r["answers"])]) for r in rows]
    lexical = LexicalIndex.build([r["thread_id"] for r in rows], docs)
    ranked = []
    for r in rows:
        s = lexical.scores(r["body"])
        best = np.argsort(-s, kind="stable")[:10]
        ranked.append([rows[j]["thread_id"] for j in best])
    return ranking_metrics(ranked, [frozenset([r["thread_id"]]) for r in rows])


def off_topic_rejected(embedder, config: IndexConfig) -> float:
    """The share of relevance.py's written off-topic queries that find nothing on CounselChat
    at the model's shipped cut (0 for a model without a relevance model: every query finds k
    threads)."""
    index = ForumIndex(embedder, config)
    index.upsert(counselchat.counselchat_threads(counselchat.read_counselchat()))
    model = relevance_model(index)
    if model is None:
        return 0.0
    texts = [t for kind in relevance.OFF_TOPIC.values() for t in kind] + relevance.OFF_TOPIC_EN
    pages = index.search_many(texts, 5, min_relevance=model.min_relevance)
    return round(sum(not hits for hits in pages) / len(texts), 6)


def pick(d: dict) -> dict:
    return {k: d[k] for k in ("recall@1", "recall@10", "mrr@10", "ndcg@10")}


# -- the run ----------------------------------------------------------------------------


def tuned_model(work: Path, given: str | None) -> str:
    if given:
        return given
    from qa_search.tools import tuning, tuningdata

    out = work / "tuned-semeval-train2"
    if tuning.tuned_recipe(out) == tuning.RECIPE:
        log(f"reusing the tuned model in {out}")
        return str(out)
    if out.exists():
        log(f"{out} was tuned by an older recipe: tuning again")
        shutil.rmtree(out)

    with tempfile.TemporaryDirectory() as tmp:
        pairs_file = Path(tmp) / "pairs.jsonl"
        semeval_pairs.write_pairs(SEMEVAL_TRAIN, pairs_file)
        pairs = tuningdata.read_pairs([pairs_file])
        log(f"tuning on {len(pairs)} SemEval train part 2 pairs (defaults, seed 0) into {out}")
        tuning.tune(pairs, out)
    return str(out)


def run(work: Path, tuned: str | None, skip_tuned: bool) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    queries = read_queries(QUORA / "dev_queries.jsonl.gz")
    fp32 = cached(load_embedder(backend="onnx"), work, "onnx-fp32")
    systems = {"qa_search": (load_embedder(), IndexConfig())}
    if not skip_tuned:
        model = tuned_model(work, tuned)
        # what `qa-search build --model` starts a new index from
        tuned_config = IndexConfig().updated(model_index_settings(model))
        systems["qa_search tuned"] = (load_embedder(model), tuned_config)

    out: dict = {"quora": {}, "semeval_dev": {}, "counselchat": {}}
    out["quora"].update(quora_by_hand_and_bm25(fp32, queries))
    out["semeval_dev"].update({k: {"map": v} for k, v in semeval_by_hand_and_bm25(fp32).items()})
    log("CounselChat: by hand and BM25")
    out["counselchat"]["by hand"] = pick(counselchat.by_hand_counselchat(fp32)["all"])
    out["counselchat"]["BM25"] = counselchat_bm25()
    for name, (embedder, config) in systems.items():
        out["quora"][name] = quora_qa_search(embedder, config, work, name.replace(" ", "-"), queries)
        log(f"SemEval and CounselChat: {name}")
        out["semeval_dev"][name] = {"map": semeval.semeval_file_map(SEMEVAL_DEV, embedder, config)}
        out["counselchat"][name] = pick(counselchat.evaluate_counselchat(embedder, config)["all"])
        out["counselchat"][name]["off_topic_rejected"] = off_topic_rejected(embedder, config)
    for s in ("by hand", "BM25"):
        out["counselchat"][s]["off_topic_rejected"] = 0.0  # k threads for every query
    out["worst_vs_by_hand"] = worst_vs_by_hand(out)
    out["settings"] = {name: config.changed() for name, (_, config) in systems.items()}
    out["tuned_model"] = None if skip_tuned else systems["qa_search tuned"][0].name
    out["seconds"] = round(time.time() - started, 1)
    return out


def duplicates_out_of_the_box() -> dict:
    """The shipped duplicate calibration at its tiers on data it was not fitted on (see
    benchmarks/default_calibration.py), and the worst set by the "related" tier's precision."""
    log("duplicates out of the box: Quora dev subset, SemEval dev, the sample forum")
    cal = Calibration.from_dict(model_defaults(DEFAULT_MODEL)["duplicate_calibration"])
    embedder = default_calibration.cached_embedder()
    sets = {
        "quora_dev": default_calibration.quora_dev(embedder)[:3],
        "semeval_dev": default_calibration.semeval(embedder, "dev")[:3],
        "sample": default_calibration.sample(embedder)[:3],
    }
    embedder.save()
    out = {name: default_calibration.at_tiers(cal, *data) for name, data in sets.items()}
    worst = min(out, key=lambda n: out[n]["related"]["precision"])
    return {"sets": out, "tiers": cal.tiers, "worst_related_precision": worst}


def duplicates_table(result: dict) -> str:
    tiers = list(result["tiers"])
    head = " | ".join(f'"{t}" precision / recall' for t in tiers)
    lines = [f"| data (not fitted on) | pairs | AP | {head} |", "|---" * (3 + len(tiers)) + "|"]
    for name, r in result["sets"].items():
        cells = [f"{100 * r[t]['precision']:.1f}% / {100 * r[t]['recall']:.1f}%" for t in tiers]
        worst = " (worst)" if name == result["worst_related_precision"] else ""
        lines.append(f"| {name}{worst} | {r['pairs']} | {r['ap']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reranker_figures(work: Path) -> dict:
    """benchmarks/reranker.py's rows: Quora dev pairs (3,000 of them) and SemEval-2016 dev."""
    return {
        "quora": reranker_benchmark.quora(work, None, reranker_benchmark.QUORA_DEV_PAIRS, False),
        "semeval": reranker_benchmark.semeval(work, False),
    }


#: Each set's main metric, for the worst-set row.
MAIN = (("quora", "ndcg@10"), ("semeval_dev", "map"), ("counselchat", "ndcg@10"))


def worst_vs_by_hand(result: dict) -> dict:
    """Each system's worst relative change against by hand over :data:`MAIN`, and on which set."""
    out = {}
    for system in result["quora"]:
        rel = {d: result[d][system][m] / result[d]["by hand"][m] - 1 for d, m in MAIN if system in result[d]}
        worst = min(rel, key=lambda d: rel[d])
        out[system] = {"rel": round(rel[worst], 6), "set": worst}
    return out


ROWS = (
    ("Quora dev nDCG@10", "quora", "ndcg@10"),
    ("Quora dev MRR@10", "quora", "mrr@10"),
    ("Quora dev recall@1", "quora", "recall@1"),
    ("Quora dev recall@10", "quora", "recall@10"),
    ("Quora dev pairs AP (held-out half)", "quora", "ap"),
    ("Quora dev pairs recall at precision 0.90", "quora", "recall_at_precision_0.9"),
    ("SemEval-2016 dev MAP", "semeval_dev", "map"),
    ("CounselChat nDCG@10", "counselchat", "ndcg@10"),
    ("CounselChat recall@1", "counselchat", "recall@1"),
    ("Off-topic queries finding nothing (CounselChat)", "counselchat", "off_topic_rejected"),
)


def table(result: dict) -> str:
    systems = [s for s in SYSTEMS if s in result["quora"]]
    lines = ["| metric | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for label, dataset, key in ROWS:
        cells = []
        for s in systems:
            v = result[dataset].get(s, {}).get(key)
            cells.append("" if v is None else f"{v:.2f}" if dataset == "semeval_dev" else f"{100 * v:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    worst = result.get("worst_vs_by_hand", {})
    cells = [f"{100 * worst[s]['rel']:+.2f}% ({worst[s]['set']})" if s in worst else "" for s in systems]
    lines.append("| Worst set vs by hand (relative) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "qa_search" / "quality")
    ap.add_argument("--tuned-model", default=None, help="a tuned model directory to measure")
    ap.add_argument("--skip-tuned", action="store_true", help="leave out the tuned model's column")
    ap.add_argument("--duplicates", action="store_true", help="also the out-of-the-box duplicate table")
    ap.add_argument("--reranker-work", type=Path, default=None,
                    help="also the reranker table, its rerankers trained (or reused) under this directory")
    ap.add_argument("--only-duplicates", action="store_true", help="only the duplicate tables")
    ap.add_argument("--json", action="store_true", help="print only the JSON")
    args = ap.parse_args(argv)
    for needed in (QUORA, SEMEVAL_DEV, counselchat.COUNSELCHAT):
        if not needed.exists():
            ap.error(f"{needed} is missing: this benchmark reads ../shared/data beside the repository")
    result: dict = {} if args.only_duplicates else run(args.work, args.tuned_model, args.skip_tuned)
    tables = [] if args.only_duplicates else [table(result)]
    if args.duplicates or args.only_duplicates:
        result["duplicates_out_of_the_box"] = duplicates_out_of_the_box()
        tables.append(duplicates_table(result["duplicates_out_of_the_box"]))
    if args.reranker_work is not None:
        result["reranker"] = reranker_figures(args.reranker_work)
        tables.append(reranker_benchmark.table(result["reranker"]))
    if not args.json:
        for t in tables:
            print(t)
            print()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
