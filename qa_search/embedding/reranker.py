"""A cross-encoder reranker run by ONNX Runtime: the probability that two questions are duplicates.

A cross-encoder reads both questions at once (``[CLS] a [SEP] b [SEP]``), so it sees which words
of one answer which of the other, where the bi-encoder only compares two vectors made apart. It
is slower, one transformer run per pair, which is why it only rescores the few candidates the
vector search found. Training it is tools/rerankertraining.py's (torch); this module needs only
``onnxruntime`` and ``tokenizers``, so torch stays out of the query path.

A reranker directory holds::

    reranker.json           the recipe: base model, seed, epochs, pairs, tiers, format version
    model.onnx              the exported graph (input_ids, attention_mask, token_type_ids -> logit)
    model.int8.onnx         its dynamic int8 quantisation (used when the recipe's precision says so)
    tokenizer.json, special_tokens_map.json   the fast tokenizer
    trained_pairs.txt       a digest of each pair it was trained on (:func:`pair_key`), one a line
    torch/                  the trained CrossEncoder, for training further (never read here)

Only the files in :data:`ONNX_FILES` are needed to score; attaching a reranker to an index copies
those (see :mod:`qa_search.index.persistence`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from qa_search.embedding.onnx import _session, _Tokenizer
from qa_search.errors import ModelLoadError
from qa_search.storage.snapshot import file_sha256

RECIPE_FILE = "reranker.json"
#: Which pairs the reranker was trained on, so a calibration can leave them out when it measures
#: how the reranker blends with the calibrated scorer (a reranker scores its own training pairs
#: far better than it will score a forum's new questions).
TRAINED_PAIRS_FILE = "trained_pairs.txt"
#: The files a reranker needs to score pairs and be blended (the int8 graph and the training
#: record only where they were written).
ONNX_FILES = (
    "reranker.json", "model.onnx", "model.int8.onnx", "tokenizer.json", "special_tokens_map.json",
    TRAINED_PAIRS_FILE,
)
#: The reranker.json format this version reads and writes.
FORMAT_VERSION = 1
#: Tokens per pair (both questions together); longer pairs lose their ends, the longer side first.
DEFAULT_MAX_LENGTH = 128
#: Pairs per ONNX Runtime call.
BATCH_SIZE = 32
#: Tiers when a recipe has none (too few pairs were held out to measure them): a probability of
#: 0.5 is the classifier's own boundary between duplicate and not.
DEFAULT_TIERS = {"duplicate": 0.5, "related": 0.2}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def pair_key(a: str, b: str) -> str:
    """A short digest of a question pair, the same in either order and through changes of case
    and spacing: how :data:`TRAINED_PAIRS_FILE` records a pair without keeping its text."""
    sides = sorted(" ".join(t.split()).casefold() for t in (a, b))
    return hashlib.sha256("\0".join(sides).encode("utf-8")).hexdigest()[:16]


def read_recipe(directory: str | Path) -> dict:
    """A reranker directory's ``reranker.json``; :class:`ModelLoadError` saying why it is not one."""
    directory = Path(directory)
    path = directory / RECIPE_FILE
    if not directory.is_dir():
        raise ModelLoadError(
            f"no reranker at {directory}: not a directory (train one with qa-search tune --reranker)"
        )
    if not path.is_file():
        raise ModelLoadError(
            f"{directory} is not a reranker: it has no {RECIPE_FILE} "
            "(train one with qa-search tune --reranker)"
        )
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from None
    if not isinstance(recipe, dict) or recipe.get("format") != FORMAT_VERSION:
        found = recipe.get("format") if isinstance(recipe, dict) else None
        raise ModelLoadError(
            f"{path} is reranker format {found!r}; this version reads format {FORMAT_VERSION} "
            "(train the reranker again with this version)"
        )
    return recipe


def reranker_files(directory: str | Path) -> dict[str, str]:
    """``{file name: SHA-256}`` of the files of :data:`ONNX_FILES` that ``directory`` holds."""
    directory = Path(directory)
    return {name: file_sha256(directory / name) for name in ONNX_FILES if (directory / name).is_file()}


