"""The lexical analyser: how a text becomes the word tokens BM25 counts (lower-cased, stop words
removed, Snowball-stemmed, per language), for the lexical index and the pair signals alike.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

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
    import bm25s

    if not texts:
        return []
    return bm25s.tokenize(
        list(texts), stopwords=language, stemmer=_stemmer(language), return_ids=False, show_progress=False
    )
