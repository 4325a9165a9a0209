"""Calibrated duplicate verdicts: pair signals -> score -> probability of "same question" -> tier.

A raw cosine means different things on different forums, and a threshold on it says nothing
about how often a flagged pair really is a duplicate. Calibration learns from labelled pairs:

1. a *scorer* over the pair signals (``qa_search.scoring.pairs.FEATURES``): either gradient-
   boosted trees over all of them (fitted with scikit-learn, constrained to never lower the score
   when the cosine rises), or the cosine alone. Both are fitted on folds of the pairs and the one
   with the better out-of-fold average precision is kept, so a handful of labels gets the safe
   cosine and thousands get the trees (on Quora dev pairs: AP 84.9 against 76.5 for the cosine);
2. a logistic map from the scorer's output to a probability (Platt scaling), fitted on the
   out-of-fold scores, so probabilities are what unseen pairs should get;
3. tiers: the "duplicate" and "related" tiers are the lowest probabilities whose out-of-fold
   precision reaches the target (0.90 and 0.60 by default).

4. where an index has a cross-encoder reranker attached, a *blend*: the calibrated probability
   and the reranker's, each as log-odds, in one logistic model, fitted out of fold on the labelled
   pairs the reranker was not trained on, beside each of the two alone; the best by out-of-fold
   average precision decides the verdicts (:class:`RerankerBlend`).

Folds keep connected pairs together (pairs sharing a question are in one fold), otherwise the
held-out precision would be optimistic. The trees are stored as plain arrays in the snapshot and
evaluated here with numpy: loading an index needs neither scikit-learn nor pickle.

Everything here is pure (arrays in, arrays out); the signals are measured by the index.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from qa_search.scoring.metrics import average_precision, recall_at_precision
from qa_search.scoring.pairs import FEATURES

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

DEFAULT_TARGETS = {"duplicate": 0.9, "related": 0.6}

#: The two scorers :func:`fit_calibration` chooses between.
BOOSTED, COSINE = "boosted", "cosine"

#: Boosting settings (chosen on half of the Quora dev pairs, measured on the other half).
BOOST_ROUNDS = 200
BOOST_LEARNING_RATE = 0.05
BOOST_MAX_LEAVES = 31


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method: (coef (f,), intercept)."""
    n, f = x.shape
    xb = np.column_stack([x, np.ones(n)])
    w = np.zeros(f + 1)
    reg = np.full(f + 1, l2 * n)
    reg[-1] = 0.0  # the intercept is not shrunk
    for _ in range(iters):
        p = _sigmoid(xb @ w)
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def tier_of(tiers: Mapping[str, float], probability: float) -> str | None:
    """The best tier (``{name: least probability}``) that ``probability`` reaches, or None."""
    for name, cut in sorted(tiers.items(), key=lambda kv: -kv[1]):
        if probability >= cut:
            return name
    return None


def choose_tiers(
    probs: np.ndarray, labels: np.ndarray, targets: Mapping[str, float], report: dict
) -> dict[str, float]:
    """Each tier's threshold: the least out-of-fold probability at which its target precision
    is met (1.0 where none is), best tier first; each tier's precision and recall there are
    added to ``report``."""
    tiers = {}
    for name, target in sorted(targets.items(), key=lambda kv: -kv[1]):
        point = recall_at_precision(probs, labels, target)
        tiers[name] = min(float(point.threshold), 1.0)
        report[name] = {"precision": round(point.precision, 6), "recall": round(point.recall, 6)}
    return tiers


