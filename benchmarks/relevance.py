"""Fit the search relevance model and its default cut ("no match"), leave-one-data-set-out.

    python benchmarks/relevance.py [--write] [--json]

Four forums, each indexed with the packaged model (all-MiniLM-L6-v2, the default ONNX int8
backend) and the default settings:

* ``sample``: the sample forum (indexes/sample); queries are the questions of its documented
  duplicate groups (title + body), the query's own thread left out of its hits;
* ``counselchat``: CounselChat, each thread indexed as its title and answers; the query is its
  body (benchmarks/counselchat.py's protocol);
* ``quora``: a 20,000-question subset of the Quora corpus holding every dev query and its
  duplicates (the rest drawn from the dev pairs' questions); queries are the 5,000 dev queries,
  their own id left out;
* ``semeval``: the SemEval-2016 dev and train-part-2 candidates; queries are the original
  questions, and their PerfectMatch/Relevant candidates the right threads.

A positive is a query whose right thread is in its top 5: the right thread's hit (the best
ranked one) is labelled 1. Off-topic queries, each of whose top 5 hits is labelled 0, are
:data:`OFF_TOPIC` (gibberish, keyboard mashing, other languages, emoji, long junk; off-topic
English only against the mental-health forums) and queries drawn from the *other* data sets
(Quora's and SemEval's against the mental-health forums, Quora's against SemEval's).

Keyword queries (:func:`keyword_queries`): each of 300 of a forum's queries, drawn with a fixed
seed, gives a one-word query (the rarest word it shares with its right thread's title) and a
two-word one; those whose right thread is in the top 5 are positives too, and the keyword-length
off-topic queries (made-up tokens, off-topic English words against the mental-health forums, the
other data sets' keyword queries) negatives, both weighing a candidate's share of the forum's
questions.

The model is :mod:`qa_search.scoring.relevance`'s logistic regression; each data set weighs the
same (positives and negatives apart). For each held-out data set the model and the cut are
fitted on the other three, the cut being the highest that keeps a candidate's share (97%, 98% or
99%) of their question positives, and the table gives the held-out set's positives kept,
off-topic queries left with no hit and keyword queries that keep their right thread. The best
candidate fitted on questions alone is replaced only by one that does better on keywords on
every held-out forum at no cost elsewhere (:func:`choose`). The shipped model is fitted on all
four. ``--write`` puts it into
qa_search/embedding/defaults/all-MiniLM-L6-v2.json (the duplicate calibration there is
benchmarks/default_calibration.py's and is kept).

Vectors are cached under /tmp/qa_search_bench (never in the repository), one file per backend,
and the measured signals per backend and default settings: the first run embeds about 33,000
texts (some minutes on two cores), later runs none.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import pickle
import random
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from qa_search import Answer, ForumIndex, IndexConfig, Thread, load_embedder, read_dump
from qa_search.embedding.models import Embedder
from qa_search.index.relevance import hit_signals
from qa_search.index.search import _dense_score
from qa_search.scoring.relevance import FEATURES, RelevanceModel, fit_relevance

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
CACHE = Path("/tmp/qa_search_bench")
DEFAULTS = ROOT / "qa_search" / "embedding" / "defaults" / "all-MiniLM-L6-v2.json"
SETS = ("sample", "counselchat", "quora", "semeval")
#: Positives to keep, off-topic queries to leave empty (the targets).
KEEP, EMPTY = 0.97, 0.95
K = 5
CROSS_PER_SET = 300
QUORA_SIZE = 20_000

GIBBERISH = [
    "qwzx", "asdf", "asdfghjkl", "qwertyuiop", "zxcvbnm", "jkjkjkjk", "fjdksla;fjdk", "hhhhhhhh",
    "aaaaaaaaaaaaaaaa", "lorem ipsum dolor sit amet", "xyzzy plugh", "blorft snarg wibble",
    "test", "testing 123", "asdf asdf asdf", "ghjk", "ppppp", "zzzz zzz zz", "kdjfh ekrjh wer",
    "mnbvcxz lkjhg", "??? ??? ???", "...", "!!!!!!", "12345", "0000 0000 0000", "3.14159265",
    "a", "ok", "hmm", "lol", "xd", "sdfsdf", "wefwef wef", "qqqq", "abc def ghi", "foo bar baz",
]  # fmt: skip
FOREIGN = [
    "¿Cómo puedo dejar de sentirme tan ansioso por las noches?",
    "Mi novio no entiende mi depresión, ¿qué hago?",
    "¿Dónde está la estación de tren más cercana?",
    "Comment puis-je arrêter de m'inquiéter tout le temps ?",
    "Quel temps fera-t-il demain à Paris ?",
    "Wie kann ich besser schlafen, wenn ich gestresst bin?",
    "Ich suche eine günstige Wohnung in Berlin.",
    "Come posso smettere di avere attacchi di panico?",
    "Qual é o melhor restaurante em Lisboa?",
    "我最近总是睡不着觉，怎么办？",
    "如何才能不再焦虑？",
    "今天天气怎么样",
    "最近眠れなくて困っています。どうすればいいですか？",
    "東京駅への行き方を教えてください",
    "Как перестать тревожиться по пустякам?",
    "Где купить хороший ноутбук недорого?",
    "كيف أتعامل مع القلق والتوتر؟",
    "ما هو أفضل مطعم في الدوحة؟",
    "मुझे रात को नींद नहीं आती, क्या करूँ?",
    "요즘 너무 우울해요 어떻게 해야 할까요",
    "Hoe kan ik omgaan met stress op mijn werk?",
    "Jak przestać się martwić o przyszłość?",
    "Nasıl daha iyi uyuyabilirim?",
    "Làm thế nào để bớt lo âu?",
    "Πώς μπορώ να σταματήσω να ανησυχώ;",
]
EMOJI = [
    "😀", "😭😭😭", "🔥🔥🔥🔥", "❤️💔❤️", "👍", "🙏🙏", "😡🤬😤", "🌧️☔️🌈", "🐶🐱🐭", "🎉🎂🎈🎁",
    "😀 😃 😄 😁 😆", "🤔?", "💀💀", "🥲🥲🥲🥲🥲🥲🥲🥲",
]  # fmt: skip
JUNK = [
    "x" * 2000,
    "a " * 1000,
    "lol " * 400,
    "asdf" * 300,
    "the the the the the the the the the the the the the the the the the the the the",
    "!!!!!!!!!!" * 100,
    "0123456789" * 150,
    "<html><body><div class='x'></div></body></html>" * 20,
    "SELECT * FROM users WHERE id = 1; DROP TABLE users;--",
    "https://example.com/?utm_source=x&utm_medium=y&utm_campaign=z " * 10,
    "function f(x) { return x * 2; } " * 30,
    "ha" * 700,
]
#: Off-topic for a mental-health forum, not for a general one (Quora) or a city's (SemEval).
OFF_TOPIC_EN = [
    "how do I bake sourdough bread", "best graphics card for gaming", "python list comprehension syntax",
    "weather in London tomorrow", "who won the football match last night", "what is the capital of Australia",
    "how to change a car tyre", "cheap flights to Barcelona in May", "how many calories in a banana",
    "what is the boiling point of mercury", "install nodejs on ubuntu", "how to fix a leaking tap",
    "best price for iphone 15 pro", "stock market today dow jones", "recipe for chicken curry",
    "how to grow tomatoes on a balcony", "convert 50 fahrenheit to celsius", "lyrics of bohemian rhapsody",
    "how does a jet engine work", "when was the eiffel tower built", "solve 3x + 5 = 20",
    "train times from leeds to york", "how to tie a bow tie", "what is kubernetes",
    "replace the battery in a smoke alarm", "how long to boil an egg", "who painted the mona lisa",
    "translate hello into japanese", "javascript array sort numbers", "tax deadline for self employed",
]  # fmt: skip
OFF_TOPIC = {"gibberish": GIBBERISH, "foreign": FOREIGN, "emoji": EMOJI, "junk": JUNK}

#: Keyword-length off-topic queries: single made-up tokens (any forum) and single off-topic
#: English words (against the mental-health forums only).
KEYWORD_GIBBERISH = [
    "qwzx", "asdf", "zxcv", "blorft", "snarg", "wibble", "xyzzy", "plugh", "fjdksla", "ghjk",
    "sdfsdf", "wefwef", "qqqq", "hjkl", "mnbv", "lkjh", "poiuy", "zzzz", "kdjfh", "vbnm",
    "ertyu", "dfgh", "grblx", "jjjj", "uiop", "wxyz", "frobnitz", "quux", "zorp", "flibber",
]  # fmt: skip
KEYWORD_OFF_TOPIC_EN = [
    "carburetor", "kubernetes", "sourdough", "javascript", "volcano", "celsius", "eiffel", "mercury",
    "tyre", "smartphone", "nodejs", "dinosaur", "photosynthesis", "algebra", "spreadsheet", "lyrics",
    "croissant", "thermostat", "bitcoin", "ubuntu", "satellite", "barbecue", "trombone", "glacier",
    "pizza", "umbrella", "tomatoes", "compiler", "gearbox", "asteroid",
]  # fmt: skip
#: Keyword queries drawn per forum (from its positives), and per other data set as off-topic.
KEYWORDS_PER_SET = 300
#: Words too common to be anyone's keyword.
_KEYWORD_STOP_WORDS = (
    "what when where which with your that this have from they there their about would could should "
    "does doing been being were will into than then them these those just very also some more most "
    "much many only other over such here after before again because while dont cant didnt want feel "
    "like know think really still even make ever every anyone someone something things thing help "
    "need"
)
KEYWORD_STOP = frozenset(_KEYWORD_STOP_WORDS.split())


class CachedEmbedder:
    """The packaged embedder with its vectors kept on disk by text hash (under /tmp), so reruns
    embed nothing."""

    def __init__(self, inner: Embedder, path: Path) -> None:
        self.inner, self.path = inner, path
        self.name, self.dimension = inner.name, inner.dimension
        self.memo: dict[str, np.ndarray] = {}
        self.dirty = False
        if path.is_file():
            data = np.load(path)
            self.memo = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in self.memo}
        if todo:
            vecs = self.inner.encode(list(todo.values()), batch_size=batch_size)
            self.memo.update(zip(todo, vecs, strict=True))
            self.dirty = True
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        return np.stack([self.memo[k] for k in keys])

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys = list(self.memo)
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(keys), vectors=np.stack([self.memo[k] for k in keys]))
            tmp.replace(self.path)
            self.dirty = False


def cached_embedder() -> CachedEmbedder:
    """The default embedder, its vectors cached per backend (int8 and fp32 vectors differ)."""
    inner = load_embedder()
    return CachedEmbedder(inner, CACHE / f"vectors-{getattr(inner, 'backend', 'torch')}.npz")


def signals_file() -> Path:
    """Where the measured signals are kept: one file per backend and default settings, so a
    change of either measures again."""
    backend = load_embedder().backend
    measured = {"settings": asdict(IndexConfig()), "signals": FEATURES, "keywords": KEYWORDS_PER_SET}
    settings = hashlib.sha1(json.dumps(measured, sort_keys=True).encode()).hexdigest()[:12]
    return CACHE / f"relevance_signals-{backend}-{settings}.pkl"


def _gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# -- the four forums: (threads, queries [(text, right ids, own id or None)]) -------------------


def sample_forum() -> tuple[list[Thread], list[tuple[str, set, str | None]]]:
    threads = list(read_dump(ROOT / "indexes" / "sample" / "threads.jsonl"))
    by_id = {t.id: t for t in threads}
    groups = json.loads((ROOT / "indexes" / "sample" / "duplicate_groups.json").read_text())
    queries = [(by_id[a].question_text, set(g) - {a}, a) for g in groups for a in g]
    return threads, queries


def counselchat_forum() -> tuple[list[Thread], list[tuple[str, set, str | None]]]:
    rows = _gz(DATA / "counselchat" / "threads.jsonl.gz")
    threads = [
        Thread(
            r["thread_id"],
            r["title"].strip(),
            answers=tuple(
                Answer(f"{r['thread_id']}#{i}", a["text"])
                for i, a in enumerate(r["answers"])
                if a["text"].strip()
            ),
        )
        for r in rows
    ]
    queries = [(r["body"], {r["thread_id"]}, None) for r in rows if r["body"].strip()]
    return threads, queries


def quora_subset() -> tuple[list[dict], list[dict], dict[str, str]]:
    """The dev queries, and the 20,000-question subset (every dev query and its duplicates, the
    rest the dev pairs' questions in id order) as ``{id: text}``; with the dev pairs."""
    q = DATA / "quora"
    queries = _gz(q / "dev_queries.jsonl.gz")
    pairs = _gz(q / "dev_pairs.jsonl.gz")
    text = {r["id"]: r["text"] for r in _gz(q / "corpus.jsonl.gz")}
    keep = {x["query_id"] for x in queries} | {r for x in queries for r in x["relevant_ids"]}
    for extra in sorted({i for p in pairs for i in (p["id1"], p["id2"])} - keep):
        if len(keep) >= QUORA_SIZE:
            break
        keep.add(extra)
    return queries, pairs, {i: text[i] for i in sorted(keep)}


def quora_forum() -> tuple[list[Thread], list[tuple[str, set, str | None]]]:
    queries, _, subset = quora_subset()
    threads = [Thread(i, t) for i, t in subset.items()]
    return threads, [(x["text"], set(x["relevant_ids"]), x["query_id"]) for x in queries]


def semeval_questions() -> dict[str, list[dict]]:
    s = DATA / "semeval_cqa"
    read = lambda f: [json.loads(line) for line in (s / f).read_text("utf-8").splitlines() if line.strip()]  # noqa: E731
    return {
        "dev": read("semeval2016_subtaskB_dev.jsonl"),
        "train": read("semeval2016_subtaskB_train_part2.jsonl"),
    }


def semeval_thread(id_: str, subject: str, body: str) -> Thread:
    return Thread(id_, subject.strip() or body.strip() or id_, body=body.strip())


def semeval_forum() -> tuple[list[Thread], list[tuple[str, set, str | None]]]:
    questions = [q for split in semeval_questions().values() for q in split]
    threads = [semeval_thread(c["id"], c["subject"], c["body"]) for q in questions for c in q["candidates"]]
    queries = []
    for q in questions:
        right = {c["id"] for c in q["candidates"] if c["label"] != "Irrelevant"}
        if right:
            queries.append(
                (semeval_thread(q["query_id"], q["subject"], q["body"]).question_text, right, None)
            )
    return threads, queries


FORUMS = {
    "sample": sample_forum,
    "counselchat": counselchat_forum,
    "quora": quora_forum,
    "semeval": semeval_forum,
}
#: Whose queries are off-topic where.
CROSS = {
    "sample": ("quora", "semeval"),
    "counselchat": ("quora", "semeval"),
    "quora": (),
    "semeval": ("quora",),
}


def search_signals(index: ForumIndex, text: str, own: str | None) -> tuple[list[str], np.ndarray]:
    """The query's top K thread ids (its own left out) and their relevance signals."""
    hits = [h for h in index.search(text, k=K + 1) if h.thread_id != own][:K]
    query = index.query_embedder.encode([text])[0]
    dense = [(h.thread_id, _dense_score(index, h.thread_id, query)[0]) for h in hits]
    return [h.thread_id for h in hits], hit_signals(index, text, dense)


def collect(embedder: CachedEmbedder, seed: int = 0) -> dict[str, dict]:
    """Per forum: ``pos`` (signals of each positive's right hit), ``found`` (queries whose right
    thread is in the top K, of ``queries``), and per off-topic kind the signals of each query's
    hits (a list of (K, f) arrays)."""
    built = {name: make() for name, make in FORUMS.items()}
    rng = random.Random(seed)
    out: dict[str, dict] = {}
    for name, (threads, queries) in built.items():
        print(f"{name}: {len(threads)} threads, {len(queries)} queries", file=sys.stderr)
        index = _indexed(embedder, threads)
        pos, found = [], 0
        for text, right, own in queries:
            tids, x = search_signals(index, text, own)
            at = next((i for i, t in enumerate(tids) if t in right), None)
            if at is not None:
                found += 1
                pos.append(x[at])
        res: dict = {"pos": np.array(pos), "found": found, "queries": len(queries)}
        kinds = dict(OFF_TOPIC)
        if name in ("sample", "counselchat"):
            kinds["offtopic_en"] = OFF_TOPIC_EN
        for other in CROSS[name]:
            texts = [t for t, _, _ in built[other][1]]
            kinds[f"from_{other}"] = rng.sample(texts, min(CROSS_PER_SET, len(texts)))
        res["neg"], res["texts"] = _off_topic_signals(index, kinds)
        embedder.save()
        out[name] = res
    return out


def _indexed(embedder: CachedEmbedder, threads: Sequence[Thread]) -> ForumIndex:
    index = ForumIndex(embedder)
    index.upsert(threads)
    embedder.save()
    return index


def _off_topic_signals(
    index: ForumIndex, kinds: dict[str, list[str]]
) -> tuple[dict[str, list[np.ndarray]], dict[str, list[str]]]:
    """Per off-topic kind, the signals of each query's hits (a list of (K, f) arrays), and the
    queries themselves."""
    return {kind: [search_signals(index, t, None)[1] for t in texts] for kind, texts in kinds.items()}, kinds


def _keyword_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4 and w not in KEYWORD_STOP]


