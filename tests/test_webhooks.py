"""Webhooks: Discourse's signed topic and post events, and the generic signed form, become live
writes (searchable at once); unsigned or wrongly signed ones write nothing; replays change
nothing; private messages and unlisted topics are never indexed."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import replace

import pytest
from conftest import FakeEmbedder
from fastapi.testclient import TestClient

from qa_search import (
    Answer,
    DiscourseEvents,
    ForumIndex,
    LiveIndex,
    Thread,
    WriteConflictError,
    discourse_change,
)
from service.app import create_app
from service.settings import Settings

SECRET = "discourse-webhook-secret"
GENERIC = "generic-webhook-secret"


@pytest.fixture
def index_dir(tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("old", "Is it normal to miss my ex months later?")])
    index.save(tmp_path / "index")
    return tmp_path / "index"


def _client(index_dir, **settings):
    app = create_app(Settings(index_dir=index_dir, discourse_categories={"7": "anxiety"}, **settings),
                     embedder=FakeEmbedder())
    return TestClient(app)


@pytest.fixture
def client(index_dir):
    # no API key: webhooks authenticate by signature alone
    with _client(index_dir, discourse_secret=SECRET, webhook_secret=GENERIC) as c:
        yield c


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send(client, event: str, payload: dict, *, secret: str | None = SECRET, signature: str | None = None):
    body = json.dumps(payload).encode()
    headers = {"X-Discourse-Event-Type": event.partition("_")[0], "X-Discourse-Event": event,
               "Content-Type": "application/json"}
    if signature is not None:
        headers["X-Discourse-Event-Signature"] = signature
    elif secret is not None:
        headers["X-Discourse-Event-Signature"] = sign(body, secret)
    return client.post("/v1/webhooks/discourse", content=body, headers=headers)


def topic(tid=42, title="How do I calm down before a panic attack?", **fields):
    return {"topic": {"id": tid, "title": title, "archetype": "regular", "visible": True, "category_id": 7,
                      "tags": ["panic", {"id": 3, "name": "breathing", "slug": "breathing"}],
                      "created_at": "2026-11-30T10:00:00Z", "slug": "calm-down", **fields}}


def post(pid, number, text, tid=42, **fields):
    return {"post": {"id": pid, "topic_id": tid, "post_number": number, "post_type": 1,
                     "cooked": f"<p>{text}</p>", "raw": text, "topic_title": "How do I calm down?",
                     "topic_archetype": "regular", "category_id": 7, **fields}}


def search(client, q):
    return [h["thread_id"] for h in client.get("/v1/search", params={"q": q, "k": 5}).json()["hits"]]


def stored(client, tid):
    with client.app.state.live.reading() as index:
        return index.get(tid) if tid in index else None


def test_a_topic_and_its_posts_become_a_searchable_thread(client):
    assert send(client, "topic_created", topic()).json()["action"] == "upserted"
    first = send(client, "post_created", post(500, 1, "My heart races and I cannot breathe."))
    assert first.json()["action"] == "upserted"
    reply = send(client, "post_created", post(501, 2, "Slow breathing: in for four, out for six."))
    assert reply.status_code == 200
    thread = stored(client, "42")
    assert thread.title == "How do I calm down before a panic attack?"
    assert thread.body == "My heart races and I cannot breathe."
    assert [(a.id, a.body) for a in thread.answers] == [("501", "Slow breathing: in for four, out for six.")]
    assert thread.category == "anxiety" and thread.tags == ("panic", "breathing")
    assert search(client, "calm down before a panic attack")[0] == "42"
    assert search(client, "in for four out for six")[0] == "42"


def test_an_edited_title_is_searchable_and_keeps_what_the_event_does_not_carry(client):
    send(client, "topic_created", topic())
    send(client, "post_created", post(500, 1, "My heart races."))
    send(client, "post_created", post(501, 2, "Breathe slowly."))
    edited = topic(title="Grounding tricks for sudden dread at night")
    assert send(client, "topic_edited", edited).json()["action"] == "upserted"
    assert search(client, "grounding tricks for sudden dread")[0] == "42"
    thread = stored(client, "42")
    assert thread.body == "My heart races." and [a.id for a in thread.answers] == ["501"]
    send(client, "post_edited", post(501, 2, "Name five things you can see."))
    assert [a.body for a in stored(client, "42").answers] == ["Name five things you can see."]


def test_replayed_events_change_nothing(client):
    live = client.app.state.live
    events = [("topic_created", topic()), ("post_created", post(500, 1, "My heart races.")),
              ("post_created", post(501, 2, "Breathe slowly.")), ("post_destroyed", post(501, 2, "x"))]
    for event, payload in events:
        assert send(client, event, payload).json()["action"] in ("upserted", "deleted")
        applied, before = live.applied, stored(client, "42")
        # Discourse redelivers an event whose answer it did not get: the second copy is a no-op
        assert send(client, event, payload).json()["action"] == "unchanged"
        assert live.applied == applied and stored(client, "42") == before


def test_destroyed_topic_is_gone_and_a_recovered_one_is_back(client):
    send(client, "topic_created", topic())
    send(client, "post_created", post(500, 1, "My heart races."))
    gone = send(client, "topic_destroyed", topic(deleted_at="2026-12-01T00:00:00Z"))
    assert gone.json()["action"] == "deleted"
    assert stored(client, "42") is None and "42" not in search(client, "calm down before a panic attack")
    assert send(client, "topic_recovered", topic()).json()["action"] == "upserted"
    assert send(client, "post_recovered", post(500, 1, "My heart races.")).json()["action"] == "upserted"
    assert stored(client, "42").body == "My heart races."
    assert search(client, "calm down before a panic attack")[0] == "42"


def test_a_destroyed_or_hidden_post_drops_its_answer_and_whispers_are_never_answers(client):
    send(client, "topic_created", topic())
    send(client, "post_created", post(501, 2, "Breathe slowly."))
    send(client, "post_created", post(502, 3, "Staff only note about this user.", post_type=4))
    send(client, "post_created", post(503, 4, "Try a cold glass of water."))
    assert [a.id for a in stored(client, "42").answers] == ["501", "503"]
    send(client, "post_destroyed", post(501, 2, "Breathe slowly."))
    send(client, "post_edited", post(503, 4, "Try a cold glass of water.", hidden=True))
    assert stored(client, "42").answers == ()


def test_private_messages_and_unlisted_topics_are_never_indexed(client):
    pm = topic(tid=77, title="A private message about my diagnosis", archetype="private_message")
    assert send(client, "topic_created", pm).json()["action"] == "unchanged"
    reply = post(900, 1, "Only between us.", tid=77, topic_archetype="private_message")
    assert send(client, "post_created", reply).status_code == 200
    unseen = send(client, "post_created", post(901, 1, "Posted in a topic never seen.", tid=78))
    assert unseen.json()["action"] == "ignored"
    assert stored(client, "77") is None and stored(client, "78") is None
    # a listed topic that is unlisted later is removed
    send(client, "topic_created", topic())
    assert send(client, "topic_edited", topic(visible=False)).json()["action"] == "deleted"
    assert stored(client, "42") is None


def test_unsigned_and_wrongly_signed_events_are_refused_and_write_nothing(client):
    live = client.app.state.live
    applied = live.applied
    assert send(client, "topic_created", topic(), secret=None).status_code == 401
    assert send(client, "topic_created", topic(), secret="not-the-secret").status_code == 401
    assert send(client, "topic_created", topic(), signature="sha1=abc").status_code == 401
    # a signature over another body does not carry over
    other = json.dumps(topic(title="Another title entirely")).encode()
    response = send(client, "topic_created", topic(), signature=sign(other))
    assert response.status_code == 401 and "Another" not in response.text
    # a signed body that is not JSON is a 422 that quotes none of it
    body = b"{not json: my private words"
    headers = {"X-Discourse-Event": "topic_created", "X-Discourse-Event-Signature": sign(body)}
    bad = client.post("/v1/webhooks/discourse", content=body, headers=headers)
    assert bad.status_code == 422 and "private" not in bad.text
    assert live.applied == applied and stored(client, "42") is None


def test_webhooks_answer_503_until_their_secret_is_set_and_ping_is_acknowledged(index_dir):
    with _client(index_dir) as c:
        response = send(c, "topic_created", topic())
        assert response.status_code == 503 and "QA_SEARCH_DISCOURSE_SECRET" in response.json()["detail"]
        generic = c.post("/v1/webhooks/generic", json={"event": "delete", "ids": ["old"]})
        assert generic.status_code == 503 and "QA_SEARCH_WEBHOOK_SECRET" in generic.json()["detail"]
    with _client(index_dir, discourse_secret=SECRET) as c:
        ping = send(c, "ping", {"ping": "OK"})
        assert ping.status_code == 200 and ping.json()["action"] == "ignored"


def test_the_guard_bounds_a_webhook_body(index_dir):
    with _client(index_dir, discourse_secret=SECRET, max_body_bytes=2048) as c:
        big = topic(title="x " * 2000)
        assert send(c, "topic_created", big).status_code == 413


def gsend(client, payload: dict, secret: str = GENERIC):
    body = json.dumps(payload).encode()
    return client.post("/v1/webhooks/generic", content=body,
                       headers={"X-QA-Signature": sign(body, secret), "Content-Type": "application/json"})


def test_generic_webhook_upserts_and_deletes_in_the_dump_format(client):
    threads = [{"id": "g1", "title": "Sleeping badly since the funeral", "body": "Every night.",
                "answers": [{"body": "Grief often shows up at night."}], "tags": ["grief"]}]
    response = gsend(client, {"event": "upsert", "threads": threads})
    assert response.status_code == 200 and response.json()["threads"] == 1
    assert search(client, "sleeping badly since the funeral")[0] == "g1"
    assert stored(client, "g1").answers[0].id == "g1#1"
    assert gsend(client, {"event": "delete", "ids": ["g1", "old"]}).json()["threads"] == 2
    assert stored(client, "g1") is None and stored(client, "old") is None
    # deleting again is harmless: a replay
    assert gsend(client, {"event": "delete", "ids": ["g1"]}).status_code == 200


def test_generic_webhook_refuses_bad_signatures_and_bad_payloads(client):
    live = client.app.state.live
    applied = live.applied
    payload = {"event": "upsert", "threads": [{"id": "g2", "title": "My secret worry"}]}
    assert gsend(client, payload, secret="wrong").status_code == 401
    unsigned = client.post("/v1/webhooks/generic", json=payload)
    assert unsigned.status_code == 401
    assert live.applied == applied
    # the request schema's rules and limits, with the input never echoed
    bad = gsend(client, {"event": "upsert", "threads": [{"id": "g3", "title": ""}]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "threads[0].title"
    assert gsend(client, {"event": "delete", "threads": payload["threads"]}).status_code == 422
    assert gsend(client, {"event": "upsert"}).status_code == 422
    many = {"event": "upsert", "threads": [{"id": f"n{i}", "title": "t"} for i in range(501)]}
    assert gsend(client, many).status_code == 413
    assert live.applied == applied


def test_discourse_change_is_pure_and_keeps_what_the_index_has():
    current = Thread("42", "Old title", "The body.", tags=("a",), category="anxiety", url="https://f/t/42")
    change = discourse_change("topic_edited", {"topic": {"id": 42, "title": "New title"}}, current)
    assert change.upsert == Thread("42", "New title", "The body.", tags=("a",), category="anxiety",
                                   url="https://f/t/42")
    assert discourse_change("user_created", {"user": {}}, None).upsert is None
    assert discourse_change("topic_created", {"post": {}}, None).reason == "the payload has no 'topic' object"


# -- events delivered out of order ----------------------------------------------------------------


def _fast(index_dir):
    # more events than the default write rate lets through in a second
    return _client(index_dir, discourse_secret=SECRET, write_rate="1000/second")


@pytest.fixture
def events(index_dir):
    with _fast(index_dir) as c:
        yield c


def T(minute: int) -> str:
    return f"2026-12-01T10:{minute:02d}:00.250Z"


def answers(client, tid="42"):
    return [(a.id, a.body) for a in stored(client, tid).answers]


def test_an_older_edit_delivered_after_a_newer_one_changes_nothing(events):
    send(events, "topic_created", topic())
    send(events, "post_created", post(500, 1, "My heart races.", version=1, updated_at=T(0)))
    send(events, "post_created", post(501, 2, "Breathe slowly.", version=1, updated_at=T(1)))
    newer = post(501, 2, "Name five things you can see.", version=3, updated_at=T(5))
    assert send(events, "post_edited", newer).json()["action"] == "upserted"
    live = events.app.state.live
    applied = live.applied
    # Discourse retries the delivery of version 2 after version 3 was applied
    older = send(events, "post_edited", post(501, 2, "Count backwards from ten.", version=2, updated_at=T(3)))
    assert older.status_code == 200
    assert older.json()["action"] == "stale" and older.json()["thread_id"] == "42"
    assert "version 2" in older.json()["reason"] and "version 3" in older.json()["reason"]
    assert "Count" not in older.text
    # the same version saved earlier (a rebake, say) is older too
    same_version = post(501, 2, "Count backwards from ten.", version=3, updated_at=T(4))
    assert send(events, "post_edited", same_version).json()["action"] == "stale"
    assert live.applied == applied
    assert answers(events) == [("501", "Name five things you can see.")]
    # the first post's revisions are its own: the question's body
    body = post(500, 1, "My chest is tight.", version=2, updated_at=T(2))
    assert send(events, "post_edited", body).json()["action"] == "upserted"
    first = send(events, "post_edited", post(500, 1, "My heart races.", version=1, updated_at=T(0)))
    assert first.json()["action"] == "stale" and stored(events, "42").body == "My chest is tight."
    # a replay of the newest stays "unchanged"; a newer revision applies
    assert send(events, "post_edited", newer).json()["action"] == "unchanged"
    newest = post(501, 2, "Hold an ice cube.", version=4, updated_at=T(6))
    assert send(events, "post_edited", newest).json()["action"] == "upserted"
    assert answers(events) == [("501", "Hold an ice cube.")]


def test_an_older_delete_or_edit_does_not_undo_a_newer_recovery_or_delete(events):
    send(events, "topic_created", topic(updated_at=T(0)))
    send(events, "post_created", post(501, 2, "Breathe slowly.", version=1, updated_at=T(1)))
    send(events, "post_destroyed", post(501, 2, "Breathe slowly.", version=1, updated_at=T(2),
                                        deleted_at=T(2)))
    assert answers(events) == []
    # the post's creation, delivered again after its deletion, does not bring the answer back
    again = send(events, "post_created", post(501, 2, "Breathe slowly.", version=1, updated_at=T(1)))
    assert again.json()["action"] == "stale" and answers(events) == []
    send(events, "post_recovered", post(501, 2, "Breathe slowly.", version=1, updated_at=T(3)))
    assert answers(events) == [("501", "Breathe slowly.")]
    late_delete = post(501, 2, "Breathe slowly.", version=1, updated_at=T(2), deleted_at=T(2))
    assert send(events, "post_destroyed", late_delete).json()["action"] == "stale"
    assert answers(events) == [("501", "Breathe slowly.")]
    # a topic's: an older title, an older unlisting, an older deletion
    renamed = topic(title="Grounding tricks for sudden dread", updated_at=T(5))
    assert send(events, "topic_edited", renamed).json()["action"] == "upserted"
    for event, payload in [("topic_edited", topic(title="An older title", updated_at=T(4))),
                           ("topic_edited", topic(visible=False, updated_at=T(4))),
                           ("topic_destroyed", topic(deleted_at=T(4), updated_at=T(4)))]:
        response = send(events, event, payload).json()
        assert response["action"] == "stale" and "already applied" in response["reason"]
    assert stored(events, "42").title == "Grounding tricks for sudden dread"
    assert send(events, "topic_edited", renamed).json()["action"] == "unchanged"
    gone = send(events, "topic_destroyed", topic(deleted_at=T(6), updated_at=T(6)))
    assert gone.json()["action"] == "deleted"


def test_a_newer_revision_of_the_same_text_is_kept_so_an_older_text_after_it_is_stale(events):
    send(events, "topic_created", topic())
    send(events, "post_created", post(501, 2, "Breathe slowly.", version=1, updated_at=T(1)))
    # version 2 (other text) fails to deliver; version 3 puts the first text back
    reverted = send(events, "post_edited", post(501, 2, "Breathe slowly.", version=3, updated_at=T(3)))
    assert reverted.json()["action"] == "upserted"
    late = send(events, "post_edited", post(501, 2, "Hold your breath.", version=2, updated_at=T(2)))
    assert late.json()["action"] == "stale" and answers(events) == [("501", "Breathe slowly.")]


def test_events_without_a_revision_are_applied_as_they_come(events):
    send(events, "topic_created", topic(updated_at=T(5)))
    send(events, "post_created", post(501, 2, "Breathe slowly.", version=3, updated_at=T(5)))
    # older Discourse, or a payload made by hand: no version, no updated_at (or none readable)
    for fields in ({}, {"version": True, "updated_at": "yesterday"}, {"version": "2"}):
        text = f"Older advice {len(fields)}."
        response = send(events, "post_edited", post(501, 2, text, **fields)).json()
        assert response["action"] == "upserted" and answers(events) == [("501", text)]
    old_title = topic(title="An older title")
    assert send(events, "topic_edited", old_title).json()["action"] == "upserted"
    # what was held is kept: an older revision is still refused
    assert send(events, "post_edited", post(501, 2, "x y", version=2)).json()["action"] == "stale"
    assert send(events, "topic_edited", topic(updated_at=T(4))).json()["action"] == "stale"


def test_revisions_outlive_a_restart_and_a_new_generation_and_appear_in_no_response(index_dir):
    from qa_search import update_index

    with _fast(index_dir) as c:
        send(c, "topic_created", topic(updated_at=T(0)))
        send(c, "post_created", post(501, 2, "Breathe slowly.", version=2, updated_at=T(2)))
        hits = c.get("/v1/search", params={"q": "breathe slowly", "k": 5}).json()
        duplicates = c.post("/v1/duplicates", json={"title": "How do I calm down before a panic attack?"})
        for response in (json.dumps(hits), duplicates.text):
            assert "discourse_revisions" not in response and T(2)[:16] not in response
    with _fast(index_dir) as c:  # the write log replayed
        assert send(c, "post_edited", post(501, 2, "Older.", version=1)).json()["action"] == "stale"
    # an operator's update folds the log into a new generation: the thread goes with its revisions
    update_index(index_dir, [Thread("new", "Sleeping badly")], FakeEmbedder())
    with _fast(index_dir) as c:
        assert send(c, "post_edited", post(501, 2, "Older.", version=1)).json()["action"] == "stale"
        assert send(c, "topic_edited", topic(title="Older", updated_at="2026-12-01T09:59:00Z")
                    ).json()["action"] == "stale"
        assert answers(c) == [("501", "Breathe slowly.")]


def test_after_a_sync_the_database_is_the_truth(index_dir, tmp_path):
    from qa_search import sync_index

    with _fast(index_dir) as c:
        send(c, "topic_created", topic(updated_at=T(0)))
        send(c, "post_created", post(501, 2, "Breathe slowly.", version=9, updated_at=T(9)))
    # the forum's database restored from a backup: its post 501 is at an earlier revision
    url, mapping = _forum_db(tmp_path, [(501, "Sip cold water.")],
                             others=[(1, "Is it normal to miss my ex months later?")])
    sync_index(index_dir, url, mapping=mapping, embedder=FakeEmbedder(), allow_removals=True)
    with _fast(index_dir) as c:
        assert answers(c) == [("501", "Sip cold water.")]
        assert "discourse_revisions" not in stored(c, "42").extra
        # the post's next edit after the restore applies, though its version is lower than 9
        edit = send(c, "post_edited", post(501, 2, "Sip cold water slowly.", version=4, updated_at=T(20)))
        assert edit.json()["action"] == "upserted"
        assert send(c, "post_edited", post(501, 2, "Older.", version=3)).json()["action"] == "stale"
        assert answers(c) == [("501", "Sip cold water slowly.")]


def test_discourse_change_says_an_older_event_is_stale():
    held = {"discourse_revisions": {"topic": {"updated_at": T(5)},
                                    "posts": {"501": {"version": 3, "updated_at": T(5)}}}}
    current = Thread("42", "Title", "Body.", extra=held)
    older = discourse_change("post_edited", post(501, 2, "Old.", version=2), current)
    assert older.stale and older.upsert is None and not older.delete and older.thread_id == "42"
    newer = discourse_change("post_edited", post(501, 2, "New.", version=4), current)
    assert not newer.stale and newer.upsert.extra["discourse_revisions"]["posts"]["501"] == {
        "version": 4, "updated_at": T(5)}
    assert current.extra == held  # the thread given is not changed in place
    # times compare as times, whatever their zone
    assert discourse_change("topic_edited", topic(updated_at="2026-12-01T11:04:00+01:00"), current).stale
    assert not discourse_change("topic_edited", topic(updated_at="2026-12-01T11:06:00+01:00"), current).stale
    # a time no zone can move into range is read as none given
    odd = discourse_change("topic_edited", topic(title="N", updated_at="0001-01-01T00:00:00+01:00"), current)
    assert not odd.stale and odd.upsert.extra == held


# -- events about one topic at two workers --------------------------------------------------------


def _workers(index_dir):
    """Two serving processes' handles on one index directory (no watchers: each applies the
    other's writes when it reads), with the topic and its first post written through the first."""
    first, second = (LiveIndex(index_dir, FakeEmbedder()) for _ in range(2))
    events = DiscourseEvents(first)
    events.apply("topic_created", topic())
    events.apply("post_created", post(500, 1, "My heart races."))
    return first, second, events


