"""What the browser tests share: Debian's headless Chromium, and an app served on loopback."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from realserver import free_port

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="Debian's chromium and chromium-driver are not installed (`make install` installs them)",
)


def headless_chromium(profile: Path, *, window: str = "1200,900", loopback_only: bool = True,
                      logs: tuple[str, ...] = ("browser",)):  # noqa: ANN201 - a selenium WebDriver
    """Chromium with the flags this closed network needs (no background connections); with
    ``loopback_only`` every host but 127.0.0.1 fails to resolve, so a page that reaches for a CDN
    shows it. ``logs`` names the Chrome logs to keep ("performance" lists every request)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={window}"]
    if loopback_only:
        flags.append("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    for flag in flags:
        opts.add_argument(flag)
    if logs:
        opts.set_capability("goog:loggingPrefs", {name: "ALL" for name in logs})
    return webdriver.Chrome(options=opts, service=Service(DRIVER))


@contextmanager
def served(app) -> Iterator[str]:  # noqa: ANN001 - an ASGI app
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
