"""The lexical analyser: how a text becomes the word tokens BM25 counts (lower-cased, stop words
removed, Snowball-stemmed, per language), for the lexical index and the pair signals alike.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Sequence

#: The analyser's default language: its Snowball stemmer and stop-word list.
DEFAULT_LANGUAGE = "english"
#: Languages with both a Snowball stemmer and a stop-word list (bm25s' lists).
LANGUAGES = (
    "danish", "dutch", "english", "french", "german", "italian", "norwegian", "portuguese",
    "russian", "spanish", "swedish", "turkish",
)  # fmt: skip


@functools.cache
def _stemmer(language: str):  # noqa: ANN202 - a Stemmer.Stemmer
    import Stemmer

    return Stemmer.Stemmer(language)


def check_language(language: str) -> str:
    """``language`` when the analyser supports it; ``ValueError`` naming the choices otherwise."""
    if language not in LANGUAGES:
        raise ValueError(f"lexical language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    return language


def tokenize(texts: Sequence[str], language: str = DEFAULT_LANGUAGE) -> list[list[str]]:
    """Lower-cased, stop words removed, Snowball-stemmed word tokens for each text."""
    analyse = _analyser(language)
    return [analyse(text) for text in texts]


#: A word as bm25s (and scikit-learn's CountVectorizer) splits text: two or more word characters.
_WORD = re.compile(r"(?u)\b\w\w+\b")
#: Stems remembered per language; past this the memory is dropped and starts again, so queries
#: of made-up words cannot grow it without bound.
_STEM_MEMORY = 200_000


@functools.cache
def _analyser(language: str) -> Callable[[str], list[str]]:
    """The analyser for ``language``: the same tokens as ``bm25s.tokenize`` with its stop words
    and this Snowball stemmer, without its per-call set-up (a stop-word set built per text,
    progress bars), which cost more than the lookup on a typed query. Stems are remembered."""
    from bm25s.tokenization import _infer_stopwords

    stop = frozenset(_infer_stopwords(check_language(language)))
    stemmer = _stemmer(language)
    stems: dict[str, str] = {}
    lock = threading.Lock()  # a PyStemmer stemmer is not safe to share between threads

    def analyse(text: str) -> list[str]:
        words = [w for w in _WORD.findall(text.lower()) if w not in stop]
        new = [w for w in dict.fromkeys(words) if w not in stems]
        if new:
            with lock:
                if len(stems) + len(new) > _STEM_MEMORY:
                    stems.clear()
                stems.update(zip(new, stemmer.stemWords(new), strict=True))
        return [stems[w] for w in words]

    return analyse
