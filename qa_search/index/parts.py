"""Splitting a thread into the texts that get embedded: its question and its answers' chunks.

The model reads at most a few hundred tokens (all-MiniLM-L6-v2: 256, about 200 words), so a
long answer is cut into overlapping windows of words, each embedded on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from qa_search.embedding.cache import text_hash
from qa_search.threads import Thread

QUESTION = "question"
ANSWER = "answer"


@dataclass(frozen=True, slots=True)
class Part:
    """One embedded text of a thread: the question, or one chunk of one answer."""

    thread_id: str
    kind: str  # QUESTION or ANSWER
    answer_id: str | None
    chunk: int
    text: str

    @property
    def text_hash(self) -> str:
        return text_hash(self.text)



def chunk_words(text: str, size: int, overlap: int) -> list[str]:
    """Cut ``text`` into windows of at most ``size`` words, consecutive windows sharing ``overlap``.

    Whitespace is normalised to single spaces. Text of ``size`` words or fewer is one chunk.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need size >= 1 and 0 <= overlap < size, got size={size}, overlap={overlap}")
    words = text.split()
    if len(words) <= size:
        return [" ".join(words)]
    step = size - overlap
    chunks = []
    for start in range(0, len(words), step):
        chunks.append(" ".join(words[start : start + size]))
        if start + size >= len(words):
            break
    return chunks


def thread_parts(thread: Thread, chunk_size: int, chunk_overlap: int) -> list[Part]:
    """The question part, then each answer's chunks in answer order."""
    parts = [Part(thread.id, QUESTION, None, 0, thread.question_text)]
    for answer in thread.answers:
        for i, chunk in enumerate(chunk_words(answer.body, chunk_size, chunk_overlap)):
            parts.append(Part(thread.id, ANSWER, answer.id, i, chunk))
    return parts
