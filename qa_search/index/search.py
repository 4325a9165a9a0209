"""Similar-thread search over an index's contents: exact fused ranking, reranking, neighbours.

A thread's score is its dense score (question and best answer chunk, see
:func:`~qa_search.scoring.fusion.thread_dense_score`) plus its boost plus the weighted lexical
score. The ranking by that score is exact: the candidate lists are fetched deeper until no
thread outside them can beat the k-th. Filters (tags, categories, dates, closed threads, the
caller's groups) are exact too: a thread they leave out is never scored, and the lists go deeper
to make up for it, until they would reach an eighth of the index: then every thread the filter
keeps is scored instead, so a filter that keeps nothing (a tag nobody uses) costs one pass of
the filter, not a read of every list. A recency boost (off by default) is one more bounded
term of the score, so the ranking stays exact with it; a page (``offset``) is a slice of that
exact ranking.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from qa_search.index import refine
from qa_search.index.contents import IndexContents, as_str_list
from qa_search.index.parts import ANSWER, QUESTION, chunk_words
from qa_search.index.relevance import hit_relevance
from qa_search.index.results import Highlights, SearchHit
from qa_search.scoring.analyser import tokenize
from qa_search.scoring.fusion import (
    make_snippet,
    query_lexical_weight,
    row_dots,
    thread_dense_score,
    top_threads,
    unseen_bound,
)
from qa_search.scoring.lexical import LexicalQuery
from qa_search.threads import Thread

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


def texts_list(texts: Sequence[str], method: str) -> list[str]:
    """``texts`` as a list; ``TypeError`` for a single string, whose characters would each be
    searched for (``method`` names the call in the message)."""
    if isinstance(texts, str):
        raise TypeError(f"{method}_many takes a list of texts; for one text use {method}(text)")
    return list(texts)


def skip_blank(texts: Sequence[str], run: Callable[[list[str]], list[list]]) -> list[list]:
    """``run`` over the texts that are not blank; a blank text's result is an empty list."""
    todo = [i for i, t in enumerate(texts) if t.strip()]
    out: list[list] = [[] for _ in texts]
    for i, result in zip(todo, run([texts[i] for i in todo]) if todo else [], strict=True):
        out[i] = result
    return out


def viewer_groups(groups: Iterable[str] | None) -> frozenset[str] | None:
    """The caller's groups as a set (a single string is one group), or None for a caller who may
    see every thread. An empty set is a caller who sees public threads only."""
    return None if groups is None else frozenset(as_str_list(groups))


def _thread_filter(
    tags: Iterable[str] | None,
    category: str | Iterable[str] | None,
    groups: Iterable[str] | None = None,
    *,
    created_after: str | datetime | None = None,
    created_before: str | datetime | None = None,
    exclude_closed: bool = False,
) -> Callable[[Thread], bool] | None:
    """A predicate on threads for the given filters, or None when there is nothing to filter.
    A single string is one tag or category (not its letters); empty tags and categories filter
    nothing (what a form sends for its blank fields); values are trimmed, as stored ones are.
    ``groups`` (see :func:`viewer_groups`) keeps the threads visible to them, names matched
    exactly, untrimmed: a group name is an identity, not a form's text. ``created_after`` and
    ``created_before`` keep threads created in [after, before) (see :func:`.refine.date_filter`);
    ``exclude_closed`` leaves out the threads the forum closed."""
    wanted = frozenset(t.strip() for t in as_str_list(tags or ()) if t.strip())
    categories = frozenset(c.strip() for c in as_str_list(category or ()) if c.strip())
    viewer = viewer_groups(groups)
    dated = refine.date_filter(created_after, created_before)
    if not wanted and not categories and viewer is None and dated is None and not exclude_closed:
        return None

    def keep(thread: Thread) -> bool:
        if viewer is not None and not thread.visible_with(viewer):
            return False
        if categories and thread.category not in categories:
            return False
        if exclude_closed and refine.is_closed(thread):
            return False
        if dated is not None and not dated(thread):
            return False
        return not wanted or not wanted.isdisjoint(thread.tags)

    return keep


