"""An ONNX Runtime embedder: the same sentence-transformers model, exported once, run without torch.

The export (onnxexport.py) covers the transformer, mean pooling and L2 normalisation, so the
graph's output is the embedding. This module checks it against the torch model on texts of
several lengths and batch sizes before it is cached; an export that disagrees (cosine below
:data:`MIN_EXPORT_COSINE`) is refused rather than used. The legacy TorchScript exporter was
measured to give cosine 0.97 on this model, which is why the check exists.

Cache layout, keyed by a digest of the model's files (weights, config, tokenizer)::

    <cache_dir>/<key>/model.onnx        fp32 graph, weights inline
    <cache_dir>/<key>/model.int8.onnx   dynamic int8 quantisation of it
    <cache_dir>/<key>/export.json       versions and the measured agreement with torch

Only models made of a Transformer module, mean pooling and (optionally) Normalize are exported;
anything else stays on torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from qa_search.embedding.models import (
    PROBE_MIN_COSINE,
    SentenceTransformerEmbedder,
    normalize_rows,
    resolve_model,
)
from qa_search.embedding.onnxexport import remove_stale_exports, write_graphs
from qa_search.errors import ModelLoadError
from qa_search.storage.snapshot import file_sha256

log = logging.getLogger(__name__)

#: Where exports are cached when no ``cache_dir`` is passed.
DEFAULT_CACHE_DIR = Path("~/.cache/qa_search/onnx")
#: The fp32 export must match torch at least this well on every check text.
MIN_EXPORT_COSINE = 0.999
#: An int8 graph must stay at least this close to torch on every text. Measured with per-channel
#: weights: 0.985-0.997 on sentences, 0.956-0.98 on one- or two-letter texts (per-tensor scales:
#: 0.93 on sentences). Quora dev nDCG@10 moved by 0.0004 (benchmarks/encoders.py).
MIN_INT8_COSINE = 0.95
#: Bump when the export procedure changes, so old caches are not reused.
EXPORT_VERSION = 1

PRECISIONS = ("fp32", "int8")
#: Most texts per ONNX Runtime call, whatever the caller's batch size: on 2 cores int8 encoded
#: ~980 Quora questions/s in runs of 32, ~870 in runs of 64 and ~680 in runs of 256.
MAX_RUN_BATCH = 32
_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}

# Texts the export is checked on: short, typical, and over the 256-token limit (truncation).
_CHECK_TEXTS = (
    "hi",
    "How do therapists handle their own mistakes?",
    "My partner and I keep arguing about money and chores; what should we do about it?",
    "a b c 1 2 3",
    "Why is the sky blue during the day but red at sunset, and does pollution change the colour?",
    " ".join(["Long answers get truncated by the model after two hundred and fifty six tokens."] * 30),
)


def onnx_available() -> bool:
    """Whether onnxruntime is installed (needed to run an export, not to build one)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _model_layout(model_dir: Path) -> tuple[Path, int]:
    """The transformer's directory and max_seq_length, if this is a mean-pooling ST model.

    Raises :class:`ModelLoadError` for a model this backend cannot export faithfully.
    """
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"{model_dir} is not a sentence-transformers model directory: {exc!r}") from exc
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ModelLoadError(
            f"the ONNX backend supports Transformer + Pooling models, {model_dir} has {kinds}"
        )
    try:
        pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{model_dir}: cannot read its pooling configuration: {exc!r}") from exc
    # sentence-transformers >= 6 saves {"pooling_mode": "mean"}; older versions one flag per mode
    legacy_mean = pooling.get("pooling_mode_mean_tokens") and not any(
        v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"
    )
    if not legacy_mean and pooling.get("pooling_mode") not in ("mean", ["mean"]):
        raise ModelLoadError(f"the ONNX backend supports mean pooling only; {model_dir} uses {pooling}")
    transformer_dir = model_dir / modules[0]["path"]
    st_config = transformer_dir / "sentence_bert_config.json"
    max_len = 512
    tok_config = transformer_dir / "tokenizer_config.json"
    if st_config.is_file() and json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length"):
        max_len = int(json.loads(st_config.read_text(encoding="utf-8"))["max_seq_length"])
    elif tok_config.is_file():  # sentence-transformers >= 6 keeps it in the tokenizer's config
        max_len = int(json.loads(tok_config.read_text(encoding="utf-8")).get("model_max_length") or max_len)
    return transformer_dir, max_len


