"""Fit the duplicate calibration shipped for the default model, and measure it where it was not
fitted.

    python benchmarks/default_calibration.py [--write] [--json]

Fitted (qa_search.scoring.calibration.fit_calibration, default targets: "duplicate" at 0.90
precision, "related" at 0.60) on public labelled pairs, each measured on its own index with the
packaged model and the default settings:

* the Quora train pairs (13,789; their 23,464 questions indexed among as many unlabelled
  ones from the corpus, none of them a dev question);
* SemEval-2016 train part 2: each original question with its 10 candidates (PerfectMatch is a
  duplicate; Relevant and Irrelevant are not), originals and candidates indexed together.

Measured, at the "duplicate" tier (precision, recall) and as average precision, on:

* the Quora dev pairs whose two questions are in benchmarks/relevance.py's 20,000-question
  subset (indexed as that subset);
* SemEval-2016 dev (as train);
* the sample forum: every pair inside a documented duplicate group is a duplicate; each
  grouped question's 5 nearest other questions outside its group are not.

The scorer is chosen leave-one-data-set-out: for each of Quora, SemEval and the sample held
out, each scorer is fitted on the other two (Quora train, SemEval train, the sample's pairs) and
measured on the held-out one's pairs; the scorer with the better worst-set average precision is
shipped (fitted on Quora and SemEval train, so the sample stays held out).

Then dedupe (qa_search.find_duplicate_clusters) as an index with no calibration of its own runs
it, before (probability 0.5, average linkage) and now (the "related" tier, complete linkage), on
the sample forum (documented groups found whole), the Quora dev subset (its dev clusters) and
SemEval dev (each original with its labelled candidates): pairwise precision and recall.
``--write`` puts the calibration into qa_search/embedding/defaults/all-MiniLM-L6-v2.json (keeping
benchmarks/relevance.py's part, re-read just before writing). Vectors are cached under
/tmp/qa_search_bench, as benchmarks/relevance.py does.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from relevance import (
    DATA,
    DEFAULTS,
    ROOT,
    cached_embedder,
    quora_subset,
    semeval_questions,
    semeval_thread,
)

from qa_search import ForumIndex, Thread, find_duplicate_clusters, read_dump
from qa_search.embedding.model_defaults import ShippedDefaults
from qa_search.index.defaults import neighbour_quartiles
from qa_search.scoring.calibration import BOOSTED, COSINE, Calibration, fit_calibration, pair_groups
from qa_search.scoring.metrics import average_precision
from qa_search.tools.dedupe import SHIPPED_LINKAGE, SHIPPED_TIER

#: dedupe's defaults with the shipped calibration before this benchmark chose the current ones.
BEFORE = {"threshold": 0.5, "linkage": "average"}


def _gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def quora_train(embedder) -> tuple[ForumIndex, list[tuple[str, str]], np.ndarray]:
    """The train pairs, their questions indexed among as many unlabelled ones (a forum's
    neighbourhood: alone, a pair's two questions are each other's nearest far more often than
    in any forum, and the rank and margin signals would learn that)."""
    pairs = _gz(DATA / "quora" / "train_pairs.jsonl.gz")
    ids = {i for p in pairs for i in (p["id1"], p["id2"])}
    dev = _gz(DATA / "quora" / "dev_pairs.jsonl.gz")
    queries = _gz(DATA / "quora" / "dev_queries.jsonl.gz")
    labelled = {i for p in dev for i in (p["id1"], p["id2"])} | {x["query_id"] for x in queries}
    labelled |= {r for x in queries for r in x["relevant_ids"]}
    corpus = _gz(DATA / "quora" / "corpus.jsonl.gz")
    others = sorted(r["id"] for r in corpus if r["id"] not in ids and r["id"] not in labelled)
    keep = ids | set(others[: len(ids)])
    text = {r["id"]: r["text"] for r in corpus if r["id"] in keep}
    index = ForumIndex(embedder)
    index.upsert(Thread(i, text[i]) for i in sorted(keep))
    return index, [(p["id1"], p["id2"]) for p in pairs], np.array([p["label"] for p in pairs])


def quora_dev(embedder) -> tuple[ForumIndex, list[tuple[str, str]], np.ndarray]:
    _, pairs, subset = quora_subset()
    index = ForumIndex(embedder)
    index.upsert(Thread(i, t) for i, t in subset.items())
    kept = [p for p in pairs if p["id1"] in subset and p["id2"] in subset]
    return index, [(p["id1"], p["id2"]) for p in kept], np.array([p["label"] for p in kept])


def semeval(embedder, split: str) -> tuple[ForumIndex, list[tuple[str, str]], np.ndarray]:
    questions = semeval_questions()[split]
    index = ForumIndex(embedder)
    index.upsert(
        [semeval_thread(q["query_id"], q["subject"], q["body"]) for q in questions]
        + [semeval_thread(c["id"], c["subject"], c["body"]) for q in questions for c in q["candidates"]]
    )
    pairs = [(q["query_id"], c["id"]) for q in questions for c in q["candidates"]]
    labels = np.array([int(c["label"] == "PerfectMatch") for q in questions for c in q["candidates"]])
    return index, pairs, labels


def sample(embedder) -> tuple[ForumIndex, list[tuple[str, str]], np.ndarray, list[list[str]]]:
    index = ForumIndex(embedder)
    index.upsert(read_dump(ROOT / "indexes" / "sample" / "threads.jsonl"))
    groups = json.loads((ROOT / "indexes" / "sample" / "duplicate_groups.json").read_text())
    group_of = {t: i for i, g in enumerate(groups) for t in g}
    pairs, labels = [], []
    for g in groups:
        for a in g:
            pairs += [(a, b) for b in g if b != a]
            labels += [1] * (len(g) - 1)
    tids, _, rows = index.question_neighbours(5 + 2)
    for i, a in enumerate(tids):
        if a not in group_of:
            continue
        others = [tids[r] for r in rows[i] if r >= 0 and group_of.get(tids[r]) != group_of[a]][:5]
        pairs += [(a, b) for b in others]
        labels += [0] * len(others)
    return index, pairs, np.array(labels), groups


def at_tiers(cal: Calibration, index: ForumIndex, pairs, labels) -> dict:
    """Precision and recall at each tier, and average precision, of the shipped calibration as
    an uncalibrated index uses it (on the forum's cosine scale)."""
    index.calibration = cal.for_forum(neighbour_quartiles(index))
    p = index.pair_scores(pairs)
    out = {"pairs": len(labels), "duplicates": int(labels.sum()), "ap": average_precision(p, labels)}
    for tier, cut in cal.tiers.items():
        flagged = p >= cut
        hits = int((flagged & (labels == 1)).sum())
        out[tier] = {
            "flagged": int(flagged.sum()),
            "precision": hits / max(int(flagged.sum()), 1),
            "recall": hits / max(int(labels.sum()), 1),
        }
    return out


def dedupe_truths(
    indexes: dict[str, ForumIndex], groups: list[list[str]]
) -> dict[str, tuple[ForumIndex, Callable, int, list[set[str]] | None]]:
    """Each forum's index and how its dedupe is judged: ``judge(a, b)`` (1 a duplicate pair, 0
    not, None unlabelled), the duplicate pairs in all, and its groups where whole ones count.

    Sample: every pair is judged (its groups are all its duplicates). Quora dev subset: the pairs
    whose two questions are in dev clusters (each query with its duplicates; the labels are
    incomplete, so precision is a lower bound). SemEval dev: each original with its candidates
    (PerfectMatch a duplicate)."""
    out = {}
    index = indexes["sample"]
    group_of = {t: i for i, g in enumerate(groups) for t in g}
    out["sample"] = (
        index,
        lambda a, b: int(a in group_of and group_of[a] == group_of.get(b)),
        sum(len(g) * (len(g) - 1) // 2 for g in groups),
        [set(g) for g in groups],
    )
    queries, _, _ = quora_subset()
    clusters = [[q["query_id"], *q["relevant_ids"]] for q in queries]
    cluster_of = {t: i for i, c in enumerate(clusters) for t in c}

    def same_cluster(a: str, b: str) -> int | None:
        return None if a not in cluster_of or b not in cluster_of else int(cluster_of[a] == cluster_of[b])

    out["quora_dev"] = (
        indexes["quora"],
        same_cluster,
        sum(len(c) * (len(c) - 1) // 2 for c in clusters),
        [set(c) for c in clusters],
    )
    label = {
        frozenset((q["query_id"], c["id"])): int(c["label"] == "PerfectMatch")
        for q in semeval_questions()["dev"]
        for c in q["candidates"]
    }
    judge = lambda a, b: label.get(frozenset((a, b)))  # noqa: E731
    out["semeval_dev"] = (indexes["semeval"], judge, sum(label.values()), None)
    return out


def forum_dedupe(cal: Calibration, index: ForumIndex, judge, positives: int, groups, **how) -> dict:
    """dedupe as an index with no calibration of its own runs it (the shipped calibration on the
    forum's cosine scale), with ``how`` (threshold, linkage) or its defaults: pairwise precision
    and recall, and the groups found whole."""
    index.calibration = None
    index.shipped_defaults = ShippedDefaults.of(index.embedder.name, {"duplicate_calibration": cal.to_dict()})
    result = find_duplicate_clusters(index, **how)
    clusters = [{t.thread_id for t in c.threads} for c in result.clusters]
    labels = [judge(a, b) for c in clusters for a, b in itertools.combinations(sorted(c), 2)]
    judged = [v for v in labels if v is not None]
    out = {
        "threshold": round(result.threshold, 4),
        "linkage": result.linkage,
        "clusters": len(clusters),
        "judged_pairs": len(judged),
        "pair_precision": sum(judged) / max(len(judged), 1),
        "pair_recall": sum(judged) / max(positives, 1),
        "seconds": round(result.seconds, 1),
    }
    if groups is not None:
        out["groups"] = len(groups)
        out["whole"] = sum(any(g <= c for c in clusters) for g in groups)
    return out


def leave_one_out(fit_sets: dict, held_sets: dict) -> dict:
    """For each data set held out and each scorer: fitted on the other two, measured on it."""
    out: dict = {}
    for held in fit_sets:
        rest = [n for n in fit_sets if n != held]
        x = np.concatenate([fit_sets[n][0] for n in rest])
        y = np.concatenate([fit_sets[n][1] for n in rest])
        groups = [f"{n}:{g}" for n in rest for g in fit_sets[n][2]]
        for scorer in (BOOSTED, COSINE):
            cal = fit_calibration(x, y, groups=groups, scorers=(scorer,))
            cal = replace(cal, cosine_quartiles=REFERENCE[0])
            out.setdefault(scorer, {})[held] = at_tiers(cal, *held_sets[held])
    return out


#: Quora's nearest-question cosine quartiles, the scale every forum is mapped onto (set in main).
REFERENCE: list = [None]


def _mapped(index: ForumIndex, pairs) -> np.ndarray:
    quartiles = neighbour_quartiles(index)
    x = index.pair_features(pairs)
    x[:, 0] = np.interp(x[:, 0], [-1, *quartiles, 1], [-1, *REFERENCE[0], 1])
    return x


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the calibration into the defaults file")
    parser.add_argument("--json", action="store_true", help="print the JSON only")
    args = parser.parse_args(argv)
    say = (lambda *a: None) if args.json else print
    embedder = cached_embedder()
    q_train, s_train = quora_train(embedder), semeval(embedder, "train")
    sample_index, sample_pairs, sample_labels, sample_groups = sample(embedder)
    embedder.save()
    REFERENCE[0] = neighbour_quartiles(q_train[0])  # Quora's scale, the one most pairs are on
    fit_sets = {}
    for name, (index, pairs, labels) in (
        ("quora", q_train),
        ("semeval", s_train),
        ("sample", (sample_index, sample_pairs, sample_labels)),
    ):
        fit_sets[name] = (_mapped(index, pairs), labels, pair_groups(pairs))
        print(
            f"{name}: {len(labels)} pairs, {int(labels.sum())} duplicates, nearest-question cosine "
            f"quartiles {np.round(neighbour_quartiles(index), 3).tolist()}",
            file=sys.stderr,
        )
    held_out = {
        "quora": quora_dev(embedder)[:3],
        "semeval": semeval(embedder, "dev")[:3],
        "sample": (sample_index, sample_pairs, sample_labels),
    }
    embedder.save()
    lodo = leave_one_out(fit_sets, held_out)
    # the scorer that transfers: the better worst held-out average precision
    chosen = max(lodo, key=lambda s: min(r["ap"] for r in lodo[s].values()))
    # shipped: fitted on Quora and SemEval train, so the sample stays held out
    x = np.concatenate([fit_sets[n][0] for n in ("quora", "semeval")])
    y = np.concatenate([fit_sets[n][1] for n in ("quora", "semeval")])
    groups = [f"{n}:{g}" for n in ("quora", "semeval") for g in fit_sets[n][2]]
    cal = replace(fit_calibration(x, y, groups=groups, scorers=(chosen,)), cosine_quartiles=REFERENCE[0])
    names = {"quora": "quora_dev", "semeval": "semeval_dev", "sample": "sample"}
    results = {names[n]: at_tiers(cal, *data) for n, data in held_out.items()}
    worst = min(results, key=lambda n: results[n]["related"]["precision"])
    dedupe = {}
    indexes = {n: data[0] for n, data in held_out.items()}
    for name, (index, judge, positives, truth_groups) in dedupe_truths(indexes, sample_groups).items():
        dedupe[name] = {
            "before": forum_dedupe(cal, index, judge, positives, truth_groups, by="probability", **BEFORE),
            "now": forum_dedupe(cal, index, judge, positives, truth_groups),
        }
    embedder.save()
    say(f"{time.strftime('%Y-%m-%d')}, {platform.node() or '?'}; chosen: {cal.scorer}; tiers {cal.tiers}")
    say("\nleave one data set out (fitted on the other two; AP, then precision / recall per tier):")
    say("| scorer | held out | AP | \"duplicate\" tier | \"related\" tier |")
    say("|---|---|---|---|---|")
    for scorer, by_set in lodo.items():
        for held, r in by_set.items():
            tiers = [f"{100 * r[t]['precision']:.1f}% / {100 * r[t]['recall']:.1f}%" for t in cal.tiers]
            say(f"| {scorer} | {held} | {100 * r['ap']:.1f} | " + " | ".join(tiers) + " |")
    say("\nshipped (fitted on Quora + SemEval train), measured where it was not fitted:")
    say("| held out | pairs | duplicates | AP | tier | flagged | precision | recall |")
    say("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        for tier in cal.tiers:
            t = r[tier]
            say(
                f"| {name} | {r['pairs']} | {r['duplicates']} | {100 * r['ap']:.1f} | {tier} "
                f"| {t['flagged']} | {100 * t['precision']:.1f}% | {100 * t['recall']:.1f}% |"
            )
    say(f"worst set (lowest \"related\" precision): {worst}")
    say(f"\ndedupe, no own calibration: before {BEFORE}, now the {SHIPPED_TIER} tier, {SHIPPED_LINKAGE}")
    say("| forum | defaults | threshold | linkage | clusters | pair precision | pair recall | groups whole |")
    say("|---|---|---|---|---|---|---|---|")
    for name, r in dedupe.items():
        for when, d in r.items():
            whole = f"{d['whole']} of {d['groups']}" if "whole" in d else "-"
            say(
                f"| {name} | {when} | {d['threshold']} | {d['linkage']} | {d['clusters']} "
                f"| {100 * d['pair_precision']:.1f}% | {100 * d['pair_recall']:.1f}% | {whole} |"
            )
    report = {"leave_one_out": lodo, "held_out": results, "worst_set": worst, "dedupe": dedupe}
    print(json.dumps(report, default=float))
    if args.write:
        data = cal.to_dict()
        data["report"] = {
            **data["report"],
            "fitted_by": "benchmarks/default_calibration.py",
            "fitted_at": time.strftime("%Y-%m-%d"),
            **report,
        }
        # re-read just before writing: benchmarks/relevance.py's part is kept as it is now
        current = json.loads(DEFAULTS.read_text("utf-8")) if DEFAULTS.is_file() else {}
        current["duplicate_calibration"] = data
        DEFAULTS.write_text(json.dumps(current, indent=1, default=float) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
