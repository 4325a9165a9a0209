"""``qa-search serve``: run the HTTP service over an index directory."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import library_errors


@click.command()
@click.argument("index_dir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@library_errors
def serve(index_dir: str, host: str, port: int) -> None:
    """Serve INDEX_DIR over HTTP (see the README for the endpoints)."""
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    from ..index import ForumIndex

    settings = Settings(index_dir=Path(index_dir))
    # load before uvicorn starts, so a bad index is a one-line error rather than a traceback
    app = create_app(settings, index=ForumIndex.load(settings.index_dir))
    click.echo(f"serving {index_dir} on http://{host}:{port}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