def model_files_key(model_dir: Path) -> str:
    """A digest of the files that decide a model's output (weights, configs, tokenizer)."""
    h = hashlib.sha256(f"qa-search-onnx-{EXPORT_VERSION}".encode())
    for f in sorted(model_dir.rglob("*")):
        if f.is_file() and f.suffix in {".json", ".txt", ".safetensors", ".bin", ".model"}:
            h.update(str(f.relative_to(model_dir)).encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


class _Tokenizer:
    """The model's fast tokenizer (``tokenizer.json``), truncating and padding like sentence-transformers."""

    def __init__(self, transformer_dir: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        path = transformer_dir / "tokenizer.json"
        if not path.is_file():
            raise ModelLoadError(f"the ONNX backend needs {path} (a fast tokenizer)")
        tok = Tokenizer.from_file(str(path))
        special = {}
        special_map = transformer_dir / "special_tokens_map.json"
        if special_map.is_file():
            special = json.loads(special_map.read_text(encoding="utf-8"))
        pad = special.get("pad_token", "[PAD]")
        pad = pad["content"] if isinstance(pad, dict) else pad
        pad_id = tok.token_to_id(pad)
        if pad_id is None:
            raise ModelLoadError(f"{path} has no padding token {pad!r}")
        tok.enable_truncation(max_length=max_length)
        tok.enable_padding(pad_id=pad_id, pad_token=pad)
        self._tok = tok

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """(n, L) int64 arrays ``input_ids``, ``attention_mask``, ``token_type_ids``; L = longest text."""
        encs = self._tok.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in encs], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64),
        }


def _session(path: Path, threads: int | None):  # noqa: ANN202 - an onnxruntime.InferenceSession
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3  # warnings about unused initialisers are noise here
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _min_row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(normalize_rows(a) * normalize_rows(b), axis=1)))


