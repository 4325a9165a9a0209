"""Index lifecycle with the fake embedder: incremental rebuilds through the embedding cache,
update and delete, generations (rollback, pruning, debris), verification and the writer lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeEmbedder

from qa_search import Answer, ForumIndex, SnapshotError, Thread, UnknownThreadError
from qa_search.embedding.cache import EmbeddingCache, cache_root
from qa_search.errors import IndexLockedError, QASearchError
from qa_search.operations.changes import calibrate_index, delete_threads, update_index
from qa_search.operations.lifecycle import build_index
from qa_search.operations.verify import verify_index
from qa_search.storage.generations import (
    clean_debris,
    current_generation,
    describe,
    generation_path,
    list_generations,
    prune,
    rollback,
    writer_lock,
)
from qa_search.storage.layout import read_history
from qa_search.storage.lock import LOCK

WORDS = [
    "sleep",
    "anxiety",
    "therapist",
    "breakup",
    "money",
    "partner",
    "panic",
    "grief",
    "work",
    "exam",
    "family",
    "friend",
    "anger",
    "habit",
    "diet",
    "running",
    "lonely",
    "school",
    "move",
    "job",
    "trust",
    "parents",
    "sister",
]


def forum(n: int, seed: int = 0) -> list[Thread]:
    """n synthetic threads of 0-3 answers each; texts are distinct word mixes."""
    rng = np.random.default_rng(seed)
    threads = []
    for i in range(n):
        words = lambda k: " ".join(rng.choice(WORDS, k))  # noqa: E731
        answers = tuple(
            Answer(f"t{i}-a{j}", f"answer {i} {j} {words(12)}") for j in range(int(rng.integers(0, 4)))
        )
        threads.append(Thread(f"t{i}", f"question {i} about {words(5)}?", body=words(10), answers=answers))
    return threads


def edit(threads: list[Thread]) -> tuple[list[Thread], int]:
    """1% of 200 threads changed: a retitled question, an edited answer, a new thread with two
    answers, a removed thread. Returns the edited forum and how many texts changed."""
    out = list(threads)
    t0, t1 = out[10], next(t for t in out[20:] if t.answers)
    out[10] = Thread(t0.id, t0.title + " (edited)", body=t0.body, answers=t0.answers)
    i1 = out.index(t1)
    out[i1] = Thread(
        t1.id, t1.title, body=t1.body, answers=(Answer(t1.answers[0].id, "rewritten answer"), *t1.answers[1:])
    )
    del out[30]
    out.append(
        Thread("new", "a brand new question", answers=(Answer("new-1", "first"), Answer("new-2", "second")))
    )
    return out, 1 + 1 + 3


QUERIES = [
    "sleep anxiety at night",
    "my partner and money",
    "rewritten answer",
    "brand new question",
    "exam panic",
]


def results(path: Path) -> list:
    index = ForumIndex.load(path, FakeEmbedder())
    return [[h.to_dict() for h in hits] for hits in index.search_many(QUERIES, k=10)]


def model_calls(embedder: FakeEmbedder) -> int:
    return embedder.texts_encoded


def test_rebuild_after_a_1_percent_edit_embeds_only_the_edited_texts(tmp_path):
    threads = forum(200)
    first = FakeEmbedder()
    r1 = build_index(tmp_path / "idx", threads, first)
    assert r1.generation == 1 and r1.threads == 200
    assert r1.embedded == r1.vectors and r1.reused == 0

    edited, changed = edit(threads)
    second = FakeEmbedder()
    r2 = build_index(tmp_path / "idx", edited, second)
    assert r2.generation == 2
    assert r2.embedded == changed
    assert r2.reused == r2.vectors - changed
    # besides: the 3 probe texts that fingerprint the model (to pick the cache's directory)
    assert second.texts_encoded == changed + 3

    full = FakeEmbedder()
    r3 = build_index(tmp_path / "full", edited, full, use_cache=False)
    assert r3.embedded == r3.vectors == r2.vectors
    assert results(tmp_path / "idx") == results(tmp_path / "full")


def test_the_cache_survives_across_models_and_ignores_another_models_vectors(tmp_path):
    threads = forum(20)
    build_index(tmp_path / "idx", threads, FakeEmbedder())
    other = FakeEmbedder(seed=7)  # another model: nothing of the first may be reused
    r = build_index(tmp_path / "idx", threads, other)
    assert r.embedded == r.vectors
    assert len(list(cache_root(tmp_path / "idx").iterdir())) == 2


def test_cache_shards_lookup_compaction_and_damage(tmp_path):
    cache = EmbeddingCache(tmp_path, "fp", 4, flush_every=3)
    vecs = np.eye(4, dtype=np.float32)
    hashes = [f"{i:032x}" for i in (5, 1, 9, 3)]
    cache.add(hashes[:3], vecs[:3])  # the third addition flushes a shard
    cache.add(hashes[3:], vecs[3:])
    assert cache.shard_count == 1
    found = cache.lookup([hashes[3], "f" * 32, hashes[0]])
    assert set(found) == {hashes[3], hashes[0]}  # pending and on-disk entries
    cache.flush()
    assert cache.shard_count == 2

    reopened = EmbeddingCache(tmp_path, "fp", 4)
    found = reopened.lookup(hashes)
    assert all(np.array_equal(found[h], v) for h, v in zip(hashes, vecs, strict=True))

    # a crashed writer's temporary shard is removed when the cache is opened
    (tmp_path / "fp" / ".tmp-abc.npy").write_bytes(b"partial")
    assert reopened.compact(keep=hashes[:2]) == 2
    again = EmbeddingCache(tmp_path, "fp", 4)
    assert again.shard_count == 1 and set(again.lookup(hashes)) == set(hashes[:2])
    assert not list((tmp_path / "fp").glob(".tmp-*"))

    # a damaged shard is discarded: its texts are simply embedded again
    shard = next((tmp_path / "fp").glob("*.npy"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    damaged = EmbeddingCache(tmp_path, "fp", 4)
    assert damaged.shard_count == 0 and damaged.lookup(hashes) == {}
    assert not shard.exists()


def test_many_builds_compact_the_cache_to_what_kept_generations_use(tmp_path):
    idx = tmp_path / "idx"
    for seed in range(10):
        build_index(idx, forum(5, seed=seed), FakeEmbedder(), keep=2)
    cache = EmbeddingCache(cache_root(idx), next(cache_root(idx).iterdir()).name, 64)
    assert cache.shard_count <= 9
    # compaction happened after build 9: it kept the texts of the generations kept then (8, 9)
    assert list_generations(idx) == [9, 10]
    r = build_index(idx, forum(5, seed=8), FakeEmbedder())
    assert r.embedded == 0


def test_update_and_delete_publish_new_generations(tmp_path):
    idx = tmp_path / "idx"
    build_index(idx, forum(30), FakeEmbedder())
    changed = Thread("t3", "a completely different question now")
    r = update_index(idx, [changed, Thread("extra", "one more question")], FakeEmbedder())
    assert (r.generation, r.threads, r.embedded) == (2, 31, 2)
    index = ForumIndex.load(idx, FakeEmbedder())
    assert index.get("t3").title == changed.title
    assert index.search("completely different question", k=1)[0].thread_id == "t3"

    with pytest.raises(UnknownThreadError, match="'nope'"):
        delete_threads(idx, ["t4", "nope"], FakeEmbedder())
    assert current_generation(idx) == 2  # nothing was published
    r = delete_threads(idx, ["t4", "nope"], FakeEmbedder(), missing_ok=True)
    assert (r.generation, r.deleted, r.threads) == (3, 1, 30)
    assert "t4" not in ForumIndex.load(idx, FakeEmbedder())


def test_rollback_pruning_and_history(tmp_path):
    idx = tmp_path / "idx"
    for n in (5, 6, 7, 8):
        build_index(idx, forum(n), FakeEmbedder(), keep=3)
    assert list_generations(idx) == [2, 3, 4] and current_generation(idx) == 4
    assert [g.threads for g in describe(idx)] == [6, 7, 8]

    assert rollback(idx) == 3
    assert len(ForumIndex.load(idx, FakeEmbedder())) == 7
    assert rollback(idx, to=2) == 2
    with pytest.raises(SnapshotError, match="no generation older"):
        rollback(idx)
    with pytest.raises(SnapshotError, match=r"no generation 1 \(kept: 2, 3, 4\)"):
        rollback(idx, to=1)
    # generations newer than the current one were published once: they are not debris
    assert clean_debris(idx) == [] and list_generations(idx) == [2, 3, 4]
    assert rollback(idx, to=4) == 4

    r = build_index(idx, forum(9), FakeEmbedder(), keep=2)
    assert r.generation == 5 and r.pruned == (2, 3)
    assert [(h["generation"], h["action"]) for h in read_history(idx)][-4:] == [
        (3, "rollback"),
        (2, "rollback"),
        (4, "rollback"),
        (5, "publish"),
    ]
    # after rolling back, pruning keeps the current generation even when it is old
    rollback(idx)
    assert prune(idx, keep=1) == [] and list_generations(idx) == [4, 5]


def test_a_flipped_byte_fails_verify_and_load_and_rollback(tmp_path):
    idx = tmp_path / "idx"
    build_index(idx, forum(20), FakeEmbedder())
    build_index(idx, forum(21), FakeEmbedder())
    assert verify_index(idx, FakeEmbedder(), all_generations=True) == {
        "generation 1": [],
        "generation 2 (current)": [],
    }
    target = generation_path(idx, 1) / "answers.faiss"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    problems = verify_index(idx, FakeEmbedder(), all_generations=True)
    assert problems["generation 2 (current)"] == []
    assert problems["generation 1"] == [
        "answers.faiss does not match its checksum (the file was changed or damaged)"
    ]
    with pytest.raises(SnapshotError, match="answers.faiss does not match its checksum"):
        ForumIndex.load(generation_path(idx, 1), FakeEmbedder())
    with pytest.raises(SnapshotError, match="generation 1 is damaged"):
        rollback(idx)
    assert current_generation(idx) == 2


def test_verify_checks_counts_and_the_model(tmp_path):
    idx = tmp_path / "idx"
    build_index(idx, forum(20), FakeEmbedder())
    snap = generation_path(idx, 1)
    problems = verify_index(idx, FakeEmbedder(seed=3))
    assert "no longer matches" in problems["generation 1 (current)"][0]

    manifest = json.loads((snap / "manifest.json").read_text())
    manifest["counts"]["threads"] += 1
    (snap / "manifest.json").write_text(json.dumps(manifest))
    problems = verify_index(idx, FakeEmbedder())
    assert problems == {"generation 1 (current)": ["the manifest counts 21 threads, the files hold 20"]}
    assert verify_index(tmp_path / "nothing", FakeEmbedder()) == {
        str(tmp_path / "nothing"): [
            f"no index at {tmp_path / 'nothing'}: build one with "
            f"`qa-search build DUMP --index {tmp_path / 'nothing'}`"
        ]
    }


def test_empty_input_publishes_nothing_and_leaves_no_directory(tmp_path):
    with pytest.raises(QASearchError, match="input is empty"):
        build_index(tmp_path / "idx", [], FakeEmbedder())
    assert not (tmp_path / "idx").exists()


HOLD_LOCK = """
import sys, time
from qa_search.storage.generations import writer_lock
with writer_lock(sys.argv[1], command="holder-test"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_one_writer_at_a_time_and_a_dead_holder_does_not_block(tmp_path):
    idx = tmp_path / "idx"
    build_index(idx, forum(5), FakeEmbedder())
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(idx)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(IndexLockedError) as info:
            build_index(idx, forum(6), FakeEmbedder())
        assert time.monotonic() - started < 5  # fails at once, does not wait
        message = str(info.value)
        assert f"pid {holder.pid}" in message and "holder-test" in message and os.uname().nodename in message
        with pytest.raises(IndexLockedError):
            rollback(idx)
        with pytest.raises(IndexLockedError):  # calibrating publishes too
            calibrate_index(idx, [("t0", "t1"), ("t0", "t2")], [1, 0], embedder=FakeEmbedder())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    # the kernel released the dead holder's lock; its details remain in the file, harmlessly
    assert json.loads((idx / LOCK).read_text())["pid"] == holder.pid
    assert build_index(idx, forum(6), FakeEmbedder()).generation == 2


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with writer_lock(tmp_path / "idx"), writer_lock(tmp_path / "idx"):
        build_index(tmp_path / "idx", forum(3), FakeEmbedder())
    assert current_generation(tmp_path / "idx") == 1


def test_indexing_progress_is_reported_when_a_vector_index_is_rebuilt(tmp_path):
    from qa_search import IndexConfig

    threads = [
        Thread(f"t{i}", f"question number {i}", answers=(Answer(f"a{i}", f"answer {i}"),)) for i in range(30)
    ]
    calls: list[tuple[int, int]] = []
    build_index(
        tmp_path / "idx", threads, FakeEmbedder(), config=IndexConfig(exact_search_limit=10),
        index_progress=lambda done, total: calls.append((done, total)),
    )
    # 30 question and 30 answer vectors move into HNSW; the count only grows and ends complete
    assert calls[-1] == (60, 60)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    manifest = json.loads(next((tmp_path / "idx" / "generations").glob("*/manifest.json")).read_text())
    assert manifest["index"]["types"] == {"questions": "hnsw-sq8", "answers": "hnsw-sq8"}