def _answers(live, tid="42"):
    thread = live.current(tid)
    return None if thread is None else sorted(a.id for a in thread.answers)


@pytest.mark.parametrize("seen", [False, True], ids=["logged-unread", "applied-meanwhile"])
def test_two_workers_reading_a_topic_before_either_writes_both_keep_their_part(index_dir, seen):
    first, second, events = _workers(index_dir)
    between: list = []

    def other_worker_first(thread, current):
        # the second worker has read the thread and merged its answer, not yet written it: the
        # first worker's event lands now (and, with `seen`, the second's watcher applies it)
        if not between:
            between.append(events.apply("post_created", post(501, 2, "Breathe slowly.")))
            if seen:
                second.catch_up()

    late = DiscourseEvents(second, check=other_worker_first).apply(
        "post_created", post(502, 3, "Name five things you can see."))
    assert between[0].action == late.action == "upserted" and late.seq > between[0].seq
    for live in (first, second, LiveIndex(index_dir, FakeEmbedder())):  # a third: the log replayed
        assert _answers(live) == ["501", "502"]
        assert live.current("42").body == "My heart races."


def test_a_topic_deleted_at_another_worker_meanwhile_is_not_brought_back(index_dir):
    first, second, events = _workers(index_dir)
    between: list = []

    def destroyed_first(thread, current):
        if not between:
            between.append(events.apply("topic_destroyed", topic()))

    late = DiscourseEvents(second, check=destroyed_first).apply("post_created", post(501, 2, "Breathe."))
    assert between[0].action == "deleted"
    assert (late.action, late.reason) == ("ignored", "the topic is not indexed")
    assert second.current("42") is None and LiveIndex(index_dir, FakeEmbedder()).current("42") is None


