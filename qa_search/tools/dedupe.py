"""Duplicates already in the forum: clusters of stored threads that ask the same question.

The steps, each bounded so a forum of 100k+ questions takes minutes, not hours:

1. A nearest-neighbour graph from the question index: each question's ``neighbours`` most
   similar other questions (batched FAISS searches; never all pairs).
2. Candidate edges are scored by the raw question cosine (the default on an index calibrated on
   its own pairs: on Quora it clustered better, docs "Finding duplicates already in the forum"),
   or by the calibrated duplicate probability (the default on an index using its model's
   shipped calibration, or on request) (:meth:`ForumIndex.pair_scores`, in both orientations,
   averaged, since the scorer treats its first thread as the new question; edges below a cosine
   floor, :data:`COSINE_FLOOR` on the forum's cosine scale, are then dropped unscored). On a
   calibrated index every pair inside a cluster also carries its probability.
3. Clustering with *average linkage* (*complete* on a shipped calibration's probabilities)
   along the graph's edges: edges at or above the threshold
   are taken best first, and one joins two clusters only if the mean score of *every* pair
   across them (scored on demand) reaches the threshold too. Plain connected components would
   chain unrelated questions through a path of pairwise-similar ones (A~B, B~C, ... while A and
   Z share nothing); here every cluster's mean pairwise score is at least the threshold (by
   induction over the merges), and with ``linkage="complete"`` every single pair is.

Everything but the scorer is pure over arrays; the scorer is only called through
``pair_scores``, so its features can change without this module noticing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from qa_search.index.defaults import duplicate_calibration, neighbour_quartiles, shipped_calibration
from qa_search.index.forum import ForumIndex
from qa_search.scoring.ann import single_threaded
from qa_search.scoring.calibration import Calibration

#: Calibrated index: candidate pairs whose question cosine is below this are never scored (the
#: scorer is the slow part). Measured on Quora with the packaged model (README, "Finding
#: duplicates already in the forum"): of 5,000 neighbour pairs with cosines 0.5-0.6, none scored
#: above 0.39. Uncalibrated, the floor is the threshold itself, since the score is the cosine.
COSINE_FLOOR = 0.6
#: Index without a calibration of its own, using the one shipped for its model: dedupe clusters
#: by probability from this tier's threshold up, with :data:`SHIPPED_LINKAGE`, so that every pair
#: in a cluster is one ``find_duplicates`` would report. The shipped "duplicate" tier was set for
#: 90% precision on Quora's pairs, whose duplicates are near-copies; a forum's reworded
#: duplicates rarely reach it, and a fixed 0.5 left 7 of the sample forum's 22 groups out
#: (benchmarks/default_calibration.py measures both on Quora, SemEval and the sample).
SHIPPED_TIER = "related"
#: Linkage with the shipped calibration: complete, as its tier is a pair verdict that each pair of
#: a cluster should reach (average linkage at the same tier chained related topics on every set).
SHIPPED_LINKAGE = "complete"
#: Each question's nearest other questions that become candidate edges.
DEFAULT_NEIGHBOURS = 10
LINKAGES = ("average", "complete", "single")
#: Pairs per ``pair_scores`` call (bounds memory and paces the progress bar).
SCORE_BATCH = 20_000

Progress = Callable[[int, int], None]
Scorer = Callable[[Sequence[tuple[int, int]]], np.ndarray]


class ProgressScorer(Protocol):
    """A :data:`Scorer` that also reports ``progress(done, total)`` as it goes."""

    def __call__(self, pairs: Sequence[tuple[int, int]], progress: Progress | None = None) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class ClusterThread:
    """One thread of a duplicate cluster, with what decides the canonical choice."""

    thread_id: str
    title: str
    answers: int
    votes: int
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ScoredPair:
    """Two threads, the score they were clustered by (cosine or probability, see
    :attr:`DedupeResult.by`) and their calibrated duplicate probability (None while the index is
    uncalibrated)."""

    id1: str
    id2: str
    score: float
    probability: float | None = None


@dataclass(frozen=True)
class DuplicateCluster:
    """Threads asking the same question: the suggested canonical thread first."""

    #: The thread to keep: the most answered, then the most voted, then the one with the best
    #: mean score to the others, then the smallest id.
    canonical: str
    #: The canonical thread, then the others by their score with it, best first.
    threads: tuple[ClusterThread, ...]
    #: Every pair inside the cluster, scored, best first.
    pairs: tuple[ScoredPair, ...]

    @property
    def mean_score(self) -> float:
        return float(np.mean([p.score for p in self.pairs]))

    @property
    def min_score(self) -> float:
        return min(p.score for p in self.pairs)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["size"] = len(self.threads)
        out["mean_score"] = round(self.mean_score, 6)
        out["min_score"] = round(self.min_score, 6)
        return out


@dataclass(frozen=True)
class DedupeResult:
    """What :func:`find_duplicate_clusters` found and how."""

    #: Largest first, then by mean score.
    clusters: tuple[DuplicateCluster, ...]
    #: The minimum score of an edge (and of a cluster's mean), on the scale of ``by``.
    threshold: float
    #: True when the index is calibrated, so pairs carry probabilities.
    calibrated: bool
    #: What the clusters were formed on: ``"cosine"`` (raw question cosine) or ``"probability"``.
    by: str
    linkage: str
    neighbours: int
    #: Candidate pairs below this cosine were not scored.
    cosine_floor: float
    #: Threads in the index.
    threads: int
    #: Distinct neighbour pairs at or above the cosine floor.
    candidate_pairs: int
    #: Candidate pairs whose score reached the threshold.
    edges: int
    #: Pairs scored in all (candidates plus the cross pairs checked while merging).
    scored_pairs: int
    seconds: float

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "clusters"}
        out["seconds"] = round(self.seconds, 3)
        out["clustered_threads"] = sum(len(c.threads) for c in self.clusters)
        out["clusters"] = [c.to_dict() for c in self.clusters]
        return out


def neighbour_pairs(rows: np.ndarray, scores: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """The undirected edges of a k-nearest-neighbour graph whose cosine reaches ``floor``.

    ``rows`` (n, k) int64 neighbour rows (-1 = none), ``scores`` (n, k) their cosines. Returns
    edges (m, 2) int64 with ``i < j``, each once, and their cosines (m,) float32 (the larger of
    the two directions' values, which differ only by approximate search).
    """
    n, k = rows.shape
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    dst, cos = rows.ravel(), scores.ravel()
    keep = (dst >= 0) & (cos >= floor) & (dst != src)
    a, b, cos = np.minimum(src, dst)[keep], np.maximum(src, dst)[keep], cos[keep]
    order = np.lexsort((-cos, b, a))
    a, b, cos = a[order], b[order], cos[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return np.column_stack([a[first], b[first]]), cos[first].astype(np.float32)


def cluster_edges(
    n: int,
    edges: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    linkage: str = "average",
    score_pairs: Scorer | None = None,
) -> tuple[list[list[int]], dict[tuple[int, int], float]]:
    """Cluster ``n`` nodes along scored edges.

    ``edges`` (m, 2) int node pairs and ``scores`` (m,); edges below ``threshold`` are ignored.
    ``linkage``: ``"single"`` (connected components), ``"average"`` (an edge joins two clusters
    when the mean score of all pairs across them reaches ``threshold``) or ``"complete"`` (when
    every such pair does). Pairs across clusters that are not edges are scored with
    ``score_pairs(pairs) -> (len(pairs),) scores``, needed unless ``linkage="single"``.

    Returns the clusters of two or more nodes (each sorted, unordered among themselves) and
    every pair score known, keyed ``(i, j)`` with ``i < j`` (for average and complete linkage
    that includes every pair inside every cluster).
    """
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    if linkage != "single" and score_pairs is None:
        raise ValueError(f"{linkage} linkage needs score_pairs")
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    scores = np.asarray(scores, np.float64)
    known = {
        (int(min(a, b)), int(max(a, b))): float(s) for (a, b), s in zip(edges.tolist(), scores, strict=True)
    }
    strong = np.flatnonzero(scores >= threshold)
    # best first; ties in node order, so the result does not depend on the input order
    strong = strong[np.lexsort((edges[strong, 1], edges[strong, 0], -scores[strong]))]
    cluster_of = list(range(n))
    members: dict[int, list[int]] = {}

    def members_of(c: int) -> list[int]:
        return members.get(c, [c])

    for e in strong.tolist():
        ca, cb = cluster_of[edges[e, 0]], cluster_of[edges[e, 1]]
        if ca == cb:
            continue
        ma, mb = members_of(ca), members_of(cb)
        if linkage != "single":
            cross = [(min(a, b), max(a, b)) for a in ma for b in mb]
            missing = [p for p in cross if p not in known]
            if missing:
                assert score_pairs is not None  # checked on entry for this linkage
                for p, s in zip(missing, np.asarray(score_pairs(missing)).tolist(), strict=True):
                    known[p] = float(s)
            values = [known[p] for p in cross]
            link = float(np.mean(values)) if linkage == "average" else min(values)
            if link < threshold:
                continue
        if len(ma) < len(mb):  # the larger cluster keeps its label
            ca, cb, ma, mb = cb, ca, mb, ma
        merged = ma + mb
        for node in mb:
            cluster_of[node] = ca
        members[ca] = merged
        members.pop(cb, None)
    return [sorted(m) for m in members.values()], known


def symmetric_scorer(index: ForumIndex, tids: list[str], counter: list[int] | None = None) -> ProgressScorer:
    """A scorer of node pairs ``(i, j)`` (rows into ``tids``): the mean of ``pair_scores`` in
    both orientations, (n,) float64. ``counter[0]``, if given, counts the pairs scored.

    The scorer looks up the neighbourhood of each pair's first thread, once per call for each
    distinct one, so the directed pairs are scored grouped by their first thread, in batches
    of :data:`SCORE_BATCH`. ``score(pairs, progress)`` reports ``progress(done, 2 * n)``
    directed pairs scored after each batch.
    """
    counter = [0] if counter is None else counter

    def score(pairs: Sequence[tuple[int, int]], progress: Progress | None = None) -> np.ndarray:
        n = len(pairs)
        directed = np.asarray(pairs, np.int64).reshape(-1, 2)
        directed = np.vstack([directed, directed[:, ::-1]])
        order = np.lexsort((directed[:, 1], directed[:, 0]))
        both = np.zeros(2 * n)
        for start in range(0, 2 * n, SCORE_BATCH):
            rows = order[start : start + SCORE_BATCH]
            both[rows] = index.pair_scores([(tids[a], tids[b]) for a, b in directed[rows].tolist()])
            if progress is not None:
                progress(min(start + SCORE_BATCH, 2 * n), 2 * n)
        counter[0] += n
        return (both[:n] + both[n:]) / 2

    return score


def cosine_scorer(index: ForumIndex, tids: list[str], counter: list[int] | None = None) -> ProgressScorer:
    """A scorer of node pairs ``(i, j)`` by their questions' raw cosine (symmetric), (n,)
    float64; ``counter[0]`` counts the pairs scored, as :func:`symmetric_scorer`'s does."""
    counter = [0] if counter is None else counter

    def score(pairs: Sequence[tuple[int, int]], progress: Progress | None = None) -> np.ndarray:
        out = np.array(
            [float(index._question_vector(tids[a]) @ index._question_vector(tids[b])) for a, b in pairs]
        )
        counter[0] += len(out)
        if progress is not None:
            progress(2 * len(out), 2 * len(out))
        return out

    return score


def id_order(thread_id: str) -> tuple:
    """Ids in their natural order: numbers by value ("9" before "10", as Stack Exchange's post
    ids), before other ids, which go by text."""
    return (0, int(thread_id), "") if thread_id.isdecimal() else (1, 0, thread_id)


def _cluster(
    index: ForumIndex,
    nodes: list[int],
    tids: list[str],
    known: dict,
    scorer: Scorer,
    probability: dict | None = None,
) -> DuplicateCluster:
    pairs = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :]]
    missing = [p for p in pairs if p not in known]
    if missing:
        known.update(zip(missing, np.asarray(scorer(missing)).tolist(), strict=True))
    mean_to = {a: np.mean([known[(min(a, b), max(a, b))] for b in nodes if b != a]) for a in nodes}

    def rank(node: int) -> tuple:
        t = index.get(tids[node])
        return (-len(t.answers), -t.score, -mean_to[node], id_order(t.id))

    canon = min(nodes, key=rank)
    to_canon = {b: known[(min(canon, b), max(canon, b))] for b in nodes if b != canon}
    order = [canon, *sorted(to_canon, key=lambda b: (-to_canon[b], id_order(tids[b])))]
    threads = []
    for node in order:
        t = index.get(tids[node])
        threads.append(ClusterThread(t.id, t.title, len(t.answers), t.score, t.url))

    def prob(a: int, b: int) -> float | None:
        got = None if probability is None else probability.get((a, b))
        return None if got is None else round(got, 6)

    scored = sorted(
        (ScoredPair(tids[a], tids[b], round(known[(a, b)], 6), prob(a, b)) for a, b in pairs),
        key=lambda p: (-p.score, p.id1, p.id2),
    )
    return DuplicateCluster(tids[canon], tuple(threads), tuple(scored))


