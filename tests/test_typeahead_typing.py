"""The ``typing`` search option: a typeahead's text, whose last word may be unfinished, searched
without that word where the caller's forum does not know it, so the hits do not blink while a
word is being typed; in the library, over HTTP and in the demo page's and widget's requests."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import SAMPLE_DUMP, FakeEmbedder, calibrated_sample_index
from fastapi.testclient import TestClient

from qa_search import ForumIndex, LiveIndex, Thread, read_dump
from qa_search.index.search import typed_text
from service.app import create_app
from service.settings import Settings

THREADS = [
    Thread("t1", "how do I sleep after a panic attack at night"),
    Thread("t2", "my partner does not understand my depression"),
    Thread("t3", "worried about money and debt every day"),
    Thread("t4", "is it normal to feel anxious all the time"),
]


@pytest.fixture
def index() -> ForumIndex:
    forum = ForumIndex(FakeEmbedder())
    forum.upsert(THREADS)
    return forum


def _ids(hits) -> list[tuple[str, float]]:
    return [(h.thread_id, h.score) for h in hits]


@pytest.mark.parametrize(("typed", "searched"), [
    ("my partner does not underst", "my partner does not"),  # an unfinished word the forum lacks
    ("my partner does not understand", "my partner does not understand"),  # a known word
    ("my partner does not understanding", "my partner does not understanding"),  # known by its stem
    ("worried about mon", "worried about"),
    ("worried about the", "worried about the"),  # a stop word has no term: as typed
    ("worried about a", "worried about a"),  # nor does a one-letter word
    ("worried about qzx ", "worried about qzx"),  # a space says the word is finished
    ("worried about qzx?", "worried about qzx?"),  # and so does punctuation
    ("qzxv", "qzxv"),  # gibberish alone is searched as typed (and finds nothing relevant)
    ("the qzxv", "the qzxv"),  # its only content word
    ("panic, qzxv", "panic,"),
])
def test_an_unknown_last_word_is_left_out_while_typing(index, typed, searched):
    assert typed_text(index, typed) == searched


def test_typing_searches_the_text_left_and_is_off_by_default(index):
    typed = "my partner does not underst"
    left = "my partner does not"
    for k in (1, 3):
        with_typing = index.search(typed, k, typing=True, highlight=True)
        assert with_typing == index.search(left, k, highlight=True)  # scores, snippets, highlights alike
        assert index.search(typed, k) != with_typing  # the fake embedder reads every word
    # a complete query is unchanged, and the option is off unless asked for
    assert index.search(typed, 3, typing=False) == index.search(typed, 3)
    finished = "my partner does not understand"
    assert index.search(finished, 3, typing=True) == index.search(finished, 3)
    # search_many reads each text on its own
    many = index.search_many([typed, finished, "  "], 2, typing=True)
    assert many == [index.search(left, 2), index.search(finished, 2), []]


def test_a_reranked_search_reranks_against_the_text_left(index):
    class Reading:  # a reranker that notes what it reads and keeps the search's order
        def __init__(self) -> None:
            self.read: set[str] = set()

        def score(self, pairs):
            self.read |= {text for text, _ in pairs}
            return np.array([1.0 - n / 100 for n in range(len(pairs))])

    index.reranker = reranker = Reading()
    index.search("my partner does not underst", 3, typing=True, rerank=True)
    assert reranker.read == {"my partner does not"}
    index.search("my partner does not underst", 3, rerank=True)
    assert reranker.read == {"my partner does not", "my partner does not underst"}


def test_the_text_left_is_what_is_embedded():
    embedder = FakeEmbedder()
    forum = ForumIndex(embedder)
    forum.upsert(THREADS)
    seen: list[str] = []
    encode = embedder.encode
    embedder.encode = lambda texts, **kw: seen.extend(texts) or encode(texts, **kw)  # type: ignore[method-assign]
    forum.search("worried about mon", 2, typing=True)
    assert seen == ["worried about"]


def test_a_live_index_keeps_the_space_that_ends_a_word(tmp_path, index):
    index.save(tmp_path / "ix")
    live = LiveIndex(tmp_path / "ix", FakeEmbedder())
    try:
        # without typing a query is trimmed, as before; with it the end space says "finished"
        assert live.search("worried about qzx ", 2) == index.search("worried about qzx", 2)
        assert live.search("worried about qzx ", 2, typing=True) == index.search("worried about qzx", 2)
        assert live.search("  worried about qzx", 2, typing=True) == index.search("worried about", 2)
        page = live.search_page("worried about qzx", 1, typing=True)
        assert list(page.hits) == index.search("worried about", 1)
        assert live.search_page("worried about qzx", 1).hits != page.hits
    finally:
        live.stop()


def test_a_word_only_hidden_threads_hold_is_unknown_to_a_caller_who_may_not_see_them():
    """The caller's hits, scores and relevance signals are those of an index holding only the
    threads they may see: whether a hidden thread holds the last word never shows."""
    from qa_search.index.relevance import hit_signals

    public = calibrated_sample_index()
    threads = public.threads()
    rng = random.Random(5)
    hidden = [Thread(f"h{i}", f"{rng.choice(threads).title} quentin", visible_to=("mods",)) for i in range(4)]
    both = ForumIndex(FakeEmbedder())
    both.upsert([*threads, *hidden])
    both.calibration = public.calibration
    for title in (rng.choice(threads).title for _ in range(5)):
        text = f"{title.rstrip('?.!')} quentin"
        alone = public.search(text, 5, typing=True)
        assert both.search(text, 5, typing=True, groups=[]) == alone
        assert both.search(text, 5, typing=True, groups=["grief"]) == alone
        hits = [(h.thread_id, h.score) for h in alone]
        left = typed_text(both, text, frozenset())
        assert left == typed_text(public, text) != text
        assert (hit_signals(both, left, hits, viewer=frozenset()) == hit_signals(public, left, hits)).all()
        # the moderators, and the operator, know the word: their text is searched whole
        assert typed_text(both, text, frozenset({"mods"})) == typed_text(both, text) == text
        assert _ids(both.search(text, 5, typing=True, groups=["mods"])) == _ids(both.search(text, 5,
                                                                                           groups=["mods"]))


def test_misspelt_keyword_is_still_told(index):
    with pytest.raises(TypeError, match="'typeing'"):
        index.search("worried", 2, typeing=True)  # type: ignore[call-arg]


@pytest.fixture
def client(tmp_path):
    forum = ForumIndex(FakeEmbedder())
    # a word only the staff's thread holds: unknown to an anonymous caller, so left out for them
    forum.upsert([*THREADS, Thread("s1", "qzxv secret word", visible_to=("staff",))])
    forum.save(tmp_path / "ix")
    app = create_app(Settings(index_dir=tmp_path / "ix", min_relevance=0), embedder=FakeEmbedder())
    with TestClient(app) as c:
        yield c, forum


def _pairs(body: dict) -> list[tuple[str, float]]:
    return [(h["thread_id"], h["score"]) for h in body["hits"]]


def test_the_search_route_takes_typing_on_get_and_post(client):
    c, forum = client
    typed, left = "worried about qzxv", "worried about"
    want = _ids(forum.search(left, 3, groups=[]))
    assert want != _ids(forum.search(typed, 3, groups=[]))
    got = c.get("/v1/search", params={"q": typed, "k": 3, "typing": "true"})
    assert got.status_code == 200 and _pairs(got.json()) == want
    posted = c.post("/v1/search", json={"q": typed, "k": 3, "typing": True})
    assert posted.status_code == 200 and _pairs(posted.json()) == want
    # off by default: the text as sent
    plain = c.post("/v1/search", json={"q": typed, "k": 3}).json()
    assert _pairs(plain) == _ids(forum.search(typed, 3, groups=[]))
    # a space after the word keeps it, over HTTP too
    spaced = c.post("/v1/search", json={"q": typed + " ", "k": 3, "typing": True}).json()
    assert _pairs(spaced) == _ids(forum.search(typed, 3, groups=[]))
    bad = c.post("/v1/search", json={"q": typed, "typing": "yes"})
    assert bad.status_code == 422 and typed not in bad.text


@pytest.mark.parametrize("script", ["app.js", "widget.js"])
def test_the_demo_page_and_the_widget_send_typing(script):
    """Their typeahead requests ask for it, and keep the end of the text as typed (a trailing
    space is what says the last word is finished)."""
    from pathlib import Path

    source = (Path(__file__).parent.parent / "service" / "static" / script).read_text()
    assert "typing: true" in source
    assert ".trimStart()" in source


@pytest.mark.slow
def test_with_the_real_model_the_hits_blink_less_inside_a_word(real_embedder):
    """On the sample forum at the shipped relevance cut, k 5, from the third character: the
    keystrokes whose hits vanish mid-word (the text ends in a letter) and come back later."""
    from qa_search.index.relevance import relevance_model

    forum = ForumIndex(real_embedder)
    forum.upsert(read_dump(SAMPLE_DUMP))
    model = relevance_model(forum)
    assert model is not None
    cut = model.min_relevance

    def vanished(text: str, typing: bool) -> int:
        shown = [bool(forum.search(text[:i], 5, min_relevance=cut, typing=typing))
                 for i in range(3, len(text) + 1)]
        return sum(1 for i in range(1, len(shown)) if shown[i - 1] and not shown[i] and any(shown[i:])
                   and text[i + 2].isalnum())

    for text in ("my partner does not understand my depression", "I can't sleep because I worry about money"):
        before, after = vanished(text, False), vanished(text, True)
        assert after < before, (text, before, after)
        # the finished text is searched as it is either way
        finished = forum.search(text, 5, min_relevance=cut)
        assert forum.search(text, 5, min_relevance=cut, typing=True) == finished
