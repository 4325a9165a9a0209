"""Search defaults that carry to unseen forums: every candidate setting on every evaluation set,
and leave-one-data-set-out (LODO) choices.

    python benchmarks/defaults.py [--work DIR] [--embed-only] [--json]

Evaluation sets (../shared/data, and the repository's own):

- ``quora``: the 5,000 Quora dev queries over relevance.py's 20,000-question subset of the
  corpus (every dev query and its duplicates, the rest the dev pairs' questions, so the
  distractors are the near misses the labellers saw; the full 137,537 questions take 30 minutes
  to embed in fp32 on two shared cores), the query's own id removed; nDCG@10;
- ``semeval_dev``, ``semeval_train2``: SemEval-2016 subtask B, each file's candidates one forum
  (its idf), each question's 10 candidates reranked; official MAP (semeval.py);
- ``counselchat``: each thread indexed as its title and answers, its body the query
  (counselchat.py); nDCG@10;
- ``paraphrases``: the same index, queried with benchmarks/data/counselchat_paraphrases.jsonl,
  questions written for this benchmark in other words than the thread's; nDCG@10, and how many
  find their thread in the top 3;
- ``sample``: the sample forum (indexes/sample, what ``make run`` serves), each member of a
  duplicate group a query for the others, its own thread removed; nDCG@10.

The baseline is plain all-MiniLM-L6-v2: fp32 vectors, cosine between the query and each
thread's question text, no answers, no BM25. Each candidate setting is a precision (documents,
queries: int8/int8, fp32/int8, fp32/fp32), a lexical rule (``lexical_mode`` fixed or coverage,
:func:`qa_search.scoring.fusion.query_lexical_weight`, and a ``lexical_weight``), and the
answer rule's ``answer_weight`` and ``agreement_weight``. A thread's score is computed as
search computes it (:func:`~qa_search.scoring.fusion.thread_dense_score` + weight x normalised
BM25) from cached vectors and BM25 scores in numpy, over candidates that hold the exact top 10:
every thread for the small sets, and for Quora the union of the 200 best by cosine and by BM25.

The rule: a setting *loses* on a set when its per-query mean is below the baseline's by more
than twice the paired standard error. The choice among the settings that lose nowhere is the
one with the best worst relative change against the baseline, then the best mean of the
relative changes. For each held-out set, the setting chosen on the other sets is reported on
it. Vectors are cached under ``--work`` (default ~/.cache/qa_search/defaults), both precisions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import relevance  # noqa: E402
import semeval  # noqa: E402
from progress import log  # noqa: E402
from quality import cached  # noqa: E402

from qa_search import Thread, load_embedder  # noqa: E402
from qa_search.index.parts import thread_parts  # noqa: E402
from qa_search.scoring.fusion import query_lexical_weight  # noqa: E402
from qa_search.scoring.lexical import LexicalIndex  # noqa: E402
from qa_search.scoring.metrics import semeval_average_precision  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PARAPHRASES = ROOT / "benchmarks" / "data" / "counselchat_paraphrases.jsonl"
SEMEVAL = relevance.DATA / "semeval_cqa"
SETS = ("quora", "semeval_dev", "semeval_train2", "counselchat", "paraphrases", "sample")
PRECISIONS = {"int8/int8": ("int8", "int8"), "fp32/int8": ("fp32", "int8"), "fp32/fp32": ("fp32", "fp32")}
LEXICAL_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
LEXICAL_MODES = ("fixed", "coverage")
ANSWER_WEIGHTS = (0.8, 0.9, 1.0)
AGREEMENT_WEIGHTS = (0.0, 0.25, 0.5)
#: The settings shipped before this benchmark, and the baseline's name.
BEFORE = ("int8/int8", "fixed", 1.0, 0.9, 0.25)
PLAIN = "plain MiniLM"
#: Candidates per list for a large set (Quora): a thread outside every list cannot reach the top 10.
DEPTH = 200
CHUNK_WORDS, CHUNK_OVERLAP = 160, 30


@dataclass
class EvalSet:
    """A forum and its queries: ``(text, relevant ids, own id)``; for a reranking set, each
    query's candidates in search-engine order (``rerank``)."""

    name: str
    threads: list[Thread]
    queries: list[tuple[str, frozenset[str], str | None]]
    metric: str = "ndcg@10"
    rerank: list[list[str]] | None = None
    extra: dict = field(default_factory=dict)


