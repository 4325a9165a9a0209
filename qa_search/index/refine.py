"""What a forum's search page adds to a similar-thread search: a date range on ``created_at``,
closed threads left out, a recency boost, and where a hit's title and snippet hold the query's
terms (the lexical analyser's stems, so "panicking" marks for "panic")."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import date, datetime, timezone

from qa_search.scoring.analyser import tokenize
from qa_search.threads import Thread

#: The most a recency boost adds to a thread's score (cosine scale): a thread created now gets
#: all of it, one a half-life old half. Small beside the score gaps between a relevant thread
#: and an unrelated one (0.2 and more), so recency reorders near-equals without burying a match.
RECENCY_BOOST = 0.05
#: Longest half-life accepted, in days (a century): longer is no boost at all, in effect.
MAX_HALF_LIFE_DAYS = 36_500.0
#: A word as the lexical analyser (bm25s) cuts text: two or more word characters.
_WORD = re.compile(r"(?u)\b\w\w+\b")


def parse_moment(value: str | datetime | date, what: str) -> datetime:
    """``value`` (ISO 8601: a date, or a date and time; naive means UTC) as an aware datetime;
    ``ValueError`` naming ``what`` (never the value) when it is not one."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        # Python 3.10's fromisoformat takes no "Z"
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{what} must be an ISO 8601 date or date and time, such as 2025-03-02 "
                             "or 2025-03-02T10:00:00Z") from None
    else:
        raise TypeError(f"{what} must be an ISO 8601 string or a datetime, got {type(value).__name__}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def created(thread: Thread) -> datetime | None:
    """When the thread was created, or None where its ``created_at`` is absent or not ISO 8601."""
    if not thread.created_at:
        return None
    try:
        return parse_moment(thread.created_at, "created_at")
    except ValueError:
        return None


def is_closed(thread: Thread) -> bool:
    """Whether the forum closed the thread (a dump's or a sync's ``closed_at``)."""
    return bool(thread.extra.get("closed_at"))


def date_filter(
    after: str | datetime | None, before: str | datetime | None
) -> Callable[[Thread], bool] | None:
    """A predicate keeping threads created in [after, before) (either end open when None), or
    None when both are. A thread with no readable ``created_at`` is outside every range."""
    if after is None and before is None:
        return None
    low = parse_moment(after, "created_after") if after is not None else None
    high = parse_moment(before, "created_before") if before is not None else None
    if low is not None and high is not None and low >= high:
        raise ValueError("created_after must be earlier than created_before")

    def keep(thread: Thread) -> bool:
        moment = created(thread)
        return moment is not None and (low is None or moment >= low) and (high is None or moment < high)

    return keep


def recency_boost(half_life_days: float | None, now: float | None = None) -> Callable[[Thread], float] | None:
    """The score a thread gains for being recent: :data:`RECENCY_BOOST` halved every
    ``half_life_days`` of age (now: ``time.time()``), 0 for a thread with no readable date, all
    of it for one dated in the future. None for no boost (``half_life_days`` None)."""
    if half_life_days is None:
        return None
    if not (isinstance(half_life_days, int | float) and 0 < half_life_days <= MAX_HALF_LIFE_DAYS):
        raise ValueError(f"recency_half_life_days must be a number of days in (0, {MAX_HALF_LIFE_DAYS:g}]")
    now = time.time() if now is None else now
    rate = math.log(2) / (half_life_days * 86400.0)

    def boost(thread: Thread) -> float:
        moment = created(thread)
        if moment is None:
            return 0.0
        return RECENCY_BOOST * math.exp(-rate * max(0.0, now - moment.timestamp()))

    return boost


def query_terms(text: str, language: str) -> frozenset[str]:
    """The query's terms as the lexical index reads them (stems, stop words left out)."""
    return frozenset(tokenize([text], language)[0])


def term_spans(text: str, terms: frozenset[str], language: str) -> tuple[tuple[int, int], ...]:
    """The [start, end) character offsets (Python string indices: code points) of the words of
    ``text`` whose stem is one of ``terms``, in order."""
    if not terms:
        return ()
    words = list(_WORD.finditer(text))
    stems = tokenize([w.group() for w in words], language) if words else []
    return tuple((w.start(), w.end()) for w, stem in zip(words, stems, strict=True)
                 if stem and stem[0] in terms)
