"""Encoder backends side by side: bulk throughput, single-text latency and Quora dev nDCG@10.

torch (sentence-transformers), ONNX fp32 and ONNX int8 embed the same Quora corpus; every dev query
is searched exactly against it (its own id removed, as the data's README requires) and scored by
nDCG@10. ``--distractors N`` bounds the corpus to the dev queries, their duplicates and N random
other questions (0: the whole corpus). Embeddings are cached in ``--cache-dir`` by backend and
corpus, so a rerun only re-measures speed. torch's ranking quality is taken from ONNX fp32 when
``--skip-torch-quality`` is given (the export is checked to match torch to cosine 0.999).

    .venv/bin/python benchmarks/encoders.py --distractors 30000 --cache-dir /work/cache/issue5
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
QUORA = ROOT.parent / "shared" / "data" / "quora"


def read_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def quora_subset(distractors: int, seed: int = 0) -> tuple[list[str], list[str], list[dict]]:
    """(corpus ids, corpus texts, dev queries) with all dev queries and their duplicates kept."""
    corpus = read_jsonl(QUORA / "corpus.jsonl.gz")
    queries = read_jsonl(QUORA / "dev_queries.jsonl.gz")
    if distractors > 0:
        needed = {q["query_id"] for q in queries} | {r for q in queries for r in q["relevant_ids"]}
        others = [c for c in corpus if c["id"] not in needed]
        rng = np.random.default_rng(seed)
        pick = set(rng.choice(len(others), size=min(distractors, len(others)), replace=False).tolist())
        corpus = [c for c in corpus if c["id"] in needed] + [c for i, c in enumerate(others) if i in pick]
    return [c["id"] for c in corpus], [c["text"] for c in corpus], queries


def ndcg_at_10(vectors: np.ndarray, ids: list[str], queries: list[dict]) -> float:
    """Mean nDCG@10 of exact inner-product search, each query's own id removed (binary gains)."""
    import faiss

    row = {cid: i for i, cid in enumerate(ids)}
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    qrows = np.array([row[q["query_id"]] for q in queries])
    _, found = index.search(vectors[qrows], 11)
    discounts = 1.0 / np.log2(np.arange(2, 12))
    total = 0.0
    for q, hits in zip(queries, found, strict=True):
        rel = {row[r] for r in q["relevant_ids"] if r in row}
        hits = [h for h in hits.tolist() if h != row[q["query_id"]]][:10]
        dcg = sum(discounts[i] for i, h in enumerate(hits) if h in rel)
        ideal = discounts[: min(len(rel), 10)].sum()
        total += dcg / ideal if ideal else 0.0
    return total / len(queries)


def make_embedder(backend: str, threads: int | None, onnx_cache: Path | None):
    from qa_search.embedding.loading import load_embedder

    return load_embedder(backend=backend, threads=threads, onnx_cache_dir=onnx_cache)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--distractors", type=int, default=30000, help="random non-dev questions (0: all)")
    ap.add_argument("--backends", default="torch,onnx,onnx-int8")
    ap.add_argument("--speed-texts", type=int, default=2000, help="texts timed for bulk throughput")
    ap.add_argument("--cache-dir", type=Path, default=None, help="where corpus embeddings are cached")
    ap.add_argument("--skip-torch-quality", action="store_true", help="take torch's nDCG from ONNX fp32")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if not QUORA.is_dir():
        print(f"{QUORA} is missing: the Quora data sits beside the repository", file=sys.stderr)
        return 2
    ids, texts, queries = quora_subset(args.distractors)
    corpus_key = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
    onnx_cache = args.cache_dir / "onnx" if args.cache_dir else None
    results = []
    for backend in args.backends.split(","):
        emb = make_embedder(backend, args.threads, onnx_cache)
        sample = texts[: args.speed_texts]
        emb.encode(sample[:64])  # warm-up
        t0 = time.perf_counter()
        emb.encode(sample, batch_size=32)
        bulk = len(sample) / (time.perf_counter() - t0)
        lat = []
        for q in queries[:200]:
            t1 = time.perf_counter()
            emb.encode([q["text"]])
            lat.append((time.perf_counter() - t1) * 1e3)
        ndcg = None
        if not (backend == "torch" and args.skip_torch_quality):
            cached = args.cache_dir / f"quora-{corpus_key}-{backend}.npy" if args.cache_dir else None
            if cached is not None and cached.is_file():
                vectors = np.load(cached)
            else:
                vectors = emb.encode(texts, batch_size=64)
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    np.save(cached, vectors)
            ndcg = ndcg_at_10(vectors, ids, queries)
        results.append(
            {
                "backend": backend,
                "bulk_texts_per_s": round(bulk, 1),
                "single_p50_ms": round(float(np.percentile(lat, 50)), 2),
                "single_p99_ms": round(float(np.percentile(lat, 99)), 2),
                "ndcg_at_10": None if ndcg is None else round(ndcg, 4),
            }
        )
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if args.skip_torch_quality:
        fp32 = next((r["ndcg_at_10"] for r in results if r["backend"] == "onnx"), None)
        for r in results:
            if r["backend"] == "torch":
                r["ndcg_at_10"] = fp32
    base = next((r for r in results if r["backend"] == "torch"), results[0])
    report = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}",
        "corpus": len(ids),
        "queries": len(queries),
        "results": results,
    }
    print(f"Quora dev: {len(queries)} queries over {len(ids)} questions; {report['date']}")
    print("| backend | bulk texts/s | x torch | 1 text p50 ms | p99 ms | nDCG@10 |")
    print("|---|---|---|---|---|---|")
    for r in results:
        ratio = r["bulk_texts_per_s"] / base["bulk_texts_per_s"]
        nd = "-" if r["ndcg_at_10"] is None else f"{r['ndcg_at_10']:.4f}"
        print(
            f"| {r['backend']} | {r['bulk_texts_per_s']:.0f} | {ratio:.2f} | {r['single_p50_ms']:.2f} "
            f"| {r['single_p99_ms']:.2f} | {nd} |"
        )
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
