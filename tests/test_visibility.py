"""Visibility: a thread that names groups is seen only by callers in one of them, exactly (the k
best visible threads, no fewer), in the library and over HTTP with real signed tokens."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import time

import jwt
import numpy as np
import pytest
from conftest import FakeEmbedder, calibrated_sample_index
from fastapi.testclient import TestClient

from qa_search import Answer, ForumIndex, IndexConfig, LiveIndex, Thread
from qa_search.threads import thread_from_dict
from service.app import create_app
from service.settings import Settings

GROUPS = ("mods", "grief", "teens", "carers")
WORDS = [
    "anxiety", "panic", "sleep", "therapist", "medication", "grief", "loss", "school", "exam",
    "friend", "partner", "family", "lonely", "work", "burnout", "anger", "calm", "breathing",
    "relapse", "sober", "diary", "walk", "doctor", "waiting", "list", "night", "fear", "trust",
    "hope",
]
SECRET = "a-long-random-secret-the-forum-shares-with-qa-search"


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.sample(WORDS, rng.randint(lo, hi)))


def _random_threads(rng: random.Random, n: int) -> list[Thread]:
    threads, titles = [], set()
    while len(threads) < n:
        title = _words(rng, 3, 7)
        if frozenset(title.split()) in titles:  # the fake embedder reads a bag of words: no ties
            continue
        titles.add(frozenset(title.split()))
        i = len(threads)
        answers = tuple(Answer(f"t{i}-a{j}", _words(rng, 4, 12), rng.randint(0, 9), rng.random() < 0.2)
                        for j in range(rng.randint(0, 2)))
        visible = () if rng.random() < 0.4 else tuple(rng.sample(GROUPS, rng.randint(1, 2)))
        threads.append(Thread(f"t{i}", title, _words(rng, 0, 6), answers, tags=(rng.choice(WORDS[:4]),),
                              score=rng.randint(0, 20), visible_to=visible))
    return threads


def _caller(rng: random.Random) -> frozenset[str]:
    return frozenset(rng.sample(GROUPS, rng.randint(0, 2)))


def _visible(thread: Thread, groups: frozenset[str]) -> bool:
    return not thread.visible_to or bool(groups & set(thread.visible_to))


def _brute_search(index: ForumIndex, text: str, k: int, groups: frozenset[str]) -> list[str]:
    """The k best visible threads by the exact score of every thread, ties by id."""
    ids = [t.id for t in index.threads() if _visible(t, groups)]
    scores = index.score_threads(text, ids, groups)
    return [tid for _, tid in sorted(zip((-s for s in scores), ids, strict=True))][:k]


CONFIGS = [
    IndexConfig(),  # dense and lexical
    IndexConfig(lexical_weight=0.0, solved_boost=0.05, vote_boost=0.05),  # dense and boosts
    IndexConfig(lexical_weight=0.4, answer_weight=1.0, solved_boost=0.02),
]


@pytest.mark.parametrize("config", CONFIGS, ids=["lexical", "boosts", "mixed"])
def test_search_returns_the_k_best_visible_threads_as_brute_force_does(config):
    rng = random.Random(7)
    for _ in range(6):  # random forums
        index = ForumIndex(FakeEmbedder(), config)
        threads = _random_threads(rng, rng.randint(20, 60))
        index.upsert(threads)
        by_id = {t.id: t for t in threads}
        for _ in range(15):  # random callers and queries
            groups, text, k = _caller(rng), _words(rng, 2, 5), rng.randint(1, 8)
            hits = index.search(text, k, groups=groups)
            got = [h.thread_id for h in hits]
            assert all(_visible(by_id[t], groups) for t in got)
            assert got == _brute_search(index, text, k, groups)
            # the same as a search of an index that holds only the threads the caller may see,
            # scores included: no word of a thread they may not see moves a score
            alone = ForumIndex(FakeEmbedder(), config)
            alone.upsert([t for t in threads if _visible(t, groups)])
            want = [(h.thread_id, h.score) for h in alone.search(text, k)]
            assert [(h.thread_id, h.score) for h in hits] == want


def test_groups_combine_with_tags_and_category_and_search_many_agrees():
    rng = random.Random(11)
    index = ForumIndex(FakeEmbedder())
    threads = _random_threads(rng, 50)
    index.upsert(threads)
    by_id = {t.id: t for t in threads}
    for _ in range(20):
        groups, tag = _caller(rng), rng.choice(WORDS[:4])
        texts = [_words(rng, 2, 4) for _ in range(3)]
        batch = index.search_many(texts, 5, tags=[tag], groups=groups)
        for text, hits in zip(texts, batch, strict=True):
            assert hits == index.search(text, 5, tags=[tag], groups=groups)
            everything = index.search(text, len(index))
            wanted = [h.thread_id for h in everything
                      if _visible(by_id[h.thread_id], groups) and tag in by_id[h.thread_id].tags][:5]
            assert [h.thread_id for h in hits] == wanted


def test_none_sees_everything_an_empty_set_only_public_threads_and_a_string_is_one_group():
    index = ForumIndex(FakeEmbedder())
    index.upsert([
        Thread("pub", "panic attack at night"),
        Thread("mod", "panic attack at night moderators", visible_to=("mods",)),
        Thread("m", "panic attack at night m", visible_to=("m",)),
    ])
    everyone = {h.thread_id for h in index.search("panic attack", 10)}
    assert everyone == {"pub", "mod", "m"}
    assert {h.thread_id for h in index.search("panic attack", 10, groups=())} == {"pub"}
    assert {h.thread_id for h in index.search("panic attack", 10, groups="mods")} == {"pub", "mod"}
    assert {h.thread_id for h in index.search("panic attack", 10, groups={"mods", "m"})} == everyone
    dups = index.find_duplicates("panic attack at night", threshold=0.0, k=10, groups=frozenset())
    assert [d.thread_id for d in dups] == ["pub"]


def test_duplicates_are_the_best_visible_questions_over_the_threshold_as_brute_force_finds():
    rng = random.Random(3)
    for _ in range(5):
        embedder = FakeEmbedder()
        index = ForumIndex(embedder)
        threads = _random_threads(rng, rng.randint(20, 60))
        index.upsert(threads)
        for _ in range(20):
            groups, text = _caller(rng), _words(rng, 3, 6)
            k, threshold = rng.randint(1, 6), rng.uniform(-0.2, 0.5)
            got = index.find_duplicates(text, threshold=threshold, k=k, groups=groups)
            query = embedder.encode([text])[0]
            cosines = sorted((-float(index.question_vector(t.id) @ query), t.id) for t in threads
                              if _visible(t, groups))
            wanted = [(tid, -c) for c, tid in cosines if -c >= threshold][:k]
            assert [d.thread_id for d in got] == [tid for tid, _ in wanted]
            assert [d.score for d in got] == pytest.approx([c for _, c in wanted], abs=1e-5)


def test_calibrated_verdicts_name_only_visible_threads_and_a_caller_in_every_group_sees_all():
    index = calibrated_sample_index()
    rng = random.Random(5)
    restricted = [dataclasses.replace(t, visible_to=tuple(rng.sample(GROUPS, 1)) if rng.random() < 0.6
                                      else ()) for t in index.threads()]
    stats = index.upsert(restricted)
    assert stats.embedded == 0  # only who may see them changed
    by_id = {t.id: t for t in restricted}
    for t in restricted[:25]:
        groups = _caller(rng)
        for d in index.find_duplicates(t.question_text, k=5, groups=groups):
            assert _visible(by_id[d.thread_id], groups)
            assert d.tier is not None
        assert index.find_duplicates(t.question_text, k=5, groups=GROUPS) == index.find_duplicates(
            t.question_text, k=5)
    assert any(t.visible_to for t in restricted) and any(not t.visible_to for t in restricted)


def test_visible_to_is_checked_naming_the_field():
    base = {"id": "t1", "title": "a title"}
    assert thread_from_dict(base).visible_to == ()
    assert thread_from_dict({**base, "visible_to": None}).visible_to == ()
    assert thread_from_dict({**base, "visible_to": ["mods", "grief", "mods"]}).visible_to == ("mods", "grief")
    for bad, reason in [
        ("mods", "'visible_to' must be a list"),
        ([""], r"'visible_to'\[0\] must not be empty"),
        (["mods", " grief"], r"'visible_to'\[1\] must not start or end with spaces"),
        ([7], r"'visible_to'\[0\] must be str"),
        (["x" * 201], "at most 200 characters"),
        (["g"] * 257, "more than 256"),
    ]:
        with pytest.raises(ValueError, match=reason):
            thread_from_dict({**base, "visible_to": bad})


def test_visible_to_survives_save_load_and_the_write_log_and_a_public_thread_stores_no_field(tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("pub", "panic at night"),
                  Thread("hid", "panic at night again", visible_to=("mods",))])
    index.save(tmp_path / "index")
    live = LiveIndex(tmp_path / "index", FakeEmbedder())
    assert [h.thread_id for h in live.search("panic night", groups=())] == ["pub"]
    assert {h.thread_id for h in live.search("panic night", groups=["mods"])} == {"pub", "hid"}
    # a snapshot written before the field existed holds public threads: lines without it
    stored = next((tmp_path / "index").rglob("threads.jsonl"))
    lines = [json.loads(line) for line in stored.read_text().splitlines()]
    assert [("visible_to" in line) for line in lines] == [False, True]
    # a write hides a thread from then on, here and in a process that replays the log
    live.upsert(Thread("pub", "panic at night", visible_to=("carers",)))
    assert live.search("panic night", groups=()) == []
    again = LiveIndex(tmp_path / "index", FakeEmbedder())
    assert again.search("panic night", groups=()) == []
    assert again.find_duplicates("panic at night", threshold=0.0, groups=["carers"])[0].thread_id == "pub"


# -- over HTTP, with tokens the way a forum signs them ----------------------------------------


def _token(groups, *, exp: float | None = None, key: str = SECRET, algorithm: str = "HS256") -> str:
    claims = {"groups": list(groups), "exp": int(exp or time.time() + 300)}
    return jwt.encode(claims, key, algorithm=algorithm)


@pytest.fixture(scope="module")
def forum_dir(tmp_path_factory):
    rng = random.Random(17)
    index = ForumIndex(FakeEmbedder())
    index.upsert(_random_threads(rng, 40))
    path = tmp_path_factory.mktemp("visibility") / "index"
    index.save(path)
    return path


def _client(index_dir, **settings) -> TestClient:
    settings = {"read_rate": "100000/second", **settings}  # these tests send many requests at once
    app = create_app(Settings(index_dir=index_dir, **settings), embedder=FakeEmbedder())
    return TestClient(app)


def test_http_shows_each_caller_exactly_the_threads_its_token_allows(forum_dir):
    rng = random.Random(23)
    with _client(forum_dir, token_secret=SECRET) as client:
        index = client.app.state.live.index
        by_id = {t.id: t for t in index.threads()}
        for i in range(40):
            groups, text, k = _caller(rng), _words(rng, 2, 5), rng.randint(1, 10)
            signed = rng.random() < 0.7
            headers = {"X-QA-Token": _token(groups)} if signed else {}
            seen = groups if signed else frozenset()
            if i % 2:
                r = client.get("/v1/search", params={"q": text, "k": k}, headers=headers)
            else:
                r = client.post("/v1/search", json={"q": text, "k": k}, headers=headers)
            assert r.status_code == 200, r.text
            got = [h["thread_id"] for h in r.json()["hits"]]
            assert got == _brute_search(index, text, k, seen)
            r = client.get("/v1/duplicates", params={"q": text, "k": k, "threshold": 0.1}, headers=headers)
            dups = [d["thread_id"] for d in r.json()["duplicates"]]
            assert all(_visible(by_id[t], seen) for t in dups)
            assert dups == [d.thread_id for d in index.find_duplicates(text, threshold=0.1, k=k, groups=seen)]
            posted = client.post("/v1/duplicates", json={"title": text, "k": k, "threshold": 0.1},
                                 headers=headers)
            assert posted.status_code == 200, posted.text
            assert [d["thread_id"] for d in posted.json()["duplicates"]] == dups


def _tampered(token: str) -> str:
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["groups"] = list(GROUPS)  # a caller granting itself every group
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


def _unsigned(groups) -> str:
    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'groups': groups, 'exp': time.time() + 300})}."


@pytest.mark.parametrize(("token", "reason"), [
    (lambda: _token(["mods"], exp=time.time() - 3600), "the search token has expired"),
    (lambda: _tampered(_token(["teens"])), "the search token's signature is wrong"),
    (lambda: _unsigned(["mods"]), "the search token must be signed with HS256"),
    (lambda: _token(["mods"], key="another-secret-just-as-long-as-the-real-one"),
     "the search token's signature is wrong"),
    (lambda: "not a token", "the search token is malformed"),
], ids=["expired", "tampered", "none", "wrong-secret", "garbage"])
def test_a_token_that_cannot_be_trusted_is_a_401_with_the_reason(forum_dir, token, reason):
    token = token()
    with _client(forum_dir, token_secret=SECRET) as client:
        for r in (client.get("/v1/search", params={"q": "panic attack"}, headers={"X-QA-Token": token}),
                  client.post("/v1/duplicates", json={"title": "panic attack"},
                              headers={"X-QA-Token": token})):
            assert r.status_code == 401
            assert r.json() == {"detail": reason}
            assert token not in r.text
            assert r.headers["WWW-Authenticate"] == "X-QA-Token"


def test_a_token_sent_to_a_service_without_a_secret_is_refused(forum_dir):
    with _client(forum_dir) as client:
        r = client.get("/v1/search", params={"q": "panic attack"}, headers={"X-QA-Token": _token(["mods"])})
        assert (r.status_code, r.json()) == (401, {"detail": "search tokens are not configured"})
        public = client.get("/v1/search", params={"q": "panic attack", "k": 40}).json()["hits"]
        index = client.app.state.live.index
        assert public and all(not index.get(h["thread_id"]).visible_to for h in public)


def test_require_token_refuses_reads_without_one(forum_dir):
    with _client(forum_dir, token_secret=SECRET, require_token=True) as client:
        for r in (client.get("/v1/search", params={"q": "panic attack"}),
                  client.post("/v1/search", json={"q": "panic attack"}),
                  client.get("/v1/duplicates", params={"q": "panic attack"}),
                  client.post("/v1/duplicates", json={"title": "panic attack"}),
                  client.get("/v1/search", params={"q": "panic attack"}, headers={"X-QA-Token": ""})):
            assert r.status_code == 401
            assert "a search token is required" in r.json()["detail"]
        r = client.get("/v1/search", params={"q": "panic attack"}, headers={"X-QA-Token": _token([])})
        assert r.status_code == 200
        assert client.get("/healthz").status_code == 200
    with pytest.raises(ValueError, match="require_token is set but token_secret is not"):
        Settings(index_dir=forum_dir, require_token=True)
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(index_dir=forum_dir, token_secret="short")


def test_threads_written_over_http_carry_visible_to_checked_without_echoing_it(tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("t0", "a public thread about sleep")])
    index.save(tmp_path / "index")
    with _client(tmp_path / "index", token_secret=SECRET, api_key="k" * 12) as client:
        key = {"X-API-Key": "k" * 12}
        thread = {"id": "t1", "title": "panic attack before the exam", "visible_to": ["teens"]}
        assert client.post("/v1/threads", json={"threads": [thread]}, headers=key).status_code == 200
        ids = lambda headers: [h["thread_id"] for h in client.get(  # noqa: E731
            "/v1/search", params={"q": "panic attack exam"}, headers=headers).json()["hits"]]
        assert "t1" not in ids({})
        assert "t1" not in ids({"X-QA-Token": _token(["mods"])})
        assert ids({"X-QA-Token": _token(["teens"])})[0] == "t1"
        for bad in (["  secret-group-name"], [""], "teens", ["x"] * 300, [1]):
            r = client.post("/v1/threads", json={"threads": [{**thread, "visible_to": bad}]}, headers=key)
            assert r.status_code == 422, bad
            assert "visible_to" in json.dumps(r.json()["detail"])
            assert "secret-group-name" not in r.text
        assert client.get("/v1/search", params={"q": "panic attack exam"},
                          headers={"X-QA-Token": _token(["teens"])}).json()["hits"][0]["thread_id"] == "t1"


def test_the_openapi_schema_documents_the_token_header(forum_dir):
    with _client(forum_dir, token_secret=SECRET) as client:
        schema = client.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["SearchToken"]
    assert (scheme["in"], scheme["name"]) == ("header", "X-QA-Token")
    for path, method in (("/v1/search", "get"), ("/v1/search", "post"), ("/v1/duplicates", "get"),
                         ("/v1/duplicates", "post")):
        assert {"SearchToken": []} in schema["paths"][path][method]["security"]
    assert schema["components"]["schemas"]["ThreadIn"]["properties"]["visible_to"]


def test_random_group_assignments_never_leak_to_an_outsider():
    """A caller outside every group a thread names never gets it back, whatever it searches for
    and however few public threads there are."""
    rng = random.Random(29)
    embedder = FakeEmbedder()
    for _ in range(5):
        index = ForumIndex(embedder, IndexConfig(lexical_weight=rng.choice([0.0, 1.0])))
        threads = [dataclasses.replace(t, visible_to=t.visible_to or (
                       tuple(rng.sample(GROUPS, 1)) if rng.random() < 0.8 else ()))
                   for t in _random_threads(rng, 40)]
        index.upsert(threads)
        by_id = {t.id: t for t in threads}
        for _ in range(20):
            groups = _caller(rng)
            text = rng.choice(threads).title  # often the exact title of a hidden thread
            k = rng.randint(1, 10)
            hits = index.search(text, k, groups=groups)
            assert all(_visible(by_id[h.thread_id], groups) for h in hits)
            visible = [t for t in threads if _visible(t, groups)]
            assert len(hits) == min(k, len(visible))  # no recall lost to the filter
            dups = index.find_duplicates(text, threshold=-1.0, k=k, groups=groups)
            assert [d.thread_id for d in dups] == [d.thread_id for d in index.find_duplicates(
                text, threshold=-1.0, k=len(index)) if _visible(by_id[d.thread_id], groups)][:k]


def _with_hidden_words(threads: list[Thread], n: int = 6) -> list[Thread]:
    """Threads for the "mods" group alone that repeat the forum's own words (so a public query
    holds them) and add one no public thread has."""
    rng = random.Random(3)
    return [Thread(f"h{i}", f"{rng.choice(threads).title} quentin", visible_to=("mods",)) for i in range(n)]


def test_relevance_and_duplicate_verdicts_read_only_the_threads_the_caller_may_see():
    """The relevance signals (which of the query's words the forum knows, how much of them a
    hit covers) and the duplicate scorer's lexical signals of a caller who may not see some
    threads are those of an index without them."""
    from qa_search.index.duplicates import _pair_features
    from qa_search.index.relevance import hit_signals

    public = calibrated_sample_index()
    threads = public.threads()
    both = ForumIndex(FakeEmbedder())
    both.upsert([*threads, *_with_hidden_words(threads)])
    both.calibration = public.calibration
    rng = random.Random(4)
    for text in [f"{rng.choice(threads).title} quentin" for _ in range(6)]:
        hits = [(h.thread_id, h.score) for h in public.search(text, 5)]
        assert hits == [(h.thread_id, h.score) for h in both.search(text, 5, groups=[])]
        np.testing.assert_array_equal(hit_signals(both, text, hits, viewer=frozenset()),
                                      hit_signals(public, text, hits))
        assert both.find_duplicates(text, groups=["grief"]) == public.find_duplicates(text)
        # the pair signals themselves, lexical ones included, whatever the fitted scorer reads
        ids, zeros = [t for t, _ in hits], np.zeros(len(hits))
        np.testing.assert_array_equal(
            _pair_features(both, [text] * len(ids), ids, zeros, zeros, zeros, frozenset({"grief"})),
            _pair_features(public, [text] * len(ids), ids, zeros, zeros, zeros))
    # a caller in the group reads every thread, as the operator does
    assert both.lexical_for(frozenset({"mods"})) is both.lexical_for(None) is both.lexical_index()


def test_a_callers_statistics_follow_every_write_of_a_thread_they_may_not_see(tmp_path):
    rng = random.Random(9)
    threads = _random_threads(rng, 40)
    public = [dataclasses.replace(t, visible_to=()) for t in threads if not t.visible_to]
    index = ForumIndex(FakeEmbedder())
    index.upsert(threads)
    texts = [_words(rng, 2, 4) for _ in range(5)]

    def agrees(visible: list[Thread]) -> None:
        alone = ForumIndex(FakeEmbedder())
        alone.upsert(visible)
        for text in texts:
            want = [(h.thread_id, h.score) for h in alone.search(text, 5)]
            assert [(h.thread_id, h.score) for h in index.search(text, 5, groups=[])] == want

    agrees(public)
    hidden = [t for t in threads if t.visible_to]
    index.upsert(dataclasses.replace(hidden[0], visible_to=()))  # made public
    public.append(dataclasses.replace(hidden[0], visible_to=()))
    agrees(public)
    index.upsert(dataclasses.replace(public[0], visible_to=("mods",)))  # made private
    agrees(public[1:])
    index.delete([hidden[1].id])  # a hidden thread goes: nothing a public caller sees changes
    agrees(public[1:])
    index.upsert(Thread("new", f"{texts[0]} exam", visible_to=("teens",)))
    agrees(public[1:])
    index.save(tmp_path / "ix")  # a loaded index knows its restricted threads again
    index = ForumIndex.load(tmp_path / "ix", FakeEmbedder())
    agrees(public[1:])


def test_a_callers_view_follows_every_change_of_a_threads_readers_whatever_it_kept():
    """The labels a caller sees are kept between searches (per group, and per caller of several
    groups), as are the views: a thread moved out of the caller's sets leaves what their scores
    read at once, whether it moves to a set numbered for it or to one numbered before, and a set
    numbered later that names a group of theirs joins their view."""
    rng = random.Random(21)
    threads = {t.id: dataclasses.replace(t, visible_to=()) for t in _random_threads(rng, 30)}
    # private messages: one set of groups per pair of users, each read by the moderators too
    for i in range(12):
        threads[f"pm{i}"] = Thread(f"pm{i}", f"{_words(rng, 2, 4)} quentin", visible_to=(f"user{i}", "mods"))
    index = ForumIndex(FakeEmbedder())
    index.upsert(threads.values())
    callers = [frozenset(), frozenset({"user1"}), frozenset({"user1", "grief"}), frozenset({"mods"}),
               frozenset({"mods", "user1"}), frozenset({"user2", "teens"})]
    texts = ["quentin", *(f"{_words(rng, 2, 3)} quentin" for _ in range(3))]

    def agrees(asked: list[frozenset[str]] = callers) -> None:
        for groups in asked:
            alone = ForumIndex(FakeEmbedder())
            alone.upsert(dataclasses.replace(t, visible_to=())
                         for t in threads.values() if _visible(t, groups))
            for text in texts:
                want = [(h.thread_id, h.score) for h in alone.search(text, 6)]
                assert [(h.thread_id, h.score) for h in index.search(text, 6, groups=groups)] == want, (
                    sorted(groups), text)

    def moved(thread_id: str, visible_to: tuple[str, ...]) -> None:
        threads[thread_id] = dataclasses.replace(threads[thread_id], visible_to=visible_to)
        index.upsert(threads[thread_id])

    agrees()  # every caller's labels and view are now kept
    numbered = len(index._audiences)
    moved("pm1", ("user99", "mods"))  # out of user1's sets, to a set of its own
    assert len(index._audiences) == numbered + 1
    agrees()
    moved("pm1", ("user1", "mods"))  # back, and out again, between sets numbered before
    agrees()
    agrees([frozenset({"user1"})])  # its view is the one kept last, and asked for first below
    moved("pm1", ("user99", "mods"))
    assert len(index._audiences) == numbered + 1  # what changed is the thread's label alone
    agrees([frozenset({"user1"}), *callers])
    moved("pm3", ("grief",))  # into sets numbered later, naming groups of callers seen before
    moved("pm5", ("user1", "teens"))
    assert len(index._audiences) == numbered + 3
    agrees()
