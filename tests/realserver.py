"""What the tests of a real server share: a server in a subprocess on a free loopback port, polled
until /readyz answers, called over fresh connections, and stopped (its workers with it)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from email.message import Message
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
S = TypeVar("S", bound="RealServer")


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RealServer:
    """A server process on ``self.port``; a subclass says what it runs (``command``). Its output
    goes to a file, not a pipe: a pipe nobody reads fills up and blocks the server's logging."""

    #: How long it may take to answer /readyz with 200, and how often it is asked meanwhile.
    ready_seconds: float = 60
    ready_every: float = 0.1
    #: How long SIGTERM may take; then SIGKILL, so that no test leaves a server behind.
    stop_seconds: float = 30
    #: Whether a server slower to stop than that fails the test (after it is killed).
    slow_stop_fails: bool = True
    #: In a session of its own, so that stopping it reaches every worker it started.
    own_session: bool = True
    #: Each request's timeout, in seconds.
    timeout: float = 10

    def __init__(self, log_path: Path, env: Mapping[str, str], cwd: Path = ROOT) -> None:
        self.log_path, self.cwd = log_path, cwd
        self.env = {**env, "PYTHONUNBUFFERED": "1"}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self: S) -> S:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd, start_new_session=self.own_session)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_seconds
        while True:
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            assert self.proc is not None and self.proc.poll() is None, (
                "the server exited early: " + self.log_path.read_text()[-3000:])
            assert time.monotonic() < deadline, f"the server did not come up in {self.ready_seconds} s"
            time.sleep(self.ready_every)

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):  # it may be gone already (a test killed it)
            if self.own_session:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=self.stop_seconds)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            if self.slow_stop_fails:
                raise
        finally:
            self._log.close()
            self.proc = None

    def request(self, method: str, path: str, data: bytes | None = None,
                headers: Mapping[str, str] | None = None, timeout: float | None = None,
                ) -> tuple[int, bytes, Message]:
        """(status, raw body, headers) on a fresh connection, so, with several workers, to any of
        them; the body is sent as JSON unless ``headers`` say otherwise."""
        sent = {"Content-Type": "application/json", **(headers or {})}
        req = urllib.request.Request(self.base + path, data=data, headers=sent, method=method)
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout if timeout is None else timeout)
        except urllib.error.HTTPError as err:
            resp = err
        with resp:
            return resp.status, resp.read(), resp.headers


class Serve(RealServer):
    """`qa-search serve DIR --workers N`, this checkout's, with the environment given."""

    def __init__(self, index_dir: Path, log_path: Path, env: Mapping[str, str], workers: int = 2) -> None:
        super().__init__(log_path, env)
        self.index_dir, self.workers = index_dir, workers

    def command(self) -> list[str]:
        return [sys.executable, "-m", "qa_search.cli", "serve", str(self.index_dir), "--port", str(self.port),
                "--workers", str(self.workers)]

    def call(self, method: str, path: str, body: dict | None = None, *, key: str | None = None,
             headers: dict | None = None, **params) -> tuple[int, dict | str, str]:
        """(status, JSON or text, answering worker's pid), on a fresh connection (so any worker);
        ``params`` go in the query string."""
        query = "?" + urllib.parse.urlencode(params, doseq=True) if params else ""
        sent = dict(headers or {})
        if key is not None:
            sent["X-API-Key"] = key
        data = json.dumps(body).encode() if body is not None else None
        status, raw, got = self.request(method, path + query, data, sent)
        text = raw.decode()
        parsed = json.loads(text) if "json" in got.get("Content-Type", "") else text
        return status, parsed, got.get("X-QA-Search-Worker")
