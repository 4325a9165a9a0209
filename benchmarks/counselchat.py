"""Answer-aware thread scoring on CounselChat: do a thread's answers help find it?

    python benchmarks/counselchat.py [--data ../shared/data/counselchat/threads.jsonl.gz]
        [--model M] [--baseline-backend torch] [--json]

The protocol: every CounselChat thread is indexed as its title (the question text,
body left out) and its therapists' answers; each thread's *body* is then a query, and the
thread it came from is the one relevant result. Queries and answers were written for each
other, the title is a one-line summary, so this measures what answers add to a question's
match. Metrics are qa_search.tools.evaluation's (recall@1/5/10, mrr@10, ndcg@10, fractions), for
all 824 queries and per ``source_split`` (the data's own train/val/test column: weights were
chosen on train).

A second, small setting keeps the answer weights honest: the sample forum's duplicate groups
(indexes/sample), where the query is another thread's question (title + body) and the answers
are only context; the query's own thread is removed from its hits.

Rows, side by side in one run with one set of vectors: the by-hand recipe (MiniLM through
sentence-transformers on torch, exact cosine over the titles), and qa_search with the answers
ignored, with the better-of-question-and-answer rule (``agreement_weight=0``, the rule before
issue 6), with the default, and with the optional solved/vote boosts. Prints a Markdown table,
then one JSON line (``--json``: the JSON only).

``evaluate_counselchat(embedder, config)`` is the core, for benchmarks/quality.py.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from qa_search import Answer, ForumIndex, IndexConfig, Thread, load_embedder, read_dump
from qa_search.embedding.models import Embedder
from qa_search.scoring.fusion import brute_force_topk
from qa_search.tools.evaluation import RANKING_METRICS, LabelledQuery, evaluate_queries, score_rankings

ROOT = Path(__file__).resolve().parent.parent
COUNSELCHAT = ROOT.parent / "shared" / "data" / "counselchat" / "threads.jsonl.gz"
SAMPLE_DUMP = ROOT / "indexes" / "sample" / "threads.jsonl"
SAMPLE_GROUPS = ROOT / "indexes" / "sample" / "duplicate_groups.json"
SPLITS = ("train", "val", "test")
METRICS = RANKING_METRICS


class MemoEmbedder:
    """Embeds each distinct text once per process, so every row of the table shares one set of
    vectors and differs only in how threads are scored."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self._memo: dict[str, np.ndarray] = {}

    def __getattr__(self, attr):  # backend, probe tolerance: as the wrapped embedder says
        return getattr(self.inner, attr)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            for text, vec in zip(todo, self.inner.encode(todo, batch_size=batch_size), strict=True):
                self._memo[text] = vec
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        return np.stack([self._memo[t] for t in texts])


def read_counselchat(path: str | Path = COUNSELCHAT) -> list[dict]:
    """The CounselChat threads as the data's README describes them (one JSON object a line)."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def counselchat_threads(rows: list[dict], *, answers: bool = True) -> list[Thread]:
    """Title as the question (no body: the body is the query), answers with their upvotes."""
    return [
        Thread(
            r["thread_id"],
            r["title"].strip(),
            answers=tuple(
                Answer(f"{r['thread_id']}#{i}", a["text"], score=int(a["upvotes"]))
                for i, a in enumerate(r["answers"])
                if answers and a["text"].strip()
            ),
            category=r["topic"],
            url=r["url"],
        )
        for r in rows
    ]


def counselchat_queries(rows: list[dict]) -> list[LabelledQuery]:
    # the query id is not a thread id: finding the query's own thread is the success here
    return [LabelledQuery(f"body:{r['thread_id']}", r["body"], frozenset([r["thread_id"]])) for r in rows]


def evaluate_counselchat(
    embedder: Embedder,
    config: IndexConfig | None = None,
    *,
    path: str | Path = COUNSELCHAT,
    answers: bool = True,
) -> dict:
    """CounselChat by the protocol above: ``{"all" | "train" | "val" | "test": {"recall@1",
    "recall@5", "recall@10", "mrr@10", "ndcg@10" (fractions), "queries"}}``. ``answers=False``
    indexes the titles alone."""
    rows = read_counselchat(path)
    index = ForumIndex(embedder, config)
    index.upsert(counselchat_threads(rows, answers=answers))
    queries = counselchat_queries(rows)
    out = {"all": evaluate_queries(index, queries)}
    for split in SPLITS:
        out[split] = evaluate_queries(
            index, [q for q, r in zip(queries, rows, strict=True) if r["source_split"] == split]
        )
    return out


def by_hand_counselchat(embedder: Embedder, *, path: str | Path = COUNSELCHAT) -> dict:
    """The recipe anyone writes by hand: embed the titles, rank them by exact cosine to the
    body. Same result layout as :func:`evaluate_counselchat`."""
    rows = read_counselchat(path)
    titles = embedder.encode([r["title"].strip() for r in rows])
    bodies = embedder.encode([r["body"] for r in rows])
    _, top = brute_force_topk(bodies, titles, 10)
    ranked = [[rows[j]["thread_id"] for j in row] for row in top.tolist()]
    relevant = [frozenset([r["thread_id"]]) for r in rows]

    def mean(keep: list[bool]) -> dict:
        return score_rankings(
            [x for x, k in zip(ranked, keep, strict=True) if k],
            [x for x, k in zip(relevant, keep, strict=True) if k],
        )

    return {
        "all": mean([True] * len(rows)),
        **{s: mean([r["source_split"] == s for r in rows]) for s in SPLITS},
    }


def by_hand_sample(
    embedder: Embedder, *, dump: str | Path = SAMPLE_DUMP, groups: str | Path = SAMPLE_GROUPS
) -> dict:
    """The by-hand recipe on the sample forum's groups: exact cosine between questions (title +
    body), the query's own thread left out."""
    threads = list(read_dump(dump))
    vectors = embedder.encode([t.question_text for t in threads])
    ids = [t.id for t in threads]
    position = {tid: i for i, tid in enumerate(ids)}
    members = json.loads(Path(groups).read_text(encoding="utf-8"))
    queries = [(m, frozenset(g) - {m}) for g in members for m in g]
    _, top = brute_force_topk(vectors[[position[m] for m, _ in queries]], vectors, 11)
    ranked = [
        [ids[j] for j in row if ids[j] != m][:10] for (m, _), row in zip(queries, top.tolist(), strict=True)
    ]
    scores = score_rankings(ranked, [rel for _, rel in queries])
    return {"mrr@10": scores["mrr@10"], "ndcg@10": scores["ndcg@10"]}


