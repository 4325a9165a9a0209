"""The lexical weight for a tuned model, measured on SemEval-2016 without asking dev alone.

    python benchmarks/semeval_weights.py [--seeds N] [--work DIR] [--backend onnx-int8|onnx|torch] [--json]

Train part 2's questions are split in two halves (seeded shuffle); a model is tuned
(``qa_search.tools.tuning.tune``, defaults) on each half's pairs and scored on the other half, and one
on all of train part 2 is scored on dev. With ``--seeds N`` each is tuned with seeds 0..N-1 and
the MAPs are averaged over the seeds as well (tuning varies with its seed). Scoring is
``benchmarks/semeval.py``'s: each question's 10 candidates ranked by the library's own search
score, official MAP. For every lexical weight the table shows the stock and the tuned model
side by side, on the held-out halves (the mean of the two) and on dev, and, for dev, the paired
bootstrap standard error of the tuned model's gain (10,000 resamples of the 50 questions):
differences well inside it are noise. Tuned models are kept under ``--work`` (default
~/.cache/qa_search/semeval_weights) and reused while the recipe that made them is
``tuning.RECIPE``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import semeval  # noqa: E402
import semeval_pairs  # noqa: E402

from qa_search import IndexConfig, load_embedder  # noqa: E402
from qa_search.scoring.metrics import semeval_map  # noqa: E402
from qa_search.tools import tuning, tuningdata  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def halves(questions: list[dict], seed: int = 0) -> tuple[list[dict], list[dict]]:
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    cut = len(questions) // 2
    return [questions[i] for i in order[:cut]], [questions[i] for i in order[cut:]]


def tuned(questions: list[dict], out: Path, seed: int) -> str:
    """A model tuned (defaults, ``seed``) on ``questions``' pairs, made once under ``out`` (again
    where an older recipe made the one there)."""
    if tuning.tuned_recipe(out) != tuning.RECIPE:
        shutil.rmtree(out, ignore_errors=True)
        pairs = [
            tuningdata.LabelledPair(
                semeval_pairs.text(q), semeval_pairs.text(c), int(c["label"] in semeval_pairs.RELEVANT)
            )
            for q in questions
            for c in q["candidates"]
        ]
        print(f"tuning on {len(pairs)} pairs (seed {seed}) into {out}", file=sys.stderr, flush=True)
        tuning.tune(pairs, out, seed=seed)
    return str(out)


def per_question_ap(questions: list[dict], embedder, weight: float) -> np.ndarray:
    runs = semeval.library_runs(questions, embedder, replace(IndexConfig(), lexical_weight=weight))
    return np.array([100 * semeval_map([run]) for run in runs])


def run(work: Path, backend: str, seeds: int) -> dict:
    train = semeval.read_semeval(semeval_pairs.TRAIN)
    dev = semeval.read_semeval(semeval_pairs.DEV)
    parts = halves(train)
    stock = load_embedder(backend=backend)
    folds = [
        (load_embedder(tuned(parts[h], work / f"half{h}-seed{s}", s), backend=backend), parts[1 - h])
        for h in (0, 1)
        for s in range(seeds)
    ]
    full = [
        load_embedder(tuned(train, work / f"train_part2-seed{s}", s), backend=backend) for s in range(seeds)
    ]
    draws = np.random.default_rng(0).integers(0, len(dev), (10_000, len(dev)))
    out: dict = {
        "backend": backend,
        "seeds": seeds,
        "halves": [len(p) for p in parts],
        "dev_questions": len(dev),
        "weights": {},
    }
    for w in WEIGHTS:
        stock_halves = np.mean([per_question_ap(parts[1 - h], stock, w).mean() for h in (0, 1)])
        tuned_halves = np.mean([per_question_ap(held, model, w).mean() for model, held in folds])
        stock_dev = per_question_ap(dev, stock, w)
        by_seed = [per_question_ap(dev, model, w) for model in full]
        tuned_dev = np.mean(by_seed, axis=0)
        gain = tuned_dev - stock_dev
        out["weights"][str(w)] = {
            "stock_halves": round(float(stock_halves), 2),
            "tuned_halves": round(float(tuned_halves), 2),
            "stock_dev": round(float(stock_dev.mean()), 2),
            "tuned_dev": round(float(tuned_dev.mean()), 2),
            "tuned_dev_by_seed": [round(float(a.mean()), 2) for a in by_seed],
            "dev_gain_se": round(float(gain[draws].mean(axis=1).std()), 2),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "qa_search" / "semeval_weights")
    ap.add_argument("--backend", default="onnx-int8", choices=("onnx-int8", "onnx", "torch"))
    ap.add_argument("--seeds", type=int, default=1, help="tune with seeds 0..N-1 and average (default 1)")
    ap.add_argument("--json", action="store_true", help="print only the JSON")
    args = ap.parse_args(argv)
    if not semeval_pairs.TRAIN.exists():
        ap.error(
            f"{semeval_pairs.TRAIN} is missing: this benchmark reads ../shared/data beside the repository"
        )
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    result = run(args.work, args.backend, args.seeds)
    if not args.json:
        print(
            f"SemEval-2016 MAP by lexical weight ({args.backend}, {args.seeds} seed(s); "
            f"halves of train part 2: {result['halves']})"
        )
        print(
            f"{'weight':>6} {'stock halves':>12} {'tuned halves':>12} "
            f"{'stock dev':>9} {'tuned dev':>9} {'gain SE':>7}  tuned dev by seed"
        )
        for w, r in result["weights"].items():
            print(
                f"{w:>6} {r['stock_halves']:>12.2f} {r['tuned_halves']:>12.2f} {r['stock_dev']:>9.2f} "
                f"{r['tuned_dev']:>9.2f} {r['dev_gain_se']:>7.2f}  {r['tuned_dev_by_seed']}"
            )
        print()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