class SearchOptions(TypedDict, total=False):
    """The keyword arguments every search takes beside ``k`` and ``offset`` (``search_many``
    below, :meth:`.forum.ForumIndex.search` / ``search_many`` and ``LiveIndex.search``), each
    optional: an absent key, None or False is that option off.

    ``tags`` keeps threads having at least one of these tags (a single string is one tag);
    ``category`` keeps threads of that category, or of any of several; values are trimmed and
    empty ones filter nothing. ``groups`` are the caller's groups: only threads visible to them
    are returned (a thread is visible when its ``visible_to`` is empty or names one of them), so
    an empty collection sees public threads only; None sees every thread (an operator's own
    tools; a service passes each caller's groups). ``created_after`` and ``created_before`` (ISO
    8601 strings or datetimes; naive is UTC) keep threads created in [after, before), leaving
    out threads with no readable ``created_at``. ``exclude_closed`` leaves out threads the forum
    closed (their ``closed_at``). Filtering is exact: the search fetches deeper until k matching
    threads are certain (or none are left), so a filter never costs recall.

    ``recency_half_life_days`` adds to each thread's score :data:`.refine.RECENCY_BOOST` halved
    every that many days of its age. ``highlight`` fills each hit's ``highlights`` with where
    its title and snippet hold the query's terms. ``min_relevance`` drops the hits whose
    ``relevance`` (the probability that the thread answers the text; None where the index's
    model has no relevance model) is below it, so a text nothing in the forum answers
    (gibberish, another language, another topic) finds nothing.

    ``typing`` reads the text as typed so far (a typeahead's): a last word that may be
    unfinished and that the forum does not know is left out (see :func:`typed_text`), so the
    hits do not blink while a word is being typed. A search page's complete query leaves it off.
    """

    tags: Iterable[str] | None
    category: str | Iterable[str] | None
    groups: Iterable[str] | None
    created_after: str | datetime | None
    created_before: str | datetime | None
    exclude_closed: bool
    recency_half_life_days: float | None
    highlight: bool
    min_relevance: float | None
    typing: bool


#: The last word of a text: the word characters it ends with.
_LAST_WORD = re.compile(r"\w+$")


def typed_text(index: IndexContents, text: str, viewer: frozenset[str] | None = None) -> str:
    """The text a typeahead searches for ``text`` as typed so far (the ``typing`` option).

    When the text ends inside a word (its last character is a letter or digit), that word may
    be unfinished ("my partner does not underst"): where its analysed term (the index's lexical
    language) is unknown to the caller, the text is searched without it, unless it is the text's
    only content word. A known word, a stop word (no term) and a text ending in whitespace or
    punctuation are searched as typed, trailing whitespace left out. Known means: in the
    ``viewer``'s lexical view (:meth:`.contents.IndexContents.lexical_for`), so a word that only
    threads hidden from the caller hold is unknown to them and the result never tells whether
    such a thread holds it. Gibberish typed after real words is therefore taken as unfinished
    until a space or punctuation follows it."""
    if not text or not text[-1].isalnum():
        return text.rstrip()
    last = _LAST_WORD.search(text)
    if last is None:  # a letter or digit is a word character, so this is for mypy alone
        return text
    lexical = index.lexical_for(viewer)
    terms = tokenize([last.group()], lexical.language)[0]
    # relevance counts known words the same way (see .relevance.hit_signals)
    if not terms or lexical.query_terms(terms):
        return text
    rest = text[: last.start()].rstrip()
    return rest if tokenize([rest], lexical.language)[0] else text


def check_min_relevance(value: float | None) -> float | None:
    """``value`` where it is None or a probability; ValueError otherwise (a bool included)."""
    if value is not None and (isinstance(value, bool) or not 0 <= value <= 1):
        raise ValueError(f"min_relevance must be a probability in [0, 1], got {value!r}")
    return value


def check_options(options: Mapping[str, object], method: str, *, rerank: bool = False) -> None:
    """``TypeError`` for a keyword that is not a :class:`SearchOptions` key, as Python raises for
    a function's unknown keyword: a ``**options`` parameter takes any name, and a misspelt
    filter would otherwise be dropped without a word. ``method`` names the call; ``rerank``:
    whether it takes ``rerank`` too (an index's methods do, this module's functions do not)."""
    unknown = sorted(options.keys() - SearchOptions.__optional_keys__)
    if unknown:
        named = ("k", "offset", *(("rerank",) if rerank else ()))
        raise TypeError(f"{method}() got an unexpected keyword argument {unknown[0]!r}; a search takes "
                        f"{', '.join(named)} and {', '.join(sorted(SearchOptions.__optional_keys__))}")