def test_an_event_that_keeps_meeting_other_writes_is_a_503_and_writes_nothing(index_dir):
    first, _, events = _workers(index_dir)
    edits = iter(range(10, 100))

    def always_first(thread, current):  # another worker edits the title before each write
        events.apply("topic_edited", topic(title=f"Panic attack, edit {next(edits)}"))

    with _fast(index_dir) as c:
        live = c.app.state.live
        c.app.state.discourse_events = DiscourseEvents(live, check=always_first)
        applied = live.applied
        got = send(c, "post_created", post(501, 2, "Breathe slowly."))
        assert got.status_code == 503 and got.headers["Retry-After"] == "1"
        detail = got.json()["detail"]
        assert "'42'" in detail and "5 times" in detail and "Breathe" not in got.text
        # each try found the other worker's edit and applied it; its own answer never written
        assert live.applied == applied + 5 and _answers(live) == []
        assert live.current("42").title == "Panic attack, edit 14"
    assert _answers(first) == []


# -- events meeting a publish this worker has not loaded ------------------------------------------


def _forum_db(tmp_path, replies, others=()):
    """A forum database holding topic 42 (its first post, and ``replies``) and the topics
    ``others`` ((id, title), no body), and the mapping a sync reads it with; written again on
    each call."""
    sa = pytest.importorskip("sqlalchemy")
    db = tmp_path / "forum.sqlite"
    db.unlink(missing_ok=True)
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE topics (id INTEGER, title TEXT, body TEXT)"))
        conn.execute(sa.text("CREATE TABLE posts (id INTEGER, topic_id INTEGER, cooked TEXT)"))
        conn.execute(sa.text("INSERT INTO topics VALUES (42, 'How do I calm down?', 'My heart races.')"))
        for tid, title in others:
            conn.execute(sa.text("INSERT INTO topics VALUES (:id, :title, '')"), {"id": tid, "title": title})
        for pid, text in replies:
            conn.execute(sa.text("INSERT INTO posts VALUES (:pid, 42, :text)"), {"pid": pid, "text": text})
    engine.dispose()
    mapping = tmp_path / "forum.json"
    mapping.write_text(json.dumps({
        "threads": {"query": "SELECT id, title, body FROM topics"},
        "answers": {"query": "SELECT topic_id, id, cooked FROM posts",
                    "columns": {"id": "topic_id", "answer_id": "id", "answer": "cooked"}},
    }))
    return f"sqlite:///{db}", mapping


