"""``qa-search build``: dumps in, a published snapshot generation out."""

from __future__ import annotations

import functools
import time

import click

from ..embedding import BACKENDS, load_embedder
from ..index import ForumIndex, IndexConfig
from ..threads import read_dumps
from ._common import advance, echo_json, library_errors, progress_bar


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
    help="sentence-transformers model name or local directory [default: all-MiniLM-L6-v2].",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="Encoder runtime: auto picks ONNX where the export matches torch.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@library_errors
def build(
    dumps: tuple[str, ...], index_dir: str, model: str | None, backend: str, quiet: bool, as_json: bool
) -> None:
    """Build an index from JSONL dumps (.jsonl or .jsonl.gz) and publish it."""
    started = time.perf_counter()
    threads = list(read_dumps(dumps))
    if not threads:
        raise click.ClickException(f"no threads in {', '.join(dumps)}: nothing to index")
    index = ForumIndex(load_embedder(model, backend=backend), IndexConfig())
    with progress_bar("embedding", quiet) as bar:
        stats = index.upsert(threads, progress=functools.partial(advance, bar))
    path = index.save(index_dir)
    counts = index.counts
    summary = {
        "threads": counts["threads"],
        "vectors": counts["question_vectors"] + counts["answer_vectors"],
        "embedded": stats.embedded,
        "reused": stats.reused,
        "seconds": round(time.perf_counter() - started, 3),
        "generation": int(path.name),
        "snapshot": str(path),
    }
    if as_json:
        echo_json(summary)
    else:
        click.echo(
            f"indexed {summary['threads']} threads ({summary['vectors']} vectors) in "
            f"{summary['seconds']:.1f} s; published generation {summary['generation']} at {path}"
        )