def search_many(
    index: IndexContents, texts: Sequence[str], k: int = 10, *, offset: int = 0,
    **options: Unpack[SearchOptions],
) -> list[list[SearchHit]]:
    """The k threads most similar to each text, best first, one hit per thread, after the first
    ``offset`` of them (a page: pages at offsets 0, k, 2k... are disjoint and together are the
    ranking); the texts are embedded in one batch. A blank text (empty or only whitespace)
    finds nothing: its list is empty, and it is not embedded. ``options`` filter, boost and
    mark the hits (see :class:`SearchOptions`); each hit carries its ``relevance``. ``typing``
    is not read here: :meth:`.forum.ForumIndex.search_many` passes the texts as
    :func:`typed_text` leaves them, which its reranker reads too.
    """
    check_options(options, "search_many")
    texts = texts_list(texts, "search")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if offset < 0:
        raise ValueError(f"offset must be at least 0, got {offset}")
    min_relevance = check_min_relevance(options.get("min_relevance"))
    keep = _thread_filter(options.get("tags"), options.get("category"), options.get("groups"),
                          created_after=options.get("created_after"),
                          created_before=options.get("created_before"),
                          exclude_closed=bool(options.get("exclude_closed")))
    recency = refine.recency_boost(options.get("recency_half_life_days"))
    highlight = options.get("highlight")
    viewer = viewer_groups(options.get("groups"))

    def run(batch: list[str]) -> list[list[SearchHit]]:
        queries = index.query_embedder.encode(batch, batch_size=index.config.batch_size)
        pages = [_relevant(index, t, _search_exact(index, t, q, offset + k, keep, recency, viewer)[offset:],
                           min_relevance, viewer)
                 for t, q in zip(batch, queries, strict=True)]
        if not highlight:
            return pages
        return [_highlighted(index, t, hits) for t, hits in zip(batch, pages, strict=True)]

    return skip_blank(texts, run)


def score_threads(
    index: IndexContents, text: str, thread_ids: Sequence[str], groups: Iterable[str] | None = None
) -> list[float]:
    """The search score of each given thread for ``text`` (what :func:`search_many` would rank
    them by), in the order given. For reranking a fixed candidate list. ``groups``: the caller's,
    as :func:`search_many` takes them: the lexical side reads their visible threads' statistics
    (it does not filter: every given thread is scored)."""
    query = index.query_embedder.encode([text], batch_size=index.config.batch_size)[0]
    lw = index.config.lexical_weight
    lexical = index.lexical_for(viewer_groups(groups)) if lw > 0 else None
    for tid in thread_ids:
        index.get(tid)
    lex = None
    if lexical is not None:
        query_lex = lexical.query(text)
        lw = _lexical_weight(index, query_lex)
        lex = query_lex.scores_at([lexical.position[tid] for tid in thread_ids]).tolist()
    out = []
    for i, tid in enumerate(thread_ids):
        s, _ = _dense_score(index, tid, query)
        s += index.boost(tid)
        if lex is not None:
            s += lw * lex[i]
        out.append(s)
    return out


