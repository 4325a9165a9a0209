"""``qa-search tune``: fine-tune the embedding model on labelled duplicate pairs."""

from __future__ import annotations

import click
from click.core import ParameterSource

from qa_search import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_RERANKER_LEARNING_RATE,
    DEFAULT_SEED,
    read_tuning_pairs,
    train_reranker,
    tune,
)
from qa_search.cli._common import FiniteRange, RepeatedPairs, echo_json, library_errors, progress_bar

#: Fewer duplicate pairs than this get a warning before tuning (the Tuning page's gains came from
#: 670 labelled pairs, hundreds of them duplicates).
FEW_DUPLICATES = 100


@click.command("tune")
@click.option(
    "--pairs",
    "pair_files",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help='JSONL pairs, {"id1", "id2", "label"} or {"text1", "text2", "label"}; repeatable.',
)
@click.option(
    "--corpus",
    "corpus",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Forum dumps holding the threads that id pairs name; repeatable.",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="New model directory."
)
@click.option(
    "--base",
    default=None,
    help="Model to start from: a sentence-transformers name or directory [default: all-MiniLM-L6-v2].",
)
@click.option("--epochs", default=DEFAULT_EPOCHS, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=DEFAULT_SEED, show_default=True, type=click.IntRange(0, 2**32 - 1))
@click.option("--batch-size", default=DEFAULT_BATCH_SIZE, show_default=True, type=click.IntRange(2))
@click.option(
    "--learning-rate",
    default=DEFAULT_LEARNING_RATE,
    show_default=True,
    type=FiniteRange(0, 1, min_open=True),
)
@click.option(
    "--reranker",
    is_flag=True,
    help="Train a cross-encoder reranker (for qa-search configure INDEX --reranker OUT) instead of "
    "tuning the embedding model.",
)
@click.option("--max-pairs", type=click.IntRange(2), default=None,
              help="With --reranker: train on at most this many pairs (a seeded sample).")
@click.option("--max-steps", type=click.IntRange(1), default=None,
              help="With --reranker: stop after this many optimiser steps.")
@click.option("--max-length", type=click.IntRange(8, 512), default=128, show_default=True,
              help="With --reranker: tokens per pair, both questions together.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="With --reranker: torch CPU threads [default: torch's choice].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@library_errors
def tune_command(
    ctx: click.Context,
    pair_files: tuple[str, ...],
    corpus: tuple[str, ...],
    out_dir: str,
    base: str | None,
    epochs: int,
    seed: int,
    batch_size: int,
    learning_rate: float,
    reranker: bool,
    max_pairs: int | None,
    max_steps: int | None,
    max_length: int,
    threads: int | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Fine-tune the embedding model on a forum's duplicate / non-duplicate pairs (CPU).

    The result is a sentence-transformers directory for `qa-search build --model OUT`, with the
    index settings that suit a tuned model beside it (qa_search.json), which a new index built
    with it starts from. With --reranker, a cross-encoder is trained from the same base model
    instead: OUT holds its ONNX graphs and reranker.json, for `qa-search configure INDEX
    --reranker OUT` (its learning rate defaults to 3e-5).
    """
    if not reranker and (max_pairs is not None or max_steps is not None or threads is not None):
        # a usage error before the pairs and dumps are read
        raise click.UsageError("--max-pairs, --max-steps and --threads go with --reranker")
    repeats = RepeatedPairs()
    pairs = read_tuning_pairs(pair_files, corpus, on_repeat=repeats)
    repeats.warn()
    duplicates = sum(1 for p in pairs if p.label == 1)
    if 0 < duplicates < FEW_DUPLICATES:
        click.echo(
            f"warning: {duplicates} duplicate pair(s) are few to learn from: the model takes a "
            "handful of steps, changes little, and what it learns may not carry to other questions; "
            "tune on a few hundred or more, and compare with `qa-search eval` on pairs it did not see",
            err=True,
        )
    if reranker:
        _train_reranker(ctx, pairs, out_dir, base, epochs, seed, batch_size, learning_rate,
                        max_pairs, max_steps, max_length, threads, quiet or as_json, as_json)
        return
    result = tune(
        pairs,
        out_dir,
        base=base,
        epochs=epochs,
        seed=seed,
        batch_size=batch_size,
        learning_rate=learning_rate,
        show_progress=not quiet and not as_json,
    )
    if as_json:
        echo_json(result.to_dict())
        return
    click.echo(
        f"tuned {result.base_model} on {result.pairs} pairs ({result.duplicates} duplicates, "
        f"{result.non_duplicates} not): {result.triplets} triplets with a hard negative, "
        f"{result.positive_pairs} without; {result.epochs} epoch(s), {result.steps} steps "
        f"in {result.seconds:.1f} s; saved to {result.out_dir}"
    )
    settings = ", ".join(f"{k}={v}" for k, v in result.index_settings.items())
    click.echo(f"an index built with it starts from: {settings}")


def _train_reranker(
    ctx: click.Context, pairs: list, out_dir: str, base: str | None, epochs: int, seed: int,
    batch_size: int, learning_rate: float, max_pairs: int | None, max_steps: int | None,
    max_length: int, threads: int | None, quiet: bool, as_json: bool,
) -> None:
    if ctx.get_parameter_source("learning_rate") is ParameterSource.DEFAULT:
        learning_rate = DEFAULT_RERANKER_LEARNING_RATE
    bar = None if quiet else progress_bar("training", False, unit="steps")
    last = [0]

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - last[0])
            last[0] = done

    try:
        result = train_reranker(
            pairs, out_dir, base=base, epochs=epochs, seed=seed, batch_size=batch_size,
            learning_rate=learning_rate, max_length=max_length, max_pairs=max_pairs,
            max_steps=max_steps, threads=threads, progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        echo_json(result.to_dict())
        return
    tiers = ", ".join(f"{k} >= {v:.3f}" for k, v in result.tiers.items()) or "none measured (defaults)"
    held = "" if result.held_out_ap is None else (
        f"; held-out AP {result.held_out_ap:.3f} on {result.held_out} pairs")
    if result.held_out_ap is not None and result.held_out_by == "pair":
        held += " (held out one by one: they share questions with the trained pairs, so it is optimistic)"
    click.echo(
        f"trained a reranker from {result.base_model} on {result.pairs} pairs (both orders): "
        f"{result.epochs} epoch(s), {result.steps} steps in {result.seconds:.1f} s{held}; saved to "
        f"{result.out_dir}"
    )
    click.echo(f"tiers: {tiers}; attach it with: qa-search configure INDEX --reranker {result.out_dir}")