def test_a_post_event_at_a_worker_that_has_not_loaded_the_sync_keeps_the_syncs_reply(tmp_path):
    """The sync brings a reply the webhook missed (501) in a generation this worker has not
    loaded; the event for the next reply (502) waits for that load and merges onto the sync's
    version of the topic, rather than writing the topic as it stood before the sync."""
    from qa_search import sync_index

    index_dir = tmp_path / "index"
    url, mapping = _forum_db(tmp_path, [])
    sync_index(index_dir, url, mapping=mapping, embedder=FakeEmbedder())
    worker = LiveIndex(index_dir, FakeEmbedder())
    worker.start(3600)  # no tick: the generation is loaded only when something asks for it
    try:
        url, mapping = _forum_db(tmp_path, [(501, "Breathe slowly.")])
        report = sync_index(index_dir, url, mapping=mapping, embedder=FakeEmbedder())
        assert (report.full, report.changed, worker.generation) == (False, 1, 1)
        outcome = DiscourseEvents(worker).apply("post_created", post(502, 3, "Name five things."))
        assert outcome.action == "upserted" and worker.generation == report.generation
        assert _answers(worker) == ["501", "502"]
    finally:
        worker.stop()
    assert _answers(LiveIndex(index_dir, FakeEmbedder())) == ["501", "502"]


