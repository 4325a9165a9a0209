"""Turning a sentence-transformers model into ONNX graphs: the transformer, mean pooling and L2
normalisation exported as one graph (``torch.onnx.export(..., dynamo=True)``), so the graph's
output is the embedding, and its dynamic int8 quantisation; with the exporter's libraries kept
from reconfiguring the caller's logging. A cross-encoder reranker's graph (pair in, logit out)
is exported here too (:func:`write_reranker_graphs`). Needs torch, ``onnx`` and ``onnxscript``.

Checking an export against torch, caching it and running it are onnx.py's.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np


def write_graphs(
    transformer_dir: Path, max_len: int, sample: Mapping[str, np.ndarray], fp32: Path, int8: Path
) -> None:
    """Export the transformer in ``transformer_dir`` with mean pooling and L2 normalisation to
    ``fp32`` (one graph, weights inline, batch and sequence axes dynamic up to ``max_len``
    tokens), and its dynamic int8 quantisation to ``int8``. ``sample``: tokenised inputs
    (``input_ids``, ``attention_mask``, ``token_type_ids``: (n, tokens) int64) to trace with.
    """
    _export(_pooled_module(transformer_dir), max_len, sample, fp32, int8)


def write_reranker_graphs(
    model, sample: Mapping[str, np.ndarray], fp32: Path, int8: Path  # noqa: ANN001 - a torch.nn.Module
) -> None:
    """Export a cross-encoder (a transformers sequence-classification module with one label) to
    ``fp32`` as one graph whose output is each pair's logit, (n,) float32, batch and sequence
    axes dynamic, and its dynamic int8 quantisation to ``int8``. ``sample``: tokenised pairs, as
    for :func:`write_graphs`.

    This graph goes through the TorchScript exporter: the dynamo exporter's graph of the
    classification head was measured 0.03 to 0.05 off torch's logits (an untrained head, on
    MiniLM-L6), the TorchScript one within 1e-7."""
    import torch

    class Logit(torch.nn.Module):
        def __init__(self, classifier: torch.nn.Module) -> None:
            super().__init__()
            self.classifier = classifier

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN202
            out = self.classifier(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.logits[:, 0]

    names = ["input_ids", "attention_mask", "token_type_ids"]
    with (
        torch.no_grad(),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        logging_kept(),
    ):
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        torch.onnx.export(
            Logit(model).eval(),
            tuple(torch.from_numpy(sample[k]) for k in names),
            str(fp32),
            dynamo=False,
            input_names=names,
            output_names=["logit"],
            dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names},
            opset_version=17,
        )
    _quantise(fp32, int8)


def _export(module, max_len: int, sample: Mapping[str, np.ndarray], fp32: Path, int8: Path) -> None:  # noqa: ANN001
    """Export the torch ``module`` (taking ``input_ids``, ``attention_mask``, ``token_type_ids``) to
    ``fp32``, and its dynamic int8 quantisation to ``int8``."""
    import torch

    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=max_len)
    dyn = {name: {0: batch, 1: seq} for name in ("input_ids", "attention_mask", "token_type_ids")}
    # the exporter prints progress to stdout and warns about axis names: neither may reach
    # a caller's stdout (``qa-search build --json``) or trip warnings-as-errors
    with (
        torch.no_grad(),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        logging_kept(),
    ):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            kwargs={k: torch.from_numpy(v) for k, v in sample.items()},
            dynamo=True,
            dynamic_shapes=dyn,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            external_data=False,
            verbose=False,
        )
        assert program is not None  # the dynamo exporter always returns one
        program.save(str(fp32), external_data=False)
    _quantise(fp32, int8)


def _quantise(fp32: Path, int8: Path) -> None:
    """Write the dynamic int8 quantisation of the graph ``fp32`` to ``int8``."""
    with logging_kept():  # importing the quantiser calls logging.basicConfig
        from onnxruntime.quantization import QuantType, quantize_dynamic

    # per-channel weight scales: per-tensor ones measured cosine 0.93 to torch, per-channel 0.98+
    logging.disable(logging.WARNING)  # the quantiser logs advice through the root logger
    try:
        with logging_kept():
            quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.disable(logging.NOTSET)


def _pooled_module(transformer_dir: Path):  # noqa: ANN202 - a torch.nn.Module
    """The transformer followed by mean pooling and L2 normalisation, as one torch module."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    class Pooled(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN202
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar in the middle of the export's notice
    try:
        return Pooled(AutoModel.from_pretrained(str(transformer_dir))).eval()
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def logging_kept() -> Iterator[None]:
    """The exporter's libraries may neither reconfigure the caller's logging nor log through it:
    onnxscript and onnxruntime's quantiser call ``logging.basicConfig`` (after which every
    library's debug lines reach stderr), and torch's exporter warns once per torchvision operator
    it does not need when torchvision is absent."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    registration_level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        yield
    finally:
        registration.setLevel(registration_level)
        root.handlers[:] = handlers
        root.setLevel(level)


def remove_stale_exports(root: Path, older_than: float = 3600.0) -> None:
    """Temporary export folders an interrupted export left (each about 100 MB)."""
    import time

    for tmp in root.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > older_than:
                shutil.rmtree(tmp, ignore_errors=True)
