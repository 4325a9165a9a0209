"""``qa-search search`` and ``qa-search duplicates``: read-only queries against a built index."""

from __future__ import annotations

import click

from qa_search import ForumIndex, SearchPage
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
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0, 100_000),
              help="Threads of the ranking to skip (a page: 0, k, 2k...).")
@click.option(
    "--tag", "tags", multiple=True, help="Keep threads with this tag (repeatable: any of them)."
)
@click.option("--category", "categories", multiple=True,
              help="Keep threads of this category (repeatable: any of them).")
@click.option("--created-after", default=None, metavar="ISO8601",
              help="Keep threads created at or after this date or time (naive: UTC).")
@click.option("--created-before", default=None, metavar="ISO8601",
              help="Keep threads created before this date or time (naive: UTC).")
@click.option("--exclude-closed", is_flag=True, help="Leave out threads the forum closed.")
@click.option("--recency-half-life-days", type=FiniteRange(min=0, min_open=True, max=36_500), default=None,
              help="Boost recent threads: at most 0.05 added to a new thread's score, halved every this "
                   "many days of age.")
@click.option("--highlight", is_flag=True, help="Mark the query's terms in titles and snippets ([...]; "
                                               "with --json, their offsets).")
@click.option("--min-relevance", type=FiniteRange(0, 1), default=None,
              help="Drop hits whose relevance (the probability that the thread answers TEXT) is below "
                   "this [default: keep every hit].")
@click.option("--rerank", is_flag=True, help="Put the first 20 hits in the order of the index's reranker "
                                             "(qa-search configure --reranker).")
@click.option("--json", "as_json", is_flag=True, help='Print {"hits": [...], "next_offset": N} as JSON.')
@library_errors
def search(
    index_dir: str, text: str, k: int, offset: int, tags: tuple[str, ...], categories: tuple[str, ...],
    created_after: str | None, created_before: str | None, exclude_closed: bool,
    recency_half_life_days: float | None, highlight: bool, min_relevance: float | None, rerank: bool,
    as_json: bool,
) -> None:
    """Find the threads most similar to TEXT."""
    filtered = bool(tags or categories or created_after or created_before or exclude_closed)
    index = ForumIndex.load(index_dir)
    try:
        # one more than the page, uncut, to know whether a next page follows (as the service does)
        found = index.search(
            text, k=k + 1, offset=offset, tags=tags or None, category=categories or None,
            created_after=created_after, created_before=created_before, exclude_closed=exclude_closed,
            recency_half_life_days=recency_half_life_days, highlight=highlight, rerank=rerank,
        )
    except ValueError as exc:  # a date that is not ISO 8601, or a range that ends before it starts
        raise click.UsageError(str(exc)) from None
    page = SearchPage.of(found, offset, k, min_relevance)
    if as_json:
        echo_json(page.to_dict())
        return
    hits = page.hits
    if not hits and min_relevance is not None:
        click.echo(f"no thread reaches relevance {min_relevance:g}: nothing here seems to answer it")
    elif not hits:
        click.echo("no threads match the filters" if filtered else
                   "no threads past the offset" if offset else "no threads in the index")
    for rank, h in enumerate(hits, offset + 1):
        where = "question" if h.answer_id is None else f"answer {h.answer_id}"
        title, snippet = h.title, h.snippet
        if h.highlights is not None:
            title, snippet = _marked(title, h.highlights.title), _marked(snippet, h.highlights.snippet)
        relevance = "" if h.relevance is None else f"  (relevance {h.relevance:.2f})"
        click.echo(f"{rank:>2}. {h.score:.3f}  [{h.thread_id}] {title}{relevance}")
        click.echo(f"      matched {where}: {snippet}")


def _marked(text: str, spans: tuple[tuple[int, int], ...]) -> str:
    """``text`` with each span in brackets."""
    out, at = [], 0
    for start, end in spans:
        out += [text[at:start], "[", text[start:end], "]"]
        at = end
    return "".join([*out, text[at:]])


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
    help="Minimum question cosine, in [-1, 1] [default: with a calibration (the index's own, or the "
    "one shipped for its model), reaching a tier; else the index's duplicate_threshold].",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"duplicates": [...]} as JSON.')
@library_errors
def duplicates(index_dir: str, text: str, k: int, threshold: float | None, as_json: bool) -> None:
    """List threads whose question is likely a duplicate of TEXT.

    With a reranker attached (qa-search configure --reranker), the best 20 candidates are scored
    by it: the probabilities and tiers shown are its own, or the blend's that the index's last
    calibrate chose with it.
    """
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
