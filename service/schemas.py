"""Response models of the HTTP API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Hit(BaseModel):
    thread_id: str = Field(examples=["t042"])
    score: float = Field(description="Thread score, cosine-based; higher is more similar.", examples=[0.71])
    title: str = Field(examples=["How do therapists deal with their own mistakes?"])
    matched: Literal["question", "answer"] = Field(description="Which part of the thread matched best.")
    answer_id: str | None = Field(None, description="The matching answer, when matched is 'answer'.")
    snippet: str = Field(description="The start of the matching text.")
    url: str | None = None


class SearchResponse(BaseModel):
    hits: list[Hit]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
