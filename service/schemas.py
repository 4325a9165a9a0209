"""Request and response models of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class Hit(BaseModel):
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
    q: str = Field(examples=["my therapist made a mistake"], description="The text typed so far.")
    k: int | None = Field(None, ge=1, description="Threads to return [default: 10].")
    tags: list[str] | None = Field(None, description="Keep threads with any of these tags.")
    category: str | None = Field(None, description="Keep threads of this category.")


class SearchResponse(BaseModel):
    hits: list[Hit]


class Duplicate(BaseModel):
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


class DraftQuestion(BaseModel):
    """A question being written: its title and (optionally) its body so far."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, examples=["How do therapists handle their mistakes?"],
                       description="At most QA_SEARCH_MAX_QUERY_CHARS characters.")
    body: str = Field("", max_length=20000, examples=["My counsellor forgot what I told her last week."],
                      description="Read up to QA_SEARCH_MAX_QUERY_CHARS characters of title and body.")
    k: int = Field(5, ge=1, description="Most duplicates to return (at most QA_SEARCH_MAX_K).")


_STRICT_ID = Annotated[StrictStr | StrictInt, Field(examples=["t042"])]


class AnswerIn(BaseModel):
    """An answer in the dump format; other fields are ignored, as a dump's are."""

    model_config = ConfigDict(extra="ignore")
    id: _STRICT_ID | None = Field(None, description="Default: '<thread id>#<n>'.")
    body: str = Field(min_length=1, pattern=r"\S", examples=["Therapists are people too..."])
    score: StrictInt = Field(0, ge=-(2**53), le=2**53)
    accepted: StrictBool = False


class ThreadIn(BaseModel):
    """A thread in the dump format (see the README): the same fields, checked the same way, and
    other fields kept with the thread."""

    model_config = ConfigDict(extra="allow")
    id: _STRICT_ID
    title: str = Field(min_length=1, pattern=r"\S",
                       examples=["How do therapists deal with their own mistakes?"])
    body: str = Field("", examples=["My counsellor forgot what I told her last week."])
    answers: list[AnswerIn] = []
    tags: list[str] = Field([], examples=[["therapy"]])
    category: str | None = Field(None, examples=["therapy"])
    created_at: str | None = Field(None, examples=["2025-03-02T10:00:00Z"])
    score: StrictInt = Field(0, ge=-(2**53), le=2**53)
    url: str | None = Field(None, examples=["https://forum.example.org/t/t042"])


class UpsertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threads: list[ThreadIn] = Field(min_length=1, description="Threads to add or replace, whole.")


class WriteResponse(BaseModel):
    seq: int = Field(description="Position of this write in the durable write log.")
    threads: int = Field(description="Threads written or deleted.")
    generation: int | None = Field(description="Snapshot generation the write was applied on top of.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    generation: int | None
    threads: int


class Problem(BaseModel):
    detail: str = Field(description="What was wrong and how to fix it.")