def keyword_queries(
    threads: Sequence[Thread], queries: Sequence[tuple[str, set, str | None]], seed: str
) -> dict[int, list[tuple[str, set, str | None]]]:
    """One- and two-word queries, as a person who types keywords would search for a question's
    thread: for each of up to :data:`KEYWORDS_PER_SET` of ``queries`` drawn with ``seed``, the
    rarest word (by how many titles hold it) that it shares with its right threads' titles, and
    its two rarest. ``{1: [(text, right, own)], 2: [...]}``."""
    by_id = {t.id: t for t in threads}
    df = Counter(w for t in threads for w in set(_keyword_words(t.title)))
    drawn = random.Random(seed).sample(list(queries), min(KEYWORDS_PER_SET, len(queries)))
    out: dict[int, list[tuple[str, set, str | None]]] = {1: [], 2: []}
    for text, right, own in drawn:
        titles = {w for r in right for w in _keyword_words(by_id[r].title)}
        shared = sorted({w for w in _keyword_words(text) if w in titles}, key=lambda w: (df[w], w))
        for n in (1, 2):
            if len(shared) >= n:
                out[n].append((" ".join(shared[:n]), right, own))
    return out


def collect_keywords(embedder: CachedEmbedder) -> dict[str, dict]:
    """Per forum, keyword queries: ``queries`` ({n words: [((K, f) signals, the right hit's rank
    in the top K or None)]}), and per keyword-length off-topic kind the signals of each query's
    hits (``neg``): single made-up tokens, single off-topic English words (mental-health forums
    only), and the other data sets' one- and two-word queries (as :data:`CROSS` pairs them)."""
    built = {name: make() for name, make in FORUMS.items()}
    drawn = {name: keyword_queries(t, q, f"keywords-{name}") for name, (t, q) in built.items()}
    out: dict[str, dict] = {}
    for name, (threads, _) in built.items():
        index = _indexed(embedder, threads)
        res: dict = {"queries": {}}
        for n, kqs in drawn[name].items():
            rows = []
            for text, right, own in kqs:
                tids, x = search_signals(index, text, own)
                rows.append((x, next((i for i, t in enumerate(tids) if t in right), None)))
            res["queries"][n] = rows
        kinds = {"kw_gibberish": KEYWORD_GIBBERISH}
        if name in ("sample", "counselchat"):
            kinds["kw_offtopic_en"] = KEYWORD_OFF_TOPIC_EN
        rng = random.Random(f"keyword-negatives-{name}")
        for other in CROSS[name]:
            pool = [t for n in (1, 2) for t, _, _ in drawn[other][n]]
            kinds[f"kw_from_{other}"] = rng.sample(pool, min(KEYWORDS_PER_SET, len(pool)))
        res["neg"], res["texts"] = _off_topic_signals(index, kinds)
        embedder.save()
        out[name] = res
        counts = ", ".join(f"{n} words {len(r)}" for n, r in res["queries"].items())
        print(f"{name}: keyword queries {counts}", file=sys.stderr)
    return out


