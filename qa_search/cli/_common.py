"""What every command shares: error translation, progress bars, JSON output."""

from __future__ import annotations

import errno
import functools
import json
import math
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click
from tqdm import tqdm

from qa_search import IndexConfig, QASearchError

P = ParamSpec("P")
R = TypeVar("R")
#: A click command function, or a decorator's argument on its way to becoming one.
F = TypeVar("F", bound=Callable[..., Any])


class FiniteRange(click.FloatRange):
    """A float option in a range that also refuses nan (which passes every comparison)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number is not None and not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def library_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn the library's errors, and the operating system's (a missing file, a directory that
    cannot be written), into a one-line message and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except QASearchError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # the reader went away (`| head`): click ends quietly
                raise
            if exc.filename is not None and exc.strerror:  # "[Errno 13] ..." said plainly
                raise click.ClickException(f"{exc.filename}: {exc.strerror}") from exc
            raise click.ClickException(str(exc)) from exc

    return wrapper


def progress_bar(desc: str, quiet: bool, unit: str = "texts", initial: int = 0) -> tqdm:
    """A progress bar on stderr with rate and ETA; silent with ``--quiet``. ``unit`` is plural
    ("texts"): counts and rates read "150 texts", "56.90 texts/s".

    The rate is the mean since the bar opened (``smoothing=0``), over the work done after
    ``initial``: a bar opened on its first report of 64 done would otherwise divide them by
    microseconds and show millions a second.
    """
    return tqdm(
        desc=desc,
        unit=f" {unit}",
        smoothing=0,
        initial=initial,
        disable=quiet,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def advance(bar: tqdm, done: int, total: int) -> None:
    """A ``progress(done, total)`` callback that moves ``bar``."""
    bar.total = total
    bar.n = done
    bar.refresh()


def echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


def _parse_settings(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx, param)
        settings[key.strip()] = value.strip()
    try:
        IndexConfig().updated(settings)  # names, kinds and ranges, before anything slow starts
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return settings


def settings_option(fn: F) -> F:
    """``--set KEY=VALUE`` (repeatable): IndexConfig settings, checked as they are parsed."""
    return click.option(
        "--set",
        "settings",
        multiple=True,
        metavar="KEY=VALUE",
        callback=_parse_settings,
        help="Change an index setting (repeatable), e.g. --set lexical_weight=0.5; "
        "`qa-search configure DIR` lists them.",
    )(fn)


class RepeatedPairs:
    """The pair-file lines a command read that repeat an earlier pair (``on_repeat`` of the pair
    readers), said once on stderr."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, int, str, int]] = []

    def __call__(self, path: str, line: int, first_path: str, first_line: int) -> None:
        self.lines.append((path, line, first_path, first_line))

    def warn(self) -> None:
        if not self.lines:
            return
        files = {p for p, _, _, _ in self.lines} | {f for _, _, f, _ in self.lines}
        one = next(iter(files)) if len(files) == 1 else None
        shown = ", ".join(
            f"{'' if one else path + ' '}line {line} (of {'' if first == path else first + ' '}line {at})"
            for path, line, first, at in self.lines[:5]
        )
        click.echo(
            f"warning: {len(self.lines)} line(s){'' if one is None else ' of ' + one} repeat an earlier "
            f"pair, either way round, and are counted once: {shown}{' ...' if len(self.lines) > 5 else ''}",
            err=True,
        )
