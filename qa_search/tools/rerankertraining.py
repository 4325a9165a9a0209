"""Training a cross-encoder reranker on a forum's labelled duplicate pairs (torch, on the CPU).

The reranker starts from the default model's weights (all-MiniLM-L6-v2's transformer) with a
fresh one-logit classification head, and learns with binary cross-entropy on every labelled
pair in both orders (being a duplicate has no direction). A tenth of the pairs (whole connected
groups of them, so no question is on both sides) is held out when there are enough: the tiers'
thresholds are measured on it, at the precisions the duplicate calibration aims for, and the
held-out AP is recorded. The model is then exported to ONNX (:mod:`qa_search.embedding.onnxexport`)
and checked against torch; scoring with it is :mod:`qa_search.embedding.reranker`'s.

Reading pairs is tuningdata.py's; the format is the one ``tune`` and ``calibrate`` read.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qa_search._version import __version__
from qa_search.embedding.models import resolve_model
from qa_search.embedding.reranker import (
    DEFAULT_MAX_LENGTH,
    FORMAT_VERSION,
    RECIPE_FILE,
    TRAINED_PAIRS_FILE,
    Reranker,
    pair_key,
)
from qa_search.errors import QASearchError
from qa_search.scoring.calibration import DEFAULT_TARGETS, pair_groups
from qa_search.scoring.metrics import average_precision, recall_at_precision
from qa_search.tools.tuningdata import DEFAULT_SEED, LabelledPair

#: One pass over the pairs (both orders): 28.5 minutes over Quora's 13,789 train pairs on 2
#: shared cores with one thread (docs/tuning.md, "A reranker for duplicate verdicts"); more
#: passes were not measured.
DEFAULT_RERANKER_EPOCHS = 1
DEFAULT_RERANKER_BATCH_SIZE = 16
DEFAULT_RERANKER_LEARNING_RATE = 3e-5
#: The share of pairs held out to measure the tiers, and the fewest pairs for which it is done.
HOLD_OUT = 0.1
MIN_PAIRS_TO_HOLD_OUT = 200
#: The fp32 graph must give torch's logits to within this on every check pair.
MAX_EXPORT_LOGIT_DIFF = 1e-3
_WARMUP = 0.1  # share of the steps over which the learning rate rises to its value


@dataclass(frozen=True, slots=True)
class RerankerTrainResult:
    """Summary of a reranker training run; ``seconds`` is the wall-clock time of the whole run."""

    out_dir: str
    base_model: str
    pairs: int
    held_out: int
    #: "group" (whole groups of pairs sharing a text), "pair" (single pairs, sharing texts with
    #: the trained ones: the held-out figures are then optimistic) or None (none held out).
    held_out_by: str | None
    duplicates: int
    non_duplicates: int
    epochs: int
    steps: int
    seed: int
    max_length: int
    seconds: float
    #: ``{tier: least probability}`` measured on the held-out pairs (the defaults without them).
    tiers: dict
    #: AP of the held-out pairs (None when none were held out).
    held_out_ap: float | None
    #: Largest difference between the ONNX graphs' logits and torch's on the check pairs.
    export_logit_diff: dict

    def to_dict(self) -> dict:
        return asdict(self)


def _held_out_split(pairs: Sequence[LabelledPair], seed: int) -> tuple[list[int], list[int], str | None]:
    """Indices of the pairs trained on and of those held out, and how they were held out:
    ``"group"``, whole groups of pairs that share a text, about :data:`HOLD_OUT` of them, drawn
    with ``seed``; ``"pair"`` where the groups cannot give that with both labels (most pairs
    hang together through a few texts), single pairs drawn with ``seed``, which then share
    texts with the trained ones; None below :data:`MIN_PAIRS_TO_HOLD_OUT` pairs."""
    n = len(pairs)
    if n < MIN_PAIRS_TO_HOLD_OUT:
        return list(range(n)), [], None
    groups = pair_groups([(p.text1, p.text2) for p in pairs])
    order = list(dict.fromkeys(groups))
    random.Random(seed).shuffle(order)
    held: set = set()
    size = {g: 0 for g in order}
    for g in groups:
        size[g] += 1
    taken = 0
    for g in order:
        if taken >= HOLD_OUT * n:
            break
        if taken + size[g] > 2 * HOLD_OUT * n:  # one giant component would take too much
            continue
        held.add(g)
        taken += size[g]
    train = [i for i, g in enumerate(groups) if g not in held]
    test = [i for i, g in enumerate(groups) if g in held]
    if len(test) >= HOLD_OUT * n / 2 and {pairs[i].label for i in test} == {0, 1}:
        return train, test, "group"
    # too little held out to measure on: single pairs, which the tiers can at least be read from
    single = list(range(n))
    random.Random(seed).shuffle(single)
    cut = round(HOLD_OUT * n)
    return sorted(single[cut:]), sorted(single[:cut]), "pair"


def _tiers(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The least probability at which each tier's target precision is met on held-out pairs;
    a tier whose precision no threshold reaches is left out."""
    tiers = {}
    for name, target in DEFAULT_TARGETS.items():
        point = recall_at_precision(probs, labels, target)
        if np.isfinite(point.threshold):
            tiers[name] = round(float(point.threshold), 6)
    return tiers


