"""The by-hand recipe that benchmarks/speed.py compares against, as a real uvicorn server.

FastAPI + sentence-transformers on torch + FAISS ``IndexFlatIP``, written the way a tutorial
would: encode the query, search, return ids and scores. ``--vectors`` is an ``.npy`` of the
corpus's (n, d) float32 unit vectors (the search cost of a flat index does not depend on them).

    python benchmarks/baseline_server.py --vectors corpus.npy --port 8001
"""

from __future__ import annotations

import argparse

import faiss
import numpy as np
import uvicorn
from fastapi import FastAPI
from sentence_transformers import SentenceTransformer

from qa_search.embedding.models import resolve_model


def create_app(vectors_path: str) -> FastAPI:
    model = SentenceTransformer(resolve_model(None)[1], device="cpu")
    vectors = np.load(vectors_path)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    app = FastAPI()

    @app.get("/search")
    def search(q: str, k: int = 10) -> dict:
        query = model.encode([q], normalize_embeddings=True)
        scores, ids = index.search(query, k)
        return {"hits": [{"id": int(i), "score": float(s)} for s, i in zip(scores[0], ids[0], strict=True)]}

    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    uvicorn.run(create_app(args.vectors), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
