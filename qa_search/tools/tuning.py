"""Fine-tuning the embedding model on a forum's own labelled duplicates.

Labelled pairs are read, and turned into training examples, by tuningdata.py.

Training (sentence-transformers' trainer, on the CPU) uses two objectives at once:

* MultipleNegativesRankingLoss on ``(anchor, positive, hard negative)`` triplets: each duplicate
  pair, in both directions, with one of the anchor's labelled non-duplicates as the hard negative
  (and the rest of the batch as easy negatives). Duplicates whose anchor has no labelled
  negative train as ``(anchor, positive)`` pairs with in-batch negatives only. The loss is the
  symmetric form (:data:`RANKING_DIRECTIONS`): each anchor must pick out its positive among the
  batch's texts, and each positive its anchor among the batch's anchors, each with its own
  softmax, since being a duplicate is a relation with no direction.
* OnlineContrastiveLoss on every labelled pair, which pushes the labelled non-duplicates apart
  directly (the ranking loss alone only sees one negative per anchor and step).

The output is a plain sentence-transformers directory: ``load_embedder(out)`` and
``qa-search build --model out`` take it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from qa_search.embedding.models import resolve_model
from qa_search.embedding.tuned import SETTINGS_FILE
from qa_search.errors import ModelLoadError, QASearchError
from qa_search.tools.tuningdata import DEFAULT_SEED, LabelledPair, TrainingExamples, training_examples

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from torch.nn import Module

#: Defaults chosen on SemEval-2016 train part 2 (see README, "Tuning on your forum's duplicates").
DEFAULT_EPOCHS = 1
DEFAULT_BATCH_SIZE = 16
DEFAULT_LEARNING_RATE = 2e-5
#: The ranking loss's directions: anchor to positives and positive to anchors (sentence-transformers'
#: ``directions`` with ``partition_mode="per_direction"``, what MultipleNegativesSymmetricRankingLoss
#: was). Measured on SemEval-2016 against the anchor-to-positive form (README, Tuning).
RANKING_DIRECTIONS: tuple[Literal["query_to_doc", "doc_to_query"], ...] = ("query_to_doc", "doc_to_query")
#: The training objectives: "ranking" (MultipleNegativesRankingLoss on triplets and duplicate
#: pairs) and "contrastive" (OnlineContrastiveLoss on every labelled pair).
OBJECTIVES = ("ranking", "contrastive")
#: The training recipe's version, recorded in a tuned model's :data:`SETTINGS_FILE` so that a
#: cache of tuned models (the benchmarks keep them) can tell one made by an older recipe:
#: 1, the ranking loss one way round (anchor to positives); 2, both ways round.
RECIPE = 2
#: Index settings for a model tuned on a forum's pairs. A tuned model has learned the forum's
#: words, so the lexical signal adds less: on SemEval-2016 (README, "Tuning";
#: benchmarks/semeval_weights.py), lexical weight 0.25 was the best on held-out halves of train
#: part 2, 0.7 MAP above the default 1.0 (3 seeds; 0.85 with recipe 1); on dev 0.25 to 1.0 are
#: within noise. Those weights were measured under the fixed rule (the weight alone, not scaled
#: by the query's lexical coverage), so a tuned model keeps that rule.
TUNED_INDEX_SETTINGS: dict[str, object] = {"lexical_mode": "fixed", "lexical_weight": 0.25}


@dataclass(frozen=True, slots=True)
class TuneResult:
    """Summary of a tuning run. ``seconds`` is wall-clock time of training and saving."""

    out_dir: str
    base_model: str
    pairs: int
    duplicates: int
    non_duplicates: int
    triplets: int
    positive_pairs: int
    epochs: int
    steps: int
    seed: int
    batch_size: int
    learning_rate: float
    seconds: float
    #: The index settings written beside the model (:data:`SETTINGS_FILE`).
    index_settings: dict
    #: The training recipe (:data:`RECIPE`), also written beside the model.
    recipe: int = RECIPE

    def to_dict(self) -> dict:
        return asdict(self)


def tuned_recipe(model_dir: str | Path) -> int | None:
    """The :data:`RECIPE` a model directory was tuned with: 1 for a model :func:`tune` made before
    recipes were recorded, None for a directory it did not make (or whose file is unreadable)."""
    try:
        record = json.loads((Path(model_dir) / SETTINGS_FILE).read_text(encoding="utf-8"))
        return int(record.get("recipe", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def tune(
    pairs: Sequence[LabelledPair],
    out_dir: str | Path,
    *,
    base: str | None = None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = DEFAULT_SEED,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    objectives: Sequence[str] = OBJECTIVES,
    show_progress: bool = False,
) -> TuneResult:
    """Fine-tune ``base`` (default: the packaged all-MiniLM-L6-v2) on ``pairs``; save to ``out_dir``.

    Runs on the CPU. The same pairs, base model, seed and settings give the same weights.
    ``objectives`` picks the losses (a subset of :data:`OBJECTIVES`; both by default).
    ``out_dir`` is written through a temporary sibling and renamed into place, so a failed run
    leaves no half-written model; an existing non-empty ``out_dir`` is an error.
    """
    if epochs < 1 or batch_size < 2:
        raise ValueError("epochs must be >= 1 and batch_size >= 2")
    if not objectives or set(objectives) - set(OBJECTIVES):
        raise ValueError(f"objectives must be a non-empty subset of {OBJECTIVES}, got {objectives!r}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise QASearchError(f"output directory {out} exists and is not empty; pick a new one")
    examples = training_examples(pairs, seed)
    if not examples.triplets and not examples.positive_pairs:
        raise QASearchError(
            "no duplicate pairs (label 1) of two different texts to learn from; tuning needs some"
        )

    from transformers import set_seed
    from transformers.utils import logging as hf_logging

    base_name, source = resolve_model(base)
    set_seed(seed)  # dropout draws from the global generators
    # transformers' own bars (loading, the model card's examples, writing shards) stay off;
    # the trainer's bar follows show_progress
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return _train(
            source,
            base_name,
            pairs,
            examples,
            out,
            epochs,
            seed,
            batch_size,
            learning_rate,
            objectives,
            show_progress,
        )
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def ranking_loss(model: SentenceTransformer) -> MultipleNegativesRankingLoss:
    """The ranking objective for ``model`` (a SentenceTransformer): MultipleNegativesRankingLoss
    in both directions (:data:`RANKING_DIRECTIONS`), each with its own softmax, so swapping the
    anchors and positives of a batch gives the same loss."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model, directions=RANKING_DIRECTIONS, partition_mode="per_direction")


