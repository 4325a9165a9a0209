"""SemEval-2016 Task 3 subtask B: rerank each question's 10 candidates, score MAP officially.

    python benchmarks/semeval.py ../shared/data/semeval_cqa/semeval2016_subtaskB_dev.jsonl \
        [--model M] [--lexical-weight W] [--json]

All candidates of a file go into one ForumIndex (subject as title, body as body), so the lexical
index's idf comes from the forum's text; each question's candidates are then ranked with
``ForumIndex.score_threads``, the library's own search score. MAP follows the official scorer
(metrics.semeval_map): PerfectMatch and Relevant are relevant, ties keep the search-engine
order, a question without relevant candidates scores 0. Prints a table, or with ``--json``
``{"<file name>": {"map": <percent>}}``. A model made by ``qa-search tune`` is scored with the
index settings it recommends (as ``qa-search build --model`` applies them); ``--lexical-weight``
overrides the weight.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qa_search import ForumIndex, IndexConfig, QASearchError, Thread, load_embedder
from qa_search.embedding.models import Embedder
from qa_search.embedding.tuned import model_index_settings
from qa_search.errors import DumpFormatError
from qa_search.scoring.metrics import semeval_map
from qa_search.threads import check_text
from qa_search.tools.evaluation import json_objects

LABELS = ("PerfectMatch", "Relevant", "Irrelevant")


def read_semeval(path: str | Path) -> list[dict]:
    """The questions of a SemEval file (one per line, as ../shared/data/semeval_cqa/README.md
    describes); a line that is not such a question raises DumpFormatError naming it."""
    questions = []
    for n, obj in json_objects(path):
        try:
            questions.append(_check_question(obj))
        except ValueError as exc:
            raise DumpFormatError(str(path), n, str(exc)) from None
    if not questions:
        raise QASearchError(f"{path} holds no questions")
    return questions


def _check_question(q: dict) -> dict:
    for key in ("query_id", "subject", "body", "candidates"):
        if key not in q:
            raise ValueError(f"missing required field {key!r}")
    if not isinstance(q["candidates"], list) or not q["candidates"]:
        raise ValueError("'candidates' must be a non-empty list")
    for i, c in enumerate(q["candidates"]):
        where = f"candidate {i + 1}"
        if not isinstance(c, dict):
            raise ValueError(f"{where}: expected a JSON object")
        for key in ("id", "subject", "body", "label", "ir_rank"):
            if key not in c:
                raise ValueError(f"{where}: missing required field {key!r}")
        if c["label"] not in LABELS:
            raise ValueError(f"{where}: label {c['label']!r} is not one of {', '.join(LABELS)}")
        if isinstance(c["ir_rank"], bool) or not isinstance(c["ir_rank"], int):
            raise ValueError(f"{where}: 'ir_rank' must be an integer")
    for x in (q, *q["candidates"]):
        for key in ("subject", "body"):
            if not isinstance(x[key], str):
                raise ValueError(f"{key!r} must be a string")
            check_text(x[key], repr(key))
    return q


def question_text(subject: str, body: str) -> str:
    """The text a thread's question is embedded as (Thread.question_text's layout)."""
    return Thread("q", subject.strip() or body.strip(), body=body.strip()).question_text


def semeval_index(questions: list[dict], embedder: Embedder, config: IndexConfig) -> ForumIndex:
    index = ForumIndex(embedder, config)
    index.upsert(
        Thread(c["id"], c["subject"].strip() or c["body"].strip() or c["id"], body=c["body"].strip())
        for q in questions
        for c in q["candidates"]
    )
    return index


def rank_runs(questions: list[dict], score) -> list[tuple[list[float], list[bool]]]:
    """Each question's ``(scores, relevant?)`` over its candidates in search-engine order (the
    official tie order), ``score(question, candidates)`` giving the scores: semeval_map's input."""
    runs = []
    for q in questions:
        cands = sorted(q["candidates"], key=lambda c: c["ir_rank"])
        runs.append((list(score(q, cands)), [c["label"] != "Irrelevant" for c in cands]))
    return runs


def library_runs(questions: list[dict], embedder: Embedder, config: IndexConfig) -> list:
    """:func:`rank_runs` of the library's own search score (``ForumIndex.score_threads``)."""
    index = semeval_index(questions, embedder, config)
    return rank_runs(
        questions,
        lambda q, cands: index.score_threads(
            question_text(q["subject"], q["body"]), [c["id"] for c in cands]
        ),
    )


def semeval_file_map(path: str | Path, embedder: Embedder, config: IndexConfig) -> float:
    """MAP (percent) of the library's ranking of one file's candidates."""
    return questions_map(read_semeval(path), embedder, config)


def questions_map(questions: list[dict], embedder: Embedder, config: IndexConfig) -> float:
    """MAP (percent) of the library's ranking of ``questions``' candidates."""
    return round(100 * semeval_map(library_runs(questions, embedder, config)), 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--model", default=None, help="sentence-transformers model [default: packaged MiniLM]")
    ap.add_argument("--lexical-weight", type=float, default=None, help="override IndexConfig.lexical_weight")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        ap.error(f"no such file: {', '.join(missing)}")
    try:
        # the settings a build with this model starts from: a tuned model's recommended ones
        config = IndexConfig().updated(model_index_settings(args.model))
        if args.lexical_weight is not None:
            config = config.updated({"lexical_weight": args.lexical_weight})
    except ValueError as exc:
        ap.error(str(exc))
    try:
        files = {f: read_semeval(f) for f in args.files}  # every file checked before the model loads
        embedder = load_embedder(args.model)
        names = [Path(f).name for f in args.files]
        # keyed by file name, or by the path given where two files share a name
        result = {
            (name if names.count(name) == 1 else f): {"map": questions_map(files[f], embedder, config)}
            for name, f in zip(names, args.files, strict=True)
        }
    except QASearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print(f"model {embedder.name}, lexical_weight {config.lexical_weight}")
        print(f"{'file':<45} {'MAP':>6}")
        for name, r in result.items():
            print(f"{name:<45} {r['map']:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
