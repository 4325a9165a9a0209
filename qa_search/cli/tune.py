"""``qa-search tune``: fine-tune the embedding model on labelled duplicate pairs."""

from __future__ import annotations

import click

from qa_search import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_SEED,
    read_tuning_pairs,
    tune,
)
from qa_search.cli._common import FiniteRange, echo_json, library_errors


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
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@library_errors
def tune_command(
    pair_files: tuple[str, ...],
    corpus: tuple[str, ...],
    out_dir: str,
    base: str | None,
    epochs: int,
    seed: int,
    batch_size: int,
    learning_rate: float,
    quiet: bool,
    as_json: bool,
) -> None:
    """Fine-tune the embedding model on a forum's duplicate / non-duplicate pairs (CPU).

    The result is a sentence-transformers directory for `qa-search build --model OUT`, with the
    index settings that suit a tuned model beside it (qa_search.json), which a new index built
    with it starts from.
    """
    pairs = read_tuning_pairs(pair_files, corpus)
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
