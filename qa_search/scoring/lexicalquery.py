"""One query's BM25 over a :class:`~qa_search.scoring.lexical.LexicalIndex`, from posting lists.

A search needs the head of a query's scores and the scores of a few candidates, not a score for
every slot. :class:`LexicalQuery` reads only the query terms' posting lists and the candidates'
own terms, and gives every score to the last bit as the index's dense
:meth:`~qa_search.scoring.lexical.LexicalIndex.scores` does (the same float32 operations, each
score summed over the query's terms in alphabetical order).

The head is exact by MaxScore (Turtle and Flood, 1995): no document can gain more from a term
than the term's largest weight (below its idf), so the documents holding none of the query's
rarest terms score below the sum of the other terms' largest weights; once the m-th best partial
score among the documents holding a rare term passes that sum, no other document can reach the
head. Common words ("what", in 39% of Quora's questions) are then only looked up for the
documents still in the running, instead of scored over their whole lists.

Most of a query's cost is the number of numpy calls and the cache misses of reading scattered
documents, not the postings read, so the index keeps what only a write changes, keyed to its
count of writes: each slot's length normalisation, each term's weights in the main segment and
its largest weight (from the first query that reads them), and a common term's weights by slot;
and only the documents within rounding of the m-th best partial score are scored in full.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

Runs = list[tuple[np.ndarray, np.ndarray]]


class LexicalIndex(Protocol):
    """What a query reads of :class:`qa_search.scoring.lexical.LexicalIndex` (named here, not
    imported: the index makes its queries)."""

    slot_ids: list[str | None]
    _alive: np.ndarray
    _df: np.ndarray
    _live: int
    _fwd_indptr: np.ndarray
    _fwd_terms: np.ndarray
    _fwd_tf: np.ndarray
    _new_docs: dict[int, tuple[np.ndarray, np.ndarray]]
    _new_postings: dict[int, tuple[list[int], list[float]]]

    @property
    def _main_slots(self) -> int: ...
    def _norms(self) -> np.ndarray: ...
    def _weights(self, tfs: np.ndarray, slots: np.ndarray, idf: np.float32 | np.ndarray) -> np.ndarray: ...
    def _main_weights(self, term: int, idf: np.float32) -> tuple[np.ndarray, np.ndarray]: ...
    def _dense_weights(self, term: int, runs: Callable[[], Runs]) -> np.ndarray | None: ...
    def _note_bound(self, term: int, runs: Runs) -> None: ...
    def _bounds(self, terms: list[int], idf: list[float]) -> list[float]: ...
    def _term_idf(self, terms: np.ndarray) -> np.ndarray: ...


def _merged(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The union of runs of (slots ascending, partial scores): slots ascending, each once, with
    its partial scores summed (float32, rounded once from a float64 sum)."""
    runs = [run for run in runs if len(run[0])]
    if len(runs) <= 1:
        return runs[0] if runs else (np.zeros(0, np.int64), np.zeros(0, np.float32))
    slots = np.concatenate([s for s, _ in runs])
    order = np.argsort(slots, kind="stable")  # sorted runs: merged, not sorted again
    merged = slots[order]
    first = np.empty(len(merged), bool)
    first[0] = True
    np.not_equal(merged[1:], merged[:-1], out=first[1:])
    # summed in float64 by group, faster than reduceat over many short groups: partial scores
    # only choose documents (with room for rounding), the head's scores come from _raw
    sums = np.bincount(np.cumsum(first) - 1, np.concatenate([w for _, w in runs])[order])
    return merged[first], sums.astype(np.float32)


