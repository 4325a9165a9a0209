"""Forum threads: the record types (:class:`Thread`, :class:`Answer`) and the checks every thread
passes, as a mapping (:func:`thread_from_dict`) or as a record (:func:`checked_thread`).

A thread as a mapping, one line of a dump (:mod:`qa_search.dumps`)::

    {"id": "t1", "title": "...", "body": "...",
     "answers": [{"id": "t1-a1", "body": "...", "score": 3, "accepted": true}],
     "tags": ["anxiety"], "category": "anxiety", "created_at": "2025-01-31T12:00:00Z",
     "score": 7, "url": "https://forum.example.org/t/t1", "visible_to": ["grief-group"]}

Only ``id`` and ``title`` are required. ``visible_to`` names the groups that may see the thread;
absent or empty, everyone may.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer of a thread."""

    id: str
    body: str
    score: int = 0
    accepted: bool = False


@dataclass(frozen=True, slots=True)
class Thread:
    """A forum thread: a question (title and body) and its answers."""

    id: str
    title: str
    body: str = ""
    answers: tuple[Answer, ...] = ()
    tags: tuple[str, ...] = ()
    category: str | None = None
    created_at: str | None = None
    score: int = 0
    url: str | None = None
    #: The groups that may see the thread; empty: everyone may (see :meth:`visible_with`).
    visible_to: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    #: Set by :func:`thread_from_dict` on the records it builds, so the library checks a thread
    #: once, where it comes in (a dump line, a log line, :func:`checked_thread` at a library
    #: entry), and trusts it inside. A copy made with ``dataclasses.replace`` is checked again.
    _checked: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def question_text(self) -> str:
        """The text embedded for the thread's question: the title, then the body."""
        return f"{self.title}\n{self.body}" if self.body else self.title

    def visible_with(self, groups: frozenset[str]) -> bool:
        """Whether a caller in ``groups`` may see the thread: it names no groups, or one of them."""
        return not self.visible_to or not groups.isdisjoint(self.visible_to)

    def to_dict(self) -> dict[str, Any]:
        """The thread as a dump line's JSON object (inverse of :func:`thread_from_dict`)."""
        out = {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "answers": [{"id": a.id, "body": a.body, "score": a.score, "accepted": a.accepted}
                        for a in self.answers],
            "tags": list(self.tags),
            "category": self.category,
            "created_at": self.created_at,
            "score": self.score,
            "url": self.url,
        }
        if self.visible_to:  # a public thread's line stays as it was before the field existed
            out["visible_to"] = list(self.visible_to)
        out.update(self.extra)
        return out


_THREAD_FIELDS = {
    "id",
    "title",
    "body",
    "answers",
    "tags",
    "category",
    "created_at",
    "score",
    "url",
    "visible_to",
}

#: Most groups a thread may name in ``visible_to``, and the longest group name (as many, and as
#: long, as a search token may carry).
MAX_VISIBLE_GROUPS = 256
MAX_GROUP_CHARS = 200


def same_thread(a: Thread | None, b: Thread | None) -> bool:
    """Whether ``a`` and ``b`` hold the same thread to the last field, the extra ones too (``==``
    leaves ``extra`` out); None (no thread) is the same only as None."""
    if a is None or b is None:
        return a is b
    return a == b and a.extra == b.extra


