"""What every command shares: error translation, progress bars, JSON output."""

from __future__ import annotations

import functools
import json
import sys

import click

from ..errors import QASearchError


def library_errors(fn):
    """Turn the library's errors (and missing files) into a one-line message and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (QASearchError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def progress_bar(desc: str, quiet: bool, unit: str = "text"):
    """A progress bar on stderr with rate and ETA; silent with ``--quiet``."""
    from tqdm import tqdm

    return tqdm(desc=desc, unit=unit, disable=quiet, file=sys.stderr, dynamic_ncols=True)


def advance(bar, done: int, total: int) -> None:
    """A ``progress(done, total)`` callback that moves ``bar``."""
    bar.total = total
    bar.n = done
    bar.refresh()


def echo_json(obj: object) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))
