"""Fine-tuning the embedding model on a forum's own labelled duplicates.

Pairs come from JSONL files, one pair a line: ``{"id1", "id2", "label"}`` with thread ids looked
up in forum dumps (the text is :attr:`Thread.question_text`, as the index embeds it), or
``{"text1", "text2", "label"}`` with the texts inline; ``label`` is 1 (duplicate) or 0 (not).

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
import random
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from qa_search.embedding.models import resolve_model
from qa_search.embedding.tuned import SETTINGS_FILE
from qa_search.errors import DumpFormatError, ModelLoadError, QASearchError
from qa_search.threads import check_input, json_line, numbered_lines, pair_label, read_dumps, thread_id

#: Defaults chosen on SemEval-2016 train part 2 (see README, "Tuning on your forum's duplicates").
DEFAULT_EPOCHS = 1
DEFAULT_BATCH_SIZE = 16
DEFAULT_LEARNING_RATE = 2e-5
DEFAULT_SEED = 0
#: The ranking loss's directions: anchor to positives and positive to anchors (sentence-transformers'
#: ``directions`` with ``partition_mode="per_direction"``, what MultipleNegativesSymmetricRankingLoss
#: was). Measured on SemEval-2016 against the anchor-to-positive form (README, Tuning).
RANKING_DIRECTIONS = ("query_to_doc", "doc_to_query")
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
#: within noise.
TUNED_INDEX_SETTINGS: dict[str, float] = {"lexical_weight": 0.25}


class PairFormatError(DumpFormatError):
    """A pair-file line that cannot be read as a labelled pair (``path``, 1-based ``line``, ``reason``)."""


class UnknownPairIdsError(QASearchError):
    """Pair lines name thread ids that none of the corpus dumps holds."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = tuple(missing)
        shown = ", ".join(repr(m) for m in self.missing[:10])
        more = f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else ""
        super().__init__(
            f"{len(self.missing)} thread id(s) in the pair files are not in the corpus dumps: "
            f"{shown}{more} (pass the dumps that hold them with --corpus)"
        )


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """Two question texts and whether they are duplicates (label 1) or not (0)."""

    text1: str
    text2: str
    label: int


@dataclass(frozen=True, slots=True)
class TrainingExamples:
    """What one training run sees, built from labelled pairs by :func:`training_examples`.

    ``triplets`` are ``(anchor, positive, hard negative)``; ``positive_pairs`` are duplicates
    without a labelled negative of their anchor; ``labelled`` are all pairs as ``(a, b, label)``.
    """

    triplets: tuple[tuple[str, str, str], ...]
    positive_pairs: tuple[tuple[str, str], ...]
    labelled: tuple[tuple[str, str, int], ...]


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


def _text(obj: dict, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key!r} must be a non-empty string")
    return value


def _parse_pair_line(raw: bytes) -> tuple[str, str, int, bool] | None:
    """``(a, b, label, by_id)`` for one line (None if blank); ValueError says what is wrong."""
    obj = json_line(raw)
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "label" not in obj:
        raise ValueError("missing required field 'label'")
    label = pair_label(obj["label"])
    if "text1" in obj or "text2" in obj:
        return _text(obj, "text1"), _text(obj, "text2"), label, False
    if "id1" in obj or "id2" in obj:
        return thread_id(obj.get("id1"), "'id1'"), thread_id(obj.get("id2"), "'id2'"), label, True
    raise ValueError("expected 'id1' and 'id2' or 'text1' and 'text2'")


def read_pairs(paths: Iterable[str | Path], corpus: Iterable[str | Path] = ()) -> list[LabelledPair]:
    """Read labelled pairs from JSONL files (``.gz`` too), in file order.

    Id pairs get their texts from the ``corpus`` dumps. Raises :class:`PairFormatError` naming
    the file and 1-based line of the first bad line, :class:`UnknownPairIdsError` listing ids
    that no dump holds, and ``FileNotFoundError`` for a missing file.
    """
    raw_pairs: list[tuple[str, str, int, bool]] = []
    for p in paths:
        path = Path(p)
        check_input(path, "pair file")
        for lineno, raw in numbered_lines(path, PairFormatError):
            try:
                parsed = _parse_pair_line(raw)
            except ValueError as exc:
                raise PairFormatError(str(path), lineno, str(exc)) from exc
            if parsed is not None:
                raw_pairs.append(parsed)
    wanted = {x for a, b, _, by_id in raw_pairs if by_id for x in (a, b)}
    texts: dict[str, str] = {}
    if wanted:
        # only the threads the pairs name are kept, so a large dump costs little memory
        for thread in read_dumps(corpus):
            if thread.id in wanted:
                texts[thread.id] = thread.question_text
        missing = sorted(wanted - texts.keys())
        if missing:
            raise UnknownPairIdsError(missing)
    return [
        LabelledPair(texts[a], texts[b], label) if by_id else LabelledPair(a, b, label)
        for a, b, label, by_id in raw_pairs
    ]


def training_examples(pairs: Sequence[LabelledPair], seed: int = DEFAULT_SEED) -> TrainingExamples:
    """Turn labelled pairs into triplets with hard negatives, plain positives and all labelled pairs.

    Each duplicate pair counts in both directions. An anchor's hard negative is drawn (seeded)
    from the texts labelled non-duplicate of it, cycling so that its negatives are spread over
    its positives. Pairs of identical texts are dropped (they teach nothing).
    """
    rng = random.Random(seed)
    negatives: dict[str, list[str]] = defaultdict(list)
    for p in pairs:
        if p.label == 0 and p.text1 != p.text2:
            negatives[p.text1].append(p.text2)
            negatives[p.text2].append(p.text1)
    for texts in negatives.values():
        rng.shuffle(texts)
    used: dict[str, int] = defaultdict(int)
    triplets: list[tuple[str, str, str]] = []
    positive_pairs: list[tuple[str, str]] = []
    for p in pairs:
        if p.label != 1 or p.text1 == p.text2:
            continue
        for anchor, positive in ((p.text1, p.text2), (p.text2, p.text1)):
            negs = negatives.get(anchor)
            if negs:
                triplets.append((anchor, positive, negs[used[anchor] % len(negs)]))
                used[anchor] += 1
            else:
                positive_pairs.append((anchor, positive))
    labelled = tuple((p.text1, p.text2, p.label) for p in pairs if p.text1 != p.text2)
    return TrainingExamples(tuple(triplets), tuple(positive_pairs), labelled)


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


def ranking_loss(model: object) -> object:
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
    losses: dict[str, object] = {}
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
