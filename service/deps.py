"""Typed dependencies of the routes: the shared state the lifespan made, the write key, and each
request's parameters checked against the settings' limits."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from qa_search import LiveIndex, Thread

from .metrics import Metrics
from .schemas import (
    MAX_CATEGORIES,
    MAX_DATE_CHARS,
    MAX_HALF_LIFE_DAYS,
    MAX_OFFSET,
    MAX_TAGS,
    MIN_RELEVANCE,
    THRESHOLD,
    TYPING,
    DraftQuestion,
    SearchRequest,
    UpsertRequest,
    iso_moment,
)
from .settings import Settings
from .tokens import ANONYMOUS, TokenError, Viewer, read_token

# -- shared state ---------------------------------------------------------------------------


def get_live(request: Request) -> LiveIndex:
    live = getattr(request.app.state, "live", None)
    if live is None:
        raise HTTPException(503, "the index is still loading; retry shortly")
    return live


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def app_object(request: Request, name: str, make: Callable[[], T]) -> T:
    """``request.app.state.<name>``, made by ``make`` on first use (objects that need the
    loaded index, which the lifespan makes after the app exists)."""
    with _MAKING:
        found = getattr(request.app.state, name, None)
        if found is None:
            found = make()
            setattr(request.app.state, name, found)
    return found


_MAKING = threading.Lock()
T = TypeVar("T")

LiveDep = Annotated[LiveIndex, Depends(get_live)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]

# -- the write key --------------------------------------------------------------------------

_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The service's QA_SEARCH_API_KEY.")
_bearer = HTTPBearer(auto_error=False, description="Alternatively: Authorization: Bearer <key>.")


KeyDep = Annotated[str | None, Depends(_key_header)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _check_key(secret: SecretStr, key: str | None, bearer: HTTPAuthorizationCredentials | None,
               name: str) -> None:
    """The key sent (the X-API-Key header, else Authorization: Bearer) against ``secret``, in
    constant time: 401 without one, 403 for another; ``name`` says which key in the message."""
    given = key if key is not None else (bearer.credentials if bearer is not None else None)
    if not given:
        raise HTTPException(401, f"missing {name}: send it in the X-API-Key header "
                            "(or Authorization: Bearer)", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), secret.get_secret_value().encode()):
        raise HTTPException(403, f"wrong {name}")


def require_key(settings: SettingsDep, key: KeyDep, bearer: BearerDep) -> None:
    """Writes need the configured key."""
    if settings.api_key is None:
        raise HTTPException(403, "writes are disabled: set QA_SEARCH_API_KEY on the service to enable them")
    _check_key(settings.api_key, key, bearer, "API key")


def require_moderator(settings: SettingsDep, key: KeyDep, bearer: BearerDep) -> None:
    """The moderators' view needs QA_SEARCH_MODERATOR_KEY (the API key while it is unset), sent
    as a header, never in the URL."""
    secret = settings.moderator_key or settings.api_key
    if secret is None:
        raise HTTPException(403, "the moderators' view is disabled: set QA_SEARCH_MODERATOR_KEY "
                                 "(or QA_SEARCH_API_KEY) on the service to enable it")
    _check_key(secret, key, bearer, "moderator key")


def metrics_scrape(settings: SettingsDep, key: KeyDep, bearer: BearerDep) -> bool:
    """Whether a scrape of /metrics gets the query cache's counters: with QA_SEARCH_METRICS_KEY
    set, only a scrape that sends it is answered, with every metric; unset, anyone gets the
    others (the counters would tell a stranger whether a text had been searched before)."""
    if settings.metrics_key is None:
        return False
    _check_key(settings.metrics_key, key, bearer, "metrics key")
    return True


# -- who the reader is ---------------------------------------------------------------------

_token_header = APIKeyHeader(
    name="X-QA-Token", auto_error=False, scheme_name="SearchToken",
    description="A search token the forum signed for the signed-in user; without one, public threads only.",
)
_TOKEN_CHALLENGE = {"WWW-Authenticate": "X-QA-Token"}


def get_viewer(settings: SettingsDep, token: Annotated[str | None, Depends(_token_header)]) -> Viewer:
    """Who a read is for: the groups its search token vouches for, or public threads only without
    one. A token that cannot be trusted is a 401 saying why (never a fall back to public: the
    caller should learn that its token is stale rather than see fewer threads)."""
    if not token:
        if settings.require_token:
            raise HTTPException(401, "a search token is required: send the one the forum signed in the "
                                "X-QA-Token header", headers=_TOKEN_CHALLENGE)
        return ANONYMOUS
    if settings.token_secret is None:
        raise HTTPException(401, "search tokens are not configured", headers=_TOKEN_CHALLENGE)
    try:
        return read_token(token, settings.token_secret.get_secret_value())
    except TokenError as exc:  # the reason alone: the message never holds the token
        raise HTTPException(401, str(exc), headers=_TOKEN_CHALLENGE) from None


ViewerDep = Annotated[Viewer, Depends(get_viewer)]

# -- requests within the settings' limits ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A search to run: ``k`` within QA_SEARCH_MAX_K; empty filters filter nothing."""

    text: str
    k: int
    tags: list[str] | None
    category: str | list[str] | None
    offset: int = 0
    created_after: str | None = None
    created_before: str | None = None
    exclude_closed: bool = False
    recency_half_life_days: float | None = None
    highlight: bool = False
    #: The relevance cut, the service's default put in where the request named none; None: the
    #: index's own (see :meth:`LiveIndex.search_page`).
    min_relevance: float | None = None
    typing: bool = False

    def options(self) -> dict:
        """The library's keyword arguments for this search, but ``groups``."""
        return {"offset": self.offset, "tags": self.tags, "category": self.category,
                "created_after": self.created_after, "created_before": self.created_before,
                "exclude_closed": self.exclude_closed, "recency_half_life_days": self.recency_half_life_days,
                "highlight": self.highlight, "min_relevance": self.min_relevance, "typing": self.typing}