def forward_positions(indptr: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the main segment's forward lists of ``slots`` lie in its forward arrays, one list
    after another, and each list's length: gathered at once, not a slice a slot."""
    lo = indptr[slots]
    sizes = indptr[slots + 1] - lo
    ends = np.cumsum(sizes)
    return np.repeat(lo - (ends - sizes), sizes) + np.arange(int(ends[-1]) if len(ends) else 0), sizes


def _above(bound: float) -> float:
    """``bound`` raised by more than float32 sums of a few terms can round by."""
    return bound * (1 + 1e-5) + 1e-6


class LexicalQuery:
    """One query's normalised BM25 over a :class:`LexicalIndex` as it is now, from the posting
    lists of the query's terms and the few documents' own terms: :meth:`top` (the exact head)
    and :meth:`scores_at` (given slots) equal :meth:`LexicalIndex.scores` at those slots, to the
    last bit. Valid until the index is next written (a search holds one within one read).
    """

    def __init__(self, index: LexicalIndex, terms: list[int], depth: int = 1) -> None:
        self._index = index
        self._depth = depth
        self._head: tuple[int, np.ndarray, np.ndarray] | None = None  # the deepest head so far
        # alphabetical: every sum runs in the order LexicalIndex.scores adds them
        self._terms = np.asarray(terms, np.int64)
        self._idf = index._term_idf(self._terms) if terms else np.zeros(0, np.float32)
        self._norm = self._idf.sum()
        by_id = np.argsort(self._terms)
        self._ids_sorted, self._row_of_sorted = self._terms[by_id], by_id

    def __bool__(self) -> bool:
        """Whether a live document holds one of the query's terms (else every score is 0)."""
        return bool(len(self._terms))

    def _raw(self, slots: np.ndarray) -> np.ndarray:
        """Unnormalised BM25 of live ``slots`` (any order): (len(slots),) float32, each summed
        over the query's terms in alphabetical order from 0 as :meth:`LexicalIndex.scores` adds
        them (adding the 0 of a term a document lacks changes no bit). Each document's terms
        are read from the forward lists, which lie together, not searched for in the postings."""
        index, k, n = self._index, len(self._terms), len(slots)
        weights = np.zeros((k, n), np.float32)
        newer = index._main_slots if index._new_docs else None
        main = np.flatnonzero(slots < newer) if newer is not None else None
        if main is None or len(main):
            at, sizes = forward_positions(index._fwd_indptr, slots if main is None else slots[main])
            col = np.repeat(np.arange(n) if main is None else main, sizes)
            self._fill(weights, col, index._fwd_terms[at], index._fwd_tf[at], slots)
        if newer is not None:
            for j in np.flatnonzero(slots >= newer).tolist():  # added since the last merge
                terms, tfs = index._new_docs[int(slots[j])]
                self._fill(weights, np.full(len(terms), j), terms, tfs, slots)
        # down the rows in order, from the first: the dense scores' sum, 0 + w0 + w1 + ...
        return np.add.reduce(weights, axis=0) if k > 1 else weights[0]

    def _fill(self, weights: np.ndarray, col: np.ndarray, terms: np.ndarray, tfs: np.ndarray,
              slots: np.ndarray) -> None:
        """Set ``weights[query term, col]`` for the documents' (``col``) terms and frequencies
        that are query terms, as LexicalIndex._weights computes them."""
        pos = np.searchsorted(self._ids_sorted, terms)
        np.minimum(pos, len(self._ids_sorted) - 1, out=pos)
        hit = self._ids_sorted[pos] == terms
        rows, col, tf = self._row_of_sorted[pos[hit]], col[hit], tfs[hit]
        weights[rows, col] = self._idf[rows] * (tf / (self._index._norms()[slots[col]] + tf))

    def _normalised(self, raw: np.ndarray) -> np.ndarray:
        out = raw / self._norm
        return np.minimum(out, 1.0, out=out)

    def scores_at(self, slots: np.ndarray | Sequence[int]) -> np.ndarray:
        """Normalised BM25 of the given slots: (n,) float32 in [0, 1], 0 for a dead slot."""
        slots = np.asarray(slots, np.int64)
        if not len(self._terms) or not len(slots):
            return np.zeros(len(slots), np.float32)
        alive = self._index._alive[slots]
        out = np.zeros(len(slots), np.float32)
        out[alive] = self._normalised(self._raw(slots[alive]))
        return out

    def _runs(self, r: int) -> Runs:
        """Query term ``r``'s postings, main segment then new one, each in slot order: slots and
        raw weights (float32), dead slots included."""
        index, t = self._index, int(self._terms[r])
        runs = [index._main_weights(t, self._idf[r])]
        new = index._new_postings.get(t)
        if new is not None:
            slots = np.asarray(new[0], np.int64)
            runs.append((slots, index._weights(np.asarray(new[1], np.float32), slots, self._idf[r])))
        index._note_bound(t, runs)
        return runs

    def _live_run(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Query term ``r``'s live postings in slot order: slots and raw weights (float32)."""
        runs = self._runs(r)
        slots, weights = runs[0] if len(runs) == 1 else (np.concatenate(x) for x in zip(*runs, strict=True))
        index = self._index
        if index._live < len(index.slot_ids):  # dead slots keep their postings until compacted
            live = index._alive[slots]
            slots, weights = slots[live], weights[live]
        return slots, weights

    def _term_weights(self, r: int, slots: np.ndarray) -> np.ndarray:
        """Query term ``r``'s raw weight in each of ``slots`` (ascending; 0 where absent): read
        by slot for a common term, else by binary search in its posting lists."""
        dense = self._index._dense_weights(int(self._terms[r]), lambda: self._runs(r))
        if dense is not None:
            return dense[slots]
        out = np.zeros(len(slots), np.float32)
        for run_slots, run_w in self._runs(r):
            if not len(run_slots):
                continue
            at = np.searchsorted(run_slots, slots)
            np.minimum(at, len(run_slots) - 1, out=at)
            ok = run_slots[at] == slots
            out[ok] = run_w[at[ok]]
        return out

    def _slack(self, score: float) -> float:
        """More than two float32 sums of the query's weights near ``score`` can differ by."""
        return score * (1e-5 + len(self._terms) * 2.0**-22) + 1e-6

    def _floor(self, partial: np.ndarray, m: int) -> float | None:
        """A raw score that m documents reach (None with fewer than m): a partial score sums
        some of a document's weights, none negative, so the m-th best of them (less rounding)."""
        if len(partial) < m:
            return None
        kth = float(np.partition(partial, len(partial) - m)[len(partial) - m])
        return kth - 2 * self._slack(kth)

    def top(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``m`` best live slots among those scoring above 0, best first (ties by slot),
        and their scores: (m',) int64 and (m',) float32, m' <= m. Fewer than m means no other
        document scores above 0; otherwise none outside scores above the last one.

        MaxScore: the query's terms are taken rarest first, each adding the documents of its
        posting list with their partial scores, until the m-th best partial score is above
        what the terms not taken could add at most (the sum of their largest weights where a
        query has read them since the last write, else of their idf): no other document can
        reach the head. Of the documents taken, only those whose partial score plus what the
        terms not taken could add reaches that score stay in the running, those terms being
        looked up rarest first (a common term's weights by slot, kept between writes); the
        documents whose partial score is then within rounding of the m-th best are scored in
        full from their own terms. The common terms' long lists are never searched one by one.
        """
        k = len(self._terms)
        if m <= 0 or not k:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        # the head of a deeper head (same order, ties by slot): no need to find it again
        if self._head is None or self._head[0] < m:
            self._head = (max(m, self._depth), *self._find(max(m, self._depth)))
        _, slots, scores = self._head
        return slots[:m], scores[:m]

    def _find(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        k = len(self._terms)
        rarest = np.argsort(-self._idf, kind="stable").tolist()
        df = self._index._df[self._terms].tolist()
        bound = self._index._bounds(self._terms.tolist(), self._idf.tolist())
        left = float(sum(bound))  # at least what the terms not taken can add
        found, partial = np.zeros(0, np.int64), np.zeros(0, np.float32)
        runs: list[tuple[np.ndarray, np.ndarray]] = []  # taken, not yet merged into found
        held = 0  # postings taken: at least the documents found
        floor = None  # a raw score the m-th best reaches, once m documents are found
        taken = 0
        for r in rarest:
            if floor is None and held >= m and (held >= 4 * m or df[r] > 4 * m):
                found, partial = _merged([(found, partial), *runs])
                runs = []
                floor = self._floor(partial, m)
            # enough once the floor is above what the terms not taken could add
            if floor is not None and floor > _above(left):
                break
            runs.append(self._live_run(r))
            held += len(runs[-1][0])
            taken += 1
            left = left - bound[r] if taken < k else 0.0
        found, partial = _merged([(found, partial), *runs])
        if floor is None:
            floor = self._floor(partial, m) or 0.0
        # the terms not taken are looked up rarest first, each for the documents whose partial
        # score plus what the rest could add still reaches the floor
        for r in [None, *rarest[taken:]]:
            if r is not None:
                partial = partial + self._term_weights(r, found)
                left = left - bound[r] if r != rarest[-1] else 0.0
            keep = partial >= floor - _above(left) - 1e-5 * floor
            found, partial = found[keep], partial[keep]
        if len(found) > m:
            # every term is in the partial scores now, each within rounding of the full score:
            # a document of the head is within twice that of the m-th best partial score
            kth = float(np.partition(partial, len(partial) - m)[len(partial) - m])
            found = found[partial >= kth - 2 * self._slack(kth)]
        raw = self._raw(found)
        # found is in slot order: ties by slot (the few left are sorted whole, not partitioned)
        order = np.argsort(-raw, kind="stable")[:m]
        return found[order], self._normalised(raw[order])
