"""Duplicate questions: verdicts for new questions, scores of stored pairs, and calibration.

Uncalibrated, a duplicate is a question whose cosine reaches a threshold. Calibrated (see
:func:`calibrate`), a fitted scorer turns a pair's signals (:mod:`qa_search.scoring.pairs`)
into a probability, and tiers of it into verdicts. An index with no calibration of its own uses
the one shipped for its model, where there is one (:mod:`.defaults`).

An index with a reranker attached (:mod:`.rerank`) gives the current scorer's
:data:`~.rerank.RERANK_CANDIDATES` best candidates to it. Its probability and tiers decide, unless
the index was calibrated with that reranker attached: then the blend the calibration chose
(:class:`~qa_search.scoring.calibration.RerankerBlend`: the calibrated scorer, the reranker, or
both together) gives the probability and the tiers.

A caller's groups limit the stored questions a new one is compared with to those the caller may
see: the nearest questions, and so the neighbourhood the calibrated scorer reads, are those an
index of only the visible threads would give. A hidden thread never appears and takes no place
in them, and the lexical signals' word weights are those of the visible threads alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from qa_search.embedding.reranker import pair_key
from qa_search.index.contents import IndexContents
from qa_search.index.defaults import duplicate_calibration
from qa_search.index.rerank import RERANK_CANDIDATES, rerank_duplicates
from qa_search.index.results import DuplicateHit
from qa_search.index.search import skip_blank, texts_list, viewer_groups
from qa_search.scoring.analyser import tokenize
from qa_search.scoring.calibration import (
    Calibration,
    RerankerBlend,
    fit_calibration_out_of_fold,
    fit_reranker_blend,
    pair_groups,
)
from qa_search.scoring.pairs import (
    FEATURES,
    RANK_DEPTH,
    best_other,
    feature_rows,
    rank_feature,
    text_features,
)


def find_duplicates_many(
    index: IndexContents,
    texts: Sequence[str],
    *,
    threshold: float | None = None,
    k: int = 5,
    groups: Iterable[str] | None = None,
) -> list[list[DuplicateHit]]:
    """Each text's likely duplicates among the stored questions, best first, at most k; the
    texts are embedded in one batch.

    Uncalibrated, a hit is a question whose cosine reaches ``threshold`` (default: the
    config's ``duplicate_threshold``). Calibrated, candidates are ranked by probability and
    carry it with their tier; without an explicit ``threshold`` a hit must reach at least
    the lowest tier, with one it must reach that raw cosine. With a reranker attached, the
    :data:`~.rerank.RERANK_CANDIDATES` best candidates of that scorer (by probability, or cosine
    uncalibrated) are scored by the reranker, whose probability and tiers the hits carry (an
    explicit ``threshold`` still picks candidates by raw cosine). A blank text finds nothing.

    ``groups`` are the caller's groups, as :func:`~qa_search.index.search.search_many` takes
    them: only threads visible to them are compared with (None: every thread).
    """
    texts = texts_list(texts, "find_duplicates")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    viewer = viewer_groups(groups)
    return skip_blank(texts, lambda batch: _find_duplicates(index, batch, threshold, k, viewer))


def reranker_blend(index: IndexContents) -> RerankerBlend | None:
    """The blend the index's own calibration fitted with the reranker attached now, or None."""
    if index.calibration is None or index.reranker is None:
        return None
    return index.calibration.blend_for(index.reranker.digest)


def _find_duplicates(
    index: IndexContents, texts: list[str], threshold: float | None, k: int, viewer: frozenset[str] | None
) -> list[list[DuplicateHit]]:
    cal = duplicate_calibration(index)
    blend = reranker_blend(index)
    # a blend in which the calibrated scorer won needs no cross-encoder run at all
    reranker = index.reranker if blend is None or blend.uses_reranker else None
    limit = index.config.duplicate_threshold if threshold is None and cal is None else threshold
    if reranker is not None:
        limit = threshold  # the reranker judges: the cosine only chooses its candidates
    queries = index.query_embedder.encode(texts, batch_size=index.config.batch_size)
    # calibrated, the scorer looks at each candidate's place among the nearest questions
    depth = k if cal is None else max(4 * k, RANK_DEPTH + 1)
    if reranker is not None:
        depth = max(depth, RERANK_CANDIDATES)
    out = []
    for text, near in zip(texts, _nearest(index, queries, depth, limit, viewer), strict=True):
        if cal is None:
            hits = [_duplicate_hit(index, tid, s) for s, tid in near if limit is None or s >= limit]
        else:
            near_scores = [s for s, _ in near]
            keep = [i for i, (s, _) in enumerate(near) if limit is None or s >= limit]
            x = _pair_features(
                index,
                [text] * len(keep),
                [near[i][1] for i in keep],
                np.array([near[i][0] for i in keep]),
                np.array([best_other(near_scores, i) for i in keep]),
                np.array([rank_feature(i) for i in keep]),
                viewer,
            )
            probs: list[float] = cal.probability(x).tolist() if keep else []
            hits = [
                _duplicate_hit(index, near[i][1], near[i][0], float(p), cal.tier(float(p)))
                for i, p in zip(keep, probs, strict=True)
            ]
            # calibrated, every hit carries its probability
            hits.sort(key=lambda h: (-(h.probability or 0.0), h.thread_id))
        if reranker is not None or blend is not None:
            # the current scorer's best candidates, whatever their tier, are the reranker's to
            # judge; a blend of the calibrated probability alone rescores every hit
            candidates = hits if reranker is None else hits[:RERANK_CANDIDATES]
            hits = rerank_duplicates(index, reranker, text, candidates, threshold is not None, blend)
        elif cal is not None:
            hits = [h for h in hits if threshold is not None or h.tier is not None]
        out.append(hits[:k])
    return out


def _nearest(
    index: IndexContents, queries: np.ndarray, depth: int, limit: float | None, viewer: frozenset[str] | None
) -> list[list[tuple[float, str]]]:
    """Each query's ``depth`` nearest stored questions that ``viewer`` may see (None: all), as
    ``(cosine, thread id)`` best first. Questions it may not see are passed over and the search
    goes deeper for that query until ``depth`` visible ones are found, the index is exhausted or
    the last cosine fetched is under ``limit`` (none further could be a hit)."""
    questions, parts = index.question_index, index.parts
    n = len(questions)
    out: list[list[tuple[float, str]]] = [[] for _ in range(len(queries))]
    todo, fetch = list(range(len(queries))), depth
    while todo:
        got = min(fetch, max(n, 1))
        scores, ids = questions.search(queries[todo], got)
        deeper = []
        for row, row_s, row_i in zip(todo, scores, ids, strict=True):
            fetched = [
                (s, parts[pid].thread_id)
                for s, pid in zip(row_s.tolist(), row_i.tolist(), strict=True)
                if pid >= 0
            ]
            near = fetched if viewer is None else [
                (s, tid) for s, tid in fetched if index.get(tid).visible_with(viewer)
            ]
            out[row] = near[:depth]
            spent = got >= n or (limit is not None and (not fetched or fetched[-1][0] < limit))
            if viewer is not None and len(near) < depth and not spent:
                deeper.append(row)
        todo, fetch = deeper, fetch * 4
    return out


def _duplicate_hit(
    index: IndexContents, thread_id: str, score: float, prob: float | None = None, tier: str | None = None
) -> DuplicateHit:
    t = index.get(thread_id)
    p = None if prob is None else round(prob, 6)
    return DuplicateHit(t.id, round(float(score), 6), t.title, t.url, p, tier)


def _pair_features(
    index: IndexContents,
    texts: Sequence[str],
    thread_ids: Sequence[str],
    cosine: np.ndarray,
    best_other_cosine: np.ndarray,
    rank: np.ndarray,
    viewer: frozenset[str] | None = None,
) -> np.ndarray:
    """Signals (see :data:`~qa_search.scoring.pairs.FEATURES`) of (new question text, stored
    thread) pairs, from the dense neighbourhood measured by the caller; the word weights are
    those of the ``viewer``'s threads alone (see :meth:`.contents.IndexContents.lexical_for`)."""
    if not len(texts):
        return np.zeros((0, len(FEATURES)))
    lexical_index = index.lexical_for(viewer)
    others = [index.get(tid).question_text for tid in thread_ids]
    distinct = list(dict.fromkeys([*texts, *others]))
    tokens = dict(zip(distinct, tokenize(distinct, lexical_index.language), strict=True))
    lexical = lexical_index.score_pairs(texts, thread_ids, tokens)
    idf = lexical_index.idf
    text = [text_features(a, b, tokens[a], tokens[b], idf) for a, b in zip(texts, others, strict=True)]
    return feature_rows(cosine, lexical, np.array(text), best_other_cosine, rank)


def _neighbours(index: IndexContents, thread_ids: Sequence[str]) -> dict[str, tuple[list[float], list[str]]]:
    """Each stored question's nearest other questions: ``{id: (cosines, thread ids)}``, best
    first, at most RANK_DEPTH + 1 of them (the thread itself left out)."""
    distinct = list(dict.fromkeys(thread_ids))
    if not distinct:
        return {}
    questions, parts = index.question_index, index.parts
    vectors = np.stack([index.question_vector(t) for t in distinct])
    depth = min(RANK_DEPTH + 2, len(questions))
    out = {}
    for start in range(0, len(distinct), 1024):
        scores, ids = questions.search(vectors[start : start + 1024], depth)
        for tid, row_s, row_i in zip(distinct[start : start + 1024], scores, ids, strict=True):
            near = [
                (s, parts[pid].thread_id)
                for s, pid in zip(row_s.tolist(), row_i.tolist(), strict=True)
                if pid >= 0 and parts[pid].thread_id != tid
            ][: RANK_DEPTH + 1]
            out[tid] = ([s for s, _ in near], [t for _, t in near])
    return out


def pair_features(index: IndexContents, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """Signals of stored pairs ``(id1, id2)``, id1 in the role of the new question (its own
    thread left out of its neighbours): (n, len(FEATURES)) float64. An id the index lacks
    raises :class:`~qa_search.errors.UnknownThreadError`."""
    for a, b in pairs:
        index.get(a), index.get(b)
    near = _neighbours(index, [a for a, _ in pairs])
    cos, other, rank = [], [], []
    for a, b in pairs:
        scores, tids = near[a]
        position = tids.index(b) if b in tids else None
        cos.append(float(index.question_vector(a) @ index.question_vector(b)))
        other.append(best_other(scores, position))
        rank.append(rank_feature(position))
    texts = [index.get(a).question_text for a, _ in pairs]
    return _pair_features(index, texts, [b for _, b in pairs], np.array(cos), np.array(other), np.array(rank))


def pair_scores(
    index: IndexContents, pairs: Sequence[tuple[str, str]], *, rerank: bool = False
) -> np.ndarray:
    """The duplicate scorer's score of stored pairs: the calibrated probability, or the raw
    question cosine while uncalibrated; with ``rerank``, the reranker's probability where the
    index has one attached (dedupe leaves it off: it scores every neighbour pair of the forum,
    a cross-encoder run each), or the blend's probability where the index was calibrated with
    that reranker attached. (n,) float64."""
    blend = reranker_blend(index) if rerank else None
    if rerank and index.reranker is not None and (blend is None or blend.uses_reranker):
        for a, b in pairs:
            index.get(a), index.get(b)
        texts = [(index.get(a).question_text, index.get(b).question_text) for a, b in pairs]
        reranked = index.reranker.score(texts)
        if blend is None:
            return reranked
        return blend.probability(_calibrated_scores(index, pairs), reranked)
    scores = _calibrated_scores(index, pairs)
    return scores if blend is None else blend.probability(scores, None)


def _calibrated_scores(index: IndexContents, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    x = pair_features(index, pairs)
    cal = duplicate_calibration(index)
    return x[:, 0] if cal is None else cal.probability(x)


def duplicate_cutoff(index: IndexContents, *, rerank: bool = False) -> tuple[float, str]:
    """The score at which a pair counts as a duplicate, on the :func:`pair_scores` scale (with
    the same ``rerank``), and which scorer that is: ``(tier threshold, "reranker")``,
    ``(tier threshold, "calibrated")`` or ``(cosine, "cosine")``; with a blend, its tier
    threshold and its scorer ("calibrated", "reranker" or "combined")."""
    blend = reranker_blend(index) if rerank else None
    if blend is not None:
        return blend.tiers.get("duplicate", max(blend.tiers.values())), blend.scorer
    if rerank and index.reranker is not None:
        tiers = index.reranker.tiers
        return tiers.get("duplicate", max(tiers.values(), default=0.5)), "reranker"
    cal = duplicate_calibration(index)
    if cal is None:
        return index.config.duplicate_threshold, "cosine"
    return cal.tiers.get("duplicate", max(cal.tiers.values())), "calibrated"


def calibrate(
    index: IndexContents,
    pairs: Sequence[tuple[str, str]],
    labels: Sequence[int],
    targets: dict[str, float] | None = None,
) -> Calibration:
    """Fit the duplicate scorer on labelled stored pairs and give it to ``index`` (saved with
    it). ``targets`` maps tier names to the precision each must reach (default duplicate 0.90,
    related 0.60). Pairs that share a thread are kept in one fold when the tiers are measured
    out of fold.

    With a reranker attached, the pairs it was not trained on also choose how verdicts use it
    (:func:`~qa_search.scoring.calibration.fit_reranker_blend`; each of those is scored by it once).
    The calibration's report says what was chosen, or why no blend was fitted."""
    groups = pair_groups(pairs)
    x = pair_features(index, pairs)
    y = np.asarray(labels)
    cal, oof = fit_calibration_out_of_fold(x, y, targets, groups=groups)
    if index.reranker is not None:
        cal = _with_blend(index, cal, oof, pairs, y, groups)
    index.calibration = cal
    return cal


def _with_blend(
    index: IndexContents,
    cal: Calibration,
    oof: np.ndarray,
    pairs: Sequence[tuple[str, str]],
    labels: np.ndarray,
    groups: Sequence[object],
) -> Calibration:
    """``cal`` with the blend of the attached reranker fitted, or with the reason there is none
    in its report."""
    reranker = index.reranker
    assert reranker is not None
    trained = reranker.trained_pairs()
    texts = [(index.get(a).question_text, index.get(b).question_text) for a, b in pairs]
    if trained is None:
        why: str | RerankerBlend = (
            "the reranker does not record the pairs it was trained on (it was trained by an older "
            "qa_search): train it again to blend it"
        )
    else:
        unseen = [i for i, (a, b) in enumerate(texts) if pair_key(a, b) not in trained]
        why = fit_reranker_blend(
            oof[unseen],
            reranker.score([texts[i] for i in unseen]),
            labels[unseen],
            cal.targets,
            reranker.digest,
            groups=[groups[i] for i in unseen],
        )
        if isinstance(why, RerankerBlend):
            report = {**why.report, "left_out_trained_on": len(pairs) - len(unseen)}
            return replace(cal, reranker_blend=replace(why, report=report))
    return replace(cal, report={**cal.report, "reranker_blend": why})