def test_an_event_over_a_load_that_outlasts_the_wait_is_refused_and_applies_when_delivered_again(index_dir):
    from qa_search import update_index

    worker = LiveIndex(index_dir, FakeEmbedder())
    events = DiscourseEvents(worker)
    events.apply("topic_created", topic())
    release = threading.Event()
    load = worker._loader
    worker._loader = lambda path, embedder: release.wait(10) and load(path, embedder)  # a big forum's load
    events.wait_seconds = 0.2
    worker.start(3600)
    try:
        synced = replace(worker.current("42"), answers=(Answer("501", "Breathe slowly."),))
        update_index(index_dir, [synced], FakeEmbedder())
        applied = worker.applied
        with pytest.raises(WriteConflictError, match="send the event again"):
            events.apply("post_created", post(502, 3, "Name five things."))
        assert worker.applied == applied and worker.generation == 1  # nothing written
        release.set()
        worker.check_generation()  # waits for the loader's load under way, or loads
        assert worker.generation == 2 and worker.wait_loaded(0)
        assert events.apply("post_created", post(502, 3, "Name five things.")).action == "upserted"
    finally:
        release.set()
        worker.stop()
    assert _answers(LiveIndex(index_dir, FakeEmbedder())) == ["501", "502"]


def test_a_post_event_for_a_topic_a_publish_added_is_not_ignored_while_the_worker_loads_it(index_dir):
    from qa_search import update_index

    worker = LiveIndex(index_dir, FakeEmbedder())
    worker.start(3600)
    try:
        update_index(index_dir, [Thread("43", "Panic at night", "It wakes me up.")], FakeEmbedder())
        assert worker.current("43") is None  # the generation that holds it is not loaded yet
        # what was read of 43 is outdated; of a thread the publish did not change, it is not
        assert worker.read_outdated({"43"}) and not worker.read_outdated({"old"})
        outcome = DiscourseEvents(worker).apply("post_created", post(601, 2, "Cold water helps.", tid=43))
        assert outcome.action == "upserted" and worker.generation == 2
        assert worker.current("43").body == "It wakes me up." and not worker.read_outdated({"43"})
    finally:
        worker.stop()
    assert _answers(LiveIndex(index_dir, FakeEmbedder()), "43") == ["601"]
