"""Webhooks: a forum's own events as live writes, authenticated by the HMAC signature on each
body (not by the API key). Discourse's topic and post events, and a generic form for other
forums (threads in the dump format, or ids to delete)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from qa_search import DiscourseEvents, Thread

from ..deps import LiveDep, SettingsDep, app_object
from ..errors import ERRORS, WRITE_ERRORS, write_errors
from ..schemas import (
    _STRICT_ID,
    MAX_BATCH_CEILING,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_TAGS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    ThreadIn,
    _within_batch_limit,
)
from ..signatures import check_signature, json_object
from .threads import sized_threads

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses={**ERRORS, **WRITE_ERRORS})


class WebhookResult(BaseModel):
    action: Literal["upserted", "deleted", "unchanged", "stale", "ignored"] = Field(
        description="What the event did; a replayed event is 'unchanged', one older than the revision "
                    "of its post or topic already applied is 'stale' (nothing written).")
    thread_id: str | None = None
    reason: str = Field("", description="Why nothing was written, when nothing was.")
    seq: int | None = Field(None, description="Position of the write in the durable write log.")


class GenericEvent(BaseModel):
    """A generic forum event: threads to add or replace (whole, in the dump format), or ids to delete."""

    model_config = ConfigDict(extra="forbid")
    event: Literal["upsert", "delete"]
    threads: Annotated[list[ThreadIn], BeforeValidator(_within_batch_limit)] | None = Field(
        None, min_length=1, max_length=MAX_BATCH_CEILING)
    ids: list[_STRICT_ID] | None = Field(None, min_length=1, max_length=MAX_BATCH_CEILING)

    @model_validator(mode="after")
    def _one_kind(self) -> GenericEvent:
        wanted = "threads" if self.event == "upsert" else "ids"
        if getattr(self, wanted) is None or getattr(self, "ids" if wanted == "threads" else "threads"):
            raise ValueError(f"an '{self.event}' event carries '{wanted}' (and only that list)")
        return self


async def discourse_event(
    request: Request, settings: SettingsDep,
    signature: Annotated[str | None, Header(alias="X-Discourse-Event-Signature")] = None,
) -> dict[str, Any]:
    """The event's body, once its signature is right (checked on the raw bytes, before parsing)."""
    body = await request.body()
    check_signature(settings.discourse_secret, body, signature,
                    header_name="X-Discourse-Event-Signature", setting="QA_SEARCH_DISCOURSE_SECRET")
    return json_object(body)


async def generic_event(
    request: Request, settings: SettingsDep,
    signature: Annotated[str | None, Header(alias="X-QA-Signature")] = None,
) -> GenericEvent:
    body = await request.body()
    check_signature(settings.webhook_secret, body, signature,
                    header_name="X-QA-Signature", setting="QA_SEARCH_WEBHOOK_SECRET")
    try:
        return GenericEvent.model_validate(json_object(body))
    except ValidationError as exc:  # the app's 422 (or 413 for a batch over the cap), text never echoed
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                      for e in exc.errors(include_input=False)]) from None


def _within_bounds(thread: Thread, current: Thread | None) -> None:
    """Refuse (422) what an event would store beyond the bounds ``POST /v1/threads`` sets, as
    the generic webhook does; only the parts the event changes are checked, so a thread a sync
    stored whole still takes its events, and a long topic its replies (a forum's topics may
    pass the 1,000 answers one request may send). Names the field and its bound, never its text."""
    over: list[str] = []
    if len(thread.id) > MAX_ID_CHARS or not thread.id.isprintable():
        over.append(f"the topic's id (at most {MAX_ID_CHARS} printable characters)")
    if (current is None or thread.title != current.title) and len(thread.title) > MAX_TITLE_CHARS:
        over.append(f"the title (at most {MAX_TITLE_CHARS} characters)")
    if (current is None or thread.tags != current.tags) and (
            len(thread.tags) > MAX_TAGS or any(len(t) > MAX_NAME_CHARS for t in thread.tags)):
        over.append(f"the tags (at most {MAX_TAGS}, each of at most {MAX_NAME_CHARS} characters)")
    if len(thread.category or "") > MAX_NAME_CHARS:
        over.append(f"the category (at most {MAX_NAME_CHARS} characters)")
    before = {a.id: a.body for a in current.answers} if current is not None else {}
    texts = [thread.body] if current is None or thread.body != current.body else []
    texts += [a.body for a in thread.answers if before.get(a.id) != a.body]
    if any(len(text) > MAX_TEXT_CHARS for text in texts):
        over.append(f"the post's text (at most {MAX_TEXT_CHARS} characters)")
    if over:
        raise HTTPException(422, f"the event would store {'; '.join(over)} beyond the bounds of "
                                 "POST /v1/threads: nothing was written")


def discourse_events(request: Request, live: LiveDep, settings: SettingsDep) -> DiscourseEvents:
    return app_object(request, "discourse_events",
                      lambda: DiscourseEvents(live, categories=settings.discourse_categories,
                                              check=_within_bounds))


@router.post("/discourse", response_model=WebhookResult, summary="A Discourse topic or post event")
def discourse(
    payload: Annotated[dict[str, Any], Depends(discourse_event)],
    events: Annotated[DiscourseEvents, Depends(discourse_events)],
    event: Annotated[str, Header(alias="X-Discourse-Event")] = "",
) -> WebhookResult:
    with write_errors():  # a topic other writes kept changing is a 503, which Discourse sends again
        outcome = events.apply(event, payload)
    return WebhookResult(action=outcome.action, thread_id=outcome.thread_id, reason=outcome.reason,
                         seq=outcome.seq)


def _threads(settings: SettingsDep, event: Annotated[GenericEvent, Depends(generic_event)]) -> list[Thread]:
    if event.threads is None:
        return []
    if len(event.threads) > settings.max_batch_threads:
        raise HTTPException(413, f"at most {settings.max_batch_threads} threads per request: split the batch")
    return sized_threads(settings, [t.to_thread() for t in event.threads])


class GenericResult(BaseModel):
    seq: int = Field(description="Position of the write in the durable write log.")
    threads: int = Field(description="Threads written or deleted.")


@router.post("/generic", response_model=GenericResult, summary="A signed upsert or delete from any forum")
def generic(
    live: LiveDep,
    event: Annotated[GenericEvent, Depends(generic_event)],
    threads: Annotated[list[Thread], Depends(_threads)],
) -> GenericResult:
    with write_errors():
        if event.event == "upsert":
            entry = live.upsert(threads)
        else:
            entry = live.delete([str(i) for i in event.ids or ()])
    return GenericResult(seq=entry.seq, threads=len({t.id for t in entry.threads} | set(entry.ids)))
