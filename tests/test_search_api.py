"""The search page's API: pages, several categories, a date range, closed threads left out, the
recency boost and highlights, in the library, over HTTP (GET and POST) and in the CLI. Rankings
are checked against brute force: every thread scored by ``score_threads``, filtered by the
test's own reading of the filters, sorted."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from conftest import FakeEmbedder
from fastapi.testclient import TestClient

from qa_search import ForumIndex, Thread
from qa_search.cli import main
from qa_search.index.refine import RECENCY_BOOST
from qa_search.scoring.lexical import tokenize
from service.app import create_app
from service.schemas import MAX_OFFSET
from service.settings import Settings

WORDS = ("panic", "attack", "night", "sleep", "therapist", "mistake", "grief", "father", "anxiety",
         "breathing", "work", "friend", "partner", "anger", "shame", "worry", "school", "exam", "lonely",
         "family", "doctor", "medication", "calm", "heart")
CATEGORIES = ("Anxiety", "Psychotherapists", "Grief", "Relationships")
QUERIES = ("panic attack at night", "my therapist made a mistake", "grief after my father died",
           "calm breathing for exam worry")


def _created(rng: random.Random, i: int) -> str | None:
    moment = datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(days=rng.randrange(2000),
                                                                   minutes=rng.randrange(1440))
    form = i % 6
    if form == 0:
        return None
    if form == 1:
        return "last Tuesday"  # not ISO 8601: outside every date range
    if form == 2:
        return moment.date().isoformat()
    if form == 3:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == 4:
        return moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    return moment.replace(tzinfo=None).isoformat()  # naive: UTC


def _threads(n: int = 240, seed: int = 7) -> list[Thread]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        extra = {"closed_at": "2025-01-01T00:00:00Z"} if rng.random() < 0.25 else {}
        out.append(Thread(
            f"t{i:03d}", " ".join(rng.choices(WORDS, k=rng.randrange(3, 8))).capitalize() + "?",
            " ".join(rng.choices(WORDS, k=rng.randrange(0, 12))), category=rng.choice(CATEGORIES),
            created_at=_created(rng, i), extra=extra,
        ))
    return out


@pytest.fixture(scope="module")
def forum(tmp_path_factory):
    index = ForumIndex(FakeEmbedder())
    index.upsert(_threads())
    path = tmp_path_factory.mktemp("search-api") / "index"
    index.save(path)
    return index, path


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _brute(index: ForumIndex, text: str, k: int, keep=lambda t: True, boost=lambda t: 0.0) -> list[str]:
    threads = [t for t in index.threads() if keep(t)]
    scores = index.score_threads(text, [t.id for t in threads])
    ranked = sorted(((-(s + boost(t)), t.id) for t, s in zip(threads, scores, strict=True)))
    return [tid for _, tid in ranked[:k]]


def _ids(hits) -> list[str]:
    return [h.thread_id for h in hits]


# -- the library ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", QUERIES)
def test_pages_are_disjoint_and_concatenate_to_the_ranking(forum, text):
    index, _ = forum
    whole = index.search(text, 42)
    pages = [index.search(text, 7, offset=offset) for offset in range(0, 42, 7)]
    assert [len(p) for p in pages] == [7] * 6
    joined = [h for page in pages for h in page]
    assert _ids(joined) == _ids(whole) and len(set(_ids(joined))) == 42
    assert [h.score for h in joined] == [h.score for h in whole]
    # past the last thread: an empty page
    assert index.search(text, 5, offset=len(index)) == []
    with pytest.raises(ValueError, match="offset must be at least 0"):
        index.search(text, 5, offset=-1)


@pytest.mark.parametrize("text", QUERIES)
def test_filters_are_exact(forum, text):
    index, _ = forum
    after, before = datetime(2021, 3, 1, tzinfo=timezone.utc), datetime(2023, 9, 1, tzinfo=timezone.utc)
    wanted = {"Anxiety", "Grief"}

    def dated(t: Thread) -> bool:
        moment = _moment(t.created_at)
        return moment is not None and after <= moment < before

    cases = [
        ({"category": sorted(wanted)}, lambda t: t.category in wanted),
        ({"category": "Grief"}, lambda t: t.category == "Grief"),
        ({"exclude_closed": True}, lambda t: not t.extra.get("closed_at")),
        ({"created_after": "2021-03-01"}, lambda t: _moment(t.created_at) is not None
         and _moment(t.created_at) >= after),
        ({"created_before": "2023-09-01T00:00:00Z"}, lambda t: _moment(t.created_at) is not None
         and _moment(t.created_at) < before),
        ({"created_after": "2021-03-01T02:00:00+02:00", "created_before": datetime(2023, 9, 1),
          "category": sorted(wanted), "exclude_closed": True},
         lambda t: dated(t) and t.category in wanted and not t.extra.get("closed_at")),
    ]
    for options, keep in cases:
        got = index.search(text, 12, **options)
        assert _ids(got) == _brute(index, text, 12, keep), options
        assert all(keep(index.get(h.thread_id)) for h in got)
        # the filters page too: the second page continues the first
        second = index.search(text, 12, offset=12, **options)
        assert _ids(got + second) == _brute(index, text, 24, keep), options


def test_a_filter_that_keeps_few_threads_is_exact_without_reading_the_whole_index(monkeypatch):
    """A filter that keeps none or few of the threads near the query would send the candidate
    lists ever deeper, to the whole index, at a cost that grows with the query's words: the
    search scores the threads the filter keeps instead, once the lists would pass an eighth of
    the index, and stays exact."""
    index = ForumIndex(FakeEmbedder())
    threads = _threads(1600, seed=3)
    rare = {t.id for t in threads[::97]}
    index.upsert([Thread(t.id, t.title, t.body, t.answers, tags=("rare",) if t.id in rare else ("common",),
                         category=t.category, created_at=t.created_at) for t in threads])
    asked: list[int] = []
    search = type(index.question_index).search
    monkeypatch.setattr(type(index.question_index), "search",
                        lambda self, q, n: asked.append(n) or search(self, q, n))
    long_query = " ".join(WORDS * 12)  # every word: the lexical lists are as long as they get
    for text in (*QUERIES, long_query):
        for options, keep in (({"tags": ["nobody-uses-this"]}, lambda t: False),
                              ({"created_after": "2099-01-01"}, lambda t: False),
                              ({"tags": ["rare"]}, lambda t: t.id in rare)):
            asked.clear()
            got = index.search(text, 10, **options)
            assert _ids(got) == _brute(index, text, 10, keep), options
            assert max(asked) < len(index) / 2, options

def test_date_filters_refuse_what_is_not_iso_8601_without_repeating_it(forum):
    index, _ = forum
    with pytest.raises(ValueError, match="created_after must be an ISO 8601") as err:
        index.search("panic", 5, created_after="next Friday-ish")
    assert "Friday" not in str(err.value)
    with pytest.raises(ValueError, match="earlier than created_before"):
        index.search("panic", 5, created_after="2024-01-01", created_before="2023-01-01")
    for bad in (0, -3, float("nan"), 100_000):
        with pytest.raises(ValueError, match="recency_half_life_days"):
            index.search("panic", 5, recency_half_life_days=bad)


def test_recency_orders_equal_scores_newest_first_and_stays_bounded():
    text = "How do I stop a panic attack at night?"
    now = datetime.now(timezone.utc)
    ages = {"old": 3000, "mid": 400, "new": 3, "undated": None}
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread(name, text, created_at=None if age is None else str(now - timedelta(days=age)))
                  for name, age in ages.items()])
    index.upsert([Thread("other", "Grief after my father died")])
    # same text, same score: without a boost the tie goes by id
    plain = index.search(text, 5)
    assert _ids(plain)[:4] == ["mid", "new", "old", "undated"]
    boosted = index.search(text, 5, recency_half_life_days=365)
    assert _ids(boosted)[:4] == ["new", "mid", "old", "undated"]
    base = plain[0].score
    by_id = {h.thread_id: h.score for h in boosted}
    assert by_id["new"] - base == pytest.approx(RECENCY_BOOST * 0.5 ** (3 / 365), abs=1e-5)
    assert by_id["mid"] - base == pytest.approx(RECENCY_BOOST * 0.5 ** (400 / 365), abs=1e-5)
    assert by_id["undated"] == pytest.approx(base, abs=1e-6)
    # a short half-life makes even a year-old thread's boost vanish
    assert _ids(index.search(text, 5, recency_half_life_days=1))[:2] == ["new", "mid"]


@pytest.mark.parametrize("text", QUERIES)
def test_recency_ranking_is_exact(forum, text):
    index, _ = forum
    now = datetime.now(timezone.utc)

    def boost(t: Thread) -> float:
        moment = _moment(t.created_at)
        if moment is None:
            return 0.0
        return RECENCY_BOOST * 0.5 ** (max(0.0, (now - moment).total_seconds()) / (200 * 86400))

    assert _ids(index.search(text, 15, recency_half_life_days=200)) == _brute(index, text, 15, boost=boost)


def test_highlights_point_at_the_query_terms_stemmed_matches_included():
    index = ForumIndex(FakeEmbedder())
    index.upsert([
        Thread("t1", "😟 Attacks of panic, every night", "I panic at night when the attacks come."),
        Thread("t2", "Sleeping badly", "No sleep: the nights are long."),
    ])
    hits = {h.thread_id: h for h in index.search("panic attack at night", 2, highlight=True)}
    first = hits["t1"]
    marked = [first.title[s:e] for s, e in first.highlights.title]
    assert marked == ["Attacks", "panic", "night"]  # "of", "every" are not query terms
    assert [first.snippet[s:e] for s, e in first.highlights.snippet] == ["panic", "night", "attacks"]
    # each marked word stems to one of the query's terms
    terms = set(tokenize(["panic attack at night"])[0])
    assert all(tokenize([w])[0][0] in terms for w in marked)
    second = hits["t2"]
    assert [second.snippet[s:e] for s, e in second.highlights.snippet] == ["nights"]
    assert second.highlights.title == ()
    # not asked: not computed
    assert all(h.highlights is None for h in index.search("panic attack at night", 2))


# -- over HTTP --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(forum):
    _, path = forum
    app = create_app(Settings(index_dir=path, read_rate="0"), embedder=FakeEmbedder())
    with TestClient(app) as c:
        yield c


def _get(client, **params):
    resp = client.get("/v1/search", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _post(client, **body):
    resp = client.post("/v1/search", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_http_pages_follow_next_offset_to_the_end(forum, client, method):
    index, _ = forum
    call = _get if method == "GET" else _post
    text = QUERIES[0]
    seen, offset, pages = [], 0, 0
    while offset is not None and pages < 100:
        body = call(client, q=text, k=50, offset=offset, category=["Anxiety"], exclude_closed=True)
        seen += [h["thread_id"] for h in body["hits"]]
        offset, pages = body["next_offset"], pages + 1
    matching = [t.id for t in index.threads() if t.category == "Anxiety" and not t.extra.get("closed_at")]
    assert pages == -(-len(matching) // 50) and len(seen) == len(set(seen)) == len(matching)
    # public threads only for a caller without a token; these are all public
    assert seen == _ids(index.search(text, len(matching), category=["Anxiety"], exclude_closed=True,
                                     groups=[]))


def test_http_filters_and_highlights_match_the_library(forum, client):
    index, _ = forum
    text = QUERIES[1]
    options = {"category": ["Psychotherapists", "Grief"], "created_after": "2021-01-01",
               "created_before": "2024-06-30T12:00:00Z", "exclude_closed": True,
               "recency_half_life_days": 90.0}
    want = _ids(index.search(text, 8, groups=[], **options))
    got = _get(client, q=text, k=8, **options)
    posted = _post(client, q=text, k=8, **options)
    assert [h["thread_id"] for h in got["hits"]] == [h["thread_id"] for h in posted["hits"]] == want
    assert all("highlights" not in h for h in got["hits"])
    marked = _post(client, q=text, k=8, highlight=True, **options)
    for hit in marked["hits"]:
        for field in ("title", "snippet"):
            spans = hit["highlights"][field]
            assert spans == sorted(spans)
            words = [hit[field][s:e] for s, e in spans]
            assert all(tokenize([w])[0][0] in set(tokenize([text])[0]) for w in words)
    assert any(hit["highlights"]["title"] for hit in marked["hits"])
    # a single category as a plain string, in the body
    single = _post(client, q=text, k=5, category="Grief")
    assert all(index.get(h["thread_id"]).category == "Grief" for h in single["hits"])


@pytest.mark.parametrize("params, needle", [
    ({"offset": MAX_OFFSET + 1}, "offset"),
    ({"offset": -1}, "offset"),
    ({"created_after": "the day before yesterday"}, "ISO 8601"),
    ({"created_before": "2024-13-45"}, "ISO 8601"),
    ({"created_after": "2024-02-01", "created_before": "2024-01-01"}, "earlier than"),
    ({"recency_half_life_days": 0}, "recency_half_life_days"),
    ({"recency_half_life_days": 40_000}, "recency_half_life_days"),
    ({"category": [f"c{i}" for i in range(51)]}, "category"),
])
def test_http_refuses_out_of_bounds_parameters_without_echoing_them(client, params, needle):
    for resp in (client.get("/v1/search", params={"q": "panic attack", **params}),
                 client.post("/v1/search", json={"q": "panic attack", **params})):
        assert resp.status_code == 422, (params, resp.text)
        assert needle in resp.text
        assert "yesterday" not in resp.text and "2024-13-45" not in resp.text


def test_http_post_types_are_strict(client):
    for body in ({"offset": "3"}, {"offset": True}, {"exclude_closed": "yes"}, {"highlight": 1},
                 {"recency_half_life_days": True}, {"created_after": 1700000000}, {"category": [3]},
                 {"page": 2}):
        resp = client.post("/v1/search", json={"q": "panic attack", **body})
        assert resp.status_code == 422, body


def test_http_last_page_before_the_offset_bound_has_no_next(client):
    body = _post(client, q="panic attack", k=5, offset=MAX_OFFSET - 2)
    assert body["next_offset"] is None  # the next page would start past MAX_OFFSET


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_search_pages_filters_and_highlights(forum, fake_cli):
    index, path = forum
    text = QUERIES[2]
    args = ["search", str(path), text, "-k", "4", "--offset", "4", "--category", "Grief", "--category",
            "Anxiety", "--exclude-closed", "--created-after", "2020-06-01", "--recency-half-life-days", "365",
            "--highlight", "--json"]
    r = fake_cli.invoke(main, args)
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)["hits"]
    want = index.search(text, 4, offset=4, category=["Grief", "Anxiety"], exclude_closed=True,
                        created_after="2020-06-01", recency_half_life_days=365)
    assert [h["thread_id"] for h in hits] == _ids(want)
    assert all(h["highlights"] is not None for h in hits)
    plain = fake_cli.invoke(main, ["search", str(path), "panic attack at night", "-k", "2", "--highlight"])
    assert plain.exit_code == 0 and "[" in plain.output.split("] ", 1)[1]
    bad = fake_cli.invoke(main, ["search", str(path), text, "--created-before", "soonish"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.output and "soonish" not in bad.output


def test_http_pages_under_a_relevance_cut_stay_disjoint_and_never_lead_to_an_empty_page():
    from qa_search import SearchHit, SearchPage
    from service.schemas import MAX_OFFSET

    relevance = [0.9, 0.1, 0.8, 0.7, 0.2, 0.6, 0.95, 0.5, 0.05, 0.4, 0.3, 0.9]
    ranking = [SearchHit(f"t{i}", 1 - i / 100, "title", "question", None, "snippet", relevance=r)
               for i, r in enumerate(relevance)]
    k, cut, offset, seen = 3, 0.25, 0, []
    while offset is not None:
        # what LiveIndex.search_page does for the route: k + 1 threads from the offset, uncut
        page = SearchPage.of(ranking[offset:offset + k + 1], offset, k, cut, MAX_OFFSET)
        assert page.hits, f"an empty page at {offset}"
        assert all(h.relevance >= cut for h in page.hits)
        seen += [h.thread_id for h in page.hits]
        offset = page.next_offset
    assert len(seen) == len(set(seen))
    # in ranking order, every thread above the cut up to where the pages stopped
    last = seen[-1]
    want = [h.thread_id for h in ranking[: int(last[1:]) + 1] if h.relevance >= cut]
    assert seen == want
    # no cut (a model without a relevance model): the pages are the whole ranking
    offset, seen = 0, []
    while offset is not None:
        page = SearchPage.of(ranking[offset:offset + k + 1], offset, k, None, MAX_OFFSET)
        seen += [h.thread_id for h in page.hits]
        offset = page.next_offset
    assert seen == [h.thread_id for h in ranking]