def question_neighbours(
    index: IndexContents, k: int, *, batch: int = 4096, progress: Callable[[int, int], None] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each thread's k most similar other questions, by the question index's own batched
    search (approximate on HNSW): the thread ids (n,), cosines (n, k) float32 best first and
    neighbour rows (n, k) int64 into those ids (-1 where fewer than k others exist).
    ``progress(done, n)`` is called after each batch of questions."""
    questions, parts = index.question_index, index.parts
    pids, vecs = questions.vectors()
    tids = [parts[p].thread_id for p in pids.tolist()]
    n = len(tids)
    scores, rows = np.zeros((n, k), np.float32), np.full((n, k), -1, np.int64)
    if n == 0 or k < 1:
        return tids, scores, rows
    row_of = np.full(index.next_part_id, -1, np.int64)
    row_of[pids] = np.arange(n)
    fetch = min(k + 1, n)  # one more: a question usually finds itself first
    for start in range(0, n, batch):
        s, ids = questions.search(vecs[start : start + batch], fetch)
        r = np.where(ids >= 0, row_of[np.maximum(ids, 0)], -1)
        for i in range(len(r)):
            keep = (r[i] >= 0) & (r[i] != start + i)
            got = r[i][keep][:k]
            rows[start + i, : len(got)] = got
            scores[start + i, : len(got)] = s[i][keep][:k]
        if progress is not None:
            progress(min(start + batch, n), n)
    return tids, scores, rows


def _dense_score(index: IndexContents, thread_id: str, query: np.ndarray) -> tuple[float, int]:
    """A thread's exact dense score (:func:`~qa_search.scoring.fusion.thread_dense_score`) and
    the part that matched: the question, or the best answer chunk when its weighted cosine is
    higher."""
    return _dense_scores(index, [thread_id], query)[0]


def _dense_scores(
    index: IndexContents, thread_ids: Sequence[str], query: np.ndarray
) -> list[tuple[float, int]]:
    """:func:`_dense_score` of each thread, in the order given: their parts' vectors are fetched
    and scored in one call per index (per part, the calls into FAISS cost more than the search)."""
    parts = index.parts
    owners: tuple[list[int], list[int]] = ([], [])
    pids: tuple[list[int], list[int]] = ([], [])
    for i, tid in enumerate(thread_ids):
        for pid in index.part_ids(tid):
            side = parts[pid].answer_id is not None
            owners[side].append(i)
            pids[side].append(pid)
    n = len(thread_ids)
    q, q_pid = [-np.inf] * n, [-1] * n
    a: list[float | None] = [None] * n
    a_pid = [-1] * n
    for vi, side in ((index.question_index, False), (index.answer_index, True)):
        if not pids[side]:
            continue
        sims = row_dots(vi.reconstruct_many(np.asarray(pids[side], np.int64)), query).tolist()
        for i, pid, s in zip(owners[side], pids[side], sims, strict=True):
            if not side:
                q[i], q_pid[i] = s, pid
            elif a[i] is None or s > a[i]:
                a[i], a_pid[i] = s, pid
    cfg = index.config
    w, c = cfg.answer_weight, cfg.agreement_weight
    out = []
    for i, best in enumerate(a):
        part = a_pid[i] if best is not None and w * best > q[i] else q_pid[i]
        out.append((thread_dense_score(q[i], best, w, c), part))
    return out


#: A filtered search that would fetch this share of the questions from its candidate lists
#: scores every thread its filter keeps instead (see _search_exact).
DIRECT_SHARE = 1 / 8

#: One ranked thread as the search found it: (thread id, score, part id that matched, dense
#: score, lexical score or None when off); a hit is made of it only if it is returned.
Ranked = tuple[str, float, int, float, float | None]


def _lexical_weight(index: IndexContents, lex: LexicalQuery) -> float:
    """The query's lexical weight (:func:`~qa_search.scoring.fusion.query_lexical_weight`): one
    number for all its threads, so the ranking stays exact. The coverage rule reads the best
    normalised BM25 in the whole forum, a statistic of the forum like BM25's idf, so a filtered
    search scores its threads as :func:`score_threads` does."""
    cfg = index.config
    if cfg.lexical_mode == "fixed":
        return cfg.lexical_weight
    _, best = lex.top(1)
    top = float(best[0]) if len(best) else 0.0
    return float(query_lexical_weight(cfg.lexical_weight, cfg.lexical_mode, top))


def _search_exact(
    index: IndexContents, text: str, query: np.ndarray, k: int, keep: Callable[[Thread], bool] | None,
    recency: Callable[[Thread], float] | None = None, viewer: frozenset[str] | None = None,
) -> list[Ranked]:
    """The k best threads by dense score + boost (+ weighted lexical score when
    ``lexical_weight`` > 0, + ``recency`` of the thread, at most :data:`.refine.RECENCY_BOOST`),
    exact: candidates come from the question, answer (and lexical) lists, each scored exactly,
    and the lists are fetched deeper until no thread outside them can beat the k-th (each
    signal is bounded by its list's last fetched score, the boosts by their largest). Each comes
    with its dense and lexical (None when off) scores, which its relevance reads. The lexical
    side reads the ``viewer``'s threads alone (:meth:`.contents.IndexContents.lexical_for`):
    the word statistics of threads the caller may not see never move a score."""
    cfg = index.config
    w, c, lw = cfg.answer_weight, cfg.agreement_weight, cfg.lexical_weight
    lexical = index.lexical_for(viewer) if lw > 0 else None
    if lexical is not None:  # reads the query terms' posting lists, not a score for every slot
        lex = lexical.query(text, depth=max(4 * k, 32))  # the first round's head, found once
        lw = _lexical_weight(index, lex)
    boost_bound = index.boost_bound() + (refine.RECENCY_BOOST if recency is not None else 0.0)
    questions, answers, parts = index.question_index, index.answer_index, index.parts
    nq, na = len(questions), len(answers)
    # deep enough that the bound usually holds at once: a second round repeats every step (at
    # 2k, a quarter of Quora queries needed one; at 4k, one in fifty)
    fetch = max(4 * k, 32)
    q1 = query[None, :]
    exact: dict[str, tuple[float, int]] = {}
    signals: dict[str, tuple[float, float | None]] = {}

    def score(new: list[str]) -> None:
        new_lex = lex.scores_at([lexical.position[t] for t in new]).tolist() if lexical is not None else None
        for i, (tid, (dense, pid)) in enumerate(zip(new, _dense_scores(index, new, query), strict=True)):
            total = dense + index.boost(tid)
            if recency is not None:
                total += recency(index.get(tid))
            lex_score = None
            if new_lex is not None:
                lex_score = new_lex[i]
                total += lw * lex_score
            exact[tid] = (total, pid)
            signals[tid] = (dense, lex_score)

    while True:
        if keep is not None and fetch > max(4 * k, 32) and fetch >= DIRECT_SHARE * nq:
            # the filter keeps few of the threads near the query (none, for a tag nobody uses):
            # fetching deeper would read most of the index's lists, at a cost that grows with
            # the query's words; scoring every thread the filter keeps is exact and costs one
            # pass of the filter
            score([t.id for t in index.threads() if t.id not in exact and keep(t)])
            ranked = top_threads(exact, k)
            break
        qs, qi = questions.search(q1, min(fetch, nq))
        as_, ai = answers.search(q1, min(fetch, na))
        qs, qi, as_, ai = qs[0], qi[0], as_[0], ai[0]
        cands = {parts[p].thread_id for p in (*qi.tolist(), *ai.tolist()) if p >= 0}
        if lexical is not None:
            # the best live slots scoring above 0: fewer than fetch when no others do
            top_lex, top_lex_scores = lex.top(fetch)
            cands.update(lexical.slot_ids[i] for i in top_lex.tolist())
        score([t for t in cands if t not in exact and (keep is None or keep(index.get(t)))])
        ranked = top_threads(exact, k)
        # every thread has a question: an exhausted list means all threads were seen and scored
        # exactly
        if fetch >= nq:
            break
        bound = unseen_bound(float(qs[-1]), float(as_[-1]) if fetch < na else None, w, c)
        bound += boost_bound
        if lexical is not None and len(top_lex) == fetch:  # else every unseen thread scores 0
            bound += lw * float(top_lex_scores[-1])
        if len(ranked) == k and ranked[-1][1] >= bound:
            break
        fetch *= 4
    return [(tid, score, pid, *signals[tid]) for tid, score, pid in ranked]


def _relevant(
    index: IndexContents, text: str, ranked: list[Ranked], min_relevance: float | None,
    viewer: frozenset[str] | None = None,
) -> list[SearchHit]:
    """The hits of the ranked threads with their relevance, less those below ``min_relevance``
    (a hit without one is kept); the relevance model reads the dense and lexical scores the
    ranking computed. A hit, with its snippet, is made only for a thread that is kept."""
    known = [lex for *_, lex in ranked if lex is not None]
    lexical = known if len(known) == len(ranked) else None
    dense = [(tid, d) for tid, _, _, d, _ in ranked]
    out = []
    for (tid, score, pid, _, _), p in zip(ranked, hit_relevance(index, text, dense, lexical, viewer),
                              strict=True):
        relevance = None if p is None else round(p, 6)
        if min_relevance is None or relevance is None or relevance >= min_relevance:
            out.append(_hit(index, tid, score, pid, relevance))
    return out


def _hit(
    index: IndexContents, thread_id: str, score: float, part_id: int, relevance: float | None = None
) -> SearchHit:
    thread = index.get(thread_id)
    ref = index.parts[part_id]
    cfg = index.config
    if ref.answer_id is None:
        matched, snippet = QUESTION, make_snippet(thread.body or thread.title, cfg.snippet_chars)
    else:
        answer = next(a for a in thread.answers if a.id == ref.answer_id)
        chunk = chunk_words(answer.body, cfg.chunk_words, cfg.chunk_overlap)[ref.chunk]
        matched, snippet = ANSWER, make_snippet(chunk, cfg.snippet_chars)
    return SearchHit(
        thread_id, round(float(score), 6), thread.title, matched, ref.answer_id, snippet, thread.url,
        relevance=relevance, answered=bool(thread.answers),
    )


def _highlighted(index: IndexContents, text: str, hits: list[SearchHit]) -> list[SearchHit]:
    """``hits`` with their ``highlights``: the words of each title and snippet whose stem is one
    of the query's terms, as the lexical index's analyser reads both."""
    language = index.lexical_index().language
    terms = refine.query_terms(text, language)
    return [
        dataclasses.replace(h, highlights=Highlights(refine.term_spans(h.title, terms, language),
                                                     refine.term_spans(h.snippet, terms, language)))
        for h in hits
    ]