def read_paraphrases(path: Path = PARAPHRASES) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def eval_sets() -> dict[str, EvalSet]:
    out: dict[str, EvalSet] = {}
    queries, _, subset = relevance.quora_subset()
    out["quora"] = EvalSet(
        "quora",
        [Thread(i, t) for i, t in subset.items()],
        [(q["text"], frozenset(q["relevant_ids"]), q["query_id"]) for q in queries],
    )
    for name, file in (("semeval_dev", "semeval2016_subtaskB_dev.jsonl"),
                       ("semeval_train2", "semeval2016_subtaskB_train_part2.jsonl")):
        questions = semeval.read_semeval(SEMEVAL / file)
        threads = [relevance.semeval_thread(c["id"], c["subject"], c["body"])
                   for q in questions for c in q["candidates"]]
        out[name] = EvalSet(
            name, threads,
            [(semeval.question_text(q["subject"], q["body"]),
              frozenset(c["id"] for c in q["candidates"] if c["label"] != "Irrelevant"), None)
             for q in questions],
            metric="map",
            rerank=[[c["id"] for c in sorted(q["candidates"], key=lambda c: c["ir_rank"])]
                    for q in questions],
        )
    threads, cc_queries = relevance.counselchat_forum()
    out["counselchat"] = EvalSet("counselchat", threads, [(t, frozenset(r), o) for t, r, o in cc_queries])
    out["paraphrases"] = EvalSet(
        "paraphrases", threads,
        [(p["query"], frozenset([p["thread_id"]]), None) for p in read_paraphrases()],
    )
    threads, s_queries = relevance.sample_forum()
    out["sample"] = EvalSet("sample", threads, [(t, frozenset(r), o) for t, r, o in s_queries])
    return out


# -- vectors and signals ------------------------------------------------------------------


class Vectors:
    """Both precisions' embedders, answering from the disk cache."""

    def __init__(self, work: Path) -> None:
        self.embedders = {
            "int8": cached(load_embedder(backend="onnx-int8"), work, "onnx-int8"),
            "fp32": cached(load_embedder(backend="onnx"), work, "onnx-fp32"),
        }

    def encode(self, precision: str, texts: list[str]) -> np.ndarray:
        emb = self.embedders[precision]
        out = []
        for start in range(0, len(texts), 2048):  # flushed as it goes: an interrupted run keeps its work
            out.append(emb.encode(texts[start : start + 2048], batch_size=64))
            emb.cache.flush()
        return np.concatenate(out) if out else np.zeros((0, emb.dimension), np.float32)


@dataclass
class Signals:
    """One set under one precision pair: per query, its candidate threads' question cosine,
    best answer chunk cosine (nan: no answers) and normalised BM25, which are relevant, and the
    query's best BM25 over the whole forum."""

    q: list[np.ndarray]
    a: list[np.ndarray]
    lex: list[np.ndarray]
    rel: list[np.ndarray]
    top_lex: np.ndarray
    n_relevant: np.ndarray


