"""``qa-search build``: forum exports in, a published snapshot generation out."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from typing import Any

import click

from qa_search import BACKENDS, DEFAULT_KEEP, BuildReport, SettingsError
from qa_search import build as build_index
from qa_search.cli._common import F, FiniteRange, echo_json, library_errors, settings_option
from qa_search.cli._input import StepBar, ThreadInput, input_options


def keep_option(fn: F) -> F:
    return click.option(
        "--keep",
        default=DEFAULT_KEEP,
        show_default=True,
        type=click.IntRange(1),
        help="Generations to keep after publishing (older ones are deleted; the current one is always kept).",
    )(fn)


def group_readable_option(fn: F) -> F:
    return click.option(
        "--group-readable/--owner-only",
        default=None,
        help="Let the index directory's group read it (0750 directories, 0640 files), or only its "
        "owner (0700, 0600) [default: as the index is; owner-only for a new one].",
    )(fn)


class Moment(click.ParamType):
    """An ISO 8601 time (``2026-03-02T10:00:00Z``); without an offset it is UTC."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            text = str(value).strip()
            if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not read it
                text = text[:-1] + "+00:00"
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail("is not an ISO 8601 time such as 2026-03-02T10:00:00Z", param, ctx)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def exported_at(dumps: tuple[str, ...]) -> datetime:
    """When the dumps were exported, as their files tell: the newest modification time; now
    when one is a pipe (``/dev/stdin``), which is read as it is made."""
    found = [os.stat(p) for p in dumps]
    if any(not stat.S_ISREG(st.st_mode) for st in found):
        return datetime.now(timezone.utc)
    return max(datetime.fromtimestamp(st.st_mtime, timezone.utc) for st in found)


def report(summary: BuildReport, source: ThreadInput | None, as_json: bool, verb: str) -> None:
    """Print a build's summary (and what was skipped) as text or JSON."""
    # warnings go to stderr in both modes (--json's stdout stays one JSON object)
    if source is not None:
        source.report_skipped()
        source.report_repeated()
    if summary.calibration_dropped:
        click.echo(f"warning: the duplicate calibration was not kept: {summary.calibration_dropped}",
                   err=True)
    if as_json:
        out = summary.to_dict()
        if source is not None:
            out["skipped"] = source.skipped_json()
            out["repeated_ids"] = source.repeated
            out["skipped_empty_answers"] = source.skipped_empty_answers
        echo_json(out)
    else:
        click.echo(
            f"{verb}: {summary.threads} threads ({summary.vectors} vectors) in the index; "
            f"embedded {summary.embedded}, reused {summary.reused}, in {summary.seconds:.1f} s; "
            f"published generation {summary.generation} at {summary.snapshot}"
            + (f"; removed {summary.removed} threads the index held" if summary.removed else "")
            + (f"; kept {summary.kept_live_writes} live writes newer than the input"
               if summary.kept_live_writes else "")
            + (f"; kept {summary.kept_published} threads changed by publishes newer than the input"
               if summary.kept_published else "")
            + (f"; pruned generations {', '.join(map(str, summary.pruned))}" if summary.pruned else "")
        )


@click.command()
@click.argument("dumps", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--index",
    "index_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Index directory to publish the new snapshot generation into.",
)
@click.option(
    "--model",
    default=None,
    help="sentence-transformers model name or local directory "
    "[default: the index's model; all-MiniLM-L6-v2 for a new index].",
)
@input_options
@keep_option
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=None,
    help="Encoder runtime: auto picks ONNX int8 where the export matches torch "
    "[default: the index's; auto for a new index or another model].",
)
@settings_option
@click.option(
    "--as-of",
    type=Moment(),
    default=None,
    help="When the dumps were exported (ISO 8601; UTC without an offset): live writes the service "
    "acknowledged after it are kept on top of them, older ones are replaced "
    "[default: the dump files' newest modification time; now for a pipe].",
)
@click.option(
    "--max-removals",
    type=FiniteRange(0, 1),
    default=0.1,
    show_default=True,
    help="Largest share of the threads the index serves that the build may remove without --allow-removals.",
)
@click.option("--allow-removals", is_flag=True, help="Publish however many threads the build removes.")
@group_readable_option
@click.option("--no-cache", is_flag=True, help="Embed every text again, ignoring DIR/cache.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@library_errors
def build(
    dumps: tuple[str, ...],
    index_dir: str,
    model: str | None,
    backend: str | None,
    fmt: str,
    mappings: tuple[str, ...],
    site_url: str | None,
    skip_invalid: bool,
    keep: int,
    settings: dict[str, str],
    as_of: datetime | None,
    max_removals: float,
    allow_removals: bool,
    group_readable: bool | None,
    no_cache: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Build an index from forum exports and publish it as a new generation.

    Texts embedded by an earlier build (kept in DIR/cache) are not embedded again, so a rebuild
    after a few edits is fast. The index keeps its settings from one build to the next (the
    defaults for a new index); a model made by `qa-search tune` adds the settings it recommends
    when the index starts using it; each --set changes one.

    Threads the forum pushed to the service after the dumps were exported (--as-of) are kept.
    A build that would remove more than --max-removals of the threads the index serves stops
    before publishing, unless --allow-removals.
    """
    since = as_of if as_of is not None else exported_at(dumps)  # before reading: a pipe is made now
    source = ThreadInput(dumps, fmt, mappings, site_url, skip_invalid, quiet)

    def from_model(settings: dict[str, object]) -> None:  # stderr: --json's stdout stays one object
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        click.echo(f"settings recommended by the tuned model: {shown}", err=True)

    with (
        source.reported_on_failure(),
        StepBar("embedding", quiet) as bar,
        StepBar("indexing", quiet, unit="vectors") as ibar,
    ):
        try:
            summary = build_index(
                index_dir,
                source,
                model,
                backend=backend,
                settings=settings,
                keep=keep,
                use_cache=not no_cache,
                progress=bar,
                index_progress=ibar,
                on_model_settings=from_model,
                as_of=since,
                max_removals=max_removals,
                allow_removals=allow_removals,
                group_readable=group_readable,
            )
        except SettingsError as exc:  # a value that clashes with one the index keeps
            raise click.BadParameter(str(exc), param_hint="--set") from None
    report(summary, source, as_json, "built")