# -- fitting ------------------------------------------------------------------------------------


def _keyword_positives(d: dict) -> np.ndarray:
    """The right hit's signals of each keyword query (one or two words) whose right thread is
    in its top K."""
    kw = d["keywords"]["queries"]
    return np.array([x[at] for n in (1, 2) for x, at in kw[n] if at is not None])


def _stack(
    data: dict[str, dict], names: Sequence[str], keyword_weight: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, labels and weights over ``names``: each set's positives weigh 1 in all, and so do
    its negatives, spread evenly over its off-topic kinds; its keyword queries' positives weigh
    ``keyword_weight`` in all, and so do its keyword-length off-topic queries, spread evenly
    over their kinds."""
    xs, ys, ws = [], [], []

    def add(rows: np.ndarray, label: float, weight: float) -> None:
        xs.append(rows)
        ys.append(np.full(len(rows), label))
        ws.append(np.full(len(rows), weight / len(rows)))

    for name in names:
        d = data[name]
        add(d["pos"], 1.0, 1.0)
        kinds = [k for k, v in d["neg"].items() if v]
        for kind in kinds:
            add(np.concatenate([x for x in d["neg"][kind] if len(x)]), 0.0, 1.0 / len(kinds))
        if keyword_weight:
            add(_keyword_positives(d), 1.0, keyword_weight)
            kw_kinds = [k for k, v in d["keywords"]["neg"].items() if v]
            for kind in kw_kinds:
                rows = np.concatenate([x for x in d["keywords"]["neg"][kind] if len(x)])
                add(rows, 0.0, keyword_weight / len(kw_kinds))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)


def _model(coef, intercept, features, cut, report=None) -> RelevanceModel:
    return RelevanceModel(tuple(features), tuple(coef), intercept, cut, report or {})


def measure(model: RelevanceModel, d: dict, cut: float) -> dict:
    """On one forum: positives kept (their right hit at or above the cut) and off-topic queries
    left empty (no hit at or above it): the written list's, the other data sets' and all, and
    per kind; and its keyword queries: of those whose right thread is in the top K, the share
    that keep it (``keywords_kept``), the share of all that show nothing, and the keyword-length
    off-topic queries left empty, per kind."""

    def empty(queries) -> float:
        return float(np.mean([not len(x) or model.probability(x).max() < cut for x in queries]))

    kinds = {kind: qs for kind, qs in d["neg"].items() if qs}
    written = [q for kind, qs in kinds.items() if not kind.startswith("from_") for q in qs]
    cross = [q for kind, qs in kinds.items() if kind.startswith("from_") for q in qs]
    kw = d["keywords"]
    found = {n: [(x, at) for x, at in kw["queries"][n] if at is not None] for n in (1, 2)}
    return {
        "kept": float((model.probability(d["pos"]) >= cut).mean()),
        "empty_written": empty(written),
        "empty_other_sets": empty(cross) if cross else None,
        "empty": empty(written + cross),
        "by_kind": {kind: empty(qs) for kind, qs in kinds.items()},
        "right_in_top5": d["found"] / d["queries"],
        "keywords_right_in_top5": {n: f"{len(found[n])} of {len(kw['queries'][n])}" for n in (1, 2)},
        "keywords_kept": {
            n: float(np.mean([model.probability(x)[at] >= cut for x, at in found[n]])) if found[n] else None
            for n in (1, 2)
        },
        "keywords_nothing": {
            n: empty([x for x, _ in kw["queries"][n]]) if kw["queries"][n] else None for n in (1, 2)
        },
        "keywords_empty_by_kind": {kind: empty(qs) for kind, qs in kw["neg"].items() if qs},
    }


def fit(
    data: dict[str, dict], names: Sequence[str], features: Sequence[str], keep: float, keyword_weight: float
) -> RelevanceModel:
    """The model over ``names`` and its cut: the highest relevance that keeps ``keep`` of every
    one of those sets' question positives (keyword queries do not set the cut)."""
    x, y, w = _stack(data, names, keyword_weight)
    coef, intercept = fit_relevance(x, y, features, weights=w)
    model = _model(coef, intercept, features, 0.0)
    cut = min(float(np.quantile(model.probability(data[n]["pos"]), 1 - keep)) for n in names)
    return _model(coef, intercept, features, cut)


def leave_one_out(data: dict[str, dict], candidate: tuple[str, float, float]) -> dict[str, dict]:
    features, keep, keyword_weight = candidate
    out = {}
    for held in SETS:
        model = fit(data, [n for n in SETS if n != held], CANDIDATE_FEATURES[features], keep, keyword_weight)
        out[held] = {"cut": model.min_relevance, **measure(model, data[held], model.min_relevance)}
    return out


def worst(run: dict[str, dict]) -> dict[str, float]:
    """The worst held-out set's figures."""
    return {
        "kept": min(r["kept"] for r in run.values()),
        "empty_written": min(r["empty_written"] for r in run.values()),
        "empty_other_sets": min(
            r["empty_other_sets"] for r in run.values() if r["empty_other_sets"] is not None
        ),
        "one_word_kept": min(r["keywords_kept"][1] for r in run.values()),
    }


#: Signal sets tried, the share of the fitting sets' positives the cut keeps, and the weight of
#: each set's keyword queries (and keyword-length off-topic queries) against its questions'.
CANDIDATE_FEATURES = {
    "all": FEATURES[:5],
    "no_top_dense": tuple(f for f in FEATURES[:5] if f != "top_dense"),
    "scores_only": ("dense", "top_dense", "lexical"),
    "dense_only": ("dense",),
    "all+short": FEATURES,
    "no_top_dense+short": tuple(f for f in FEATURES if f != "top_dense"),
}
CANDIDATE_KEEP = (0.97, 0.98, 0.99)
CANDIDATE_KEYWORD_WEIGHT = (0.0, 0.1, 0.25)
#: Most a keyword candidate may cost, on any held-out forum, in the other data sets' questions
#: left with nothing, against the questions-only choice.
OTHER_SETS_SLACK = 0.01
#: Least gain, on every held-out forum, in one-word queries that keep their right thread.
ONE_WORD_GAIN = 0.10


def _meets(w: dict[str, float]) -> bool:
    return w["kept"] >= KEEP and w["empty_written"] >= EMPTY


def choose_questions_only(runs: dict[tuple, dict]) -> tuple:
    """Among the candidates fitted on questions alone (no keyword queries, no ``short``
    signals): the one whose worst held-out set meets both targets on the written off-topic list,
    the most other-set queries left empty among those; failing that, the one nearest the
    targets. The other sets' queries are not all off-topic (Quora asks about anxiety too), so
    they break ties rather than decide."""
    pool = [c for c in runs if c[2] == 0 and "short" not in c[0]]
    w = {c: worst(runs[c]) for c in pool}
    meets = [c for c in pool if _meets(w[c])]
    if meets:
        return max(meets, key=lambda c: (w[c]["empty_other_sets"], w[c]["kept"]))
    return max(pool, key=lambda c: min(w[c]["kept"] - KEEP, w[c]["empty_written"] - EMPTY))


def choose(runs: dict[tuple, dict]) -> tuple[tuple, tuple]:
    """``(chosen, questions-only)``. A candidate replaces the questions-only choice only where,
    in each held-out forum, it keeps its one-word queries' right threads at least
    :data:`ONE_WORD_GAIN` more often and leaves at most :data:`OTHER_SETS_SLACK` fewer of the
    other data sets' questions with nothing, and its worst held-out set meets both targets; of
    those, the one with the best worst-forum one-word figure."""
    base = choose_questions_only(runs)
    b = runs[base]

    def better(c: tuple) -> bool:
        r = runs[c]
        return _meets(worst(r)) and all(
            r[s]["keywords_kept"][1] >= b[s]["keywords_kept"][1] + ONE_WORD_GAIN
            and (
                b[s]["empty_other_sets"] is None
                or r[s]["empty_other_sets"] >= b[s]["empty_other_sets"] - OTHER_SETS_SLACK
            )
            for s in SETS
        )

    better_ones = [c for c in runs if c != base and better(c)]
    if not better_ones:
        return base, base
    w = {c: worst(runs[c]) for c in better_ones}
    return max(better_ones, key=lambda c: (w[c]["one_word_kept"], w[c]["empty_other_sets"])), base


def _name(candidate: tuple) -> str:
    features, keep, keyword_weight = candidate
    return f"{features}@{keep}" + (f"+kw{keyword_weight}" if keyword_weight else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the fitted model into the defaults file")
    parser.add_argument(
        "--fresh", action="store_true", help="measure again instead of reading /tmp's signals"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON only")
    args = parser.parse_args(argv)
    signals = signals_file()
    if signals.is_file() and not args.fresh:
        data = pickle.loads(signals.read_bytes())
    else:
        embedder = cached_embedder()
        data = collect(embedder)
        for name, kw in collect_keywords(embedder).items():
            data[name]["keywords"] = kw
        signals.parent.mkdir(parents=True, exist_ok=True)
        signals.write_bytes(pickle.dumps(data))
    runs = {
        (name, keep, weight): leave_one_out(data, (name, keep, weight))
        for name in CANDIDATE_FEATURES
        for keep in CANDIDATE_KEEP
        for weight in CANDIDATE_KEYWORD_WEIGHT
        if weight == 0 or name in ("all", "no_top_dense", "all+short", "no_top_dense+short")
    }
    chosen, base = choose(runs)
    name, keep, weight = chosen
    final = fit(data, SETS, CANDIDATE_FEATURES[name], keep, weight)
    report = {
        "fitted_by": "benchmarks/relevance.py",
        "features": name,
        "cut_keeps_of_fitting_positives": keep,
        "keyword_weight": weight,
        "targets": {"kept": KEEP, "empty": EMPTY},
        "leave_one_out": runs[chosen],
        "worst_held_out": worst(runs[chosen]),
        "questions_only": {"candidate": _name(base), "leave_one_out": runs[base]},
        "fitted_on_all": {n: measure(final, data[n], final.min_relevance) for n in SETS},
        "candidates": {_name(c): worst(r) for c, r in runs.items()},
    }
    final = _model(final.coef, final.intercept, final.features, round(final.min_relevance, 4), report)
    if not args.json:
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        print(f"chosen: {_name(chosen)} {final.features}; questions-only: {_name(base)}")
        print(f"shipped cut (fitted on all four): {final.min_relevance:.4f}")
        print(
            "| held out | cut | right in top 5 | kept | written off-topic empty | other sets' queries empty "
            "| one word: right in top 5 / kept / nothing | two words: right in top 5 / kept / nothing |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for label, run in (("chosen", runs[chosen]), ("questions only", runs[base])):
            for held, r in run.items():
                kw = " | ".join(
                    f"{r['keywords_right_in_top5'][n]} / {pct(r['keywords_kept'][n])} / "
                    f"{pct(r['keywords_nothing'][n])}"
                    for n in (1, 2)
                )
                print(
                    f"| {held} ({label}) | {r['cut']:.3f} | {pct(r['right_in_top5'])} | {pct(r['kept'])} "
                    f"| {pct(r['empty_written'])} | {pct(r['empty_other_sets'])} | {kw} |"
                )
        print(
            "| candidate | worst kept | worst written empty | worst other sets empty | worst one word kept |"
        )
        print("|---|---|---|---|---|")
        for c, w in report["candidates"].items():
            print(
                f"| {c} | {pct(w['kept'])} | {pct(w['empty_written'])} | {pct(w['empty_other_sets'])} "
                f"| {pct(w['one_word_kept'])} |"
            )
        for held, r in runs[chosen].items():
            kinds = {**r["by_kind"], **r["keywords_empty_by_kind"]}
            print(f"  {held} by kind: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in kinds.items()))
    print(json.dumps({"model": final.to_dict()}, default=float))
    if args.write:
        current = json.loads(DEFAULTS.read_text("utf-8")) if DEFAULTS.is_file() else {}
        current["relevance"] = json.loads(json.dumps(final.to_dict(), default=float))
        DEFAULTS.write_text(json.dumps(current, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
