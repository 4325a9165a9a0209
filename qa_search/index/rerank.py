"""Rescoring the best few candidates with an index's cross-encoder reranker.

The vector search (and the calibrated scorer) picks the :data:`RERANK_CANDIDATES` best
candidates cheaply; the reranker (:class:`~qa_search.embedding.reranker.Reranker`, attached with
``qa-search configure --reranker``) reads each of them beside the new text and gives the
probability that they are duplicates. Duplicate verdicts take that probability and their tier
from it; a search asked to rerank puts its first candidates in the reranker's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from qa_search.embedding.reranker import Reranker
from qa_search.errors import NoRerankerError
from qa_search.index.contents import IndexContents
from qa_search.index.results import DuplicateHit, SearchHit
from qa_search.scoring.calibration import RerankerBlend

#: Candidates the reranker rescores per text: 20 Quora pairs took 166 ms at p50 (both orders,
#: fp32) on 2 shared cores, the calibrated scorer's whole call 15 ms (docs/tuning.md, "A
#: reranker for duplicate verdicts"), so the reranker sees no more than it must.
RERANK_CANDIDATES = 20


def attached_reranker(index: IndexContents) -> Reranker:
    """The index's reranker; :class:`NoRerankerError` when it has none."""
    if index.reranker is None:
        raise NoRerankerError()
    return index.reranker


def rerank_duplicates(
    index: IndexContents,
    reranker: Reranker | None,
    text: str,
    candidates: Sequence[DuplicateHit],
    keep_untiered: bool,
    blend: RerankerBlend | None = None,
) -> list[DuplicateHit]:
    """``candidates`` of the new question ``text`` rescored by ``reranker``: best probability
    first (ties by thread id), each with its tier; those under the lowest tier are dropped unless
    ``keep_untiered`` (an explicit cosine threshold chose them). With a ``blend``, the
    probability and tiers are the blend's, from the candidates' calibrated probabilities and the
    reranker's (no ``reranker``: a blend that reads the calibrated probability alone)."""
    if not candidates:
        return []
    reranked = None if reranker is None else reranker.score(
        [(text, index.get(h.thread_id).question_text) for h in candidates])
    if blend is not None:
        probs = blend.probability(np.array([h.probability or 0.0 for h in candidates]), reranked)
        tier_of = blend.tier
    elif reranker is not None and reranked is not None:
        probs, tier_of = reranked, reranker.tier
    else:
        raise ValueError("duplicates are rescored by a reranker, a blend, or both")
    hits = []
    for h, p in zip(candidates, probs.tolist(), strict=True):
        tier = tier_of(p)
        if tier is None and not keep_untiered:
            continue
        hits.append(replace(h, probability=round(p, 6), tier=tier))
    hits.sort(key=lambda h: (-(h.probability or 0.0), h.thread_id))
    return hits


def rerank_search(
    index: IndexContents,
    texts: Sequence[str],
    k: int,
    offset: int,
    run: Callable[[int], list[list[SearchHit]]],
) -> list[list[SearchHit]]:
    """Each text's page of hits (``k`` after ``offset``) with the first
    :data:`RERANK_CANDIDATES` hits of its ranking in the reranker's order (its probability that
    the thread's question is the text's duplicate, best first); hits past them keep their place.
    ``run(n)`` is the search itself, giving each text's first ``n`` hits."""
    reranker = attached_reranker(index)
    pages = []
    for text, hits in zip(texts, run(max(offset + k, RERANK_CANDIDATES)), strict=True):
        head, tail = hits[:RERANK_CANDIDATES], hits[RERANK_CANDIDATES:]
        if head:
            probs = reranker.score([(text, index.get(h.thread_id).question_text) for h in head]).tolist()
            order = sorted(range(len(head)), key=lambda i: (-probs[i], i))
            head = [head[i] for i in order]
        pages.append((head + tail)[offset : offset + k])
    return pages