def _expect(value: Any, kind: type | tuple[type, ...], what: str, nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    # bool is an int subclass; a score of `true` is almost certainly a mistake
    if kind is int and isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got a boolean")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(f"{what} must be {names}, got {type(value).__name__}")
    if isinstance(value, str):
        check_text(value, what)
    return value


def _optional(obj: dict, key: str, kind: type, what: str, default: Any) -> Any:
    """``obj[key]`` checked to be of ``kind``; absent or null gives ``default`` (a wrong value,
    even a falsy one such as ``0`` for a text, is an error, not a default)."""
    value = obj.get(key)
    return default if value is None else _expect(value, kind, what)


def check_text(text: str, what: str) -> None:
    """``ValueError`` naming ``what`` if ``text`` holds a lone surrogate (no UTF-8 can store it)."""
    # JSON's \ud800 escapes decode to lone surrogates, which no UTF-8 file or response can hold
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{what} holds a lone surrogate (an invalid \\u escape), not text") from None


def thread_id(value: Any, what: str) -> str:
    """A thread (or answer) id as stored: a non-empty string or an integer, trimmed, as text;
    ``ValueError`` naming ``what`` otherwise. Pair and query files use the same rule."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{what} must be a string or an integer")
    text = str(value).strip()
    if not text:
        raise ValueError(f"{what} must not be empty")
    check_text(text, what)
    # a newline or a bidi override in an id makes a thread no URL can name (so none can delete
    # it) or one that shows as another's id
    if not text.isprintable():
        raise ValueError(f"{what} must hold printable characters only (no control, format or "
                         "line-separator characters such as a newline or a tab)")
    return text


#: Deepest nesting of lists and objects allowed in a thread's extra fields.
MAX_EXTRA_DEPTH = 32


def _depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            if deepest > MAX_EXTRA_DEPTH:
                return deepest
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_portable(thread: Thread) -> Thread:
    """``thread``, if its extra fields are plain JSON that every reader can parse back: no NaN
    or infinity, nested at most :data:`MAX_EXTRA_DEPTH` deep; else ``ValueError`` naming it.

    For what enters the service's shared write log (which every worker replays on start); data
    already stored is read as it is."""
    if thread.extra:
        if _depth(thread.extra) > MAX_EXTRA_DEPTH:
            raise ValueError(
                f"thread {thread.id!r}: the extra fields nest deeper than {MAX_EXTRA_DEPTH} levels"
            )
        try:
            json.dumps(thread.extra, allow_nan=False)
        except ValueError as exc:
            raise ValueError(f"thread {thread.id!r}: the extra fields are not plain JSON: {exc}") from None
    return thread


def thread_from_dict(obj: Any) -> Thread:
    """Validate one dump object and build a :class:`Thread`.

    Raises ``ValueError`` naming the first field that is wrong.
    """
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "id" not in obj:
        raise ValueError("missing required field 'id'")
    if "title" not in obj:
        raise ValueError("missing required field 'title'")
    tid = thread_id(obj["id"], "'id'")
    title = _expect(obj["title"], str, "'title'").strip()
    if not title:
        raise ValueError("'title' must not be empty")
    body = _optional(obj, "body", str, "'body'", "").strip()
    raw_answers = _optional(obj, "answers", list, "'answers'", [])
    answers = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_answers):
        where = f"answers[{i}]"
        _expect(raw, dict, where)
        given = raw.get("id")  # null, like an absent field, gets the default
        aid = thread_id(given if given is not None else f"{tid}#{i + 1}", f"{where}.id")
        if aid in seen:
            raise ValueError(f"{where}.id {aid!r} is repeated in this thread")
        seen.add(aid)
        if raw.get("body") is None:  # an answer's text under another name, as exports have it
            raise ValueError(f"{where}: missing required field 'body' (the answer's text)")
        abody = _expect(raw["body"], str, f"{where}.body").strip()
        if not abody:
            raise ValueError(f"{where}.body must not be empty")
        answers.append(
            Answer(
                id=aid,
                body=abody,
                score=_optional(raw, "score", int, f"{where}.score", 0),
                accepted=_optional(raw, "accepted", bool, f"{where}.accepted", False),
            )
        )
    tags = _optional(obj, "tags", list, "'tags'", [])
    for t in tags:
        _expect(t, str, "each tag")
    category = _expect(obj.get("category"), str, "'category'", nullable=True)
    visible_to = _visible_to(obj.get("visible_to"))
    extra = {k: v for k, v in obj.items() if k not in _THREAD_FIELDS}
    if extra:
        try:
            json.dumps(extra, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            raise ValueError(f"the extra fields cannot be stored as JSON text: {exc}") from None
    thread = Thread(
        id=tid,
        title=title,
        body=body,
        answers=tuple(answers),
        tags=tuple(t.strip() for t in tags if t.strip()),
        category=category.strip() or None if category is not None else None,
        created_at=_expect(obj.get("created_at"), str, "'created_at'", nullable=True),
        score=_optional(obj, "score", int, "'score'", 0),
        url=_expect(obj.get("url"), str, "'url'", nullable=True),
        visible_to=visible_to,
        extra=extra,
    )
    object.__setattr__(thread, "_checked", True)  # frozen: set once, here
    return thread


def _visible_to(value: Any) -> tuple[str, ...]:
    """A thread's ``visible_to``: null or a list of group names, each exactly as a search token
    names it. A name that is blank or padded with spaces is refused, not trimmed or dropped:
    dropping the only name would make a thread meant for one group public."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"'visible_to' must be a list of group names, got {type(value).__name__}")
    if len(value) > MAX_VISIBLE_GROUPS:
        raise ValueError(f"'visible_to' names {len(value)} groups, more than {MAX_VISIBLE_GROUPS}")
    for i, name in enumerate(value):
        what = f"'visible_to'[{i}]"
        _expect(name, str, what)
        if not name.strip():
            raise ValueError(f"{what} must not be empty")
        if name != name.strip():
            raise ValueError(f"{what} must not start or end with spaces (groups are matched exactly)")
        if len(name) > MAX_GROUP_CHARS:
            raise ValueError(f"{what} must be at most {MAX_GROUP_CHARS} characters")
    return tuple(dict.fromkeys(value))


def checked_thread(thread: Thread) -> Thread:
    """``thread`` validated as a dump line would be, and normalised the same way (an integer id
    becomes a string, texts are stripped), so what is indexed is what a saved snapshot reloads.

    Raises ``TypeError`` for a non-:class:`Thread` and ``ValueError`` naming the thread and the
    first field that is wrong (an empty title or answer, a repeated answer id, a non-integer
    score, an ``extra`` key that shadows a field, ...).
    """
    if not isinstance(thread, Thread):
        raise TypeError(f"expected a Thread, got {type(thread).__name__}")
    if thread._checked:
        return thread
    try:
        if not isinstance(thread.extra, dict):
            raise ValueError("'extra' must be a dict")
        shadowing = sorted(_THREAD_FIELDS & thread.extra.keys())
        if shadowing:
            raise ValueError(f"'extra' holds keys that are thread fields: {', '.join(shadowing)}")
        if isinstance(thread.tags, str) or isinstance(thread.answers, str | dict):
            raise ValueError("'tags' and 'answers' must be sequences (a tuple or list), not a single value")
        if not isinstance(thread.visible_to, tuple | list):
            raise ValueError("'visible_to' must be a tuple or list of group names, not a single value")
        for i, a in enumerate(thread.answers):
            _expect(a, Answer, f"answers[{i}]")
        return thread_from_dict(thread.to_dict())
    except ValueError as exc:
        raise ValueError(f"thread {thread.id!r}: {exc}") from None
