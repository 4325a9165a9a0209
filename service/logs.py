"""Keeping users' text out of the server's logs: query strings are dropped from request lines."""

from __future__ import annotations

import logging

from .settings import Settings


class DropQueryString(logging.Filter):
    """Strip the query string from the request lines uvicorn logs: queries are users' private
    text. Access-log lines carry the path as their third argument; the lines uvicorn's WebSocket
    protocols log on ``uvicorn.error`` (``'%s - "WebSocket %s" 403'``, when a WebSocket library
    is installed) as their second."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(record.msg, str) and '"WebSocket %s"' in record.msg:
            at = 1
        elif record.name == "uvicorn.access":
            at = 2
        else:  # the server's other lines name no request
            return True
        if isinstance(args, tuple) and len(args) > at:
            path = args[at]
            if isinstance(path, str):
                record.args = (*args[:at], path.split("?", 1)[0], *args[at + 1:])
        return True


def protect_access_log(settings: Settings) -> None:
    """Install :class:`DropQueryString` on uvicorn's loggers unless ``settings.log_queries``
    (once: an app created again, as tests do, does not stack filters)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        for f in list(logger.filters):
            if isinstance(f, DropQueryString):
                logger.removeFilter(f)
        if not settings.log_queries:
            logger.addFilter(DropQueryString())
