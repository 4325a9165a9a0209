"""The scoring maths, as pure functions over arrays: no I/O, no model, no index state."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def brute_force_topk(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products: queries (m, d), vectors (n, d) -> scores and row indices (m, k').

    k' = min(k, n). Ties are broken by row index, ascending. Processed in blocks of queries to
    bound memory at about 64 MB of scores.
    """
    m, n = len(queries), len(vectors)
    k = min(k, n)
    scores_out = np.zeros((m, k), np.float32)
    idx_out = np.zeros((m, k), np.int64)
    block = max(1, (16 << 20) // max(n, 1))
    for start in range(0, m, block):
        sims = queries[start : start + block] @ vectors.T
        # stable sort on the negated scores keeps the lower index first among equals
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        idx_out[start : start + block] = order
        scores_out[start : start + block] = np.take_along_axis(sims, order, axis=1)
    return scores_out, idx_out


def best_per_thread(
    scores: np.ndarray, part_ids: np.ndarray, thread_of: Mapping[int, str]
) -> dict[str, tuple[float, int]]:
    """Collapse one query's part hits to threads: ``{thread_id: (best score, its part id)}``.

    ``scores`` and ``part_ids`` are one row of a search result, best first; id -1 is padding and
    ids missing from ``thread_of`` (removed parts) are skipped.
    """
    best: dict[str, tuple[float, int]] = {}
    for score, pid in zip(scores.tolist(), part_ids.tolist(), strict=True):
        if pid < 0:
            continue
        tid = thread_of.get(pid)
        if tid is None or tid in best:
            continue
        best[tid] = (score, pid)
    return best


def combine_thread_scores(
    question: Mapping[str, tuple[float, int]],
    answer: Mapping[str, tuple[float, int]],
    answer_weight: float,
) -> dict[str, tuple[float, int]]:
    """A thread's score: the better of its question's score and ``answer_weight`` times its best
    answer chunk's score. Returns ``{thread_id: (score, part id that gave it)}``.
    """
    out = dict(question)
    for tid, (score, pid) in answer.items():
        weighted = answer_weight * score
        if tid not in out or weighted > out[tid][0]:
            out[tid] = (weighted, pid)
    return out


def top_threads(scored: Mapping[str, tuple[float, int]], k: int) -> list[tuple[str, float, int]]:
    """The k best ``(thread_id, score, part id)``, best first; ties broken by thread id."""
    ranked = sorted(scored.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return [(tid, s, pid) for tid, (s, pid) in ranked[:k]]


def unseen_bound(
    q_scores: np.ndarray, q_full: bool, a_scores: np.ndarray, a_full: bool, answer_weight: float
) -> float:
    """The highest score a thread that appears in neither fetched list could still have.

    A fetched list that was cut short (``full``) bounds everything below it by its last score;
    an exhausted list bounds nothing (returns ``-inf`` for it).
    """
    bound = -np.inf
    if q_full and len(q_scores):
        bound = max(bound, float(q_scores[-1]))
    if a_full and len(a_scores):
        bound = max(bound, answer_weight * float(a_scores[-1]))
    return bound


def make_snippet(text: str, max_chars: int) -> str:
    """The start of ``text`` with whitespace collapsed, cut at a word boundary, with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= max_chars:
        return flat
    cut = flat.rfind(" ", 0, max_chars)
    if cut < max_chars // 2:
        cut = max_chars
    return flat[:cut].rstrip(" ,.;:") + "…"
