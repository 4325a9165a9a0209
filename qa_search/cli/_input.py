"""Input options shared by the commands that read forum exports (build, update, import)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import click
from tqdm import tqdm

from qa_search import CSV_FIELDS, FORMATS, DumpFormatError, Thread, check_inputs, read_threads
from qa_search.cli._common import F, advance, progress_bar

MAX_LISTED = 20


def input_options(fn: F) -> F:
    """``--format``, ``--map``, ``--site-url`` and ``--skip-invalid``."""
    options = [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["auto", *FORMATS]),
            default="auto",
            show_default=True,
            help="auto: from the file name (.jsonl[.gz], .csv, .xml: Stack Exchange Posts.xml).",
        ),
        click.option(
            "--map",
            "mappings",
            multiple=True,
            metavar="FIELD=COLUMN",
            help=f"CSV: read FIELD from COLUMN (repeatable). Fields: {', '.join(CSV_FIELDS)}.",
        ),
        click.option("--site-url", default=None, help="Stack Exchange: the site URL, for thread links."),
        click.option(
            "--skip-invalid",
            is_flag=True,
            help="Skip malformed records and report them, instead of stopping at the first.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def parse_mappings(mappings: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for m in mappings:
        field, sep, column = m.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise click.BadParameter(f"expected FIELD=COLUMN, got {m!r}", param_hint="--map")
        if field.strip() not in CSV_FIELDS:
            raise click.BadParameter(
                f"unknown field {field.strip()!r}; the fields are {', '.join(CSV_FIELDS)}", param_hint="--map"
            )
        out[field.strip()] = column.strip()
    return out


class ThreadInput:
    """The threads of the input files as a stream with a progress bar, collecting skipped records."""

    def __init__(
        self,
        paths: Sequence[str],
        fmt: str,
        mappings: tuple[str, ...],
        site_url: str | None,
        skip_invalid: bool,
        quiet: bool,
    ) -> None:
        self.paths = paths
        self.fmt = fmt
        self.mapping = parse_mappings(mappings)
        self.site_url = site_url
        self.skipped: list[DumpFormatError] = []
        #: Answers passed over for having no text (real Stack Exchange dumps hold some): counted,
        #: not listed, as they are expected and carry nothing to search.
        self.skipped_empty_answers = 0
        # thread ids read more than once, in the order their first repeat was met (a dict as an
        # ordered set): a later record replaces an earlier one, so the operator is told
        self._repeated: dict[str, None] = {}
        self.skip_invalid = skip_invalid
        self.quiet = quiet
        try:  # by the files' names: a wrong option is refused before any step starts
            check_inputs(paths, fmt, mapping=self.mapping, site_url=site_url)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc

    def __iter__(self) -> Iterator[Thread]:
        on_error = self.skipped.append if self.skip_invalid else None
        stream = read_threads(
            self.paths, self.fmt, mapping=self.mapping, on_error=on_error, site_url=self.site_url,
            on_skip=self._count_empty,
        )
        seen: set[str] = set()
        with progress_bar("reading", self.quiet, unit="threads") as bar:
            for thread in stream:
                bar.update()
                if thread.id in seen:
                    self._repeated[thread.id] = None
                seen.add(thread.id)
                yield thread

    def _count_empty(self, _err: DumpFormatError) -> None:
        self.skipped_empty_answers += 1

    @property
    def repeated(self) -> list[str]:
        """Thread ids read more than once, in the order their first repeat was met."""
        return list(self._repeated)

    def skipped_json(self) -> list[dict]:
        return [{"file": e.path, "line": e.line, "reason": e.reason} for e in self.skipped]

    @contextmanager
    def reported_on_failure(self) -> Iterator[None]:
        """Say what was skipped even when the command then fails (every record skipped leaves
        nothing to index, and that error alone would not say why)."""
        try:
            yield
        except Exception:
            self.report_skipped()
            raise

    def report_skipped(self) -> None:
        """Say on stderr how many records were skipped, and which, and how many answers had no text."""
        if self.skipped_empty_answers:
            click.echo(f"skipped {self.skipped_empty_answers} answers with no text", err=True)
        if not self.skipped:
            return
        click.echo(f"skipped {len(self.skipped)} invalid record(s):", err=True)
        for e in self.skipped[:MAX_LISTED]:
            click.echo(f"  {e.path}:{e.line}: {e.reason}", err=True)
        if len(self.skipped) > MAX_LISTED:
            click.echo(f"  ... and {len(self.skipped) - MAX_LISTED} more (--json lists them all)", err=True)

    def report_repeated(self) -> None:
        """Say on stderr which thread ids were read more than once (the last record of each won)."""
        repeated = self.repeated
        if not repeated:
            return
        shown = ", ".join(repr(i) for i in repeated[:MAX_LISTED])
        more = f" and {len(repeated) - MAX_LISTED} more" if len(repeated) > MAX_LISTED else ""
        click.echo(
            f"warning: {len(repeated)} thread id(s) appear more than once in the input (in an "
            f"index the last record of each replaces the earlier ones): {shown}{more}",
            err=True,
        )


class StepBar:
    """A ``progress(done, total)`` callback for one step (embedding, indexing) that opens its bar
    on the first report (so it does not stand empty under an earlier step's bar) and closes it
    on exit."""

    def __init__(self, desc: str, quiet: bool, unit: str = "texts") -> None:
        self.desc, self.quiet, self.unit = desc, quiet, unit
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:  # what was done before the first report is not part of the rate
            self.bar = progress_bar(self.desc, self.quiet, unit=self.unit, initial=done).__enter__()
        advance(self.bar, done, total)

    def __enter__(self) -> StepBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