def _fit_platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(slope, intercept)`` of probability = sigmoid(slope * raw + intercept), slope >= 0 (a
    higher score never means a lower probability)."""
    raw = np.asarray(raw, np.float64)
    mean, std = float(raw.mean()), float(raw.std()) or 1.0
    coef, intercept = _fit_logistic(((raw - mean) / std)[:, None], np.asarray(y, np.float64))
    slope = max(float(coef[0]) / std, 0.0)
    return slope, intercept - slope * mean if slope else float(np.log(y.mean() / (1 - y.mean())))


@dataclass(frozen=True)
class BoostedTrees:
    """A sum of regression trees: ``raw(x) = baseline + sum of each tree's leaf value``.

    Each tree is a dict of equal-length lists, one entry per node: ``feature`` and ``threshold``
    (rows with ``x[feature] <= threshold`` go to ``left``, others to ``right``), ``leaf`` (1 for a
    leaf) and ``value`` (a leaf's contribution).
    """

    baseline: float
    trees: tuple[dict, ...]

    def raw(self, x: np.ndarray) -> np.ndarray:
        """(n,) scores for an (n, f) feature matrix."""
        x = np.asarray(x, np.float64)
        if not self.trees:
            return np.full(len(x), self.baseline)
        feature, threshold, left, right, leaf, value = self._arrays()
        trees = np.arange(len(self.trees))[None, :]
        rows = np.arange(len(x))[:, None]
        # every row walks every tree at once, one level per step, until all sit on a leaf
        node = np.zeros((len(x), len(self.trees)), np.int64)
        while True:
            inner = ~leaf[trees, node]
            if not inner.any():
                break
            go_left = x[rows, feature[trees, node]] <= threshold[trees, node]
            step = np.where(go_left, left[trees, node], right[trees, node])
            node = np.where(inner, step, node)
        return self.baseline + value[trees, node].sum(axis=1)

    def _arrays(self):
        """The trees as (trees, nodes) arrays padded to the largest tree, built once."""
        cached = self.__dict__.get("_packed")
        if cached is None:
            width = max(len(t["value"]) for t in self.trees)

            def pack(key, dtype, fill):
                out = np.full((len(self.trees), width), fill, dtype)
                for i, t in enumerate(self.trees):
                    out[i, : len(t[key])] = t[key]
                return out

            cached = (
                pack("feature", np.int64, 0),
                pack("threshold", np.float64, 0.0),
                pack("left", np.int64, 0),
                pack("right", np.int64, 0),
                pack("leaf", bool, True),
                pack("value", np.float64, 0.0),
            )
            object.__setattr__(self, "_packed", cached)
        return cached

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "trees": list(self.trees)}

    @classmethod
    def from_dict(cls, data: Mapping) -> BoostedTrees:
        return cls(float(data["baseline"]), tuple(dict(t) for t in data["trees"]))


def fit_boosted(x: np.ndarray, y: np.ndarray, seed: int = 0) -> BoostedTrees:
    """Gradient-boosted trees on log loss over the pair signals (column 0, the cosine, is
    constrained to be monotone increasing), exported to :class:`BoostedTrees`."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    monotone = [1] + [0] * (x.shape[1] - 1)
    model = HistGradientBoostingClassifier(
        max_iter=BOOST_ROUNDS,
        learning_rate=BOOST_LEARNING_RATE,
        max_leaf_nodes=BOOST_MAX_LEAVES,
        monotonic_cst=monotone,
        random_state=seed,
    )
    # one thread: OpenMP's barriers cost more than they gain on these small fits, and on a busy
    # machine 10x more (measured: 0.26 s on one thread vs 2.2 s on two for 3,000 pairs)
    with threadpool_limits(1):
        model.fit(np.asarray(x, np.float64), np.asarray(y, np.int64))
    trees = []
    # one predictor per boosting round for a binary task; node records hold the split and value
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        trees.append(
            {
                "feature": nodes["feature_idx"].astype(int).tolist(),
                "threshold": nodes["num_threshold"].astype(float).tolist(),
                "left": nodes["left"].astype(int).tolist(),
                "right": nodes["right"].astype(int).tolist(),
                "leaf": nodes["is_leaf"].astype(int).tolist(),
                "value": nodes["value"].astype(float).tolist(),
            }
        )
    baseline = float(np.ravel(model._baseline_prediction)[0])
    return BoostedTrees(baseline, tuple(trees))


@dataclass(frozen=True)
class Calibration:
    """A fitted pair scorer: ``probability(features)`` and the tiers' probability thresholds."""

    features: tuple[str, ...]
    #: :data:`BOOSTED` (trees over every feature) or :data:`COSINE` (the cosine column alone).
    scorer: str
    #: The trees when ``scorer`` is boosted, else None.
    trees: BoostedTrees | None
    #: probability = sigmoid(slope * score + intercept).
    slope: float
    intercept: float
    #: Tier name -> the lowest probability in that tier, best tier first.
    tiers: dict[str, float]
    #: Tier name -> the precision it was chosen to reach.
    targets: dict[str, float]
    #: How it was fitted and what it achieved out of fold (pairs, ap per scorer, tiers).
    report: dict = field(default_factory=dict)
    #: The quartiles of the nearest-other-question cosine on the forums it was fitted on, for a
    #: calibration meant to serve other forums (see :meth:`for_forum`); None for a forum's own.
    cosine_quartiles: tuple[float, float, float] | None = None
    #: Set by :meth:`for_forum`: the serving forum's quartiles, which its cosines are mapped from.
    forum_quartiles: tuple[float, float, float] | None = None
    #: How the verdicts join the reranker attached when this was fitted (None: none was attached,
    #: or too few of the pairs were unseen by it to measure a blend).
    reranker_blend: RerankerBlend | None = None

    def for_forum(self, quartiles: Sequence[float]) -> Calibration:
        """This calibration for a forum whose nearest-other-question cosines have these
        quartiles: its cosines are mapped, piecewise linearly through the quartiles, onto the
        scale of the forums it was fitted on before scoring. A forum of long questions (title and
        body) has lower cosines throughout than one of one-line questions: its paraphrases sit
        where the other's unrelated neighbours do. Without :attr:`cosine_quartiles`, itself."""
        if self.cosine_quartiles is None:
            return self
        q = tuple(float(v) for v in quartiles)
        if len(q) != 3 or not q[0] < q[1] < q[2]:
            return self  # too few questions to tell the forum's scale: none is assumed
        return replace(self, forum_quartiles=q)

    def forum_cosine(self, cosine: float) -> float:
        """The serving forum's cosine that maps onto ``cosine`` on the fitted forums' scale (see
        :meth:`for_forum`): ``cosine`` itself when no mapping applies."""
        if self.forum_quartiles is None or self.cosine_quartiles is None:
            return float(cosine)
        ref, forum = [-1.0, *self.cosine_quartiles, 1.0], [-1.0, *self.forum_quartiles, 1.0]
        return float(np.interp(cosine, ref, forum))

    def _mapped(self, x: np.ndarray) -> np.ndarray:
        if self.forum_quartiles is None or self.cosine_quartiles is None:
            return x
        x = x.copy()
        x[:, 0] = np.interp(x[:, 0], [-1.0, *self.forum_quartiles, 1.0], [-1.0, *self.cosine_quartiles, 1.0])
        return x

    def score(self, x: np.ndarray) -> np.ndarray:
        """(n,) scorer outputs for an (n, len(features)) feature matrix."""
        x = self._mapped(np.asarray(x, np.float64))
        if self.scorer != BOOSTED:
            return x[:, 0].copy()
        if self.trees is None:
            raise ValueError("a boosted duplicate calibration has no trees; run `qa-search calibrate` again")
        return self.trees.raw(x)

    def probability(self, x: np.ndarray) -> np.ndarray:
        """(n,) probabilities for an (n, len(features)) feature matrix."""
        return _sigmoid(self.slope * self.score(x) + self.intercept)

    def tier(self, probability: float) -> str | None:
        """The best tier whose threshold ``probability`` reaches, or None."""
        return tier_of(self.tiers, probability)

    def blend_for(self, reranker_digest: str | None) -> RerankerBlend | None:
        """The blend fitted with the reranker of this digest, or None (fitted with another one,
        or with none)."""
        blend = self.reranker_blend
        return blend if blend is not None and blend.reranker == reranker_digest else None

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "scorer": self.scorer,
            "trees": None if self.trees is None else self.trees.to_dict(),
            "slope": self.slope,
            "intercept": self.intercept,
            "tiers": self.tiers,
            "targets": self.targets,
            "report": self.report,
            **({} if self.cosine_quartiles is None else {"cosine_quartiles": list(self.cosine_quartiles)}),
            **({} if self.reranker_blend is None else {"reranker_blend": self.reranker_blend.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Calibration:
        """Read :meth:`to_dict`'s output; raises ValueError for a calibration whose features are
        not this version's (it must be fitted again)."""
        features = tuple(data.get("features", ()))
        if "scorer" not in data or features != FEATURES:
            raise ValueError(
                "the duplicate calibration was fitted on other pair signals (an older qa_search); "
                "run `qa-search calibrate` again"
            )
        trees = data.get("trees")
        quartiles = data.get("cosine_quartiles")
        blend = data.get("reranker_blend")
        return cls(
            features,
            str(data["scorer"]),
            None if trees is None else BoostedTrees.from_dict(trees),
            float(data["slope"]),
            float(data["intercept"]),
            {k: float(v) for k, v in data["tiers"].items()},
            {k: float(v) for k, v in data["targets"].items()},
            dict(data.get("report", {})),
            None if quartiles is None else _three(quartiles),
            reranker_blend=None if blend is None else RerankerBlend.from_dict(blend),
        )


def _three(values: Sequence) -> tuple[float, float, float]:
    """Stored quartiles as the three floats they are written from."""
    if len(values) != 3:
        raise ValueError(
            f"cosine_quartiles must hold 3 values, got {len(values)}; run `qa-search calibrate` again"
        )
    return float(values[0]), float(values[1]), float(values[2])


def pair_groups(pairs: Sequence[tuple[Hashable, Hashable]]) -> list[Hashable]:
    """The connected component of each pair in the graph the pairs draw (one representative
    node per component), so pairs sharing a thread, directly or through others, share a group."""
    parent: dict[Hashable, Hashable] = {}

    def root(t: Hashable) -> Hashable:
        while parent.setdefault(t, t) != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for a, b in pairs:
        parent[root(a)] = root(b)
    return [root(a) for a, _ in pairs]


def group_folds(groups: Sequence[Hashable] | None, n: int, folds: int, seed: int) -> np.ndarray:
    """(n,) fold number of each pair; pairs of one group share a fold, and folds get about
    equally many pairs (groups shuffled with ``seed``, each put in the emptiest fold)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.permutation(n) % folds
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out = np.zeros(n, np.int64)
    sizes = np.zeros(folds, np.int64)
    by_group = list(members.values())
    for j in rng.permutation(len(by_group)):
        rows = by_group[j]
        f = int(np.argmin(sizes))
        out[rows] = f
        sizes[f] += len(rows)
    return out


def check_targets(targets: Mapping[str, float]) -> dict[str, float]:
    """The tiers' target precisions, checked: each a number in (0, 1], and the "duplicate"
    tier's at least the "related" one's (a duplicate is the surer verdict)."""
    out = {}
    for name, value in targets.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise ValueError(f"the {name} tier's precision must be a number in (0, 1], got {value!r}")
        out[name] = float(value)
    if "duplicate" in out and "related" in out and out["duplicate"] < out["related"]:
        raise ValueError(
            f"the duplicate tier's precision ({out['duplicate']}) must be at least the related "
            f"tier's ({out['related']})"
        )
    return out


class FitOptions(TypedDict, total=False):
    """How :func:`fit_calibration_out_of_fold` folds and which scorers it tries (its keyword
    arguments, which :func:`fit_calibration` passes on)."""

    groups: Sequence[Hashable] | None
    folds: int
    seed: int
    scorers: Sequence[str]


def fit_calibration(
    x: np.ndarray, labels: np.ndarray, targets: Mapping[str, float] | None = None,
    **options: Unpack[FitOptions],
) -> Calibration:
    """Fit the pair scorer (see :func:`fit_calibration_out_of_fold`, which also gives each
    pair's out-of-fold probability)."""
    return fit_calibration_out_of_fold(x, labels, targets, **options)[0]


def fit_calibration_out_of_fold(
    x: np.ndarray,
    labels: np.ndarray,
    targets: Mapping[str, float] | None = None,
    *,
    groups: Sequence[Hashable] | None = None,
    folds: int = 5,
    seed: int = 0,
    scorers: Sequence[str] = (BOOSTED, COSINE),
) -> tuple[Calibration, np.ndarray]:
    """Fit the pair scorer on an (n, len(FEATURES)) feature matrix and 0/1 labels, and choose
    the tiers.

    ``groups`` (one hashable per pair, e.g. its connected component) keeps related pairs in one
    fold. Each scorer in ``scorers`` is scored out of fold; the best by average precision is
    refitted on every pair. Tier thresholds come from the out-of-fold probabilities (each pair
    scored by a model that did not see it), so their precision is what unseen pairs should get.
    Returns the calibration and those out-of-fold probabilities ((n,), in the pairs' order).
    """
    targets = check_targets(targets or DEFAULT_TARGETS)
    x = np.asarray(x, np.float64)
    y = np.asarray(labels, np.float64)
    if x.ndim != 2 or x.shape[1] != len(FEATURES):
        raise ValueError(f"expected an (n, {len(FEATURES)}) feature matrix, got shape {x.shape}")
    if y.shape != (len(x),):
        raise ValueError(f"{len(x)} pairs but {len(y)} labels")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (not a duplicate) or 1 (a duplicate)")
    if len(y) < 2 * folds:
        raise ValueError(f"need at least {2 * folds} labelled pairs, got {len(y)}")
    if y.min() == y.max():
        kind = "duplicates (1)" if y[0] == 1 else "non-duplicates (0)"
        raise ValueError(f"all {len(y)} pairs are {kind}: need labelled pairs of both kinds")
    fold = group_folds(groups, len(y), folds, seed)
    report: dict = {"pairs": len(y), "positives": int(y.sum()), "folds": folds, "seed": seed}
    best = None
    # the simplest scorer first: a tie keeps it
    for scorer in sorted(scorers, key=lambda name: name != COSINE):
        raw = x[:, 0].copy()  # the cosine scorer's score
        if scorer == BOOSTED:
            # every pair needs a score from trees that did not see it; where a fold's other
            # pairs hold one class only (a few labels, or all sharing a thread), the trees
            # cannot be measured honestly, and the cosine stands
            trainable = all(0 < y[fold != f].sum() < (fold != f).sum() for f in set(fold.tolist()))
            if not trainable:
                report[f"ap_out_of_fold_{scorer}"] = None
                continue
            for f in set(fold.tolist()):
                held = fold == f
                raw[held] = fit_boosted(x[~held], y[~held], seed).raw(x[held])
        slope, intercept = _fit_platt(raw, y)
        oof = _sigmoid(slope * raw + intercept)
        ap = average_precision(oof, y)
        report[f"ap_out_of_fold_{scorer}"] = round(ap, 6)
        if best is None or ap > best[0] + 1e-9:
            best = (ap, scorer, slope, intercept, oof)
    if best is None:
        raise ValueError("no scorer can be measured out of fold on these pairs: label more of them")
    ap, scorer, slope, intercept, oof = best
    report["ap_out_of_fold"] = round(ap, 6)
    tiers = choose_tiers(oof, y, targets, report)
    trees = fit_boosted(x, y, seed) if scorer == BOOSTED else None
    return Calibration(FEATURES, scorer, trees, slope, intercept, tiers, targets, report), oof


#: The scorers a reranker blend chooses between: the calibrated probability alone, the
#: reranker's alone (its probability mapped onto the forum's pairs), and both together.
BLEND_SCORERS = ("calibrated", "reranker", "combined")
#: The inputs (0: calibrated log-odds, 1: the reranker's) each blend scorer reads.
_BLEND_INPUTS = {"calibrated": (0,), "reranker": (1,), "combined": (0, 1)}
#: Fewer unseen pairs of either class than this and no blend is fitted: a handful cannot tell the
#: scorers apart, and the tiers would rest on one or two pairs.
BLEND_MIN_CLASS = 10


def _foldable(fold: np.ndarray, y: np.ndarray, folds: int) -> bool:
    """Whether every one of ``folds`` folds holds pairs, and the rest of the pairs both labels."""
    return len(set(fold.tolist())) == folds and all(
        0 < y[fold != f].sum() < (fold != f).sum() for f in range(folds)
    )


def log_odds(p: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))``, with ``p`` kept off 0 and 1 so a certain scorer stays finite."""
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class RerankerBlend:
    """How duplicate verdicts join a reranker's probability with the calibrated one:
    probability = sigmoid(coef[0] * logit(calibrated) + coef[1] * logit(reranker) + intercept),
    a weight of 0 for an input the chosen scorer does not read."""

    #: The digest (:attr:`~qa_search.embedding.reranker.Reranker.digest`) of the reranker it
    #: was fitted with; another reranker attached later is not blended.
    reranker: str
    #: One of :data:`BLEND_SCORERS`: which inputs the verdicts read.
    scorer: str
    coef: tuple[float, float]
    intercept: float
    #: Tier name -> the lowest blended probability in that tier (out of fold).
    tiers: dict[str, float]
    #: Pairs used and left out, out-of-fold AP of each scorer, each tier's precision and recall.
    report: dict = field(default_factory=dict)

    @property
    def uses_reranker(self) -> bool:
        """Whether verdicts need the reranker run (not when the calibrated scorer won)."""
        return self.scorer != "calibrated"

    def probability(self, calibrated: np.ndarray, reranker: np.ndarray | None) -> np.ndarray:
        """(n,) blended probabilities from the calibrated and the reranker's probabilities
        (``reranker`` may be None when :attr:`uses_reranker` is False)."""
        z = self.coef[0] * log_odds(calibrated) + self.intercept
        if self.coef[1]:
            if reranker is None:
                raise ValueError(f"the {self.scorer} blend needs the reranker's probabilities")
            z = z + self.coef[1] * log_odds(reranker)
        return _sigmoid(z)

    def tier(self, probability: float) -> str | None:
        return tier_of(self.tiers, probability)

    def to_dict(self) -> dict:
        return {
            "reranker": self.reranker,
            "scorer": self.scorer,
            "coef": list(self.coef),
            "intercept": self.intercept,
            "tiers": self.tiers,
            "report": self.report,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> RerankerBlend:
        scorer = str(data["scorer"])
        if scorer not in BLEND_SCORERS:
            raise ValueError(f"unknown reranker blend scorer {scorer!r}; run `qa-search calibrate` again")
        coef = [float(v) for v in data["coef"]]
        if len(coef) != 2:
            raise ValueError("a reranker blend has two weights; run `qa-search calibrate` again")
        return cls(
            str(data["reranker"]),
            scorer,
            (coef[0], coef[1]),
            float(data["intercept"]),
            {k: float(v) for k, v in data["tiers"].items()},
            dict(data.get("report", {})),
        )


def fit_reranker_blend(
    calibrated: np.ndarray,
    reranker: np.ndarray,
    labels: np.ndarray,
    targets: Mapping[str, float],
    reranker_digest: str,
    *,
    groups: Sequence[Hashable] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> RerankerBlend | str:
    """Choose how verdicts use a reranker, from labelled pairs it was not trained on:
    ``calibrated`` must be each pair's *out-of-fold* calibrated probability (a probability from a
    scorer that saw the pair would make the calibrated side look better than it is), ``reranker``
    the reranker's probability.

    Each of :data:`BLEND_SCORERS` is a logistic model over the log-odds it reads, fitted on folds
    (``groups`` kept together) and scored out of fold; the best average precision wins, a tie
    keeping the cheaper (calibrated, then reranker). A blend whose weights would turn one input
    upside down is not a candidate. Tiers come from the winner's out-of-fold probabilities at
    ``targets``. Returns the blend, or a sentence saying why none could be fitted."""
    y = np.asarray(labels, np.float64)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if min(positives, negatives) < BLEND_MIN_CLASS:
        return (
            f"{positives} duplicates and {negatives} non-duplicates among the pairs the reranker did "
            f"not train on; a blend needs at least {BLEND_MIN_CLASS} of each"
        )
    x = np.column_stack([log_odds(calibrated), log_odds(reranker)])
    fold = group_folds(groups, len(y), folds, seed)
    folding = "by connected pairs"
    if not _foldable(fold, y, folds):
        # the pairs all hang together (one thread links them all, as a forum's moderation log
        # does): folds by pair. Models of one to three weights barely fit their own pairs, so
        # the out-of-fold figures stay close to what unseen pairs get.
        fold, folding = group_folds(None, len(y), folds, seed), "by pair"
    report: dict = {"pairs": len(y), "positives": positives, "folds": folding}
    best = None
    for scorer in BLEND_SCORERS:
        cols = list(_BLEND_INPUTS[scorer])
        oof = np.zeros(len(y))
        for f in set(fold.tolist()):
            held = fold == f
            coef, intercept = _fit_logistic(x[~held][:, cols], y[~held])
            oof[held] = _sigmoid(x[held][:, cols] @ coef + intercept)
        coef, intercept = _fit_logistic(x[:, cols], y)
        if (coef < 0).any():
            report[f"ap_out_of_fold_{scorer}"] = None  # an input read upside down: not a scorer
            continue
        ap = average_precision(oof, y)
        report[f"ap_out_of_fold_{scorer}"] = round(ap, 6)
        if best is None or ap > best[0] + 1e-9:
            full = np.zeros(2)
            full[cols] = coef
            best = (ap, scorer, (float(full[0]), float(full[1])), intercept, oof)
    if best is None:
        return "no blend scorer kept both inputs the right way up"
    ap, scorer, coef2, intercept, oof = best
    report["ap_out_of_fold"] = round(ap, 6)
    tiers = choose_tiers(oof, y, check_targets(targets), report)
    return RerankerBlend(reranker_digest, scorer, coef2, float(intercept), tiers, report)
