"""``qa-search serve``: run the HTTP service over an index directory."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from qa_search import check_servable
from qa_search.cli._common import library_errors


@click.command()
@click.argument("index_dir", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes; each loads the index and follows publishes and writes.")
@library_errors
def serve(index_dir: str, host: str, port: int, workers: int) -> None:
    """Serve INDEX_DIR over HTTP (see the README for the endpoints and QA_SEARCH_* settings)."""
    import uvicorn
    from pydantic import ValidationError

    from service.guard import uvicorn_options
    from service.settings import Settings, describe_errors

    # a missing index or an unloadable model is one line here, not a traceback from each worker
    check_servable(index_dir)
    # the workers read their settings from the environment: a bad value is said here, once, in
    # the operator's terms (each worker would otherwise fail with a traceback, and with several
    # workers uvicorn would restart them for ever)
    try:
        settings = Settings(index_dir=Path(index_dir))
    except ValidationError as exc:
        raise click.ClickException(describe_errors(exc)) from None
    # uvicorn would report a port in use (a second `make run`, another server on 8000) as a log
    # line after loading the index, and exit 3
    _check_address(host, port)
    click.echo(f"serving {index_dir} on http://{host}:{port} with {workers} worker(s)", err=True)
    # workers are separate processes that build the app from the environment (service.settings)
    os.environ["QA_SEARCH_INDEX_DIR"] = str(Path(index_dir).resolve())
    # a worker that cannot start writes why to this file (created only then): uvicorn exits 3
    # for one worker but 0 when one of several fails, and either way the reason is buried in a
    # traceback. Not a temporary directory: a SIGTERM'ed uvicorn re-raises the signal on its way
    # out, so no cleanup would run.
    errors = Path(tempfile.gettempdir()) / f"qa-search-serve-{secrets.token_hex(8)}.errors"
    os.environ["QA_SEARCH_STARTUP_ERRORS"] = str(errors)
    try:
        try:
            with _stopped_by_signal():
                uvicorn.run("service.app:create_app", factory=True, host=host, port=port, workers=workers,
                            log_level="info", **uvicorn_options(settings))
        except SystemExit:
            if not _first_line(errors):
                raise
        reason = _first_line(errors)
    finally:
        errors.unlink(missing_ok=True)
    if reason:
        raise click.ClickException(f"the service stopped: a worker could not start: {reason}")


def _check_address(host: str, port: int) -> None:
    """Refuse, in one line, an address the server could not listen on: a port another process
    holds, a host that does not resolve or is not this machine's. Binds as uvicorn does (every
    address the host resolves to, with SO_REUSEADDR) and lets go at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _name, address in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # as asyncio binds it: the IPv4 address is tried on its own
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = (": another process is listening there; stop it, or choose another port "
                    "(--port; PORT= for make run)")
        raise click.ClickException(f"cannot serve on {host}:{port}: {reason}{hint}") from None


class _Stop(Exception):
    pass


def _stop(signum: int, frame: object) -> None:
    raise _Stop


@contextlib.contextmanager
def _stopped_by_signal() -> Iterator[None]:
    """End the block quietly on SIGINT or SIGTERM. uvicorn shuts down on either and then raises it
    again, which would kill this process by the signal (and ``make run`` report "Terminated");
    with this handler in place the stop is an ordinary exit, status 0."""
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Stop:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _first_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    return lines[0].strip() if lines else ""
