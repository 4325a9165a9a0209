"""Measuring an index: retrieval quality on labelled queries, duplicate verdicts on labelled pairs.

Query files hold one ``{"query_id", "text", "relevant_ids"}`` per line; pair files one
``{"id1", "id2", "label"}`` of thread ids in the index. Both are UTF-8 and may be
gzip-compressed (``.gz``). A line that cannot be read, an unreadable ``.gz`` included, raises
:class:`DumpFormatError` (file, line, reason); a file without any query or pair raises
:class:`QASearchError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa_search.dumps import OnRepeat, PairLines, json_line, numbered_lines, pair_label
from qa_search.errors import DumpFormatError, QASearchError, UnknownThreadError
from qa_search.index.forum import ForumIndex
from qa_search.scoring.metrics import (
    average_precision,
    mrr_at_k,
    ndcg_at_k,
    precision_recall_at,
    recall_at_k,
    recall_at_precision,
)
from qa_search.threads import thread_id


@dataclass(frozen=True, slots=True)
class LabelledQuery:
    query_id: str
    text: str
    relevant_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class LabelledPair:
    id1: str
    id2: str
    label: int
    #: The pair's 1-based line in its file (0: not read from a file).
    line: int = field(default=0, compare=False)


def json_objects(path: str | Path) -> Iterator[tuple[int, dict]]:
    """The 1-based number and JSON object of each non-blank line of ``path`` (``.gz``: gzip).

    Lines are read as bytes and decoded one by one, so a bad byte is pinned to its line.
    """
    path = Path(path)
    for n, raw in numbered_lines(path):
        try:
            obj = json_line(raw)
        except ValueError as exc:
            raise DumpFormatError(str(path), n, str(exc)) from exc
        if obj is None:
            continue
        if not isinstance(obj, dict):
            raise DumpFormatError(str(path), n, "expected a JSON object")
        yield n, obj


def read_queries(path: str | Path) -> list[LabelledQuery]:
    """Labelled queries: ``{"query_id", "text", "relevant_ids": [...]}`` per line.

    Raises :class:`DumpFormatError` naming the first bad line, :class:`QASearchError` for a file
    without a query.
    """
    out = []
    for n, obj in json_objects(path):
        try:
            query_id, text, relevant = obj["query_id"], obj["text"], obj["relevant_ids"]
        except KeyError as exc:
            raise DumpFormatError(str(path), n, f"missing required field {exc.args[0]!r}") from None
        if not isinstance(text, str) or not text.strip():
            raise DumpFormatError(str(path), n, "'text' must be a non-empty string")
        if not isinstance(relevant, list):
            raise DumpFormatError(str(path), n, "'relevant_ids' must be a list of thread ids")
        try:
            qid = thread_id(query_id, "'query_id'")
            ids = frozenset(thread_id(i, "each of 'relevant_ids'") for i in relevant)
        except ValueError as exc:
            raise DumpFormatError(str(path), n, str(exc)) from None
        out.append(LabelledQuery(qid, text, ids))
    if not out:
        raise QASearchError(
            f'{path} holds no queries: expected one {{"query_id", "text", "relevant_ids"}} a line'
        )
    return out


def read_pairs(path: str | Path, on_repeat: OnRepeat | None = None) -> list[LabelledPair]:
    """Labelled pairs: ``{"id1", "id2", "label"}`` per line, label 1 (duplicate) or 0.

    A pair is two threads whichever way round: a line repeating an earlier pair with the same
    label is left out and passed to ``on_repeat(path, line, first_path, first_line)`` (default:
    a logged warning), so no pair weighs twice in a score or a fit; with the other label it is a
    :class:`DumpFormatError`, since the file contradicts itself (see
    :class:`~qa_search.dumps.PairLines`). Raises :class:`DumpFormatError` naming the first bad
    line, :class:`QASearchError` for a file without a pair.
    """
    out = []
    lines = PairLines(on_repeat)
    for n, obj in json_objects(path):
        try:
            pair = LabelledPair(
                thread_id(obj["id1"], "'id1'"), thread_id(obj["id2"], "'id2'"), pair_label(obj["label"]), n
            )
        except KeyError as exc:
            raise DumpFormatError(str(path), n, f"missing required field {exc.args[0]!r}") from None
        except ValueError as exc:
            raise DumpFormatError(str(path), n, str(exc)) from None
        if pair.id1 == pair.id2:
            raise DumpFormatError(str(path), n, f"'id1' and 'id2' are the same thread ({pair.id1!r})")
        if lines.first(frozenset((pair.id1, pair.id2)), str(path), n, pair.label):
            out.append(pair)
    if not out:
        raise QASearchError(f'{path} holds no pairs: expected one {{"id1", "id2", "label"}} a line')
    return out


def locate_unknown(
    path: str | Path, pairs: Sequence[LabelledPair], exc: UnknownThreadError
) -> DumpFormatError:
    """``exc`` (a pair names a thread the index lacks) as an error naming the first line of
    ``path`` that holds that id, and the option that skips such pairs instead."""
    line = next((p.line for p in pairs if exc.thread_id in (p.id1, p.id2)), 0)
    return DumpFormatError(
        str(path), line, f"{exc} (--skip-missing skips and counts the pairs naming such threads)"
    )


RANKING_METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")


def score_rankings(ranked: Sequence[Sequence[str]], relevant: Sequence[frozenset[str]]) -> dict:
    """Mean recall@1/5/10, MRR@10 and nDCG@10 (fractions) of ranked id lists against their
    relevant sets, and the count (``"queries"``); an empty input scores 0."""
    sums = dict.fromkeys(RANKING_METRICS, 0.0)
    for r, rel in zip(ranked, relevant, strict=True):
        sums["recall@1"] += recall_at_k(r, rel, 1)
        sums["recall@5"] += recall_at_k(r, rel, 5)
        sums["recall@10"] += recall_at_k(r, rel, 10)
        sums["mrr@10"] += mrr_at_k(r, rel, 10)
        sums["ndcg@10"] += ndcg_at_k(r, rel, 10)
    n = max(len(ranked), 1)
    return {**{key: round(v / n, 6) for key, v in sums.items()}, "queries": len(ranked)}


def evaluate_queries(index: ForumIndex, queries: Sequence[LabelledQuery], k: int = 10) -> dict:
    """Mean recall@1/5/10, MRR@10 and nDCG@10 (fractions) over ``queries``, and their count.

    Each query's own thread (``query_id``) is removed from its hits before scoring: the query is
    usually in the corpus, and finding itself is no success. A query with no relevant thread
    besides itself cannot be scored: it is left out of the means and counted in
    ``skipped_queries``.
    """
    scorable = [q for q in queries if q.relevant_ids - {q.query_id}]
    if queries and not scorable:
        raise QASearchError("no query has a relevant thread besides itself: nothing to score")
    skipped = len(queries) - len(scorable)
    queries = scorable
    ranked = []
    batch = 256
    for start in range(0, len(queries), batch):
        chunk = queries[start : start + batch]
        results = index.search_many([q.text for q in chunk], k + 1)
        for q, hits in zip(chunk, results, strict=True):
            ranked.append([h.thread_id for h in hits if h.thread_id != q.query_id][:k])
    return {**score_rankings(ranked, [q.relevant_ids - {q.query_id} for q in queries]),
            "skipped_queries": skipped}


def evaluate_pairs(
    index: ForumIndex,
    pairs: Sequence[LabelledPair],
    min_precision: float = 0.9,
    *,
    on_missing: Callable[[LabelledPair], None] | None = None,
) -> dict:
    """How well the duplicate scorer separates duplicate pairs from the rest.

    Returns ``ap`` (average precision), ``recall_at_precision_0.9`` (the best recall at
    precision >= ``min_precision``, with the score threshold reaching it), and the precision and
    recall of the threshold the index uses today (the attached reranker's "duplicate" tier, the
    calibrated one, else the config's raw ``duplicate_threshold``; ``scorer`` says which). A
    pair naming a thread the index lacks raises
    :class:`UnknownThreadError`; with ``on_missing`` it is passed there instead, left out and
    counted in ``skipped_missing``. No pair left to score raises :class:`QASearchError`.
    """
    if on_missing is not None:
        kept = []
        for p in pairs:
            if p.id1 in index and p.id2 in index:
                kept.append(p)
            else:
                on_missing(p)
        skipped = len(pairs) - len(kept)
        if not kept:
            raise QASearchError(
                f"none of the {skipped} pairs names two threads of the index: nothing to score"
            )
        pairs = kept
    else:
        skipped = 0
    # the scorer find_duplicates gives verdicts with: the reranker where one is attached
    scores = index.pair_scores([(p.id1, p.id2) for p in pairs], rerank=True)
    labels = np.array([p.label for p in pairs])
    best = recall_at_precision(scores, labels, min_precision)
    threshold, kind = index.duplicate_cutoff(rerank=True)
    used = precision_recall_at(scores, labels, threshold)
    return {
        "pairs": len(pairs),
        "positives": int(labels.sum()),
        "scorer": kind,
        "ap": round(average_precision(scores, labels), 6),
        f"recall_at_precision_{min_precision:g}": round(best.recall, 6),
        f"threshold_at_precision_{min_precision:g}": None
        if np.isinf(best.threshold)
        else round(best.threshold, 6),
        "threshold": round(threshold, 6),
        "precision": round(used.precision, 6),
        "recall": round(used.recall, 6),
        "skipped_missing": skipped,
    }
