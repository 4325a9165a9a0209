"""``qa-search sync``: a forum's own database in, a published snapshot generation out."""

from __future__ import annotations

from datetime import timedelta

import click

from qa_search import BACKENDS, SYNC_SCHEMAS, DumpFormatError, SyncReport, sync_index
from qa_search.cli._common import FiniteRange, echo_json, library_errors
from qa_search.cli._input import StepBar
from qa_search.cli.build import group_readable_option, keep_option

#: Records left out that are named one by one on stderr; the rest are counted.
MAX_LISTED = 20


def _say(summary: SyncReport, as_json: bool) -> None:
    if as_json:
        echo_json(summary.to_dict())
        return
    kind = "full sync" if summary.full else "sync"
    if not summary.published:
        click.echo(f"{kind}: nothing changed ({summary.read} threads read); "
                   f"generation {summary.generation} stays current, {summary.threads} threads")
        return
    click.echo(
        f"{kind}: read {summary.read} threads, {summary.changed} changed, removed {summary.removed}; "
        f"embedded {summary.embedded}, reused {summary.reused}; {summary.threads} threads in the index, "
        f"published generation {summary.generation} in {summary.seconds:.1f} s"
    )


@click.command()
@click.argument("index_dir", type=click.Path(file_okay=False))
@click.option(
    "--from",
    "url",
    required=True,
    envvar="QA_SEARCH_SYNC_URL",
    metavar="URL",
    help="The forum's database, as a SQLAlchemy URL: mysql+pymysql://USER:PASSWORD@HOST/DB, "
    "postgresql+psycopg://USER:PASSWORD@HOST/DB, sqlite:///PATH [env: QA_SEARCH_SYNC_URL, which "
    "keeps the password out of the process list].",
)
@click.option("--schema", type=click.Choice(SYNC_SCHEMAS), default=None,
              help="A preset for the forum's schema: q2a (Question2Answer).")
@click.option("--mapping", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A mapping file (YAML or JSON): the SQL queries for threads and answers and "
              "their columns, for any other schema.")
@click.option("--prefix", default="qa_", show_default=True,
              help="--schema q2a: the prefix of the tables' names.")
@click.option("--full", is_flag=True, help="Read every thread, not only those changed since the last sync.")
@click.option("--margin", type=FiniteRange(0), default=600.0, show_default=True, metavar="SECONDS",
              help="How far before the last change seen a sync reads again (transactions that "
              "commit late, clocks that differ).")
@click.option("--model", default=None,
              help="A full sync's model [default: the index's; all-MiniLM-L6-v2 for a new index].")
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="A full sync's encoder runtime [default: the index's; auto for a new index].")
@keep_option
@click.option("--max-removals", type=FiniteRange(0, 1), default=0.1, show_default=True,
              help="Largest share of the threads synced before that a sync may remove without "
              "--allow-removals.")
@click.option("--allow-removals", is_flag=True, help="Publish however many threads the sync removes.")
@group_readable_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@library_errors
def sync(
    index_dir: str,
    url: str,
    schema: str | None,
    mapping: str | None,
    prefix: str,
    full: bool,
    margin: float,
    model: str | None,
    backend: str | None,
    keep: int,
    max_removals: float,
    allow_removals: bool,
    group_readable: bool | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Bring the index in step with the forum's database and publish a new generation.

    The first sync reads every thread; later ones read the threads changed since, remove those
    deleted or hidden at the source, and publish nothing when nothing changed. Texts embedded
    before are not embedded again. Run it from cron or a systemd timer.
    """
    if (schema is None) == (mapping is None):
        raise click.UsageError("name the forum's schema: --schema q2a, or --mapping FILE")
    skipped: list[DumpFormatError] = []
    with StepBar("embedding", quiet) as bar:
        summary = sync_index(
            index_dir, url, schema=schema, mapping=mapping, prefix=prefix, full=full, model=model,
            backend=backend, margin=timedelta(seconds=margin), keep=keep, max_removals=max_removals,
            allow_removals=allow_removals, group_readable=group_readable, progress=bar,
            on_skip=skipped.append,
        )
    for err in skipped[:MAX_LISTED]:  # stderr: --json's stdout stays one object
        click.echo(f"skipped: {err}", err=True)
    if len(skipped) > MAX_LISTED:
        click.echo(f"skipped: {len(skipped) - MAX_LISTED} more records", err=True)
    _say(summary, as_json)
