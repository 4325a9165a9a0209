"""``qa-search import`` and ``qa-search export-pairs``: converting forum exports."""

from __future__ import annotations

import click

from qa_search import DumpFormatError, read_stackexchange_duplicates, write_dump, write_pairs
from qa_search.cli._common import echo_json, library_errors
from qa_search.cli._input import ThreadInput, input_options


@click.command("import")
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="JSONL dump to write (.gz: gzip)."
)
@input_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help='Print {"threads", "out", "skipped"} as JSON.')
@library_errors
def import_command(
    sources: tuple[str, ...],
    out: str,
    fmt: str,
    mappings: tuple[str, ...],
    site_url: str | None,
    skip_invalid: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Convert CSV or Stack Exchange Posts.xml exports into a JSONL dump (to inspect or edit).

    build and update read these formats directly too.
    """
    source = ThreadInput(sources, fmt, mappings, site_url, skip_invalid, quiet)
    with source.reported_on_failure():
        n = write_dump(source, out)
    source.report_skipped()  # stderr, in both modes
    source.report_repeated()
    if as_json:
        skipped = source.skipped_json()
        echo_json({"threads": n, "out": out, "skipped": skipped, "repeated_ids": source.repeated})
    else:
        click.echo(f"wrote {n} threads to {out}")


@click.command("export-pairs")
@click.argument("postlinks", type=click.Path(dir_okay=False))
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="JSONL file of pairs to write."
)
@click.option("--skip-invalid", is_flag=True, help="Skip malformed rows and report them.")
@library_errors
def export_pairs(postlinks: str, out: str, skip_invalid: bool) -> None:
    """Write a Stack Exchange PostLinks.xml's duplicate links as labelled pairs.

    Each line is {"id1": post, "id2": the post it duplicates, "label": 1}.
    """
    skipped: list[DumpFormatError] = []
    n = write_pairs(
        read_stackexchange_duplicates(postlinks, on_error=skipped.append if skip_invalid else None), out
    )
    for e in skipped:
        click.echo(f"skipped {e.path}:{e.line}: {e.reason}", err=True)
    click.echo(f"wrote {n} duplicate pairs to {out}")