def _forum_vectors(vec: Vectors, s: EvalSet, precision: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Question vectors (n, d), answer chunk vectors (m, d) and each chunk's thread row (m,)."""
    chunks, owner = [], []
    for i, t in enumerate(s.threads):
        for part in thread_parts(t, CHUNK_WORDS, CHUNK_OVERLAP)[1:]:
            chunks.append(part.text)
            owner.append(i)
    qv = vec.encode(precision, [t.question_text for t in s.threads])
    av = vec.encode(precision, chunks)
    return qv, av, np.asarray(owner, np.int64)


def signals(vec: Vectors, s: EvalSet, docs: str, queries: str, lexical: LexicalIndex,
            lex_rows: list[np.ndarray]) -> Signals:
    qv, av, owner = _forum_vectors(vec, s, docs)
    query_vecs = vec.encode(queries, [t for t, _, _ in s.queries])
    ids = [t.id for t in s.threads]
    row = {tid: i for i, tid in enumerate(ids)}
    n = len(ids)
    out = Signals([], [], [], [], np.zeros(len(s.queries)), np.zeros(len(s.queries)))
    has_answers = len(av) > 0
    for start in range(0, len(s.queries), 256):
        block = query_vecs[start : start + 256]
        qs = block @ qv.T
        if has_answers:
            chunk_sims = block @ av.T
            best = np.full((len(block), n), -np.inf, np.float32)
            for j in range(len(block)):
                np.maximum.at(best[j], owner, chunk_sims[j])
            best[np.isinf(best)] = np.nan
        for j in range(len(block)):
            i = start + j
            text, relevant, own = s.queries[i]
            lex = lex_rows[i]
            out.top_lex[i] = float(lex.max()) if len(lex) else 0.0
            if s.rerank is not None:
                cand = np.asarray([row[c] for c in s.rerank[i]], np.int64)
            elif n <= 5000:
                cand = np.arange(n)
            else:
                by_q = np.argpartition(-qs[j], DEPTH)[: DEPTH + 1]
                by_lex = np.argpartition(-lex, DEPTH)[: DEPTH + 1]
                cand = np.union1d(by_q, by_lex)
            if own is not None:
                cand = cand[cand != row[own]]
            out.q.append(qs[j, cand])
            out.a.append(best[j, cand] if has_answers else np.full(len(cand), np.nan, np.float32))
            out.lex.append(lex[cand])
            out.rel.append(np.asarray([ids[c] in relevant for c in cand.tolist()]))
            out.n_relevant[i] = len(relevant - {own})
    return out


def lexical_rows(s: EvalSet) -> tuple[LexicalIndex, list[np.ndarray]]:
    """The forum's lexical index (over question texts, as search builds it) and each query's
    normalised BM25 per thread row."""
    lexical = LexicalIndex.build([t.id for t in s.threads], [t.question_text for t in s.threads])
    order = np.asarray([lexical.position[t.id] for t in s.threads], np.int64)
    return lexical, [lexical.scores(text)[order] for text, _, _ in s.queries]


# -- scoring --------------------------------------------------------------------------------


def per_query(s: EvalSet, sig: Signals, mode: str, lw: float, aw: float, ag: float) -> np.ndarray:
    """Each query's metric (nDCG@10, or AP for a reranking set) under one setting."""
    weights = query_lexical_weight(lw, mode, sig.top_lex)
    out = np.zeros(len(sig.q))
    for i, (q, a, lex, rel) in enumerate(zip(sig.q, sig.a, sig.lex, sig.rel, strict=True)):
        x = aw * a
        dense = np.where(np.isnan(a), q, np.maximum(q, x) + ag * np.minimum(q, x))
        score = dense + weights[i] * lex
        order = np.argsort(-score, kind="stable")
        if s.metric == "map":
            out[i] = semeval_average_precision(rel[order].tolist())
        else:
            hits = rel[order[:10]]
            out[i] = _ndcg(hits, int(sig.n_relevant[i]))
    return out


_DISCOUNT = 1.0 / np.log2(np.arange(2, 12))


def _ndcg(hits: np.ndarray, n_relevant: int) -> float:
    """nDCG@10 of a boolean row of the top 10 (metrics.ndcg_at_k's binary gains)."""
    if n_relevant <= 0:
        return 0.0
    return float(_DISCOUNT[: len(hits)][hits].sum() / _DISCOUNT[: min(n_relevant, 10)].sum())


def plain_baseline(s: EvalSet, sig: Signals) -> np.ndarray:
    return per_query(s, Signals(sig.q, [np.full(len(x), np.nan) for x in sig.a], sig.lex, sig.rel,
                                sig.top_lex, sig.n_relevant), "fixed", 0.0, 0.0, 0.0)


def candidates() -> list[tuple[str, str, float, float, float]]:
    return [
        (p, mode, lw, aw, ag)
        for p, mode, lw, aw, ag in itertools.product(PRECISIONS, LEXICAL_MODES, LEXICAL_WEIGHTS,
                                                      ANSWER_WEIGHTS, AGREEMENT_WEIGHTS)
        if not (mode == "coverage" and lw == 0.0)
    ]


def name_of(c: tuple) -> str:
    p, mode, lw, aw, ag = c
    return f"{p} {mode} lw={lw:g} aw={aw:g} ag={ag:g}"


def compare(got: np.ndarray, base: np.ndarray) -> dict:
    """Mean, relative change against the baseline and whether it loses beyond noise (mean
    paired difference below -2 standard errors)."""
    d = got - base
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    mean, b = float(got.mean()), float(base.mean())
    return {"mean": mean, "rel": (mean - b) / b, "diff": float(d.mean()), "se": se,
            "loses": bool(d.mean() < -2 * se)}


def choose(table: dict[str, dict[str, dict]], sets: tuple[str, ...]) -> str:
    """Among the settings that lose on none of ``sets``, the best worst relative change, then
    the best mean relative change (all settings if every one loses somewhere)."""
    names = list(table)
    safe = [n for n in names if not any(table[n][s]["loses"] for s in sets)] or names
    return max(safe, key=lambda n: (round(min(table[n][s]["rel"] for s in sets), 6),
                                    float(np.mean([table[n][s]["rel"] for s in sets]))))


def run(work: Path, embed_only: bool) -> dict:
    sets = eval_sets()
    vec = Vectors(work)
    for precision in ("int8", "fp32"):
        for s in sets.values():
            log(f"{s.name}: embedding in {precision} ({len(s.threads)} threads, {len(s.queries)} queries)")
            _forum_vectors(vec, s, precision)
            vec.encode(precision, [t for t, _, _ in s.queries])
    if embed_only:
        return {}
    per_set: dict[str, dict[str, np.ndarray]] = {}
    base: dict[str, np.ndarray] = {}
    cands = candidates()
    for s in sets.values():
        log(f"{s.name}: BM25 and signals")
        lexical, lex = lexical_rows(s)
        sigs = {p: signals(vec, s, d, q, lexical, lex) for p, (d, q) in PRECISIONS.items()}
        base[s.name] = plain_baseline(s, sigs["fp32/fp32"])
        per_set[s.name] = {}
        log(f"{s.name}: {len(cands)} settings")
        answers = any(t.answers for t in s.threads)
        memo: dict[tuple, np.ndarray] = {}
        for c in cands:
            # without answers the answer rule changes nothing: one run per lexical rule
            key = c if answers else c[:3]
            if key not in memo:
                memo[key] = per_query(s, sigs[c[0]], *c[1:])
            per_set[s.name][name_of(c)] = memo[key]
    table = {name_of(c): {n: compare(per_set[n][name_of(c)], base[n]) for n in SETS} for c in cands}
    chosen = choose(table, SETS)
    lodo = {}
    for held in SETS:
        pick = choose(table, tuple(n for n in SETS if n != held))
        lodo[held] = {"chosen": pick, **table[pick][held]}
    extra: dict = {"paraphrases_top3": {}}
    paraphrases = sets["paraphrases"]
    lexical, lex = lexical_rows(paraphrases)
    for label, c in (("plain", None), ("before", BEFORE), ("chosen", _parse(chosen))):
        sig = signals(vec, paraphrases, *PRECISIONS["fp32/fp32" if c is None else c[0]], lexical, lex)
        extra["paraphrases_top3"][label] = top3(sig, c)
    return {
        "baseline": {n: float(base[n].mean()) for n in SETS},
        "queries": {n: len(base[n]) for n in SETS},
        "settings": table,
        "chosen_on_all": chosen,
        "before": name_of(BEFORE),
        "lodo": lodo,
        **extra,
    }


def _parse(name: str) -> tuple:
    p, mode, lw, aw, ag = name.split()
    return (p, mode, float(lw[3:]), float(aw[3:]), float(ag[3:]))


def top3(sig: Signals, c: tuple | None) -> int:
    """How many queries have their thread in the top 3."""
    found = 0
    for i, (q, a, lex, rel) in enumerate(zip(sig.q, sig.a, sig.lex, sig.rel, strict=True)):
        if c is None:
            score = q
        else:
            _, mode, lw, aw, ag = c
            x = aw * a
            dense = np.where(np.isnan(a), q, np.maximum(q, x) + ag * np.minimum(q, x))
            score = dense + query_lexical_weight(lw, mode, sig.top_lex[i]) * lex
        found += bool(rel[np.argsort(-score, kind="stable")[:3]].any())
    return found


def _row(result: dict, label: str, name: str) -> str:
    t = result["settings"][name]
    cells = [f"{100 * t[n]['mean']:.2f}{'*' if t[n]['loses'] else ''}" for n in SETS]
    rel = [t[n]["rel"] for n in SETS]
    return f"| {label} | " + " | ".join(cells) + f" | {100 * np.mean(rel):+.2f}% | {100 * min(rel):+.2f}% |"


def report(result: dict) -> str:
    """Markdown: the chosen setting against the baseline and the settings before; then one
    table per default, each varying that default with the others at the chosen values; then
    the held-out choices. ``*``: loses to the baseline beyond noise."""
    head = "| {} | " + " | ".join(SETS) + " | mean rel. | worst rel. |"
    rule = "|---" * (len(SETS) + 3) + "|"
    chosen = _parse(result["chosen_on_all"])
    plain = " | ".join(f"{100 * result['baseline'][n]:.2f}" for n in SETS)
    lines = [head.format("setting"), rule, f"| {PLAIN} (fp32, cosine) | {plain} | 0 | 0 |",
             _row(result, "before: " + result["before"], result["before"]),
             _row(result, "**chosen**: " + result["chosen_on_all"], result["chosen_on_all"]), ""]
    p, mode, lw, aw, ag = chosen
    slices = {
        "lexical rule": [(f"{m} {w:g}", (p, m, w, aw, ag)) for m in LEXICAL_MODES for w in LEXICAL_WEIGHTS
                         if not (m == "coverage" and w == 0.0)],
        "answer rule": [(f"answer {a:g}, agreement {g:g}", (p, mode, lw, a, g))
                        for a in ANSWER_WEIGHTS for g in AGREEMENT_WEIGHTS],
        "precision (documents/queries)": [(q, (q, mode, lw, aw, ag)) for q in PRECISIONS],
    }
    for title, rows in slices.items():
        lines += [head.format(title), rule]
        lines += [_row(result, label, name_of(c)) for label, c in rows]
        lines.append("")
    lines.append("| held out | chosen on the others | held-out metric | plain | rel. | loses? |")
    lines.append("|---|---|---|---|---|---|")
    for held, r in result["lodo"].items():
        base = 100 * result["baseline"][held]
        lines.append(f"| {held} | {r['chosen']} | {100 * r['mean']:.2f} | {base:.2f} "
                     f"| {100 * r['rel']:+.2f}% | {'yes' if r['loses'] else 'no'} |")
    lines.append("")
    top = result["paraphrases_top3"]
    lines.append(f"paraphrases with their thread in the top 3 (of {result['queries']['paraphrases']}): "
                 + ", ".join(f"{k} {v}" for k, v in top.items()))
    return "\n".join(lines)


def latency(rounds: int = 5) -> dict:
    """Encode ms per query, int8 against fp32, one text at a time as a search does, the two
    interleaved so that the machine's load falls on both alike (median over the paraphrases
    and 200 Quora dev queries, ``rounds`` times each); and each graph's size on disk."""
    queries, _, _ = relevance.quora_subset()
    texts = [p["query"] for p in read_paraphrases()] + [q["text"] for q in queries[:200]]
    embedders = {"int8": load_embedder(backend="onnx-int8"), "fp32": load_embedder(backend="onnx")}
    times: dict[str, list[float]] = {p: [] for p in embedders}
    for emb in embedders.values():
        emb.encode(texts[:8])  # warm the session
    for _ in range(rounds):
        for text in texts:
            for p, emb in embedders.items():
                t = time.perf_counter()
                emb.encode([text])
                times[p].append(1000 * (time.perf_counter() - t))
    out: dict = {
        p: {"median_ms": round(float(np.median(v)), 3), "p90_ms": round(float(np.percentile(v, 90)), 3)}
        for p, v in times.items()
    }
    for p, emb in embedders.items():
        out[p]["graph_mb"] = round(Path(emb.source).stat().st_size / 2**20, 1)
    out["fp32_over_int8"] = round(out["fp32"]["median_ms"] / out["int8"]["median_ms"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path.home() / ".cache" / "qa_search" / "defaults")
    ap.add_argument("--embed-only", action="store_true", help="fill the vector cache and stop")
    ap.add_argument("--latency", action="store_true", help="measure encode ms per query, int8 and fp32")
    ap.add_argument("--json", action="store_true", help="print only the JSON")
    args = ap.parse_args(argv)
    if args.latency:
        print(json.dumps(latency()))
        return 0
    if not relevance.DATA.exists():
        ap.error(f"{relevance.DATA} is missing: this benchmark reads ../shared/data beside the repository")
    result = run(args.work, args.embed_only)
    if args.embed_only:
        return 0
    if not args.json:
        print(report(result))
        print()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
