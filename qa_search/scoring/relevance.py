"""Search relevance: the probability that a hit answers the query, from signals that carry
across forums. Pure functions over arrays.

A search always returns its k best threads, however poor; a cosine of 0.15 ranks first for
"qwzx" as readily as 0.8 does for a paraphrase. Whether the best is any good depends on more
than the score: a query of words the forum has never seen (another language, gibberish, emoji)
matches by noise, and a hit whose question shares none of the query's words is a weaker match
than one with the same cosine that shares them. A small logistic regression over a handful of
such signals gives each hit a probability, and a cut on it gives search a "no match".

The signals (:data:`FEATURES`), per hit:

* ``dense``: the hit's dense score (question and best answer chunk, see
  :func:`~qa_search.scoring.fusion.thread_dense_score`), on the model's cosine scale;
* ``top_dense``: the best dense score among the query's hits (a query whose best match is good
  is about something the forum holds);
* ``lexical``: the normalised BM25 of the hit's question for the query
  (:mod:`qa_search.scoring.lexical`): how much of the idf mass of the query's known words it
  covers;
* ``known_fraction``: the fraction of the query's content words the forum's vocabulary knows;
* ``known_words``: ``log1p`` of how many distinct known content words the query has;
* ``short``: 1 for a keyword query (one or two content words, at least one of them known),
  else 0; ``dense_short`` and ``lexical_short`` are ``dense`` and ``lexical`` times it.

A keyword query is a different kind of evidence: its cosine with a whole question is lower
than a question's, and covering one word is easier than covering ten, so the same scores mean
something else. The three ``short`` signals give keyword queries their own intercept and
slopes; they are 0 for a longer query, whose relevance the other five decide alone. All three
mean the same on any forum.

``dense``, ``top_dense``, ``lexical``, ``dense_short`` and ``lexical_short`` are score signals:
the fitted coefficients on them are never negative, so a better match never gets a lower
relevance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

FEATURES = (
    "dense",
    "top_dense",
    "lexical",
    "known_fraction",
    "known_words",
    "dense_short",
    "lexical_short",
    "short",
)
#: The score signals, whose coefficients are kept at or above 0.
MONOTONE = ("dense", "top_dense", "lexical", "dense_short", "lexical_short")
#: A keyword query has at most this many content words.
SHORT_QUERY_WORDS = 2


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def relevance_rows(
    dense: Sequence[float], lexical: Sequence[float], query_words: int, known_words: int
) -> np.ndarray:
    """(n, len(FEATURES)) float64 for one query's n hits: their dense scores (n,), their
    normalised BM25 (n,), and the query's count of content words and of those the forum's
    vocabulary knows."""
    scores = np.asarray(dense, np.float64)
    n = len(scores)
    top = float(scores.max()) if n else 0.0
    lexical_scores = np.asarray(lexical, np.float64).reshape(n)
    fraction = known_words / query_words if query_words else 0.0
    # a query of words the forum has never seen is no keyword search of it: it keeps the
    # longer queries' slopes, which leave such queries with nothing
    short = 1.0 if known_words >= 1 and query_words <= SHORT_QUERY_WORDS else 0.0
    return np.column_stack(
        [
            scores,
            np.full(n, top),
            lexical_scores,
            np.full(n, fraction),
            np.full(n, math.log1p(known_words)),
            scores * short,
            lexical_scores * short,
            np.full(n, short),
        ]
    ).reshape(n, len(FEATURES))


@dataclass(frozen=True)
class RelevanceModel:
    """probability = sigmoid(coef . x + intercept) over the columns named by ``features``."""

    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    #: The cut at which off-topic queries find nothing and paraphrases keep their thread
    #: (what the service uses by default), with how it was chosen.
    min_relevance: float
    report: dict = field(default_factory=dict)

    def probability(self, x: np.ndarray) -> np.ndarray:
        """(n,) relevance in [0, 1] for an (n, len(FEATURES)) matrix of :func:`relevance_rows`."""
        x = np.asarray(x, np.float64)
        cols = [FEATURES.index(name) for name in self.features]
        return _sigmoid(x[:, cols] @ np.asarray(self.coef, np.float64) + self.intercept)

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "min_relevance": self.min_relevance,
            "report": self.report,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> RelevanceModel:
        """Read :meth:`to_dict`'s output; ValueError for signals this version does not measure."""
        features = tuple(data["features"])
        unknown = [f for f in features if f not in FEATURES]
        if unknown or len(data["coef"]) != len(features):
            raise ValueError(f"the relevance model uses signals this version does not measure: {unknown}")
        return cls(
            features,
            tuple(float(c) for c in data["coef"]),
            float(data["intercept"]),
            float(data["min_relevance"]),
            dict(data.get("report", {})),
        )


def fit_relevance(
    x: np.ndarray,
    labels: np.ndarray,
    features: Sequence[str] = FEATURES,
    *,
    weights: np.ndarray | None = None,
    l2: float = 1e-3,
) -> tuple[tuple[float, ...], float]:
    """Logistic regression of 0/1 ``labels`` on the ``features`` columns of ``x`` (an (n,
    len(FEATURES)) matrix), coefficients on :data:`MONOTONE` signals held at or above 0 (a
    signal that comes out negative is dropped and the rest refitted). ``weights`` (n,) weigh
    the rows (e.g. to balance data sets). Returns ``(coef, intercept)`` in ``features`` order."""
    x = np.asarray(x, np.float64)
    y = np.asarray(labels, np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64)
    active = list(features)
    while True:
        cols = [FEATURES.index(f) for f in active]
        z = x[:, cols]
        mean, std = z.mean(axis=0), z.std(axis=0)
        std[std == 0] = 1.0
        coef, intercept = _newton((z - mean) / std, y, w, l2)
        coef = coef / std
        intercept -= float(coef @ mean)
        negative = [f for f, c in zip(active, coef, strict=True) if f in MONOTONE and c < 0]
        if not negative:
            break
        active = [f for f in active if f not in negative]
    out = dict(zip(active, coef.tolist(), strict=True))
    return tuple(out.get(f, 0.0) for f in features), float(intercept)


def _newton(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float, iters: int = 100):
    n, f = x.shape
    xb = np.column_stack([x, np.ones(n)])
    beta = np.zeros(f + 1)
    reg = np.full(f + 1, l2 * w.sum())
    reg[-1] = 0.0
    for _ in range(iters):
        p = _sigmoid(xb @ beta)
        grad = xb.T @ (w * (p - y)) + reg * beta
        hess = (xb * (w * p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-9:
            break
    return beta[:-1], float(beta[-1])
