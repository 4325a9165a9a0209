"""Shared fixtures: a deterministic fake embedder, the sample forum and the shared data sets."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from qa_search import ForumIndex, Thread

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DUMP = ROOT / "indexes" / "sample" / "threads.jsonl"
SAMPLE_GROUPS = ROOT / "indexes" / "sample" / "duplicate_groups.json"
SHARED_DATA = ROOT.parent / "shared" / "data"

_WORD = re.compile(r"[a-z0-9']+")


class FakeEmbedder:
    """Deterministic bag-of-words embedder: each word hashes to a fixed random unit vector.

    Texts sharing words get similar vectors, so ranking tests are meaningful, and the same text
    always gives the same vector, on any machine. ``overrides`` maps exact texts to vectors.
    """

    def __init__(
        self,
        dimension: int = 64,
        name: str = "fake-bow",
        seed: int = 0,
        overrides: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.name = name
        self.dimension = dimension
        self.seed = seed
        self.overrides = overrides or {}
        self.calls = 0
        self.texts_encoded = 0

    def _word(self, word: str) -> np.ndarray:
        digest = hashlib.blake2b(f"{self.seed}:{word}".encode(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        return rng.standard_normal(self.dimension)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self.dimension), np.float32)
        for i, text in enumerate(texts):
            if text in self.overrides:
                out[i] = self.overrides[text]
                continue
            words = _WORD.findall(text.lower()) or ["<empty>"]
            out[i] = np.sum([self._word(w) for w in words], axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def fake_cli(monkeypatch):
    """A click runner for the CLI, with the fake embedder wherever the CLI loads a model."""
    import sys

    from click.testing import CliRunner

    fake = lambda name=None, **_options: FakeEmbedder()  # noqa: E731
    for module in ("qa_search.operations.lifecycle", "qa_search.embedding.loading"):
        monkeypatch.setattr(sys.modules[module], "load_embedder", fake)
    return CliRunner()


@pytest.fixture(scope="session")
def real_embedder():
    """The packaged all-MiniLM-L6-v2, loaded once per test session."""
    from qa_search import load_embedder

    return load_embedder()


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test where that data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is missing: the shared evaluation data sits beside the repository")
    return path


def calibrated_sample_index():
    """The sample forum indexed with the fake embedder and calibrated on every pair of its
    threads (a pair inside one duplicate group is a duplicate)."""
    import json

    from qa_search import read_dump

    threads = list(read_dump(SAMPLE_DUMP))
    groups = [set(g) for g in json.loads(SAMPLE_GROUPS.read_text())]
    index = ForumIndex(FakeEmbedder())
    index.upsert(threads)
    pairs = labelled_pairs(threads, groups)
    index.calibrate([(a, b) for a, b, _ in pairs], [y for *_, y in pairs])
    return index


def labelled_pairs(threads, groups) -> list[tuple[str, str, int]]:
    """Every pair of ``threads``' ids, labelled 1 when some group (a set of ids) holds both."""
    ids = [t.id for t in threads]
    return [(a, b, int(any({a, b} <= g for g in groups))) for i, a in enumerate(ids) for b in ids[i + 1 :]]


#: Two short threads: a published index small enough for tests of generations and the write log.
TWO_THREADS = [Thread("a", "how to sleep better at night"), Thread("b", "arguing with my sister about money")]


def two_thread_index(path: Path) -> Path:
    """:data:`TWO_THREADS` published at ``path`` (generation 1) with the fake embedder."""
    index = ForumIndex(FakeEmbedder())
    index.upsert(TWO_THREADS)
    index.save(path)
    return path
