"""Signed webhooks: the HMAC-SHA256 a forum puts on each event's raw body, checked before the
body is parsed (a body nobody signed is never read as JSON), in constant time."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from fastapi import HTTPException
from pydantic import SecretStr

_PREFIX = "sha256="


def check_signature(secret: SecretStr | None, body: bytes, header: str | None, *, header_name: str,
                    setting: str) -> None:
    """Raise the HTTP error for a body whose ``header`` (``sha256=<hex HMAC-SHA256 of body>``) is
    missing or not made with ``secret``: 401; 503 when no secret is configured (a forum retries
    a 503, so events sent before the operator sets it are delivered once they have)."""
    if secret is None:
        raise HTTPException(503, f"this webhook is not configured: set {setting} on the service to the "
                                 "secret the forum signs its events with")
    if not header:
        raise HTTPException(401, f"unsigned event: the {header_name} header is missing")
    given = header.strip()
    if not given.lower().startswith(_PREFIX):
        raise HTTPException(401, f"the {header_name} header must be sha256=<hex HMAC-SHA256 of the body>")
    expected = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    # both sides ASCII of the same length when right; compare_digest takes any two byte strings
    if not hmac.compare_digest(given[len(_PREFIX):].lower().encode("latin-1", "replace"), expected.encode()):
        raise HTTPException(401, f"wrong signature in {header_name}: the body was not signed with this "
                                 f"service's {setting}")


def json_object(body: bytes) -> dict[str, Any]:
    """A signed body as a JSON object (422 otherwise, naming no text of it)."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise HTTPException(422, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise HTTPException(422, "the body must be a JSON object")
    return value
