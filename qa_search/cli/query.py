"""``qa-search search`` and ``qa-search duplicates``: read-only queries against a built index."""

from __future__ import annotations

import click

from qa_search import ForumIndex
from qa_search.cli._common import FiniteRange, echo_json, library_errors


def _not_blank(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("is empty: give the question text to look for")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes the shell passed that are not UTF-8 (surrogate-escaped)
        raise click.BadParameter("is not valid UTF-8 text") from None
    return value


@click.command()
@click.argument("index_dir", type=click.Path(file_okay=False))
@click.argument("text", callback=_not_blank)
@click.option("-k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Threads to return.")
@click.option(
    "--tag", "tags", multiple=True, help="Keep threads with this tag (repeatable: any of them)."
)
@click.option("--category", default=None, help="Keep threads of this category.")
@click.option("--json", "as_json", is_flag=True, help='Print {"hits": [...]} as JSON.')
@library_errors
def search(
    index_dir: str, text: str, k: int, tags: tuple[str, ...], category: str | None, as_json: bool
) -> None:
    """Find the threads most similar to TEXT."""
    hits = ForumIndex.load(index_dir).search(text, k=k, tags=tags or None, category=category)
    if as_json:
        echo_json({"hits": [h.to_dict() for h in hits]})
        return
    if not hits:
        click.echo("no threads match the filters" if tags or category else "no threads in the index")
    for rank, h in enumerate(hits, 1):
        where = "question" if h.answer_id is None else f"answer {h.answer_id}"
        click.echo(f"{rank:>2}. {h.score:.3f}  [{h.thread_id}] {h.title}")
        click.echo(f"      matched {where}: {h.snippet}")


@click.command()
@click.argument("index_dir", type=click.Path(file_okay=False))
@click.argument("text", callback=_not_blank)
@click.option(
    "-k", default=5, show_default=True, type=click.IntRange(1, 100), help="Most duplicates to return."
)
@click.option(
    "--threshold",
    type=FiniteRange(-1, 1),
    default=None,
    help="Minimum question cosine, in [-1, 1] [default: on a calibrated index, reaching a tier; "
    "else the index's duplicate_threshold].",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"duplicates": [...]} as JSON.')
@library_errors
def duplicates(index_dir: str, text: str, k: int, threshold: float | None, as_json: bool) -> None:
    """List threads whose question is likely a duplicate of TEXT."""
    hits = ForumIndex.load(index_dir).find_duplicates(text, threshold=threshold, k=k)
    if as_json:
        echo_json({"duplicates": [h.to_dict() for h in hits]})
        return
    if not hits:
        click.echo("no likely duplicates")
    for h in hits:
        verdict = "" if h.probability is None else f"  {h.tier or 'below the tiers'} (p={h.probability:.2f})"
        click.echo(f"{h.score:.3f}  [{h.thread_id}] {h.title}{verdict}")
    if hits and hits[0].probability is None:
        click.echo("(uncalibrated index: scores are raw cosines; `qa-search calibrate` adds probabilities)")