def evaluate_sample_groups(
    embedder: Embedder,
    config: IndexConfig | None = None,
    *,
    dump: str | Path = SAMPLE_DUMP,
    groups: str | Path = SAMPLE_GROUPS,
    answers: bool = True,
) -> dict:
    """The sample forum's duplicate groups: each member's question (title + body) is a query, the
    other members are relevant, its own thread is removed from the hits."""
    threads = list(read_dump(dump))
    if not answers:
        threads = [replace(t, answers=()) for t in threads]
    index = ForumIndex(embedder, config)
    index.upsert(threads)
    by_id = {t.id: t for t in threads}
    members = json.loads(Path(groups).read_text(encoding="utf-8"))
    queries = [LabelledQuery(m, by_id[m].question_text, frozenset(g)) for g in members for m in g]
    return evaluate_queries(index, queries)


#: The rows of the table: (name, config changes, answers indexed).
VARIANTS: list[tuple[str, dict, bool]] = [
    ("qa_search, answers ignored", {}, False),
    ("qa_search, max(q, 0.9 a) (before)", {"agreement_weight": 0.0}, True),
    ("qa_search, max(q, 1.0 a)", {"agreement_weight": 0.0, "answer_weight": 1.0}, True),
    ("qa_search default", {}, True),
    ("default, agreement_weight 0.5", {"agreement_weight": 0.5}, True),
    ("default, lexical_weight 0", {"lexical_weight": 0.0}, True),
    ("default + vote_boost 0.02", {"vote_boost": 0.02}, True),
    ("default + vote_boost 0.05", {"vote_boost": 0.05}, True),
    ("default + vote_boost 0.05, vote_cap 10", {"vote_boost": 0.05, "vote_cap": 10}, True),
    ("default + solved_boost 0.02", {"solved_boost": 0.02}, True),
    ("default + solved_boost 0.05", {"solved_boost": 0.05}, True),
]


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(COUNSELCHAT), help="CounselChat threads.jsonl.gz")
    ap.add_argument("--model", default=None, help="sentence-transformers model [default: packaged MiniLM]")
    ap.add_argument(
        "--baseline-backend", default="torch", help="encoder of the by-hand row (torch, as by hand) [torch]"
    )
    ap.add_argument("--json", action="store_true", help="print only the JSON")
    args = ap.parse_args(argv)

    embedder = MemoEmbedder(load_embedder(args.model))
    by_hand = load_embedder(args.model, backend=args.baseline_backend)
    baseline = by_hand_counselchat(by_hand, path=args.data)
    rows = {
        "by hand: MiniLM + exact cosine over questions": {
            "counselchat": baseline,
            "sample": by_hand_sample(by_hand),
        }
    }
    for name, changes, answers in VARIANTS:
        config = IndexConfig(**changes)
        rows[name] = {
            "config": changes,
            "counselchat": evaluate_counselchat(embedder, config, path=args.data, answers=answers),
            "sample": evaluate_sample_groups(embedder, config, answers=answers),
        }
    result = {"model": embedder.name, "backend": getattr(embedder, "backend", None), "rows": rows}
    if not args.json:
        print(
            f"CounselChat: {baseline['all']['queries']} body queries, own thread relevant; "
            f"sample: duplicate groups. model {embedder.name}. Percent."
        )
        print()
        print(
            "| scoring | R@1 | R@5 | R@10 | MRR@10 | nDCG@10 | nDCG train / val / test | "
            "sample nDCG@10 / MRR@10 |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, r in rows.items():
            cc = r["counselchat"]
            a = cc["all"]
            splits = " / ".join(pct(cc[s]["ndcg@10"]) for s in SPLITS)
            sample = (
                "" if r["sample"] is None else f"{pct(r['sample']['ndcg@10'])} / {pct(r['sample']['mrr@10'])}"
            )
            cells = " | ".join(pct(a[m]) for m in METRICS)
            print(f"| {name} | {cells} | {splits} | {sample} |")
        print()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
