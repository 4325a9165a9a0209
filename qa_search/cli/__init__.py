"""The ``qa-search`` command: one module per group of commands, each thin (parse, call, print)."""

from __future__ import annotations

import click

from qa_search.cli.build import build
from qa_search.cli.dedupe import dedupe
from qa_search.cli.imports import export_pairs, import_command
from qa_search.cli.lifecycle import configure, delete, info, rollback_command, update, verify
from qa_search.cli.quality import calibrate, evaluate
from qa_search.cli.query import duplicates, search
from qa_search.cli.serve import serve
from qa_search.cli.sync import sync
from qa_search.cli.tune import tune_command


@click.group()
@click.version_option(package_name="qa-search")
def main() -> None:
    """Semantic search and duplicate finding for Q&A forum threads."""


for _command in (build, sync, search, duplicates, serve, evaluate, calibrate, tune_command, dedupe):
    main.add_command(_command)
# index lifecycle: updates, generations, verification, importers
for _command in (update, delete, configure, rollback_command, info, verify, import_command, export_pairs):
    main.add_command(_command)
