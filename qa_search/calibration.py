"""Calibrated duplicate verdicts: pair features -> probability of "same question" -> tier.

A raw cosine means different things on different forums, and a threshold on it says nothing
about how often a flagged pair really is a duplicate. Calibration fits a logistic regression on
labelled pairs over a few signals of a (new question, stored thread) pair, so its output is a
probability; the "duplicate" and "related" tiers are the lowest probabilities whose precision,
measured on held-out folds of the labelled pairs, reaches the target (0.90 and 0.60 by default).

Everything here is pure (arrays in, arrays out); the features are computed by the index.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from .metrics import average_precision, recall_at_precision

#: The pair signals, in column order: question cosine, normalised BM25 of the stored question for
#: the new one, Jaccard overlap of their stemmed content words, and the product of the first two.
FEATURES = ("cosine", "lexical", "jaccard", "cosine_x_lexical")

DEFAULT_TARGETS = {"duplicate": 0.9, "related": 0.6}


def feature_matrix(cosine: np.ndarray, lexical: np.ndarray, jaccard: np.ndarray) -> np.ndarray:
    """(n, len(FEATURES)) float64 from the three measured signals, each (n,)."""
    cosine, lexical, jaccard = (np.asarray(a, np.float64) for a in (cosine, lexical, jaccard))
    return np.column_stack([cosine, lexical, jaccard, cosine * lexical])


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50):
    """L2-regularised logistic regression by Newton's method: (coef (f,), intercept)."""
    n, f = x.shape
    xb = np.column_stack([x, np.ones(n)])
    w = np.zeros(f + 1)
    reg = np.full(f + 1, l2 * n)
    reg[-1] = 0.0  # the intercept is not shrunk
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Calibration:
    """A fitted pair scorer: ``probability(features)`` and the tiers' probability thresholds."""

    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    #: Tier name -> the lowest probability in that tier, best tier first.
    tiers: dict[str, float]
    #: Tier name -> the precision it was chosen to reach.
    targets: dict[str, float]
    #: How it was fitted and what it achieved out of fold (pairs, ap, per-tier precision/recall).
    report: dict = field(default_factory=dict)

    def probability(self, x: np.ndarray) -> np.ndarray:
        """(n,) probabilities for an (n, len(features)) feature matrix."""
        return _sigmoid(np.asarray(x, np.float64) @ np.asarray(self.coef) + self.intercept)

    def tier(self, probability: float) -> str | None:
        """The best tier whose threshold ``probability`` reaches, or None."""
        for name, cut in sorted(self.tiers.items(), key=lambda kv: -kv[1]):
            if probability >= cut:
                return name
        return None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Calibration:
        return cls(
            tuple(data["features"]),
            tuple(float(c) for c in data["coef"]),
            float(data["intercept"]),
            {k: float(v) for k, v in data["tiers"].items()},
            {k: float(v) for k, v in data["targets"].items()},
            dict(data.get("report", {})),
        )


def _standardise(x: np.ndarray):
    mean, std = x.mean(axis=0), x.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Fit on standardised features and fold the scaling back into raw-feature weights."""
    mean, std = _standardise(x)
    coef, intercept = _fit_logistic((x - mean) / std, y)
    raw = coef / std
    return raw, intercept - float(raw @ mean)


def fit_calibration(
    x: np.ndarray,
    labels: np.ndarray,
    targets: Mapping[str, float] | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
) -> Calibration:
    """Fit the pair scorer on an (n, f) feature matrix and 0/1 labels, and choose the tiers.

    Tier thresholds come from out-of-fold probabilities (each pair scored by a model that did not
    see it), so their precision is what unseen pairs should get, not an optimistic in-sample one.
    The final model is then refitted on every pair.
    """
    targets = dict(targets or DEFAULT_TARGETS)
    x = np.asarray(x, np.float64)
    y = np.asarray(labels, np.float64)
    if len(y) < 2 * folds or y.min() == y.max():
        raise ValueError(f"need at least {2 * folds} labelled pairs of both kinds, got {len(y)}")
    order = np.random.default_rng(seed).permutation(len(y))
    oof = np.zeros(len(y))
    for f in range(folds):
        held = order[f::folds]
        train = np.setdiff1d(order, held)
        coef, intercept = _fit(x[train], y[train])
        oof[held] = _sigmoid(x[held] @ coef + intercept)
    tiers, report = {}, {"pairs": len(y), "positives": int(y.sum()), "folds": folds, "seed": seed}
    report["ap_out_of_fold"] = round(average_precision(oof, y), 6)
    for name, target in sorted(targets.items(), key=lambda kv: -kv[1]):
        point = recall_at_precision(oof, y, target)
        tiers[name] = min(float(point.threshold), 1.0)
        report[name] = {"precision": round(point.precision, 6), "recall": round(point.recall, 6)}
    coef, intercept = _fit(x, y)
    return Calibration(FEATURES[: x.shape[1]], tuple(coef.tolist()), intercept, tiers, targets, report)
