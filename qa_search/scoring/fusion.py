"""The scoring maths, as pure functions over arrays: no I/O, no model, no index state."""

from __future__ import annotations

import math
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


def row_dots(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Each row's inner product with ``query``: vectors (n, d), query (d,) -> (n,) float32.

    Each row's value is summed alone, the same to the last bit whichever rows come with it (a
    matrix-vector product's blocking depends on n, so a thread's score would depend on the other
    candidates scored beside it, and a search for k hits would disagree with one for k + 1).
    """
    return (vectors * query).sum(axis=1, dtype=np.float32)


def thread_dense_score(
    question: float, answer: float | None, answer_weight: float, agreement_weight: float
) -> float:
    """A thread's dense score from its question's cosine and its best answer chunk's cosine
    (``None`` when the thread has no answers).

    With ``x = answer_weight * answer``: ``max(question, x) + agreement_weight * min(question, x)``.
    The better-matching part decides, and a thread whose question *and* answer both match gets
    credit for the agreement. A thread without answers scores ``question`` exactly, so a forum
    without answers ranks as by question alone. For non-negative weights the score never
    decreases when either cosine grows, which is what makes :func:`unseen_bound` valid.
    """
    if answer is None:
        return question
    x = answer_weight * answer
    return max(question, x) + agreement_weight * min(question, x)


#: How a query's lexical weight is set (``IndexConfig.lexical_mode``): ``"fixed"`` adds
#: ``lexical_weight`` x each thread's normalised BM25 for every query; ``"coverage"`` scales the
#: weight by how much of the query its best lexical match covers (:func:`query_lexical_weight`).
LEXICAL_MODES = ("fixed", "coverage")


def query_lexical_weight(
    lexical_weight: float, mode: str, top_lexical: float | np.ndarray
) -> float | np.ndarray:
    """The weight of the lexical score for one query (or an array of queries, elementwise), in
    ``[0, lexical_weight]``.

    ``top_lexical`` is the query's best normalised BM25 over the whole index (the share of the
    query's idf mass that its best lexical match covers, in [0, 1]). ``"fixed"`` ignores it;
    ``"coverage"`` returns ``lexical_weight * top_lexical``: a query whose words some thread
    shares nearly all of (a typed title, a name, an error message) keeps the whole weight, while
    a query in the writer's own words, where the best lexical match shares one or two words by
    chance, leans on the dense score. The weight is one number per query, never per thread, and
    never above ``lexical_weight``, so a thread's score still never falls as its cosine or its
    BM25 rises and ``lexical_weight`` x the list's last BM25 still bounds an unseen thread.
    """
    top = np.clip(np.asarray(top_lexical, np.float64), 0.0, 1.0)
    if mode == "fixed":
        share = np.ones_like(top)
    elif mode == "coverage":
        share = top
    else:
        raise ValueError(f"lexical mode must be one of {', '.join(LEXICAL_MODES)}, got {mode!r}")
    weight = lexical_weight * share
    return float(weight) if weight.ndim == 0 else weight


def thread_boost(
    solved: bool, votes: float, solved_boost: float, vote_boost: float, vote_cap: float
) -> float:
    """The bounded boost added to a thread's score, in ``[0, solved_boost + vote_boost]``:
    ``solved_boost`` if the thread has an accepted answer, plus
    ``vote_boost * min(1, log1p(votes) / log1p(vote_cap))`` (negative votes count as 0), so the
    first votes count most and ``vote_cap`` votes or more give the whole vote boost."""
    boost = solved_boost if solved else 0.0
    if vote_boost and votes > 0:
        boost += vote_boost * min(1.0, math.log1p(votes) / math.log1p(vote_cap))
    return boost


def top_threads(scored: Mapping[str, tuple[float, int]], k: int) -> list[tuple[str, float, int]]:
    """The k best ``(thread_id, score, part id)``, best first; ties broken by thread id."""
    ranked = sorted(scored.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return [(tid, s, pid) for tid, (s, pid) in ranked[:k]]


def unseen_bound(q_last: float, a_last: float | None, answer_weight: float, agreement_weight: float) -> float:
    """The highest dense score of a thread that appears in neither fetched list.

    The question list was cut short at score ``q_last`` (every thread has a question, so an
    exhausted question list leaves no unseen thread and needs no bound); ``a_last`` is where the
    answer list was cut, or ``None`` when it was exhausted: an unseen thread then has no answers.
    :func:`thread_dense_score` is non-decreasing in both cosines, so the last fetched scores
    bound it; ``max`` with ``q_last`` covers unseen threads without answers.
    """
    if a_last is None:
        return q_last
    return max(q_last, thread_dense_score(q_last, a_last, answer_weight, agreement_weight))


def top_indices(values: np.ndarray, m: int) -> np.ndarray:
    """Indices of the ``m`` largest ``values``, largest first (all of them when ``m`` >= n).

    A partial sort: on a search request only the head of the lexical scores is needed, and a
    full sort of every document's score costs ~2 ms at 137k documents against ~0.1 ms.
    """
    if m >= len(values):
        return np.argsort(-values, kind="stable")
    head = np.argpartition(-values, m - 1)[:m]
    return head[np.argsort(-values[head], kind="stable")]


def make_snippet(text: str, max_chars: int) -> str:
    """The start of ``text`` with whitespace collapsed, cut at a word boundary, with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= max_chars:
        return flat
    cut = flat.rfind(" ", 0, max_chars)
    if cut < max_chars // 2:
        cut = max_chars
    return flat[:cut].rstrip(" ,.;:") + "…"