def _train(
    source: str,
    base_name: str,
    pairs: Sequence[LabelledPair],
    examples: TrainingExamples,
    out: Path,
    epochs: int,
    seed: int,
    batch_size: int,
    learning_rate: float,
    objectives: Sequence[str],
    show_progress: bool,
) -> TuneResult:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import OnlineContrastiveLoss
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class _BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs) -> None:  # noqa: ANN001
            pass

    class _QuietTrainer(SentenceTransformerTrainer):
        # the model-card callback samples "widget examples" behind an unconditional progress bar
        # (and the global random module); the saved card is the plain one without it
        def add_model_card_callback(self, default_args_dict: dict) -> None:
            pass

    try:
        model = SentenceTransformer(source, device="cpu")
    except Exception as exc:  # the library raises many kinds; all mean "cannot load"
        raise ModelLoadError(f"cannot load base model {base_name!r}: {exc}") from exc

    datasets: dict[str, Dataset] = {}
    losses: dict[str, Module] = {}
    ranking = ranking_loss(model)
    if examples.triplets and "ranking" in objectives:
        a, p, n = zip(*examples.triplets, strict=True)
        datasets["triplets"] = Dataset.from_dict({"anchor": a, "positive": p, "negative": n})
        losses["triplets"] = ranking
    if examples.positive_pairs and "ranking" in objectives:
        a, p = zip(*examples.positive_pairs, strict=True)
        datasets["positives"] = Dataset.from_dict({"anchor": a, "positive": p})
        losses["positives"] = ranking
    if "contrastive" in objectives and any(label == 0 for *_, label in examples.labelled):
        a, b, y = zip(*examples.labelled, strict=True)
        datasets["labelled"] = Dataset.from_dict({"sentence1": a, "sentence2": b, "label": y})
        losses["labelled"] = OnlineContrastiveLoss(model)

    if not datasets:
        raise QASearchError(f"nothing to train on with objectives {tuple(objectives)}")
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        args = SentenceTransformerTrainingArguments(
            output_dir=str(work / "trainer"),
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            warmup_steps=0.1,  # a fraction: 10% of the steps
            seed=seed,
            data_seed=seed,
            use_cpu=True,
            # a duplicate text in a batch would be a false in-batch negative for the ranking loss
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="no",
            report_to="none",
            logging_strategy="no",
            disable_tqdm=not show_progress,
            dataloader_num_workers=0,
        )
        trainer = _QuietTrainer(model=model, args=args, train_dataset=datasets, loss=losses)
        # the trainer prints its loss logs to stdout, which belongs to the caller (--json)
        trainer.remove_callback(PrinterCallback)
        if trainer.pop_callback(ProgressCallback) is not None:
            trainer.add_callback(_BarOnly)
        state = trainer.train()
        model_dir = work / "model"
        model.save(str(model_dir))
        (model_dir / SETTINGS_FILE).write_text(
            json.dumps(
                {"tuned_from": base_name, "recipe": RECIPE, "index_settings": TUNED_INDEX_SETTINGS}, indent=2
            )
            + "\n",
            encoding="utf-8",
        )
        if out.exists():
            out.rmdir()
        model_dir.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n_dup = sum(1 for p in pairs if p.label == 1)
    return TuneResult(
        out_dir=str(out.resolve()),
        base_model=base_name,
        pairs=len(pairs),
        duplicates=n_dup,
        non_duplicates=len(pairs) - n_dup,
        triplets=len(examples.triplets),
        positive_pairs=len(examples.positive_pairs),
        epochs=epochs,
        steps=int(state.global_step),
        seed=seed,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seconds=time.perf_counter() - started,
        index_settings=dict(TUNED_INDEX_SETTINGS),
    )