@dataclass(frozen=True, slots=True)
class DuplicatesQuery:
    """A question to find duplicates of: ``k`` within QA_SEARCH_MAX_K."""

    text: str
    k: int
    threshold: float | None


def _text(settings: Settings, text: str, what: str) -> str:
    if len(text) > settings.max_query_chars:
        raise HTTPException(422, f"{what} must be at most {settings.max_query_chars} characters")
    return text


def _k(settings: Settings, k: int | None, default: int) -> int:
    if k is None:
        return min(default, settings.max_k)
    if k > settings.max_k:
        raise HTTPException(422, f"k must be at most {settings.max_k}")
    return k


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _date_range(after: str | None, before: str | None) -> tuple[str | None, str | None]:
    """The range's ends, each an ISO 8601 date or time (a 422 without the value otherwise),
    the first earlier than the second."""
    for value, what in ((after, "created_after"), (before, "created_before")):
        if value is not None:
            try:
                iso_moment(value)
            except ValueError as exc:
                raise HTTPException(422, f"{what} {exc}") from None
    if after is not None and before is not None and _aware(after) >= _aware(before):
        raise HTTPException(422, "created_after must be earlier than created_before")
    return after, before


def _min_relevance(settings: Settings, asked: float | None) -> float | None:
    """The request's cut, else the settings' (None: the index's own, which the search reads from
    the generation it runs on)."""
    return asked if asked is not None else settings.min_relevance


def search_in_query(
    settings: SettingsDep,
    q: Annotated[str, Query(description="The text typed so far.", examples=["my therapist made a mistake"])],
    k: Annotated[int | None, Query(ge=1, description="Threads to return [default: 10].")] = None,
    tags: Annotated[list[str] | None, Query(
        max_length=MAX_TAGS,
        description="Keep threads with any of these tags (an empty value is ignored).")] = None,
    category: Annotated[list[str] | None, Query(
        max_length=MAX_CATEGORIES,
        description="Keep threads of this category; repeated: of any of these (empty: no filter).")] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Threads of the ranking to skip.")] = 0,
    created_after: Annotated[str | None, Query(
        max_length=MAX_DATE_CHARS, description="Keep threads created at or after this ISO 8601 date or time.",
    )] = None,
    created_before: Annotated[str | None, Query(
        max_length=MAX_DATE_CHARS, description="Keep threads created before this ISO 8601 date or time.",
    )] = None,
    exclude_closed: Annotated[bool, Query(description="Leave out threads the forum closed.")] = False,
    recency_half_life_days: Annotated[float | None, Query(
        gt=0, le=MAX_HALF_LIFE_DAYS, description="Boost recent threads, halving every this many days.",
    )] = None,
    highlight: Annotated[bool, Query(description="Return each hit's highlights.")] = False,
    min_relevance: Annotated[float | None, Query(ge=0, le=1, description=MIN_RELEVANCE)] = None,
    typing: Annotated[bool, Query(description=TYPING)] = False,
) -> SearchQuery:
    after, before = _date_range(created_after, created_before)
    return SearchQuery(_text(settings, q, "q"), _k(settings, k, 10), tags, category, offset, after, before,
                       exclude_closed, recency_half_life_days, highlight,
                       _min_relevance(settings, min_relevance), typing)


def search_in_body(settings: SettingsDep, request: SearchRequest) -> SearchQuery:
    after, before = _date_range(request.created_after, request.created_before)
    return SearchQuery(_text(settings, request.q, "q"), _k(settings, request.k, 10), request.tags,
                       request.category, request.offset, after, before, request.exclude_closed,
                       request.recency_half_life_days, request.highlight,
                       _min_relevance(settings, request.min_relevance), request.typing)


def duplicates_in_query(
    settings: SettingsDep,
    q: Annotated[str, Query(description="The question (title, then body).",
                            examples=["How do therapists deal with their mistakes?"])],
    k: Annotated[int | None, Query(ge=1, description="Most duplicates to return [default: 5].")] = None,
    threshold: Annotated[float | None, Query(ge=-1, le=1, description=THRESHOLD)] = None,
) -> DuplicatesQuery:
    return DuplicatesQuery(_text(settings, q, "q"), _k(settings, k, 5), threshold)


def duplicates_of_draft(settings: SettingsDep, draft: DraftQuestion) -> DuplicatesQuery:
    _text(settings, draft.title, "title")
    # a long draft is read up to QA_SEARCH_MAX_QUERY_CHARS characters, not refused
    return DuplicatesQuery(draft.text(settings.max_query_chars), _k(settings, draft.k, 5), draft.threshold)


def threads_to_write(settings: SettingsDep, request: UpsertRequest) -> list[Thread]:
    if len(request.threads) > settings.max_batch_threads:
        raise HTTPException(413, f"at most {settings.max_batch_threads} threads per request: split the batch")
    return [t.to_thread() for t in request.threads]


SearchInQuery = Annotated[SearchQuery, Depends(search_in_query)]
SearchInBody = Annotated[SearchQuery, Depends(search_in_body)]
DuplicatesInQuery = Annotated[DuplicatesQuery, Depends(duplicates_in_query)]
DraftDuplicates = Annotated[DuplicatesQuery, Depends(duplicates_of_draft)]
ThreadsToWrite = Annotated[list[Thread], Depends(threads_to_write)]
