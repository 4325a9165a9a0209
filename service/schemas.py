"""Request and response models of the HTTP API. The request models are where a request's text
is checked, once; routes hand what they hold to the library as its own records.

Every list and string a request may carry has a bound (the constants below), JSON types are
strict (``true`` is not a ``k``) and ids are printable, so the largest body the guard lets through
validates in milliseconds; limits that depend on the settings are checked by the dependencies,
except the batch cap, checked here before any thread is validated."""

from __future__ import annotations

import json
import math
from contextvars import ContextVar
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from qa_search import Answer, Thread

from .tokens import MAX_GROUP_CHARS, MAX_GROUPS


def _storable(text: str) -> str:
    # JSON's "\ud83d" escapes decode to lone surrogates (half an emoji, cut by a client), which
    # no UTF-8 response, log line or index file can hold
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("holds a lone surrogate (an invalid \\u escape), not text") from None
    return text


#: Text a request carries: any string that UTF-8 can store.
Text = Annotated[StrictStr, AfterValidator(_storable)]

#: Bounds on what one request may carry, well above what a forum post needs; the body limit
#: (QA_SEARCH_MAX_BODY_BYTES) bounds the whole anyway: these stop a list from costing one
#: validation error per item and one field from taking the whole body.
MAX_ID_CHARS = 512
MAX_TITLE_CHARS = 2000
MAX_TEXT_CHARS = 200_000  # a thread's or an answer's body
MAX_QUERY_CHARS = 20_000  # a ceiling; QA_SEARCH_MAX_QUERY_CHARS (at most this) is the real bound
MAX_DRAFT_BODY_CHARS = 20_000  # a duplicate check's draft body (read up to QA_SEARCH_MAX_QUERY_CHARS)
MAX_ANSWERS = 1000
MAX_TAGS = 100
MAX_NAME_CHARS = 200  # a tag or a category
MAX_URL_CHARS = 2048
MAX_DATE_CHARS = 64
MAX_EXTRA_FIELDS = 64
#: The deepest page a search may ask for (``offset``): a page is a slice of a ranking computed
#: down to it, so the depth bounds a request's work.
MAX_OFFSET = 1000
#: Most categories one search may name.
MAX_CATEGORIES = 50
#: Longest recency half-life, in days (a century).
MAX_HALF_LIFE_DAYS = 36_500
#: The most threads a batch may hold whatever QA_SEARCH_MAX_BATCH_THREADS says.
MAX_BATCH_CEILING = 10_000
#: The most answers one batch may hold, all threads together: validating one costs a few
#: microseconds on the event loop, and a 1 MB body could otherwise carry 75,000 of them.
MAX_BATCH_ANSWERS = 5000

#: QA_SEARCH_MAX_BATCH_THREADS for the request being validated: the guard sets it from the
#: settings before the app reads the body, so a batch over it is refused on its length alone.
BATCH_LIMIT: ContextVar[int] = ContextVar("batch_limit", default=500)


def _printable_id(value: str | int) -> str | int:
    # an id names a thread in URLs, logs and deletions: a newline or a bidi override in one
    # makes a thread that cannot be deleted over HTTP or that shows as another id
    if isinstance(value, str) and not value.isprintable():
        raise PydanticCustomError("id_not_printable", "must hold printable characters only: no control, "
                                  "format or line-separator characters (such as a newline or a tab)")
    return value


def _within_batch_limit(value: Any) -> Any:
    # counted on the parsed JSON, before any item is validated
    if not isinstance(value, list):
        return value
    limit = BATCH_LIMIT.get()
    if len(value) > limit:
        raise PydanticCustomError(BATCH_TOO_BIG, "at most {limit} threads per request: split the batch",
                                  {"limit": limit})
    answers = sum(len(t["answers"]) for t in value
                  if isinstance(t, dict) and isinstance(t.get("answers"), list))
    if answers > MAX_BATCH_ANSWERS:
        raise PydanticCustomError(BATCH_TOO_BIG, "at most {limit} answers per request, all threads together: "
                                  "split the batch", {"limit": MAX_BATCH_ANSWERS})
    return value


#: The error type of a batch over QA_SEARCH_MAX_BATCH_THREADS or MAX_BATCH_ANSWERS (a 413).
BATCH_TOO_BIG = "batch_too_big"
#: A tag or a category.
Name = Annotated[Text, Field(max_length=MAX_NAME_CHARS)]


def iso_moment(text: str) -> str:
    """``text`` if it is an ISO 8601 date or date and time; ``ValueError`` (without the text)
    otherwise. The library reads the same forms (a "Z" suffix included; naive is UTC)."""
    try:
        datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    except ValueError:
        raise ValueError("must be an ISO 8601 date or date and time, such as 2025-03-02 or "
                         "2025-03-02T10:00:00Z") from None
    return text


