"""The operator's path with the real model and the real CLI in subprocesses: build, a rebuild
killed with SIGKILL from outside mid-embedding, info, verify, search, and an incremental rebuild
that embeds exactly the edited texts and answers like a full rebuild."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import SAMPLE_DUMP

from qa_search import Answer, ForumIndex, IndexConfig, Thread, read_dump, write_dump
from qa_search.index.parts import thread_parts

pytestmark = pytest.mark.slow

QA_SEARCH = [sys.executable, "-m", "qa_search.cli"]
QUERIES = ["my therapist made a mistake", "I can't sleep because of worry", "how do I stop texting my ex"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*QA_SEARCH, *args], capture_output=True, text=True, timeout=300)


def _hashes(threads) -> set[str]:
    cfg = IndexConfig()
    return {p.text_hash for t in threads for p in thread_parts(t, cfg.chunk_words, cfg.chunk_overlap)}


def _kill_when_embedding(args: list[str]) -> int:
    """Start a CLI build and SIGKILL it once its embedding progress bar is showing."""
    proc = subprocess.Popen([*QA_SEARCH, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = bytearray()

    def pump():
        while chunk := proc.stderr.read1(4096):
            seen.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while b"embedding:" not in seen:
        assert proc.poll() is None, seen.decode(errors="replace")
        assert time.monotonic() < deadline, "the build never started embedding"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    code = proc.wait()
    reader.join(10)
    proc.stderr.close()
    return code


def test_operator_rebuild_crash_and_recovery_with_the_real_model(tmp_path, real_embedder):
    threads = list(read_dump(SAMPLE_DUMP))[:30]
    edited = list(threads)
    t = edited[3]
    edited[3] = Thread(t.id, t.title + " Any advice?", body=t.body, answers=t.answers, tags=t.tags)
    t = next(x for x in edited[10:] if x.answers)
    i = edited.index(t)
    edited[i] = Thread(
        t.id, t.title, body=t.body, answers=(Answer(t.answers[0].id, "Talk to someone you trust."),)
    )
    write_dump(threads, tmp_path / "v1.jsonl")
    write_dump(edited, tmp_path / "v2.jsonl")
    changed = len(_hashes(edited) - _hashes(threads))
    assert changed == 2

    idx = tmp_path / "idx"
    first = _run("build", str(tmp_path / "v1.jsonl"), "--index", str(idx), "--quiet", "--json")
    assert first.returncode == 0, first.stderr
    before = [
        [h.to_dict() for h in hits] for hits in ForumIndex.load(idx, real_embedder).search_many(QUERIES, k=5)
    ]

    code = _kill_when_embedding(["build", str(tmp_path / "v2.jsonl"), "--index", str(idx), "--no-cache"])
    assert code == -signal.SIGKILL
    assert json.loads(_run("info", str(idx), "--json").stdout)["current"] == 1
    verify = _run("verify", str(idx))
    assert verify.returncode == 0 and "ok" in verify.stdout, verify.stderr
    search = json.loads(_run("search", str(idx), QUERIES[0], "-k", "5", "--json").stdout)
    # the same hits (a query embedded alone may differ from one in a batch in the 6th decimal)
    assert [h["thread_id"] for h in search["hits"]] == [h["thread_id"] for h in before[0]]
    assert [h["score"] for h in search["hits"]] == pytest.approx([h["score"] for h in before[0]], abs=1e-5)

    rebuild = _run("build", str(tmp_path / "v2.jsonl"), "--index", str(idx), "--quiet", "--json")
    assert rebuild.returncode == 0, rebuild.stderr
    summary = json.loads(rebuild.stdout)
    assert (summary["generation"], summary["embedded"]) == (2, changed)
    assert summary["reused"] == summary["vectors"] - changed
    assert not list(idx.rglob(".tmp-*"))

    ref_index = ForumIndex(real_embedder)  # a full rebuild of the edited forum, in process
    ref_index.upsert(edited)
    inc = ForumIndex.load(idx, real_embedder).search_many(QUERIES, k=5)
    ref = ref_index.search_many(QUERIES, k=5)
    for a, b in zip(inc, ref, strict=True):
        assert [h.thread_id for h in a] == [h.thread_id for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