def export_model(model_dir: Path, out_dir: Path) -> dict:
    """Export the model at ``model_dir`` into ``out_dir`` (fp32 and int8), checked against torch.

    Returns the export record (also written to ``out_dir/export.json``). Raises
    :class:`ModelLoadError` when the export disagrees with torch; nothing is left in ``out_dir``.
    """
    import onnxruntime
    import torch

    transformer_dir, max_len = _model_layout(model_dir)
    tokenizer = _Tokenizer(transformer_dir, max_len)
    sample = tokenizer(list(_CHECK_TEXTS[:2]))
    tmp = out_dir.parent / f".tmp-{out_dir.name}.{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        remove_stale_exports(out_dir.parent)
    except OSError as exc:  # a read-only home, a file in the way: the caller may fall back to torch
        raise ModelLoadError(f"cannot write the ONNX export under {out_dir.parent}: {exc}") from exc
    try:
        write_graphs(transformer_dir, max_len, sample, tmp / _FILES["fp32"], tmp / _FILES["int8"])

        # the reference is the real sentence-transformers pipeline, not our wrapper
        reference = SentenceTransformerEmbedder(str(model_dir))
        agreement = {}
        for precision in PRECISIONS:
            emb = OnnxEmbedder._from_files(tmp / _FILES[precision], transformer_dir, max_len, "check", None)
            worst = 1.0
            for bs in (1, 2, len(_CHECK_TEXTS)):
                got = emb.encode(_CHECK_TEXTS, batch_size=bs, sort_by_length=False)
                want = reference.encode(_CHECK_TEXTS, batch_size=bs)
                worst = min(worst, _min_row_cosine(got, want))
            agreement[precision] = round(worst, 6)
        if agreement["fp32"] < MIN_EXPORT_COSINE or agreement["int8"] < MIN_INT8_COSINE:
            raise ModelLoadError(
                f"the ONNX export of {model_dir} disagrees with torch (minimum cosine {agreement}, "
                f"need fp32 >= {MIN_EXPORT_COSINE}, int8 >= {MIN_INT8_COSINE}); use backend='torch'"
            )
        record = {
            "export_version": EXPORT_VERSION,
            "model_dir": str(model_dir),
            "max_seq_length": max_len,
            "dimension": reference.dimension,
            "min_cosine_to_torch": agreement,
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "files": {f: {"bytes": (tmp / f).stat().st_size, "sha256": file_sha256(tmp / f)}
                      for f in _FILES.values()},
        }
        (tmp / "export.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():  # another process finished first: keep its copy
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def _discard_export(out: Path) -> None:
    doomed = out.parent / f".tmp-discarded-{out.name}.{uuid.uuid4().hex[:8]}"
    try:
        os.replace(out, doomed)  # out of the way at once, so no other process picks it up
    except OSError as exc:
        raise ModelLoadError(f"cannot remove the damaged ONNX export {out}: {exc}") from exc
    shutil.rmtree(doomed, ignore_errors=True)


def _export_problem(out: Path, precision: str) -> str | None:
    """Why the cached export in ``out`` cannot be used for ``precision`` (None: it can): a file
    missing, truncated or changed since the export recorded its checksum."""
    try:
        record = json.loads((out / "export.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"export.json cannot be read ({exc})"
    path = out / _FILES[precision]
    if not path.is_file():
        return f"{path.name} is missing"
    meta = record.get("files", {}).get(path.name) if isinstance(record, dict) else None
    if meta is None:  # an export made before checksums were recorded: the session load checks it
        return None
    if path.stat().st_size != meta.get("bytes") or file_sha256(path) != meta.get("sha256"):
        return f"{path.name} does not match the checksum recorded at export (truncated or changed)"
    return None


class OnnxEmbedder:
    """An :class:`~qa_search.embedding.models.Embedder` running an exported model on ONNX Runtime.

    ``precision`` is ``"fp32"`` (the same vectors as torch, to ~1e-6) or ``"int8"`` (dynamic
    quantisation: faster, cosine about 0.99 to fp32). ``threads`` sets ONNX Runtime's intra-op
    threads for batches (default: one per physical core). A single text (the typeahead path)
    runs on a second, single-threaded session: a short query gains nothing from a thread pool,
    and concurrent requests then spread over the cores instead of fighting for one pool.

    The export is made on first use and cached in ``cache_dir`` (default
    ``~/.cache/qa_search/onnx``); making it needs torch, ``onnx`` and ``onnxscript``, using it
    needs only ``onnxruntime``.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        precision: str = "fp32",
        cache_dir: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not onnx_available():
            raise ModelLoadError("the ONNX backend needs onnxruntime: pip install onnxruntime")
        name, source = resolve_model(model)
        model_dir = Path(source)
        if not model_dir.is_dir():
            raise ModelLoadError(f"the ONNX backend exports local models only; {source!r} is not a directory")
        transformer_dir, max_len = _model_layout(model_dir)
        root = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
        out = root / model_files_key(model_dir)
        for attempt in (1, 2):
            if (out / "export.json").is_file():
                problem = _export_problem(out, precision)
                if problem is None:
                    try:
                        self._init(out / _FILES[precision], transformer_dir, max_len, name, threads)
                        break
                    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own kinds
                        problem = f"ONNX Runtime cannot load it ({exc})"
                if attempt == 2:
                    raise ModelLoadError(f"the ONNX export of {name} in {out} is unusable: {problem}")
                # a damaged cache (a full disk, an interrupted copy) is made again, not trusted
                log.warning("the cached ONNX export in %s is unusable (%s); exporting again", out, problem)
                _discard_export(out)
            log.info("exporting %s to ONNX in %s (once per model)", name, out)
            # on stderr whatever the caller's logging: a silent minute looks like a hang
            print("exporting the model to ONNX once (about a minute)...", file=sys.stderr, flush=True)
            export_model(model_dir, out)
        self.export_dir = out
        self.export_record = json.loads((out / "export.json").read_text(encoding="utf-8"))
        self.precision = precision

    @classmethod
    def _from_files(
        cls, path: Path, transformer_dir: Path, max_len: int, name: str, threads: int | None
    ) -> OnnxEmbedder:
        self = cls.__new__(cls)
        self._init(path, transformer_dir, max_len, name, threads)
        self.precision = "int8" if path.name == _FILES["int8"] else "fp32"
        return self

    @property
    def probe_min_cosine(self) -> float:
        """How close another backend's probe vectors must be for this to count as the same model."""
        return PROBE_MIN_COSINE if self.precision == "fp32" else MIN_INT8_COSINE

    def _init(self, path: Path, transformer_dir: Path, max_len: int, name: str, threads: int | None) -> None:
        self.name = name
        self.source = str(path)
        self._max_len = max_len
        self._tokenizer = _Tokenizer(transformer_dir, max_len)
        self._session = _session(path, threads)
        self._single = self._session if threads == 1 else _session(path, 1)
        self._workers = threads or os.cpu_count() or 1
        self._executor: ThreadPoolExecutor | None = None
        self._inputs = [i.name for i in self._session.get_inputs()]
        self.dimension = int(self._session.get_outputs()[0].shape[-1])

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="qa-search-onnx")
        return self._executor

    @property
    def backend(self) -> str:
        """``"onnx"`` or ``"onnx-int8"``, as recorded in manifests."""
        return "onnx" if self.precision == "fp32" else "onnx-int8"

    @property
    def max_seq_length(self) -> int:
        return self._max_len

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        feed = self._tokenizer(texts)
        session = self._single if len(texts) == 1 else self._session
        return session.run(None, {k: feed[k] for k in self._inputs})[0]

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, sort_by_length: bool = True
    ) -> np.ndarray:
        """Embed texts: (n, d) float32, rows L2-normalised.

        Texts are batched in order of length (``sort_by_length``) so a batch pads little; the
        output is in input order either way.
        """
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if n == 1:  # the typeahead path: no sorting, no copies
            return normalize_rows(self._run(texts))
        if self.precision == "int8":
            # dynamic int8 quantises activations with one scale per tensor, so a text's vector
            # would depend on the other texts (and padding) of its batch (cosine down to 0.985).
            # One text per run keeps every vector a function of its text alone, and runs on
            # all cores in parallel are about as fast as batches (no padding either).
            return normalize_rows(np.vstack(list(self._pool().map(lambda t: self._run([t]), texts))))
        order = np.argsort([-len(t) for t in texts], kind="stable") if sort_by_length else np.arange(n)
        out = np.empty((n, self.dimension), dtype=np.float32)
        step = max(1, min(batch_size, MAX_RUN_BATCH))
        for start in range(0, n, step):
            rows = order[start : start + step]
            out[rows] = self._run([texts[i] for i in rows])
        return normalize_rows(out)

    def __repr__(self) -> str:
        return f"OnnxEmbedder({self.name!r}, precision={self.precision!r}, dimension={self.dimension})"
