"""Service settings, read from the environment (prefix ``QA_SEARCH_``) or passed in directly.

Only the service reads the environment; the library takes typed objects.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from limits import parse_many
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_SEARCH_", extra="ignore")

    #: Index directory (or snapshot) to serve.
    index_dir: Path = Path("indexes/sample/index")
    #: Key that writes (POST/DELETE /v1/threads) must present; writes are refused while unset.
    api_key: SecretStr | None = None
    #: Secret the forum signs search tokens with (HS256, at least 32 characters; see
    #: service/tokens.py). Unset: every caller sees public threads only, and a token is refused.
    token_secret: SecretStr | None = None
    #: Secret of the forum's Discourse webhook (POST /v1/webhooks/discourse checks each event's
    #: HMAC-SHA256 with it); unset: the route answers 503.
    discourse_secret: SecretStr | None = None
    #: Discourse category names by id, as JSON ({"4": "anxiety"}): Discourse's events carry only the
    #: id, which is the thread's category for a category not named here.
    discourse_categories: dict[str, str] = {}
    #: Secret of the generic webhook (POST /v1/webhooks/generic, header X-QA-Signature); unset: 503.
    webhook_secret: SecretStr | None = None
    #: Key of the moderators' view (/moderation, GET /v1/moderation/duplicates); unset: the API key.
    moderator_key: SecretStr | None = None
    #: Key a scrape of /metrics must present (Authorization: Bearer, or X-API-Key). Unset: /metrics
    #: is open but leaves out the query cache's counters, which would tell anyone whether a
    #: text had been searched before.
    metrics_key: SecretStr | None = None
    #: Refuse searches and duplicate checks that carry no search token (X-QA-Token).
    require_token: bool = False
    #: Origins allowed to call the API from a browser (CORS), comma-separated in the environment.
    cors_origins: Annotated[list[str], NoDecode] = []
    #: Largest k a request may ask for.
    max_k: int = Field(50, ge=1, le=1000)
    #: Longest query accepted, in characters.
    max_query_chars: int = Field(2000, ge=1)
    #: Queries shorter than this (after trimming) return no hits without touching the model.
    min_query_chars: int = Field(3, ge=1)
    #: Search hits less likely than this to answer the query are dropped, so off-topic text and
    #: gibberish find nothing; unset: the cut fitted with the index's model (0.5881 for the
    #: packaged one, docs/quality.md "No match"); 0: keep every hit. A request's min_relevance wins.
    min_relevance: float | None = Field(None, ge=0, le=1)
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = Field(1_000_000, ge=1024)
    #: Most threads one upsert may carry.
    max_batch_threads: int = Field(500, ge=1)
    #: Most text one upsert may carry, in characters (titles, bodies and answers together): a
    #: bound on the model's work for one request, checked before anything is embedded.
    max_write_chars: int = Field(2_000_000, ge=1)
    #: Requests to the search and duplicate routes one client may make per worker process, in the
    #: ``limits`` notation ("20/second", "600/minute"); "0" or empty: no limit.
    read_rate: str = "20/second"
    #: Writes one client may send per worker process (wrong keys count too); "0" or empty: no limit.
    write_rate: str = "10/second"
    #: Addresses (or CIDR networks) of reverse proxies whose X-Forwarded-For / X-Forwarded-Proto
    #: are believed, comma-separated; empty: none, the connection's own address is the client.
    trusted_proxies: Annotated[list[str], NoDecode] = []
    #: Seconds a connection has to send a request's line and headers (else 408 and closed).
    header_timeout: float = Field(10.0, gt=0, le=300)
    #: Seconds a request's body may take to arrive once its headers have (else 408).
    body_timeout: float = Field(30.0, gt=0, le=3600)
    #: Seconds an idle kept-alive connection stays open between requests.
    keep_alive_timeout: int = Field(5, ge=1, le=300)
    #: Open connections plus running requests per worker above which new requests get a 503.
    max_connections: int = Field(1000, ge=1)
    #: Query embeddings kept in the LRU cache (0 disables it).
    cache_size: int = Field(4096, ge=0)
    #: CPU threads for the model and FAISS per process (unset: the libraries' defaults).
    threads: int | None = Field(None, ge=1)
    #: Seconds between checks for a newly published generation and for other processes' writes.
    poll_seconds: float = Field(0.5, ge=0.01, le=3600)
    #: Write query text to the logs (off: access logs show the route only). For debugging.
    log_queries: bool = False
    #: File a worker that fails to start appends the reason to, one line (``qa-search serve``
    #: sets it, to exit with that reason and status 1 however many workers it runs).
    startup_errors: Path | None = None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        # a browser sends "https://forum.example.org": no path, no trailing slash, no spaces
        for origin in value:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin like https://forum.example.org (scheme and host, "
                    "optionally a port; no path or trailing slash; separate several with commas)"
                )
        # browsers send scheme and host in lower case, and the match is exact
        return [o.lower() for o in value]

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for proxy in value:
            if proxy == "*":
                continue
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValueError(f"{proxy!r} is not an IP address or network like 10.0.0.0/8 (or '*': "
                                 "any, only where nothing but the proxy can reach the service)") from None
        return value

    @field_validator("read_rate", "write_rate")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        value = value.strip()
        if value in ("", "0"):
            return ""
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate like 20/second or 600/minute "
                             "('0': no limit)") from None
        return value

    @field_validator("api_key", "token_secret", "discourse_secret", "webhook_secret", "moderator_key",
                     "metrics_key", mode="before")
    @classmethod
    def _blank_key_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("token_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # HS256 is only as strong as its secret; a short one can be found from a single token
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters (a random string, such as "
                             "the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return value

    @field_validator("index_dir", mode="before")
    @classmethod
    def _index_dir_given(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty: name the index directory to serve")
        return value

    @model_validator(mode="after")
    def _tokens_checkable(self) -> Settings:
        if self.require_token and self.token_secret is None:
            raise ValueError("require_token is set but token_secret is not: every search would be refused "
                             "(set QA_SEARCH_TOKEN_SECRET, the secret the forum signs tokens with)")
        return self

    @model_validator(mode="after")
    def _query_lengths(self) -> Settings:
        if self.min_query_chars > self.max_query_chars:
            raise ValueError(
                f"min_query_chars ({self.min_query_chars}) is above max_query_chars "
                f"({self.max_query_chars}): every query would find nothing"
            )
        return self


#: Shortest search-token secret accepted: the 32 bytes HS256 asks of a key (RFC 7518, 3.2).
MIN_SECRET_CHARS = 32
_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?", re.IGNORECASE)


def describe_errors(exc: ValidationError) -> str:
    """A settings error as one line per problem, naming the environment variable."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err.get("loc", ())) or "settings"
        name = f"QA_SEARCH_{field.upper()}" if field != "settings" else "QA_SEARCH_* settings"
        lines.append(f"{name}: {err.get('msg', 'invalid')}")
    return "; ".join(lines)
