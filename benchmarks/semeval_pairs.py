"""SemEval-2016 Task 3 subtask B for tuning: train file -> pairs file, and dev MAP of a model.

    python benchmarks/semeval_pairs.py pairs OUT.jsonl            # train part 2 as text pairs
    python benchmarks/semeval_pairs.py map [--model DIR] [--json] # dev MAP, stock vs. DIR

A query and each of its 10 candidates make one pair ``{"text1", "text2", "label"}``: label 1 for
PerfectMatch or Relevant, 0 for Irrelevant; a text is subject + "\\n" + body. ``map`` reranks each
dev question's 10 candidates by the cosine of the model's embeddings (torch backend, fp32) and
scores MAP as the official scorer does (see ../shared/data/semeval_cqa/README.md): AP over the
ranks of relevant candidates, AP = 0 for a question with none (it still counts), a stable sort
so ties keep file order. The stock model is always measured in the same run, side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "semeval_cqa"
TRAIN = DATA / "semeval2016_subtaskB_train_part2.jsonl"
DEV = DATA / "semeval2016_subtaskB_dev.jsonl"
RELEVANT = {"PerfectMatch", "Relevant"}


def text(item: dict) -> str:
    return f"{item['subject']}\n{item['body']}"


def read_questions(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_pairs(src: Path, out: Path) -> int:
    n = 0
    with open(out, "w", encoding="utf-8") as fh:
        for q in read_questions(src):
            for c in q["candidates"]:
                label = int(c["label"] in RELEVANT)
                fh.write(json.dumps({"text1": text(q), "text2": text(c), "label": label}) + "\n")
                n += 1
    return n


def average_precision(relevant_in_rank_order: list[bool]) -> float:
    """AP of one ranked list of 10; 0 when nothing is relevant (the official rule)."""
    hits, total = 0, 0.0
    for k, rel in enumerate(relevant_in_rank_order, start=1):
        if rel:
            hits += 1
            total += hits / k
    return total / hits if hits else 0.0


def dev_map(model: str | None, questions: list[dict]) -> float:
    from qa_search.embedding.loading import load_embedder

    embedder = load_embedder(model, backend="torch")
    aps = []
    for q in questions:
        vecs = embedder.encode([text(q)] + [text(c) for c in q["candidates"]])
        scores = vecs[1:] @ vecs[0]
        order = np.argsort(-scores, kind="stable")  # ties keep file (IR) order
        aps.append(average_precision([q["candidates"][i]["label"] in RELEVANT for i in order]))
    return 100.0 * float(np.mean(aps))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pairs", help="write SemEval train part 2 as a text-pairs file")
    p.add_argument("out", type=Path)
    p.add_argument("--source", type=Path, default=TRAIN)
    m = sub.add_parser("map", help="SemEval-2016 dev MAP of the stock model and of --model")
    m.add_argument("--model", action="append", default=[], help="a tuned model directory (repeatable)")
    m.add_argument("--dev", type=Path, default=DEV)
    m.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "pairs":
        if not args.source.is_file():
            ap.error(f"no such file: {args.source}")
        if not args.out.parent.is_dir():
            ap.error(f"no such directory for the output: {args.out.parent}")
        n = write_pairs(args.source, args.out)
        print(f"wrote {n} pairs to {args.out}", file=sys.stderr)
        return 0
    if not args.dev.is_file():
        ap.error(f"no such file: {args.dev}")
    questions = read_questions(args.dev)
    try:
        # the tuned models first: a wrong --model fails before the stock model's minute of work
        tuned = [(m, dev_map(m, questions)) for m in args.model]
        rows = [("stock all-MiniLM-L6-v2", dev_map(None, questions)), *tuned]
    except Exception as exc:  # noqa: BLE001 - a model that cannot load, said in one line
        from qa_search.errors import QASearchError

        if not isinstance(exc, QASearchError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"dev_questions": len(questions), "map": dict(rows)}))
    else:
        print(f"SemEval-2016 dev MAP ({len(questions)} questions)")
        for name, value in rows:
            print(f"  {value:6.2f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
