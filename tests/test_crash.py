"""Crash safety for real: ``qa-search`` builds in subprocesses killed with SIGKILL at chosen
points (tests/crash_driver.py), and two builds racing for one index directory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FakeEmbedder
from test_lifecycle import edit, forum, results

from qa_search import LiveIndex, Thread, write_dump
from qa_search.operations.verify import verify_index
from qa_search.storage.generations import current_generation, list_generations
from qa_search.storage.snapshot import TMP_PREFIX

DRIVER = [sys.executable, str(Path(__file__).resolve().parent / "crash_driver.py")]


def qa(*args: str, kill: str | None = None, hang: Path | None = None, **popen) -> subprocess.CompletedProcess:
    opts = [*(["--kill", kill] if kill else []), *(["--hang", str(hang)] if hang else [])]
    return subprocess.run([*DRIVER, *opts, "--", *args], capture_output=True, text=True, timeout=120, **popen)


def debris(idx: Path) -> list[str]:
    """Leftovers of an unfinished writer: temporary names anywhere, unpublished generations."""
    found = [str(p.relative_to(idx)) for p in idx.rglob(f"{TMP_PREFIX}*")]
    current = current_generation(idx) or 0
    found += [f"generation {g}" for g in list_generations(idx) if g > current]
    return found


@pytest.fixture
def dumps(tmp_path) -> tuple[Path, Path, int]:
    threads = forum(200)
    edited, changed = edit(threads)
    write_dump(threads, tmp_path / "v1.jsonl")
    write_dump(edited, tmp_path / "v2.jsonl")
    return tmp_path / "v1.jsonl", tmp_path / "v2.jsonl", changed


@pytest.mark.parametrize(
    ("point", "expected_current"),
    [
        ("embed:2", 1),  # during embedding
        ("cache", 1),  # while saving new embeddings into the cache
        ("write", 1),  # while writing the new generation's files
        ("publish", 1),  # the new generation is written, CURRENT not yet switched
        ("prune", 2),  # published, then killed while deleting the old generation
    ],
)
def test_kill_9_during_a_build_leaves_a_servable_verifiable_index(tmp_path, dumps, point, expected_current):
    v1, v2, changed = dumps
    idx = tmp_path / "idx"
    first = qa("build", str(v1), "--index", str(idx), "--quiet", "--json")
    assert first.returncode == 0, first.stderr
    before = results(idx)
    keep = ["--keep", "1"] if point == "prune" else []
    # the fake model embeds in batches of 64; the edit is small, so start from an empty cache
    if point == "embed:2":
        for shard in (idx / "cache").rglob("*.npy"):
            shard.unlink()

    killed = qa("build", str(v2), "--index", str(idx), "--quiet", *keep, kill=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    info = json.loads(qa("info", str(idx), "--json").stdout)
    assert info["current"] == expected_current
    unpublished = [g["number"] for g in info["generations"] if not g["published"]]
    assert unpublished == ([2] if point == "publish" else [])
    if point == "publish":  # a generation that was never current is no rollback target
        refused = qa("rollback", str(idx), "--to", "2")
        assert refused.returncode == 1 and "has no generation 2 (kept: 1)" in refused.stderr
    check = qa("verify", str(idx), "--json")
    assert check.returncode == 0 and json.loads(check.stdout)["ok"], check.stdout + check.stderr
    assert verify_index(idx, FakeEmbedder()) == {f"generation {expected_current} (current)": []}
    search = qa("search", str(idx), "sleep anxiety at night", "--json")
    assert search.returncode == 0 and json.loads(search.stdout)["hits"]
    if expected_current == 1:
        assert results(idx) == before
    elif point == "prune":
        assert debris(idx)  # a generation renamed for deletion but not yet deleted

    again = qa("build", str(v2), "--index", str(idx), "--quiet", "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["generation"] == current_generation(idx)
    assert debris(idx) == []
    assert not any(verify_index(idx, FakeEmbedder(), all_generations=True).values())
    if point in ("write", "publish", "prune"):
        # the killed build's embeddings were saved before it died: nothing is embedded twice
        assert summary["embedded"] == 0
    elif point == "cache":  # died saving them: the edited texts are embedded again, no more
        assert summary["embedded"] == changed
    else:  # died embedding, from an empty cache, before the first shard was due
        assert summary["embedded"] == summary["vectors"]


def test_kill_9_during_a_rollback_serves_its_target_and_running_it_again_finishes_it(tmp_path, dumps):
    v1, v2, _ = dumps
    idx = tmp_path / "idx"
    assert qa("build", str(v1), "--index", str(idx), "--quiet").returncode == 0
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w1", "a write the service acknowledged")])
    assert qa("build", str(v2), "--index", str(idx), "--quiet").returncode == 0  # 2 folds it in

    killed = qa("rollback", str(idx), kill="rollback")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    info = json.loads(qa("info", str(idx), "--json").stdout)
    assert (info["current"], info["serving"]) == (2, 1)
    live = LiveIndex(idx, FakeEmbedder())  # a worker (re)starting now serves the target
    with live.reading() as index:
        assert live.generation == 1 and "w1" in index  # generation 1 and the write put back

    again = qa("rollback", str(idx), "--json")  # the operator runs it again: it stops at 1
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"from": 2, "current": 1, "restored_writes": 1, "dropped_writes": 0}
    assert current_generation(idx) == 1 and not list(idx.rglob(f"{TMP_PREFIX}*"))
    assert verify_index(idx, FakeEmbedder()) == {"generation 1 (current)": [], "write log": []}
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "w1" in index


@pytest.mark.parametrize("kill", ["embed:5", "timed"])
def test_kill_9_during_live_writes_loses_no_acknowledged_write(tmp_path, dumps, kill):
    """Writes embed before they take a lock and are acknowledged by the log append: a worker
    killed anywhere (in the model, in the append, in applying) loses only the write it had not
    answered yet, and leaves a log every process reads."""
    v1, _, _ = dumps
    idx = tmp_path / "idx"
    assert qa("build", str(v1), "--index", str(idx), "--quiet").returncode == 0
    opts = ["--kill", kill] if kill != "timed" else []
    worker = subprocess.Popen([*DRIVER, *opts, "--", "live-writes", str(idx), "200"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    acked = []
    try:
        for line in worker.stdout:
            acked.append(line.split()[1])
            if kill == "timed" and len(acked) == 12:
                time.sleep(0.003 * (hash(str(tmp_path)) % 7))  # somewhere in the next write
                worker.send_signal(signal.SIGKILL)
                break
    finally:
        worker.wait(60)
        # acknowledgements it printed before it died but this loop had not read yet
        acked += [line.split()[1] for line in worker.stdout]
        worker.stdout.close()
    assert worker.returncode == -signal.SIGKILL
    if kill == "embed:5":  # died embedding the fifth write: four were answered
        assert acked == [f"live{i}" for i in range(4)]
    assert len(acked) >= 4
    checked = verify_index(idx, FakeEmbedder())
    assert not any(checked.values()), checked
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        served = {t.id for t in index.threads() if t.id.startswith("live")}
    assert set(acked) <= served and len(served) <= len(acked) + 1  # the one in flight, at most
    if kill == "embed:5":  # it died before its append: the unanswered write left no trace
        assert served == set(acked)
    after = qa("build", str(v1), "--index", str(idx), "--quiet", "--json")  # a rebuild keeps them
    assert after.returncode == 0, after.stderr
    live = LiveIndex(idx, FakeEmbedder())
    with live.reading() as index:
        assert set(acked) <= {t.id for t in index.threads()}
    # and each keeps who may see it: a group's writes stay out of public searches
    private = {f"live{i}" for i in range(1, 200, 2)} & set(acked)
    public_hits = {h.thread_id for h in live.search("write from the forum", 50, groups=())}
    group_hits = {h.thread_id for h in live.search("write from the forum", 50, groups=("grief-group",))}
    assert private and not private & public_hits and private <= group_hits


def test_two_concurrent_builds_one_wins_the_other_fails_at_once(tmp_path, dumps):
    v1, v2, _ = dumps
    idx = tmp_path / "idx"
    assert qa("build", str(v1), "--index", str(idx), "--quiet").returncode == 0
    for shard in (idx / "cache").rglob("*.npy"):
        shard.unlink()  # so the first writer has something to embed, where it will wait
    ready = tmp_path / "embedding-started"
    opts = ["--hang", str(ready)]
    first = subprocess.Popen(
        [*DRIVER, *opts, "--", "build", str(v2), "--index", str(idx), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        second = qa("build", str(v2), "--index", str(idx), "--quiet")
        assert time.monotonic() - started < 30  # at once: no waiting for the first build
        assert second.returncode == 1
        assert f"is locked by pid {first.pid}" in second.stderr and f"-- build {v2} --index" in second.stderr
        assert qa("rollback", str(idx)).returncode == 1  # every writer is refused, not only build
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert current_generation(idx) == 1
    assert not any(verify_index(idx, FakeEmbedder()).values())
    after = qa("build", str(v2), "--index", str(idx), "--quiet", "--json")
    assert after.returncode == 0 and json.loads(after.stdout)["generation"] == 2


def test_verify_command_names_a_flipped_byte_and_search_refuses_the_snapshot(tmp_path, dumps):
    v1, _, _ = dumps
    idx = tmp_path / "idx"
    assert qa("build", str(v1), "--index", str(idx), "--quiet").returncode == 0
    ok = qa("verify", str(idx))
    assert ok.returncode == 0 and ok.stdout == f"ok {idx}: generation 1 (current)\n"
    target = idx / "generations" / "000001" / "parts.jsonl"
    data = bytearray(target.read_bytes())
    data[5] ^= 0x20
    target.write_bytes(bytes(data))
    bad = qa("verify", str(idx))
    assert bad.returncode == 1
    assert f"FAILED {idx}: generation 1 (current): parts.jsonl does not match its checksum" in bad.stderr
    refused = qa("search", str(idx), "anything")
    assert refused.returncode == 1 and "failed verification: parts.jsonl does not match" in refused.stderr


def test_a_torn_history_line_from_a_crash_is_ignored(tmp_path, dumps):
    from qa_search.storage.layout import read_history

    v1, _, _ = dumps
    idx = tmp_path / "idx"
    assert qa("build", str(v1), "--index", str(idx), "--quiet").returncode == 0
    with open(idx / "HISTORY", "a") as fh:
        fh.write('{"generation": 2, "act')  # a crash mid-append
    assert [r["generation"] for r in read_history(idx)] == [1]
    again = qa("build", str(v1), "--index", str(idx), "--quiet", "--json")
    assert json.loads(again.stdout)["generation"] == 2
    assert [r["generation"] for r in read_history(idx)] == [1, 2]