#: A moment a search's date range starts or ends at.
Moment = Annotated[Text, Field(max_length=MAX_DATE_CHARS, examples=["2025-03-02T10:00:00Z"]),
                   AfterValidator(iso_moment)]


def _group_name(name: str) -> str:
    # refused rather than trimmed: a padded name would silently hide the thread from its group
    if not name.strip():
        raise ValueError("a group name must not be empty")
    if name != name.strip():
        raise ValueError("a group name must not start or end with spaces (groups are matched exactly)")
    return name


#: A group name, as the forum's search tokens name groups.
GroupName = Annotated[Text, Field(max_length=MAX_GROUP_CHARS), AfterValidator(_group_name)]


class HighlightsOut(BaseModel):
    """[start, end) offsets of the query's terms (stemmed matches included), in characters
    (Unicode code points: in JavaScript, index ``Array.from(text)``), sorted."""

    model_config = ConfigDict(from_attributes=True)  # built from the library's Highlights
    title: list[tuple[int, int]] = Field(examples=[[[7, 17]]])
    snippet: list[tuple[int, int]] = Field(examples=[[[0, 10]]])


class Hit(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from the library's SearchHit
    thread_id: str = Field(examples=["t042"])
    score: float = Field(description="Thread score, cosine-based; higher is more similar.", examples=[0.71])
    title: str = Field(examples=["How do therapists deal with their own mistakes?"])
    matched: Literal["question", "answer"] = Field(description="Which part of the thread matched best.")
    answer_id: str | None = Field(None, description="The matching answer, when matched is 'answer'.")
    snippet: str = Field(description="The start of the matching text.")
    url: str | None = None
    answered: bool = Field(False, description="Whether the thread has at least one answer.")
    relevance: float | None = Field(
        None, examples=[0.93], description="Probability (0-1) that the thread answers the query; null "
        "where the index's model has no relevance model.")
    highlights: HighlightsOut | None = Field(
        None, description="Where the title and snippet hold the query's terms; present only when asked for.")

    @model_serializer(mode="wrap")
    def _highlights_when_asked(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a search that did not ask for highlights answers as it did before they existed
        out = handler(self)
        if out.get("highlights", 0) is None:
            del out["highlights"]
        return out


MIN_RELEVANCE = ("Drop hits less likely than this to answer the query (0: keep all) [default: "
                 "QA_SEARCH_MIN_RELEVANCE, else the cut fitted with the index's model].")


TYPING = ("The text is being typed (a typeahead): a last word not followed by a space or punctuation that "
          "the forum does not know is left out, as an unfinished word, so the hits do not blink while it is "
          "typed. Leave it off for a complete query.")


class SearchRequest(BaseModel):
    """A typeahead search in a request body, which keeps the user's text out of URLs (and so out
    of the access logs of any proxy in front)."""

    model_config = ConfigDict(extra="forbid")
    q: Text = Field(examples=["my therapist made a mistake"], max_length=MAX_QUERY_CHARS,
                    description="The text typed so far (at most QA_SEARCH_MAX_QUERY_CHARS characters).")
    k: StrictInt | None = Field(None, ge=1, description="Threads to return [default: 10].")
    tags: list[Name] | None = Field(None, max_length=MAX_TAGS,
                                    description="Keep threads with any of these tags.")
    category: Name | Annotated[list[Name], Field(max_length=MAX_CATEGORIES)] | None = Field(
        None, description=f"Keep threads of this category, or of any of these (at most {MAX_CATEGORIES}).")
    offset: StrictInt = Field(0, ge=0, le=MAX_OFFSET,
                              description=f"Threads of the ranking to skip: a page (at most {MAX_OFFSET}).")
    created_after: Moment | None = Field(
        None, description="Keep threads created at or after this ISO 8601 date or time (naive: UTC).")
    created_before: Moment | None = Field(
        None, description="Keep threads created before this ISO 8601 date or time (naive: UTC).")
    exclude_closed: StrictBool = Field(False, description="Leave out threads the forum closed.")
    recency_half_life_days: StrictFloat | None = Field(
        None, gt=0, le=MAX_HALF_LIFE_DAYS,
        description="Boost recent threads: at most 0.05 added to a new thread's score, halved every "
                    "this many days of age [default: no boost].")
    highlight: StrictBool = Field(False, description="Return each hit's highlights.")
    min_relevance: StrictFloat | None = Field(None, ge=0, le=1, description=MIN_RELEVANCE)
    typing: StrictBool = Field(False, description=TYPING)


class SearchResponse(BaseModel):
    hits: list[Hit]
    next_offset: int | None = Field(
        None, description="The offset of the next page, or null when this page is the last: no thread "
                          "follows, or the next is below min_relevance, or it would start past "
                          f"{MAX_OFFSET}.")


class Duplicate(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from the library's DuplicateHit
    thread_id: str = Field(examples=["t042"])
    score: float = Field(description="Cosine of the two questions.", examples=[0.86])
    title: str = Field(examples=["How do therapists deal with their own mistakes?"])
    url: str | None = None
    probability: float | None = Field(
        None, description="Probability of a duplicate: the reranker's where the index has one attached, or "
        "the blend its calibration chose with that reranker, else the calibrated scorer's; null while the "
        "index is uncalibrated."
    )
    tier: Literal["duplicate", "related"] | None = Field(
        None, description="'duplicate' or 'related'; null while the index is uncalibrated."
    )


class DuplicatesResponse(BaseModel):
    duplicates: list[Duplicate]
    scorer: Literal["combined", "reranker", "calibrated", "cosine"] = Field(
        "calibrated", description="What gave the verdicts: the calibrated scorer and the index's "
        "cross-encoder reranker together (rescoring the 20 best candidates; chosen when the index was "
        "calibrated with the reranker attached), the reranker, the calibrated scorer, or raw cosines "
        "(uncalibrated)."
    )


#: What ``threshold`` means, for the GET and POST forms alike.
THRESHOLD = ("Lowest question cosine [default: the index's duplicate_threshold, or its tiers once it "
             "is calibrated].")


class DraftQuestion(BaseModel):
    """A question being written: its title and (optionally) its body so far."""

    model_config = ConfigDict(extra="forbid")
    title: Text = Field(min_length=1, max_length=MAX_QUERY_CHARS,
                        examples=["How do therapists handle their mistakes?"],
                        description="At most QA_SEARCH_MAX_QUERY_CHARS characters.")
    body: Text = Field("", max_length=MAX_DRAFT_BODY_CHARS,
                       examples=["My counsellor forgot what I told her last week."],
                       description="Read up to QA_SEARCH_MAX_QUERY_CHARS characters of title and body.")
    k: StrictInt = Field(5, ge=1, description="Most duplicates to return (at most QA_SEARCH_MAX_K).")
    threshold: StrictFloat | None = Field(None, ge=-1, le=1, description=THRESHOLD)

    def text(self, limit: int) -> str:
        """The draft as the index reads a thread's question (title, then body), cut at ``limit``
        characters (the model reads less than a long draft anyway)."""
        return Thread("draft", self.title, self.body).question_text[:limit]


_STRICT_ID = Annotated[
    Annotated[StrictStr, Field(pattern=r"\S", max_length=MAX_ID_CHARS)] | StrictInt,
    AfterValidator(_printable_id), Field(examples=["t042"]),
]


class AnswerIn(BaseModel):
    """An answer in the dump format; other fields are ignored, as a dump's are."""

    model_config = ConfigDict(extra="ignore")
    id: _STRICT_ID | None = Field(None, description="Default: '<thread id>#<n>'.")
    body: Text = Field(min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"\S",
                       examples=["Therapists are people too..."])
    score: StrictInt = Field(0, ge=-(2**53), le=2**53)
    accepted: StrictBool = False

    def to_answer(self, thread_id: str, n: int) -> Answer:
        """The answer, ``n``-th (from 1) of thread ``thread_id``, which names it when it has no id."""
        return Answer(str(self.id) if self.id is not None else f"{thread_id}#{n}", self.body, self.score,
                      self.accepted)


class ThreadIn(BaseModel):
    """A thread in the dump format (see the README): the same fields, checked the same way, and
    other fields kept with the thread."""

    model_config = ConfigDict(extra="allow")
    id: _STRICT_ID
    title: Text = Field(min_length=1, max_length=MAX_TITLE_CHARS, pattern=r"\S",
                        examples=["How do therapists deal with their own mistakes?"])
    body: Text = Field("", max_length=MAX_TEXT_CHARS,
                       examples=["My counsellor forgot what I told her last week."])
    answers: list[AnswerIn] = Field([], max_length=MAX_ANSWERS)
    tags: list[Name] = Field([], max_length=MAX_TAGS, examples=[["therapy"]])
    category: Name | None = Field(None, examples=["therapy"])
    created_at: Text | None = Field(None, max_length=MAX_DATE_CHARS, examples=["2025-03-02T10:00:00Z"])
    score: StrictInt = Field(0, ge=-(2**53), le=2**53)
    url: Text | None = Field(None, max_length=MAX_URL_CHARS, examples=["https://forum.example.org/t/t042"])
    visible_to: list[GroupName] | None = Field(
        None, max_length=MAX_GROUPS, examples=[["grief-group"]],
        description=f"The groups that may see the thread (at most {MAX_GROUPS} names of at most "
                    f"{MAX_GROUP_CHARS} characters); absent or empty: everyone may.")

    @model_validator(mode="before")
    @classmethod
    def _few_fields(cls, value: Any) -> Any:
        # other fields are kept as they come, so their number is bounded here, before validation
        if isinstance(value, dict) and len(value) > MAX_EXTRA_FIELDS + len(cls.model_fields):
            raise PydanticCustomError("too_many_fields", "a thread may have at most {n} fields of its own "
                                      "beside the dump format's", {"n": MAX_EXTRA_FIELDS})
        return value

    def to_thread(self) -> Thread:
        """The thread as the library's record; other fields are kept in ``extra``. An answer
        without an id is named after the thread's id as stored (trimmed text), as in a dump."""
        thread_id = str(self.id).strip()
        return Thread(
            id=thread_id, title=self.title, body=self.body,
            answers=tuple(a.to_answer(thread_id, n) for n, a in enumerate(self.answers, 1)),
            tags=tuple(self.tags), category=self.category, created_at=self.created_at, score=self.score,
            url=self.url, visible_to=tuple(dict.fromkeys(self.visible_to or ())),
            extra=dict(self.model_extra or {}),
        )


class UpsertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threads: Annotated[list[ThreadIn], BeforeValidator(_within_batch_limit)] = Field(
        min_length=1, max_length=MAX_BATCH_CEILING,
        description="Threads to add or replace, whole (at most QA_SEARCH_MAX_BATCH_THREADS).")


class _Written(Protocol):
    """What the library's writes return: the entry they logged."""

    @property
    def seq(self) -> int: ...
    @property
    def threads(self) -> tuple[Thread, ...]: ...
    @property
    def ids(self) -> tuple[str, ...]: ...
    @property
    def generation(self) -> int | None: ...


class WriteResponse(BaseModel):
    seq: int = Field(description="Position of this write in the durable write log.")
    threads: int = Field(description="Threads written or deleted.")
    generation: int | None = Field(description="Snapshot generation the write was applied on top of.")

    @classmethod
    def of(cls, entry: _Written) -> WriteResponse:
        """The response to a write that logged ``entry`` (a thread sent twice counts once)."""
        written = {t.id for t in entry.threads} | set(entry.ids)
        return cls(seq=entry.seq, threads=len(written), generation=entry.generation)


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    generation: int | None
    threads: int


class Problem(BaseModel):
    detail: str = Field(description="What was wrong and how to fix it.")


#: A character as wide as JSON writes one: outside the BMP, escaped (Python's ``json.dumps``
#: default) as a surrogate pair, ``\ud83d\ude22``: 12 bytes.
_WIDEST = "\U0001f622"
#: Among the longest floats a JSON encoder writes (23 characters).
_LONGEST_FLOAT = 2.2250738585072014e-308
#: Room left above the largest read request, for a client's whitespace and number formatting.
READ_BODY_MARGIN = 1.1


def largest_read_requests(max_query_chars: int, max_k: int) -> dict[str, dict[str, Any]]:
    """The largest valid ``POST /v1/search`` and ``POST /v1/duplicates`` bodies, by path: every
    field present, every list and string at its bound, every character of every string an emoji
    (JSON's widest), ``k`` at QA_SEARCH_MAX_K. Their lengths bound what a read route must accept."""
    chars = min(max_query_chars, MAX_QUERY_CHARS)
    name, moment = _WIDEST * MAX_NAME_CHARS, _WIDEST * MAX_DATE_CHARS
    search = {"q": _WIDEST * chars, "k": max_k, "tags": [name] * MAX_TAGS,
              "category": [name] * MAX_CATEGORIES, "offset": MAX_OFFSET, "created_after": moment,
              "created_before": moment, "exclude_closed": False, "recency_half_life_days": _LONGEST_FLOAT,
              "highlight": False, "min_relevance": _LONGEST_FLOAT, "typing": False}
    draft = {"title": _WIDEST * chars, "body": _WIDEST * MAX_DRAFT_BODY_CHARS, "k": max_k,
             "threshold": _LONGEST_FLOAT}
    return {"/v1/search": search, "/v1/duplicates": draft}


def read_body_limit(max_query_chars: int, max_k: int) -> int:
    """Largest body, in bytes, a read route (search, duplicates) needs: the longer of
    :func:`largest_read_requests` as ``json.dumps`` writes them, with READ_BODY_MARGIN to spare."""
    longest = max(len(json.dumps(body)) for body in largest_read_requests(max_query_chars, max_k).values())
    return math.ceil(longest * READ_BODY_MARGIN)
