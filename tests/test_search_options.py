"""The search keywords (``SearchOptions``) as every search method takes them: each one reaches the
ranking through ``LiveIndex.search`` and ``ForumIndex.search``/``search_many``, and a keyword
that is not one of them is a ``TypeError``, as for any function."""

from __future__ import annotations

import pytest
from conftest import FakeEmbedder

from qa_search import ForumIndex, LiveIndex, SearchOptions, Thread
from qa_search.index.search import search_many

THREADS = [
    Thread("a", "panic attack at night", tags=("panic",), category="Anxiety",
           created_at="2021-01-01T00:00:00Z"),
    Thread("b", "panic attacks at night again", tags=("sleep",), category="Sleep",
           created_at="2025-06-01T00:00:00Z", extra={"closed_at": "2025-07-01T00:00:00Z"}),
    Thread("c", "night panic and breathing", tags=("panic", "sleep"), category="Anxiety",
           created_at="2024-01-01T00:00:00Z", visible_to=("mods",)),
    Thread("d", "grief after my father died", category="Grief"),
]
TEXT = "panic at night"

# each changes what the unfiltered search returns for TEXT (checked below), so one that did not
# reach the ranking would show
OPTIONS: list[SearchOptions] = [
    {"tags": ["sleep"]},
    {"tags": "panic"},
    {"category": "Anxiety"},
    {"category": ["Sleep", "Grief"]},
    {"groups": ()},
    {"created_after": "2024-01-01"},
    {"created_before": "2024-01-01"},
    {"exclude_closed": True},
    {"highlight": True},
    {"recency_half_life_days": 36500.0},  # old threads: a boost that still shows
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("options") / "index"
    index = ForumIndex(FakeEmbedder())
    index.upsert(THREADS)
    index.save(path)
    return index, LiveIndex(path, FakeEmbedder())


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(o))
def test_each_keyword_reaches_the_search_through_every_method(served, options):
    index, live = served
    everything = index.search(TEXT, 4)
    hits = index.search(TEXT, 4, **options)
    assert live.search(TEXT, 4, **options) == hits
    assert index.search_many([TEXT, "  "], 4, **options) == [hits, []]
    assert search_many(index, [TEXT], 4, **options) == [hits]
    assert hits != everything


def test_min_relevance_reaches_the_check_through_every_method(served):
    # the fake embedder's index has no relevance model to cut by, but the value is still checked
    index, live = served
    for call in (live.search, index.search, lambda t, **o: index.search_many([t], **o)):
        with pytest.raises(ValueError, match=r"min_relevance must be a probability in \[0, 1\]"):
            call(TEXT, min_relevance=1.5)
        assert call(TEXT, min_relevance=1.0) == call(TEXT)


def test_an_unknown_keyword_is_a_type_error_naming_it_wherever_a_search_is_called(served):
    index, live = served
    calls = [
        lambda: index.search(TEXT, tag=["panic"]),
        lambda: index.search_many([TEXT], exclude_close=True),
        lambda: index.search(TEXT, rerank=True, catgory="Anxiety"),  # before a missing reranker
        lambda: live.search(TEXT, 3, tag="panic"),
        lambda: live.search("", tag="panic"),  # a query too short to search is still checked
        lambda: search_many(index, [TEXT], 3, rerank=True),  # reranking is the index's, not here
    ]
    for call in calls[:-1]:  # an index's methods rerank
        with pytest.raises(TypeError, match=r"got an unexpected keyword argument '(tag|exclude_close|"
                                            r"catgory)'; a search takes k, offset, rerank and category"):
            call()
    with pytest.raises(TypeError, match=r"got an unexpected keyword argument 'rerank'; a search takes "
                                        r"k, offset and category"):
        calls[-1]()
