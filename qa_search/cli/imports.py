"""``qa-search import`` and ``qa-search export-pairs``: converting forum exports."""

from __future__ import annotations

from pathlib import Path

import click

from qa_search import (
    DumpFormatError,
    read_stackexchange_duplicates,
    stackexchange_question_ids,
    write_dump,
    write_pairs,
)
from qa_search.cli._common import echo_json, library_errors
from qa_search.cli._input import ThreadInput, input_options


@click.command("import")
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="JSONL dump to write (.gz: gzip)."
)
@input_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"threads", "out", "skipped", "skipped_empty_answers", ...} as JSON.',
)
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
        echo_json({"threads": n, "out": out, "skipped": skipped, "repeated_ids": source.repeated,
                   "skipped_empty_answers": source.skipped_empty_answers})
    else:
        click.echo(f"wrote {n} threads to {out}")


@click.command("export-pairs")
@click.argument("postlinks", type=click.Path(dir_okay=False))
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="JSONL file of pairs to write."
)
@click.option(
    "--posts",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="The dump's Posts.xml, to leave out links to posts not in it (default: Posts.xml beside POSTLINKS).",
)
@click.option("--skip-invalid", is_flag=True, help="Skip malformed rows and report them.")
@click.option("--json", "as_json", is_flag=True, help='Print {"pairs", "skipped_missing", ...} as JSON.')
@library_errors
def export_pairs(postlinks: str, out: str, posts: str | None, skip_invalid: bool, as_json: bool) -> None:
    """Write a Stack Exchange PostLinks.xml's duplicate links as labelled pairs.

    Each line is {"id1": post, "id2": the post it duplicates, "label": 1}. Deleted posts keep
    their links, so links naming a post that is not in the dump's Posts.xml are left out.
    """
    if posts is None:
        beside = Path(postlinks).with_name("Posts.xml")
        posts = str(beside) if beside.is_file() else None
    questions = None if posts is None else stackexchange_question_ids(posts)
    skipped: list[DumpFormatError] = []
    missing: list[DumpFormatError] = []
    repeats: list[DumpFormatError] = []
    n = write_pairs(
        read_stackexchange_duplicates(
            postlinks,
            on_error=skipped.append if skip_invalid else None,
            questions=questions,
            on_skip=missing.append,
            on_repeat=repeats.append,
        ),
        out,
    )
    repeated = len(repeats)
    for e in skipped:
        click.echo(f"skipped {e.path}:{e.line}: {e.reason}", err=True)
    if posts is None:
        click.echo(
            "warning: no Posts.xml beside PostLinks.xml (give --posts): could not check that the linked "
            "posts exist; every link was written",
            err=True,
        )
    elif missing:
        click.echo(f"skipped {len(missing)} links to posts not in Posts.xml", err=True)
    if repeated:
        click.echo(f"left out {repeated} link(s) between posts already paired (either way round)", err=True)
    if as_json:
        echo_json(
            {
                "pairs": n,
                "out": out,
                "posts": posts,
                "skipped_missing": None if posts is None else len(missing),
                "repeated": repeated,
                "skipped": [{"file": e.path, "line": e.line, "reason": e.reason} for e in skipped],
            }
        )
    else:
        click.echo(f"wrote {n} duplicate pairs to {out}")
