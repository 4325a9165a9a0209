"""Typeahead while typing: the hits shown at each keystroke, with and without the ``typing``
search option, side by side in one run.

    python benchmarks/typeahead.py [--quora N] [--json]

Each query is typed letter by letter and searched at every keystroke from the third character,
as the demo page and the widget do (k 5, the shipped relevance model's default cut, the default
index settings, the packaged model), once as typed and once with ``typing`` (an unfinished last
word the forum does not know left out). Three sets:

* ``sample``: the titles of the sample forum's documented duplicate questions
  (indexes/sample/duplicate_groups.json), over the sample forum;
* ``paraphrases``: benchmarks/data/counselchat_paraphrases.jsonl, over CounselChat (each thread
  its title and answers, as benchmarks/relevance.py indexes it);
* ``quora``: N (default 200) Quora dev queries drawn with a fixed seed, over
  benchmarks/relevance.py's 20,000-question subset.

Per set and mode: the share of keystrokes that show hits; blinks, a keystroke whose shown hits
vanish and come back within the next :data:`WINDOW` keystrokes (each one a flash of "no similar
threads" between two lists), per 100 keystrokes and in total; and, for ``typing``, the share of
complete queries whose hits are those of the query searched without it. The forums' vectors come
from benchmarks/relevance.py's cache under /tmp/qa_search_bench (its first run embeds them); the
typed prefixes are embedded here and not kept.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import relevance  # noqa: E402
from progress import log  # noqa: E402

from qa_search import ForumIndex, Thread  # noqa: E402
from qa_search.index.relevance import relevance_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PARAPHRASES = ROOT / "benchmarks" / "data" / "counselchat_paraphrases.jsonl"
#: Hits per search, as the demo page asks.
K = 5
#: The first keystroke searched: the demo page's and the widget's minimum.
MIN_CHARS = 3
#: Hits that come back within this many keystrokes of vanishing were a blink, not an answer.
WINDOW = 5
QUORA_QUERIES = 200


def sample_set() -> tuple[list[Thread], list[str]]:
    threads, _ = relevance.sample_forum()
    by_id = {t.id: t for t in threads}
    groups = json.loads((ROOT / "indexes" / "sample" / "duplicate_groups.json").read_text())
    return threads, [by_id[t].title for g in groups for t in g]


def paraphrase_set() -> tuple[list[Thread], list[str]]:
    threads, _ = relevance.counselchat_forum()
    rows = [json.loads(line) for line in PARAPHRASES.read_text("utf-8").splitlines() if line.strip()]
    return threads, [r["query"] for r in rows]


def quora_set(n: int) -> tuple[list[Thread], list[str]]:
    queries, _, subset = relevance.quora_subset()
    drawn = random.Random(0).sample(queries, n)
    return [Thread(i, t) for i, t in subset.items()], [q["text"] for q in drawn]


def blinks(shown: list[bool]) -> int:
    """Keystrokes whose hits vanish (some shown before, none now) and come back within
    :data:`WINDOW` keystrokes."""
    return sum(1 for i in range(1, len(shown))
               if shown[i - 1] and not shown[i] and any(shown[i + 1 : i + 1 + WINDOW]))


def measure(index: ForumIndex, queries: list[str], cut: float | None) -> dict:
    """Both modes' keystrokes over ``queries``: shown, blinks, and whether the complete query's
    hits are unchanged by ``typing``."""
    out: dict = {"queries": len(queries), "keystrokes": 0, "unchanged": 0}
    for mode in ("as typed", "typing"):
        out[mode] = {"shown": 0, "blinks": 0}
    for text in queries:
        prefixes = [text[:i] for i in range(MIN_CHARS, len(text) + 1)]
        out["keystrokes"] += len(prefixes)
        pages = {}
        for mode in ("as typed", "typing"):
            pages[mode] = index.search_many(prefixes, K, min_relevance=cut, typing=mode == "typing")
            shown = [bool(hits) for hits in pages[mode]]
            out[mode]["shown"] += sum(shown)
            out[mode]["blinks"] += blinks(shown)
        out["unchanged"] += pages["typing"][-1] == pages["as typed"][-1]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quora", type=int, default=QUORA_QUERIES, help="Quora dev queries to type")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    embedder = relevance.cached_embedder()
    sets = {"sample": sample_set, "paraphrases": paraphrase_set, "quora": lambda: quora_set(args.quora)}
    results = {}
    for name, make in sets.items():
        threads, queries = make()
        log(f"{name}: indexing {len(threads)} threads")
        index = ForumIndex(embedder)
        index.upsert(threads)
        embedder.save()  # the forum's vectors only: the prefixes are embedded after this
        model = relevance_model(index)
        cut = None if model is None else model.min_relevance
        log(f"{name}: typing {len(queries)} queries")
        results[name] = measure(index, queries, cut)
        results[name]["min_relevance"] = cut

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"k {K}, from the {MIN_CHARS}rd character, blink window {WINDOW} keystrokes\n")
    print("| set | queries | keystrokes | showing hits: as typed / typing | blinks: as typed / typing "
          "| blinks per 100 keystrokes | complete query's hits unchanged |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        typed, typing, keys = r["as typed"], r["typing"], r["keystrokes"]
        print(f"| {name} | {r['queries']} | {keys:,} "
              f"| {typed['shown'] / keys:.1%} / {typing['shown'] / keys:.1%} "
              f"| {typed['blinks']} / {typing['blinks']} "
              f"| {100 * typed['blinks'] / keys:.2f} / {100 * typing['blinks'] / keys:.2f} "
              f"| {r['unchanged']} of {r['queries']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