def forum_floor(index: ForumIndex, calibration: Calibration) -> float:
    """:data:`COSINE_FLOOR`, measured on Quora's cosine scale, on this forum's scale. The shipped
    calibration carries the forum's scale already; a forum's own calibration was fitted on its
    raw cosines, so the scale is measured here against the shipped one's reference (a forum of
    title-and-body questions has its reworded duplicates at raw cosines 0.45-0.6, which a raw
    floor of 0.6 would drop before its own calibration could score them). The floor only moves
    down for an own calibration: on Quora, where it was measured, the whole corpus is denser
    than the reference's sample and would raise it. Without a shipped calibration for the model
    to read the reference from, the floor is taken as it is."""
    if calibration.forum_quartiles is not None:
        return calibration.forum_cosine(COSINE_FLOOR)
    shipped = shipped_calibration(index)
    if shipped is None or shipped.cosine_quartiles is None:
        return COSINE_FLOOR
    quartiles = neighbour_quartiles(index)
    if quartiles is None:
        return COSINE_FLOOR
    return min(COSINE_FLOOR, shipped.for_forum(quartiles).forum_cosine(COSINE_FLOOR))


def find_duplicate_clusters(
    index: ForumIndex,
    threshold: float | None = None,
    *,
    neighbours: int = DEFAULT_NEIGHBOURS,
    linkage: str | None = None,
    by: str | None = None,
    cosine_floor: float | None = None,
    search_progress: Progress | None = None,
    score_progress: Progress | None = None,
) -> DedupeResult:
    """Clusters of stored threads that duplicate each other, for moderators to merge.

    ``by`` picks the score clusters are formed on: ``"cosine"`` (raw question cosine) or
    ``"probability"`` (the duplicate probability; the index must have a calibration, its own or
    the one shipped for its model). Default: probability on an index with no calibration of its
    own whose model has a shipped one (a raw cosine threshold means something else on every
    forum), cosine otherwise: on the Quora dev clusters raw cosine with average linkage was both
    more precise and found more than a calibrated "duplicate" tier (README, "Finding duplicates
    already in the forum"): the tier was chosen on hard labelled pairs, not on a whole forum's
    neighbours. ``threshold`` is on that scale; default: the config's ``duplicate_threshold``
    for cosine; for probability the "duplicate" tier of the index's own calibration, or the
    :data:`SHIPPED_TIER` tier of the shipped one. ``linkage`` (default: :data:`SHIPPED_LINKAGE`
    by probability with the shipped calibration, else ``"average"``). A calibrated index's pairs
    inside a cluster
    carry their probability either way. ``cosine_floor`` (default on probabilities
    :data:`COSINE_FLOOR` put on the forum's cosine scale, :func:`forum_floor`; on cosines the
    threshold) drops candidate pairs before scoring.
    ``search_progress(done, total)`` reports questions searched, ``score_progress(done, total)``
    candidate pairs scored (each counted twice, once per orientation, when by probability).
    """
    if neighbours < 1:
        raise ValueError(f"neighbours must be at least 1, got {neighbours}")
    if linkage is not None and linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    started = time.perf_counter()
    calibration = duplicate_calibration(index)
    calibrated = calibration is not None
    shipped = calibrated and index.calibration is None
    if by is None:
        by = "probability" if shipped else "cosine"
    if by not in ("probability", "cosine"):
        raise ValueError(f"by must be 'probability' or 'cosine', got {by!r}")
    if by == "probability" and not calibrated:
        raise ValueError("the index is not calibrated, so it has no probabilities to cluster on")
    on_probability = by == "probability"
    if threshold is None:
        if not on_probability:
            threshold = index.config.duplicate_threshold
        elif shipped and calibration is not None:
            threshold = calibration.tiers.get(SHIPPED_TIER, index.duplicate_cutoff()[0])
        else:
            threshold = index.duplicate_cutoff()[0]
    threshold = float(threshold)
    if linkage is None:
        linkage = SHIPPED_LINKAGE if on_probability and shipped else "average"
    if cosine_floor is None:
        # by probability implies calibrated
        if on_probability and calibration is not None:
            cosine_floor = forum_floor(index, calibration)
        else:
            cosine_floor = threshold
    tids, cos, rows = index.question_neighbours(neighbours, progress=search_progress)
    edges, _ = neighbour_pairs(rows, cos, cosine_floor)
    counter = [0]
    scorer = (symmetric_scorer if on_probability else cosine_scorer)(index, tids, counter)
    # the scorer searches each pair's neighbourhood: many small searches, single-threaded faster
    # (measured on Quora, 2 busy cores: clustering's on-demand scoring 205 s -> 31 s)
    with single_threaded():
        scores = scorer([tuple(e) for e in edges.tolist()], score_progress)
        groups, known = cluster_edges(len(tids), edges, scores, threshold, linkage, scorer)
        probability = None
        if on_probability:
            probability = known
        elif calibrated:
            inside = [(a, b) for g in groups for i, a in enumerate(g) for b in g[i + 1 :]]
            probability = dict(zip(inside, symmetric_scorer(index, tids)(inside).tolist(), strict=True))
        clusters = [_cluster(index, g, tids, known, scorer, probability) for g in groups]
    clusters.sort(key=lambda c: (-len(c.threads), -c.mean_score, c.canonical))
    return DedupeResult(
        clusters=tuple(clusters),
        threshold=threshold,
        calibrated=calibrated,
        by=by,
        linkage=linkage,
        neighbours=neighbours,
        cosine_floor=float(cosine_floor),
        threads=len(tids),
        candidate_pairs=len(edges),
        edges=int(np.sum(scores >= threshold)),
        scored_pairs=counter[0],
        seconds=time.perf_counter() - started,
    )
