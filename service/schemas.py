"""Request and response models of the HTTP API. The request models are where a request's text
is checked, once; routes hand what they hold to the library as its own records."""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from qa_search import Answer, Thread


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
Text = Annotated[str, AfterValidator(_storable)]


class Hit(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from the library's SearchHit
    thread_id: str = Field(examples=["t042"])
    score: float = Field(description="Thread score, cosine-based; higher is more similar.", examples=[0.71])
    title: str = Field(examples=["How do therapists deal with their own mistakes?"])
    matched: Literal["question", "answer"] = Field(description="Which part of the thread matched best.")
    answer_id: str | None = Field(None, description="The matching answer, when matched is 'answer'.")
    snippet: str = Field(description="The start of the matching text.")
    url: str | None = None


class SearchRequest(BaseModel):
    """A typeahead search in a request body, which keeps the user's text out of URLs (and so out
    of the access logs of any proxy in front)."""

    model_config = ConfigDict(extra="forbid")
    q: Text = Field(examples=["my therapist made a mistake"], description="The text typed so far.")
    k: int | None = Field(None, ge=1, description="Threads to return [default: 10].")
    tags: list[str] | None = Field(None, description="Keep threads with any of these tags.")
    category: str | None = Field(None, description="Keep threads of this category.")


class SearchResponse(BaseModel):
    hits: list[Hit]


class Duplicate(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # built from the library's DuplicateHit
    thread_id: str = Field(examples=["t042"])
    score: float = Field(description="Cosine of the two questions.", examples=[0.86])
    title: str = Field(examples=["How do therapists deal with their own mistakes?"])
    url: str | None = None
    probability: float | None = Field(
        None, description="Calibrated probability of a duplicate; null while the index is uncalibrated."
    )
    tier: Literal["duplicate", "related"] | None = Field(
        None, description="'duplicate' or 'related'; null while the index is uncalibrated."
    )


class DuplicatesResponse(BaseModel):
    duplicates: list[Duplicate]


#: What ``threshold`` means, for the GET and POST forms alike.
THRESHOLD = ("Lowest question cosine [default: the index's duplicate_threshold, or its tiers once it "
             "is calibrated].")


class DraftQuestion(BaseModel):
    """A question being written: its title and (optionally) its body so far."""

    model_config = ConfigDict(extra="forbid")
    title: Text = Field(min_length=1, examples=["How do therapists handle their mistakes?"],
                        description="At most QA_SEARCH_MAX_QUERY_CHARS characters.")
    body: Text = Field("", max_length=20000, examples=["My counsellor forgot what I told her last week."],
                       description="Read up to QA_SEARCH_MAX_QUERY_CHARS characters of title and body.")
    k: int = Field(5, ge=1, description="Most duplicates to return (at most QA_SEARCH_MAX_K).")
    threshold: float | None = Field(None, ge=-1, le=1, description=THRESHOLD)

    def text(self, limit: int) -> str:
        """The draft as the index reads a thread's question (title, then body), cut at ``limit``
        characters (the model reads less than a long draft anyway)."""
        return Thread("draft", self.title, self.body).question_text[:limit]


_STRICT_ID = Annotated[Annotated[StrictStr, Field(pattern=r"\S")] | StrictInt, Field(examples=["t042"])]


class AnswerIn(BaseModel):
    """An answer in the dump format; other fields are ignored, as a dump's are."""

    model_config = ConfigDict(extra="ignore")
    id: _STRICT_ID | None = Field(None, description="Default: '<thread id>#<n>'.")
    body: Text = Field(min_length=1, pattern=r"\S", examples=["Therapists are people too..."])
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
    title: Text = Field(min_length=1, pattern=r"\S",
                        examples=["How do therapists deal with their own mistakes?"])
    body: Text = Field("", examples=["My counsellor forgot what I told her last week."])
    answers: list[AnswerIn] = []
    tags: list[Text] = Field([], examples=[["therapy"]])
    category: Text | None = Field(None, examples=["therapy"])
    created_at: Text | None = Field(None, examples=["2025-03-02T10:00:00Z"])
    score: StrictInt = Field(0, ge=-(2**53), le=2**53)
    url: Text | None = Field(None, examples=["https://forum.example.org/t/t042"])

    def to_thread(self) -> Thread:
        """The thread as the library's record; other fields are kept in ``extra``. An answer
        without an id is named after the thread's id as stored (trimmed text), as in a dump."""
        thread_id = str(self.id).strip()
        return Thread(
            id=thread_id, title=self.title, body=self.body,
            answers=tuple(a.to_answer(thread_id, n) for n, a in enumerate(self.answers, 1)),
            tags=tuple(self.tags), category=self.category, created_at=self.created_at, score=self.score,
            url=self.url, extra=dict(self.model_extra or {}),
        )


class UpsertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threads: list[ThreadIn] = Field(min_length=1, description="Threads to add or replace, whole.")


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
