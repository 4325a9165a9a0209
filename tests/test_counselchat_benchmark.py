"""benchmarks/counselchat.py's core (what benchmarks/quality.py calls), on a tiny file."""

from __future__ import annotations

import gzip
import json
import sys

import pytest
from conftest import ROOT, FakeEmbedder

from qa_search import IndexConfig

sys.path.insert(0, str(ROOT / "benchmarks"))
import counselchat  # noqa: E402

ROWS = [
    (
        "a",
        "train",
        "I lie awake because my mind races about work deadlines",
        "Racing thoughts about deadlines",
    ),
    ("b", "val", "My partner and I argue about money every week", "Arguing about money with a partner"),
    ("c", "test", "My teenage son refuses to go to school", "A teenage son who refuses school"),
]


@pytest.fixture
def tiny_counselchat(tmp_path):
    path = tmp_path / "threads.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for tid, split, body, answer in ROWS:
            row = {
                "thread_id": tid,
                "title": "Please help",  # the same title everywhere: only the answers tell them apart
                "body": body,
                "topic": "t",
                "topics": ["t"],
                "url": f"https://counselchat.com/questions/{tid}",
                "source_split": split,
                "answers": [{"text": answer + " is common; talk it through.", "upvotes": 1, "views": 3}],
            }
            fh.write(json.dumps(row) + "\n")
    return path


def test_answers_find_each_body_its_own_thread(tiny_counselchat):
    emb = FakeEmbedder()
    with_answers = counselchat.evaluate_counselchat(emb, path=tiny_counselchat)
    assert set(with_answers) == {"all", "train", "val", "test"}
    assert with_answers["all"]["queries"] == 3 and with_answers["val"]["queries"] == 1
    assert with_answers["all"]["recall@1"] == 1.0 and with_answers["all"]["ndcg@10"] == 1.0
    # titles alone all tie, and ties go by thread id: only "a" comes first for its own body
    titles_only = counselchat.evaluate_counselchat(emb, IndexConfig(), path=tiny_counselchat, answers=False)
    assert titles_only["all"]["recall@1"] == pytest.approx(1 / 3, abs=1e-6)
    assert titles_only["all"]["recall@10"] == 1.0
    by_hand = counselchat.by_hand_counselchat(emb, path=tiny_counselchat)
    assert by_hand["all"]["queries"] == 3 and by_hand["all"]["recall@10"] == 1.0


def test_memo_embedder_embeds_each_text_once():
    inner = FakeEmbedder()
    memo = counselchat.MemoEmbedder(inner)
    first = memo.encode(["a b", "c d", "a b"])
    again = memo.encode(["c d"])
    assert inner.texts_encoded == 2
    assert (first[1] == again[0]).all() and (first[0] == first[2]).all()
