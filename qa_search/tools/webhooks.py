"""Forum events as index writes: Discourse's topic and post webhooks turned into threads.

A Discourse topic is a thread: its first post (``post_number`` 1) is the question's body, the
other regular posts its answers, as the sync's Discourse mapping reads them. A topic event
carries the title, category and tags but not the first post's text, and a post event carries one
post; so each event changes only the parts it carries and keeps the rest from the thread the
index already holds. Private messages, unlisted topics, whispers and hidden or deleted posts are
never indexed: an event that makes a thread one of them removes it (or its answer).

:func:`discourse_change` is the pure part (payload and current thread in, the write out);
:class:`DiscourseEvents` reads the current thread from a :class:`LiveIndex` and writes, on
the condition that no other write to the thread came in between (else it reads again).
An event that would leave the thread as it is writes nothing, so a replayed event is a no-op.

Discourse retries a delivery that failed, so an event can arrive after a newer one about the
same post or topic. Post payloads carry ``version`` (the post's revision, rising with each edit)
and ``updated_at``, topic payloads ``updated_at``; the newest applied is kept with the thread
(``extra["discourse_revisions"]``, written and read back with the rest of it), and an event
older than that is *stale*: it changes nothing. A thread written whole by anything else (a
sync, ``POST /v1/threads``) holds no revisions, so its next events are applied as they come.
An event that carries neither field is applied as it comes too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from qa_search.errors import WriteConflictError
from qa_search.index.live import LiveIndex
from qa_search.threads import Answer, Thread, same_thread
from qa_search.tools.fields import html_to_text

log = logging.getLogger(__name__)

#: The events acted on (``X-Discourse-Event``); any other is acknowledged and ignored.
DISCOURSE_EVENTS = frozenset({
    "topic_created", "topic_edited", "topic_recovered", "topic_destroyed",
    "post_created", "post_edited", "post_recovered", "post_destroyed",
})
#: Discourse's post_type of a regular post (2: moderator action, 3: small action, 4: whisper).
REGULAR_POST = 1
#: The key of a thread's ``extra`` that holds the newest revisions applied:
#: ``{"topic": {"updated_at": ...}, "posts": {post id: {"version": ..., "updated_at": ...}}}``.
REVISIONS = "discourse_revisions"


@dataclass(frozen=True, slots=True)
class WebhookChange:
    """What an event asks of the index: a thread to store, a thread to remove, or nothing."""

    #: The thread the event is about (None when the payload names none).
    thread_id: str | None
    #: The thread as it should be stored, whole.
    upsert: Thread | None = None
    #: Remove the thread.
    delete: bool = False
    #: Why nothing is written, for the response (never the payload's text).
    reason: str = ""
    #: The event is older than the revision the thread holds: nothing is written.
    stale: bool = False


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """What one event did: ``"upserted"``, ``"deleted"``, ``"unchanged"``, ``"stale"`` (older
    than what the index holds for its post or topic) or ``"ignored"``."""

    action: str
    thread_id: str | None
    reason: str = ""
    #: The write log's position of the write, when there was one.
    seq: int | None = None


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value).strip()
    return text or None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _tags(value: Any) -> tuple[str, ...] | None:
    # plain names in most versions; {"id", "name", "slug"} objects in recent ones
    if not isinstance(value, list):
        return None
    names = (t if isinstance(t, str) else t.get("name") if isinstance(t, dict) else None for t in value)
    return tuple(dict.fromkeys(n for n in names if isinstance(n, str) and n.strip()))


def _category(value: Any, categories: Mapping[str, str]) -> str | None:
    key = _id(value)
    return None if key is None else categories.get(key, key)


def _post_text(post: Mapping[str, Any]) -> str:
    cooked = _text(post.get("cooked"))
    return html_to_text(cooked) if cooked.strip() else _text(post.get("raw")).strip()


def _topic_change(event: str, topic: Mapping[str, Any], current: Thread | None,
                  categories: Mapping[str, str]) -> WebhookChange:
    tid = _id(topic.get("id"))
    if tid is None:
        return WebhookChange(None, reason="the topic has no id")
    if event == "topic_destroyed" or topic.get("deleted_at"):
        return WebhookChange(tid, delete=True)
    if topic.get("archetype", "regular") != "regular" or topic.get("visible") is False:
        return WebhookChange(tid, delete=True, reason="a private message or unlisted topic is not indexed")
    title = _text(topic.get("title")).strip()
    if not title:
        return WebhookChange(tid, reason="the topic has no title")
    base = current or Thread(tid, title)
    tags = _tags(topic.get("tags"))
    category = _category(topic.get("category_id"), categories) if "category_id" in topic else base.category
    created = topic.get("created_at")
    return WebhookChange(tid, upsert=replace(
        base, title=title, tags=base.tags if tags is None else tags, category=category,
        created_at=created if isinstance(created, str) and created else base.created_at,
    ))


def _post_change(event: str, post: Mapping[str, Any], current: Thread | None) -> WebhookChange:
    tid, pid = _id(post.get("topic_id")), _id(post.get("id"))
    number = post.get("post_number")
    if tid is None or pid is None or isinstance(number, bool) or not isinstance(number, int):
        return WebhookChange(tid, reason="the post has no topic_id, id or post_number")
    if post.get("topic_archetype", "regular") != "regular":
        return WebhookChange(tid, delete=True, reason="a private message is not indexed")
    gone = (event == "post_destroyed" or bool(post.get("deleted_at")) or post.get("hidden") is True
            or post.get("user_deleted") is True)
    if number == 1:
        if gone:  # Discourse deletes the topic with its first post
            return WebhookChange(tid, delete=True)
        if current is None:
            # the post does not say whether its topic is listed: the topic's own event decides
            return WebhookChange(tid, reason="the topic is not indexed")
        return WebhookChange(tid, upsert=replace(current, body=_post_text(post)))
    if current is None:
        return WebhookChange(tid, reason="the topic is not indexed")
    kept = tuple(a for a in current.answers if a.id != pid)
    if gone or post.get("post_type", REGULAR_POST) != REGULAR_POST:
        return WebhookChange(tid, upsert=replace(current, answers=kept))
    text = _post_text(post)
    if not text:
        return WebhookChange(tid, upsert=replace(current, answers=kept))
    old = next((a for a in current.answers if a.id == pid), None)
    accepted = post.get("accepted_answer")  # the discourse-solved plugin's field
    answer = Answer(pid, text, old.score if old else 0,
                    accepted if isinstance(accepted, bool) else (old.accepted if old else False))
    if old is None:
        return WebhookChange(tid, upsert=replace(current, answers=(*current.answers, answer)))
    return WebhookChange(tid, upsert=replace(
        current, answers=tuple(answer if a.id == pid else a for a in current.answers)))


#: Largest revision number kept (JSON's exact integers): a larger one is read as none given.
_MAX_VERSION = 2**53


def _moment(value: Any) -> datetime | None:
    """An ISO 8601 time in UTC (Discourse's are UTC; one without a zone is read as UTC); None
    for anything else."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        return moment.astimezone(timezone.utc) if moment.tzinfo is not None \
            else moment.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):  # not a time, or one a zone moves out of range
        return None


def _utc(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _version(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_VERSION:
        return None
    return value


def _revision(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The revision an event carries, as kept: a post's ``version`` and ``updated_at``, a
    topic's ``updated_at``, each only where the payload gives a usable one."""
    out: dict[str, Any] = {}
    version = _version(body.get("version"))
    if kind == "post" and version is not None:
        out["version"] = version
    moment = _moment(body.get("updated_at"))
    if moment is not None:
        out["updated_at"] = _utc(moment)
    return out


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _held(thread: Thread, kind: str, key: str) -> dict[str, Any]:
    """The newest revision applied to ``thread``'s topic or post ``key`` ({} when none is)."""
    revisions = _mapping(thread.extra.get(REVISIONS))
    if kind == "topic":
        return _mapping(revisions.get("topic"))
    return _mapping(_mapping(revisions.get("posts")).get(key))


def _older(event: Mapping[str, Any], held: Mapping[str, Any]) -> str:
    """Why the event's revision is older than the one held, or "" when it is not: a lower
    version, or (the versions equal or not both given) an earlier ``updated_at``. Names
    revisions only, never what the payload or thread holds as text."""
    mine, theirs = _version(event.get("version")), _version(held.get("version"))
    if mine is not None and theirs is not None and mine != theirs:
        return f"version {mine} of the post is older than version {theirs}, already applied" \
            if mine < theirs else ""
    when, held_when = _moment(event.get("updated_at")), _moment(held.get("updated_at"))
    if when is not None and held_when is not None and when < held_when:
        return f"updated_at {_utc(when)} is before {_utc(held_when)}, already applied"
    return ""


def _with_revision(thread: Thread, kind: str, key: str, revision: Mapping[str, Any]) -> Thread:
    """``thread`` keeping ``revision`` as the newest applied to its topic or post ``key`` (a
    field the event lacks keeps the one held)."""
    if not revision:
        return thread
    revisions = _mapping(thread.extra.get(REVISIONS))
    if kind == "topic":
        revisions["topic"] = {**_mapping(revisions.get("topic")), **revision}
    else:
        posts = _mapping(revisions.get("posts"))
        posts[key] = {**_mapping(posts.get(key)), **revision}
        revisions["posts"] = posts
    # a new dict: the thread the index holds is never changed in place
    return replace(thread, extra={**thread.extra, REVISIONS: revisions})


def discourse_change(
    event: str, payload: Mapping[str, Any], current: Thread | None,
    categories: Mapping[str, str] | None = None,
) -> WebhookChange:
    """The write one Discourse event asks for. ``event`` is the ``X-Discourse-Event`` header
    (``topic_created``, ``post_edited``...), ``payload`` the parsed body (``{"topic": {...}}``
    or ``{"post": {...}}``), ``current`` the thread the index holds for its topic (None if
    none). ``categories`` names categories by id (Discourse's payloads carry only the id, which
    is the category otherwise). An event older than the revision ``current`` holds for its
    topic or post is ``stale`` and writes nothing; a thread to store keeps the event's revision
    in its ``extra``. Pure: reads nothing, writes nothing."""
    if event not in DISCOURSE_EVENTS:
        return WebhookChange(None, reason="not a topic or post event")
    kind = event.partition("_")[0]
    body = payload.get(kind)
    if not isinstance(body, Mapping):
        return WebhookChange(None, reason=f"the payload has no '{kind}' object")
    if kind == "topic":
        change = _topic_change(event, body, current, categories or {})
    else:
        change = _post_change(event, body, current)
    key = change.thread_id if kind == "topic" else _id(body.get("id"))
    revision = _revision(kind, body)
    if change.thread_id is None or key is None or not revision:
        return change
    if current is not None:
        why = _older(revision, _held(current, kind, key))
        if why:
            return WebhookChange(change.thread_id, reason=why, stale=True)
    if change.upsert is None:
        return change
    return replace(change, upsert=_with_revision(change.upsert, kind, key, revision))


class DiscourseEvents:
    """Applies Discourse events to a :class:`LiveIndex`. Each event reads its thread
    (:meth:`LiveIndex.current`: with every write logged so far, by any worker), merges its part
    and writes the thread whole on the condition that nothing wrote the thread in between (the
    ``expected`` of :meth:`LiveIndex.upsert` and :meth:`LiveIndex.delete`). Where another write
    came first (another worker's event about the same topic, a sync, ``POST /v1/threads``), the
    event is read and merged again on top of it, up to :attr:`attempts` times in all, then
    :class:`WriteConflictError` is raised and nothing is written (the service answers ``503``,
    which Discourse delivers again). So two events about one topic reaching two workers at once
    both keep their part, and an event never undoes a write it did not see. Within one process
    each read, merge and write is one step at a time, so an event meets another of this
    process's writes only between its tries.

    A publish (a sync, an update, a build, a rollback) is such a write too, for the threads it
    changed, until this process has loaded it: the thread read here is then the one before it.
    Such an event waits for the load, up to :attr:`wait_seconds` (a small forum's generation
    loads within that; a large one's, which takes longer, is answered ``503`` at once by the
    events after the first that waited it out, and Discourse delivers them again)."""

    #: How many times one event is read, merged and written before :class:`WriteConflictError`.
    attempts = 5
    #: The longest one event waits, in all, for this process to load a generation published
    #: over the thread it read (:meth:`LiveIndex.wait_loaded`), holding no lock meanwhile.
    wait_seconds = 2.0

    def __init__(self, live: LiveIndex, categories: Mapping[str, str] | None = None,
                 check: Callable[[Thread, Thread | None], None] | None = None) -> None:
        self.live = live
        self.categories = dict(categories or {})
        #: Called with the thread to write and the one the index holds (None if none) before an
        #: upsert; raises to refuse the write (a receiver's bounds on what one event may store).
        self.check = check
        self._lock = threading.Lock()

    def apply(self, event: str, payload: Mapping[str, Any]) -> WebhookOutcome:
        """Read the event's thread, work out the change (:func:`discourse_change`), write it if
        it changes anything; again from the read where another write to the thread came first."""
        probe = discourse_change(event, payload, None, self.categories)
        tid = probe.thread_id
        if tid is None:
            return WebhookOutcome("ignored", None, probe.reason)
        deadline = time.monotonic() + self.wait_seconds
        for attempt in range(1, self.attempts + 1):
            try:
                with self._lock:
                    return self._apply(event, payload, tid)
            except WriteConflictError:
                log.debug("topic %s was written by another worker or a publish meanwhile (attempt %d of %d)",
                          tid, attempt, self.attempts)
            # outside the lock: the events behind this one are not held up by its wait; at once
            # where this process serves the newest generation (another worker's write)
            if attempt < self.attempts:
                self.live.wait_loaded(max(0.0, deadline - time.monotonic()))
        raise WriteConflictError(
            f"thread {tid!r} was changed by another write each of the {self.attempts} times the event "
            "was applied: nothing was written; send the event again")

    def _apply(self, event: str, payload: Mapping[str, Any], tid: str) -> WebhookOutcome:
        current = self.live.current(tid)
        expected = {tid: current}
        change = discourse_change(event, payload, current, self.categories)
        if change.stale:
            return self._unwritten(WebhookOutcome("stale", tid, change.reason))
        if change.delete:
            if current is None:
                return self._unwritten(WebhookOutcome("unchanged", tid, change.reason))
            entry = self.live.delete(tid, expected=expected)
            return WebhookOutcome("deleted", tid, change.reason, entry.seq)
        if change.upsert is None:
            return self._unwritten(WebhookOutcome("ignored", tid, change.reason))
        # a newer revision of the same text is written too, so that an older one with other
        # text, delivered after it, is known to be older
        if same_thread(change.upsert, current):
            return self._unwritten(WebhookOutcome("unchanged", tid))
        if self.check is not None:
            self.check(change.upsert, current)
        entry = self.live.upsert(change.upsert, expected=expected)
        return WebhookOutcome("upserted", tid, seq=entry.seq)

    def _unwritten(self, outcome: WebhookOutcome) -> WebhookOutcome:
        """``outcome``, an event that writes nothing, unless it was decided on a thread that a
        publish this process has not loaded changed (a topic a sync added would read as not
        indexed): then :class:`WriteConflictError`, to read again once it is loaded, as a
        refused write does."""
        if outcome.thread_id is not None and self.live.read_outdated({outcome.thread_id}):
            raise WriteConflictError(f"thread {outcome.thread_id!r} changed in a generation not loaded yet")
        return outcome
