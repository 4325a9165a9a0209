"""The ``qa-search`` command: one module per group of commands, each thin (parse, call, print)."""

from __future__ import annotations

import click

from .build import build
from .quality import calibrate, evaluate
from .query import duplicates, search
from .serve import serve


@click.group()
@click.version_option(package_name="qa-search")
def main() -> None:
    """Semantic search and duplicate finding for Q&A forum threads."""


for _command in (build, search, duplicates, serve, evaluate, calibrate):
    main.add_command(_command)
