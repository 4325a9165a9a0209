"""What a fine-tuning run learns from: labelled pairs read from JSONL files, and the
triplets with hard negatives, plain positives and labelled pairs a run trains on.

Pairs come one a line: ``{"id1", "id2", "label"}`` with thread ids looked up in forum dumps
(the text is :attr:`Thread.question_text`, as the index embeds it), or ``{"text1", "text2",
"label"}`` with the texts inline; ``label`` is 1 (duplicate) or 0 (not). The training itself is
tuning.py's.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qa_search.dumps import (
    OnRepeat,
    PairLines,
    check_input,
    json_line,
    numbered_lines,
    pair_label,
    read_dumps,
)
from qa_search.errors import DumpFormatError, QASearchError
from qa_search.threads import thread_id

#: The seed of a tuning run: the hard negatives drawn and the training's own randomness.
DEFAULT_SEED = 0


class PairFormatError(DumpFormatError):
    """A pair-file line that cannot be read as a labelled pair (``path``, 1-based ``line``, ``reason``)."""


class UnknownPairIdsError(QASearchError):
    """Pair lines name thread ids that none of the corpus dumps holds."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = tuple(missing)
        shown = ", ".join(repr(m) for m in self.missing[:10])
        more = f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else ""
        super().__init__(
            f"{len(self.missing)} thread id(s) in the pair files are not in the corpus dumps: "
            f"{shown}{more} (pass the dumps that hold them with --corpus)"
        )


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """Two question texts and whether they are duplicates (label 1) or not (0)."""

    text1: str
    text2: str
    label: int


@dataclass(frozen=True, slots=True)
class TrainingExamples:
    """What one training run sees, built from labelled pairs by :func:`training_examples`.

    ``triplets`` are ``(anchor, positive, hard negative)``; ``positive_pairs`` are duplicates
    without a labelled negative of their anchor; ``labelled`` are all pairs as ``(a, b, label)``.
    """

    triplets: tuple[tuple[str, str, str], ...]
    positive_pairs: tuple[tuple[str, str], ...]
    labelled: tuple[tuple[str, str, int], ...]


def _text(obj: dict, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key!r} must be a non-empty string")
    return value


def _parse_pair_line(raw: bytes) -> tuple[str, str, int, bool] | None:
    """``(a, b, label, by_id)`` for one line (None if blank); ValueError says what is wrong."""
    obj = json_line(raw)
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "label" not in obj:
        raise ValueError("missing required field 'label'")
    label = pair_label(obj["label"])
    if "text1" in obj or "text2" in obj:
        return _text(obj, "text1"), _text(obj, "text2"), label, False
    if "id1" in obj or "id2" in obj:
        return thread_id(obj.get("id1"), "'id1'"), thread_id(obj.get("id2"), "'id2'"), label, True
    raise ValueError("expected 'id1' and 'id2' or 'text1' and 'text2'")


def read_pairs(
    paths: Iterable[str | Path],
    corpus: Iterable[str | Path] = (),
    on_repeat: OnRepeat | None = None,
) -> list[LabelledPair]:
    """Read labelled pairs from JSONL files (``.gz`` too), in file order.

    Id pairs get their texts from the ``corpus`` dumps. A pair is two ids (or two texts)
    whichever way round: a line repeating an earlier pair, in any of the files, with the same
    label is left out and passed to ``on_repeat(path, line, first_path, first_line)`` (default:
    a logged warning), so no pair weighs twice; with the other label it is a
    :class:`PairFormatError`. Raises :class:`PairFormatError` naming the file and 1-based line
    of the first bad line, :class:`QASearchError` for a file without a pair,
    :class:`UnknownPairIdsError` listing ids that no dump holds, and ``FileNotFoundError`` for a
    missing file.
    """
    corpus = tuple(corpus)
    raw_pairs: list[tuple[str, str, int, bool]] = []
    seen = PairLines(on_repeat, PairFormatError)
    for p in paths:
        path = Path(p)
        check_input(path, "pair file")
        lines = 0
        for lineno, raw in numbered_lines(path, PairFormatError):
            try:
                parsed = _parse_pair_line(raw)
            except ValueError as exc:
                raise PairFormatError(str(path), lineno, str(exc)) from exc
            if parsed is None:
                continue
            lines += 1
            a, b, label, by_id = parsed
            if seen.first((frozenset((a, b)), by_id), str(path), lineno, label):
                raw_pairs.append(parsed)
        if not lines:
            raise QASearchError(
                f'{path} holds no pairs: expected one {{"id1", "id2", "label"}} or '
                '{"text1", "text2", "label"} a line'
            )
    wanted = {x for a, b, _, by_id in raw_pairs if by_id for x in (a, b)}
    texts: dict[str, str] = {}
    if wanted and not corpus:
        raise QASearchError(
            f"the pairs name {len(wanted)} thread id(s) but no forum dump was given to read their "
            "questions from: pass it with --corpus (or write the texts as text1 and text2)"
        )
    if wanted:
        # only the threads the pairs name are kept, so a large dump costs little memory
        for thread in read_dumps(corpus):
            if thread.id in wanted:
                texts[thread.id] = thread.question_text
        missing = sorted(wanted - texts.keys())
        if missing:
            raise UnknownPairIdsError(missing)
    return [
        LabelledPair(texts[a], texts[b], label) if by_id else LabelledPair(a, b, label)
        for a, b, label, by_id in raw_pairs
    ]


def training_examples(pairs: Sequence[LabelledPair], seed: int = DEFAULT_SEED) -> TrainingExamples:
    """Turn labelled pairs into triplets with hard negatives, plain positives and all labelled pairs.

    Each duplicate pair counts in both directions. An anchor's hard negative is drawn (seeded)
    from the texts labelled non-duplicate of it, cycling so that its negatives are spread over
    its positives. Pairs of identical texts are dropped (they teach nothing).
    """
    rng = random.Random(seed)
    negatives: dict[str, list[str]] = defaultdict(list)
    for p in pairs:
        if p.label == 0 and p.text1 != p.text2:
            negatives[p.text1].append(p.text2)
            negatives[p.text2].append(p.text1)
    for texts in negatives.values():
        rng.shuffle(texts)
    used: dict[str, int] = defaultdict(int)
    triplets: list[tuple[str, str, str]] = []
    positive_pairs: list[tuple[str, str]] = []
    for p in pairs:
        if p.label != 1 or p.text1 == p.text2:
            continue
        for anchor, positive in ((p.text1, p.text2), (p.text2, p.text1)):
            negs = negatives.get(anchor)
            if negs:
                triplets.append((anchor, positive, negs[used[anchor] % len(negs)]))
                used[anchor] += 1
            else:
                positive_pairs.append((anchor, positive))
    labelled = tuple((p.text1, p.text2, p.label) for p in pairs if p.text1 != p.text2)
    return TrainingExamples(tuple(triplets), tuple(positive_pairs), labelled)