def train_reranker(
    pairs: Sequence[LabelledPair],
    out_dir: str | Path,
    *,
    base: str | None = None,
    epochs: int = DEFAULT_RERANKER_EPOCHS,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_RERANKER_BATCH_SIZE,
    learning_rate: float = DEFAULT_RERANKER_LEARNING_RATE,
    max_length: int = DEFAULT_MAX_LENGTH,
    max_pairs: int | None = None,
    max_steps: int | None = None,
    precision: str = "fp32",
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RerankerTrainResult:
    """Train a cross-encoder on ``pairs`` from ``base`` (default: the packaged all-MiniLM-L6-v2)
    and write it, its ONNX export and its ``reranker.json`` to ``out_dir``.

    Runs on the CPU; the same pairs, base, seed and settings give the same weights. At most
    ``max_pairs`` pairs are used (a seeded sample) and at most ``max_steps`` optimiser steps
    taken. ``precision`` ("fp32" or "int8") is the graph a loaded reranker uses by default.
    ``threads`` sets torch's CPU threads for the run (default: torch's choice; on a busy 2-core
    machine one thread took 0.8 s a step where two took 3.5 s). ``progress(step, steps)`` is
    called after each step. ``out_dir`` is written through a
    temporary sibling and renamed into place; an existing non-empty one is an error, as are
    pairs of a single class.
    """
    started = time.perf_counter()
    if epochs < 1 or batch_size < 1 or max_length < 8:
        raise ValueError("epochs and batch_size must be >= 1 and max_length >= 8")
    if precision not in ("fp32", "int8"):
        raise ValueError(f"precision must be fp32 or int8, got {precision!r}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QASearchError(f"output directory {out} exists and is not empty; pick a new one")
    chosen = list(pairs)
    if max_pairs is not None and len(chosen) > max_pairs:
        chosen = random.Random(seed).sample(chosen, max_pairs)
    labels = {p.label for p in chosen}
    if labels != {0, 1}:
        raise QASearchError(
            "a reranker learns from duplicate (label 1) and non-duplicate (label 0) pairs; "
            f"the pairs given hold only label {sorted(labels)}"
        )
    train_idx, test_idx, held_out_by = _held_out_split(chosen, seed)
    base_name, source = resolve_model(base)
    tmp = out.with_name(f".tmp-{out.name}-{int(time.time() * 1000)}")
    tmp.mkdir(parents=True)
    import torch

    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        stats = _train_and_export(
            source, [chosen[i] for i in train_idx], [chosen[i] for i in test_idx], tmp,
            epochs=epochs, seed=seed, batch_size=batch_size, learning_rate=learning_rate,
            max_length=max_length, max_steps=max_steps, progress=progress,
        )
        recipe = {
            "format": FORMAT_VERSION,
            "base_model": base_name,
            "seed": seed,
            "epochs": epochs,
            "steps": stats["steps"],
            "pairs": len(train_idx),
            "held_out_pairs": len(test_idx),
            "held_out_by": held_out_by,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "max_length": max_length,
            "precision": precision,
            "tiers": stats["tiers"],
            "held_out_ap": stats["held_out_ap"],
            "export_logit_diff": stats["diff"],
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "library_version": __version__,
        }
        keys = sorted({pair_key(chosen[i].text1, chosen[i].text2) for i in train_idx})
        (tmp / TRAINED_PAIRS_FILE).write_text("".join(f"{k}\n" for k in keys), encoding="utf-8")
        # written last: a directory with reranker.json is a complete reranker
        (tmp / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads_before)
    return RerankerTrainResult(
        out_dir=str(out),
        base_model=base_name,
        pairs=len(train_idx),
        held_out=len(test_idx),
        held_out_by=held_out_by,
        duplicates=sum(p.label for p in chosen),
        non_duplicates=sum(1 - p.label for p in chosen),
        epochs=epochs,
        steps=stats["steps"],
        seed=seed,
        max_length=max_length,
        seconds=round(time.perf_counter() - started, 3),
        tiers=stats["tiers"],
        held_out_ap=stats["held_out_ap"],
        export_logit_diff=stats["diff"],
    )


def _load_cross_encoder(source: str, max_length: int):  # noqa: ANN202 - a CrossEncoder
    """The base model as a CrossEncoder with a fresh one-logit head, without transformers' load
    report and progress bars on the caller's stdout and stderr."""
    from sentence_transformers import CrossEncoder
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return CrossEncoder(source, num_labels=1, max_length=max_length, device="cpu")
    finally:
        hf_logging.set_verbosity(verbosity)
        if was_enabled:
            hf_logging.enable_progress_bar()


def _train_and_export(
    source: str,
    train: list[LabelledPair],
    test: list[LabelledPair],
    out: Path,
    *,
    epochs: int,
    seed: int,
    batch_size: int,
    learning_rate: float,
    max_length: int,
    max_steps: int | None,
    progress: Callable[[int, int], None] | None,
) -> dict:
    import torch
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)  # the fresh head's weights and dropout
    ce = _load_cross_encoder(source, max_length)
    model, tokenizer = ce.model, ce.tokenizer
    # the word embeddings stay as the base model has them: words the forum's pairs never use
    # keep their meaning, and the optimiser's step skips half of the weights (on 2 cores a step
    # took 0.24 s of optimiser time with them)
    model.get_input_embeddings().weight.requires_grad_(False)
    model.train()

    def encode(batch: Sequence[tuple[str, str]]) -> dict:
        return tokenizer(
            [a for a, _ in batch], [b for _, b in batch],
            padding=True, truncation="longest_first", max_length=max_length, return_tensors="pt",
        )

    examples = [(p.text1, p.text2, float(p.label)) for p in train]
    examples += [(p.text2, p.text1, float(p.label)) for p in train]
    per_epoch = (len(examples) + batch_size - 1) // batch_size
    steps = per_epoch * epochs if max_steps is None else min(max_steps, per_epoch * epochs)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trained, lr=learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimiser, int(_WARMUP * steps), max(steps, 1))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    done = 0
    rng = random.Random(seed)
    while done < steps:
        rng.shuffle(examples)
        for start in range(0, len(examples), batch_size):
            if done >= steps:
                break
            batch = examples[start : start + batch_size]
            feed = encode([(a, b) for a, b, _ in batch])
            logits = model(**feed).logits[:, 0]
            loss = loss_fn(logits, torch.tensor([y for _, _, y in batch], dtype=logits.dtype))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            done += 1
            if progress is not None:
                progress(done, steps)
    model.eval()

    def torch_logits(batch: Sequence[tuple[str, str]]) -> np.ndarray:
        out_logits = []
        with torch.no_grad():
            for start in range(0, len(batch), 64):
                out_logits.append(model(**encode(batch[start : start + 64])).logits[:, 0].numpy())
        return np.concatenate(out_logits) if out_logits else np.zeros(0, np.float32)

    tiers, held_ap = {}, None
    if {p.label for p in test} == {0, 1}:  # a precision or an AP needs both labels
        both = torch_logits([(p.text1, p.text2) for p in test] + [(p.text2, p.text1) for p in test])
        probs = (1 / (1 + np.exp(-both[: len(test)])) + 1 / (1 + np.exp(-both[len(test) :]))) / 2
        y = np.array([p.label for p in test])
        tiers = _tiers(probs, y)
        held_ap = round(average_precision(probs, y), 6)

    torch_dir = out / "torch"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        ce.save(str(torch_dir))  # transformers' "Writing model shards" bar
    for name in ("tokenizer.json", "special_tokens_map.json"):
        found = next(iter(sorted(torch_dir.rglob(name))), None)
        if found is not None:
            shutil.copyfile(found, out / name)
    if not (out / "tokenizer.json").is_file():
        raise QASearchError("the base model has no tokenizer.json; a reranker needs a fast tokenizer")

    from qa_search.embedding.onnxexport import write_reranker_graphs

    # pairs of several lengths, one over max_length, checked in one padded batch and one by one
    check = [(p.text1, p.text2) for p in (train + test)[:6]]
    check += [("hi", "a b c 1 2 3"), ("why " * 100, "Why is the sky blue during the day but red at sunset?")]
    sample = {k: v.numpy() for k, v in encode([("hi", "hello there, how are you?"), check[0]]).items()}
    write_reranker_graphs(model, sample, out / "model.onnx", out / "model.int8.onnx")
    # the recipe is not written yet: the graphs are loaded as a reranker would load them
    (out / RECIPE_FILE).write_text(json.dumps({"format": FORMAT_VERSION, "max_length": max_length}))
    expected = torch_logits(check)
    diff = {}
    for graph in ("fp32", "int8"):
        loaded = Reranker.load(out, precision=graph)
        got = np.concatenate([loaded.logits(check), *[loaded.logits([pair]) for pair in check]])
        diff[graph] = round(float(np.max(np.abs(got - np.concatenate([expected] * 2)))), 6)
    if diff["fp32"] > MAX_EXPORT_LOGIT_DIFF:
        raise QASearchError(
            f"the ONNX export disagrees with torch by {diff['fp32']:.4g} in a logit "
            f"(at most {MAX_EXPORT_LOGIT_DIFF} allowed); the reranker was not written"
        )
    return {"steps": done, "tiers": tiers, "held_out_ap": held_ap, "diff": diff}