def files_digest(files: Mapping[str, str]) -> str:
    """One SHA-256 for a reranker's files (their names and checksums), its content address."""
    h = hashlib.sha256()
    for name, sha in sorted(files.items()):
        h.update(f"{name}\0{sha}\n".encode())
    return h.hexdigest()


class Reranker:
    """A trained cross-encoder, loaded once and used from any thread (an ONNX Runtime session
    may be run concurrently)."""

    def __init__(
        self, directory: Path, recipe: dict, session, tokenizer: _Tokenizer, files: dict[str, str]  # noqa: ANN001
    ) -> None:
        self.directory = directory
        self.recipe = recipe
        self._session = session
        self._tokenizer = tokenizer
        #: ``{file name: SHA-256}`` of the files it was loaded from.
        self.files = files
        #: The SHA-256 of those files (:func:`files_digest`): what an index records.
        self.digest = files_digest(files)
        tiers = recipe.get("tiers") or DEFAULT_TIERS
        #: ``{tier: least probability}``, e.g. ``{"duplicate": 0.62, "related": 0.18}``.
        self.tiers: dict[str, float] = {str(k): float(v) for k, v in tiers.items()}

    @classmethod
    def load(
        cls, directory: str | Path, *, precision: str | None = None, threads: int | None = None
    ) -> Reranker:
        """Load the reranker in ``directory`` (written by ``qa-search tune --reranker``).

        ``precision`` is "fp32" or "int8" (default: the recipe's). A directory that is not a
        reranker, or one from another format version, raises :class:`ModelLoadError`.
        """
        directory = Path(directory)
        recipe = read_recipe(directory)
        precision = precision or recipe.get("precision", "fp32")
        graph = directory / ("model.int8.onnx" if precision == "int8" else "model.onnx")
        if precision not in ("fp32", "int8"):
            raise ModelLoadError(f"reranker precision must be fp32 or int8, got {precision!r}")
        if not graph.is_file():
            raise ModelLoadError(f"the reranker at {directory} has no {graph.name}")
        try:
            tokenizer = _Tokenizer(directory, int(recipe.get("max_length", DEFAULT_MAX_LENGTH)))
            session = _session(graph, threads)
        except ModelLoadError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"cannot load the reranker at {directory}: {exc}") from None
        files = reranker_files(directory)
        return cls(directory, {**recipe, "precision": precision}, session, tokenizer, files)

    def tier(self, probability: float) -> str | None:
        """The best tier whose threshold ``probability`` reaches, or None."""
        for name, cut in sorted(self.tiers.items(), key=lambda kv: -kv[1]):
            if probability >= cut:
                return name
        return None

    def trained_pairs(self) -> frozenset[str] | None:
        """The :func:`pair_key` of every pair it was trained on; None for a reranker that does
        not record them (written by an older version)."""
        cached = self.__dict__.get("_trained_pairs", False)
        if cached is False:
            path = self.directory / TRAINED_PAIRS_FILE
            cached = None
            if path.is_file():
                cached = frozenset(path.read_text("utf-8").split())
            self.__dict__["_trained_pairs"] = cached
        return cached

    def logits(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """The model's raw logit for each pair in the order given: (n,) float64."""
        out = np.zeros(len(pairs), np.float64)
        for start in range(0, len(pairs), BATCH_SIZE):
            batch = list(pairs[start : start + BATCH_SIZE])
            feed = self._tokenizer(batch)  # type: ignore[arg-type]  # tokenizers encodes (a, b) as a pair
            (logit,) = self._session.run(None, feed)
            out[start : start + len(batch)] = np.asarray(logit, np.float64).reshape(-1)
        return out

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """The probability that each ``(question, question)`` pair is a duplicate: (n,) float64
        in [0, 1]. Being a duplicate has no direction, but a cross-encoder reads its two sides
        differently, so both orders are scored and their probabilities averaged (the model was
        trained on both orders too); (a, b) and (b, a) score the same."""
        pairs = [(str(a), str(b)) for a, b in pairs]
        if not pairs:
            return np.zeros(0, np.float64)
        both = self.logits(pairs + [(b, a) for a, b in pairs])
        n = len(pairs)
        return (_sigmoid(both[:n]) + _sigmoid(both[n:])) / 2.0

    def __repr__(self) -> str:
        return f"Reranker({str(self.directory)!r}, digest={self.digest[:12]})"
