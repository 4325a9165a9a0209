"""Writes that neither stall nor vanish, and data at rest, on real files: embedding outside the
locks other writes wait for, a full disk, a full build beside live writes, file modes, and the
write log's checksums and torn last line."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import stat
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import FakeEmbedder
from fastapi.testclient import TestClient
from test_lifecycle import forum

from qa_search import Answer, LiveIndex, QASearchError, Thread, write_dump
from qa_search.cli import main
from qa_search.operations.changes import delete_threads, update_index
from qa_search.operations.lifecycle import build_index
from qa_search.operations.verify import verify_index
from qa_search.storage.layout import current_generation
from qa_search.storage.logformat import LOCK_NAME, LOG_NAME
from qa_search.storage.writelog import WriteLog
from service.app import create_app
from service.settings import Settings

KEY = "k3y"


class GatedEmbedder(FakeEmbedder):
    """Blocks on texts holding ``SLOW`` until ``release`` is set, saying so through ``started``."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def encode(self, texts, *, batch_size=64):
        if any("SLOW" in t for t in texts):
            self.started.set()
            assert self.release.wait(30)
        return super().encode(texts, batch_size=batch_size)


def _log_lines(idx: Path) -> list[dict]:
    path = idx / LOG_NAME
    return [json.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


@pytest.fixture
def idx(tmp_path) -> Path:
    build_index(tmp_path / "idx", forum(50), FakeEmbedder())
    return tmp_path / "idx"


# -- 1. embedding outside the locks -------------------------------------------------------------


def test_a_slow_write_embeds_holding_no_lock_other_writes_and_searches_wait_on(idx):
    slow = GatedEmbedder()
    a = LiveIndex(idx, slow)
    b = LiveIndex(idx, FakeEmbedder())  # another worker on the same index directory
    big = Thread("big", "SLOW a long thread", answers=())
    done: list[object] = []
    writer = threading.Thread(target=lambda: done.append(a.upsert([big])))
    writer.start()
    try:
        assert slow.started.wait(10)
        # nothing is logged (so nothing is acknowledged) before the embedding is done
        assert not any("seq" in r for r in _log_lines(idx))
        # the log's cross-process lock is free: another process could append now
        with open(idx / LOCK_NAME, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        # a small write to this worker and one to the other both finish while it embeds
        a.upsert([Thread("small-a", "a short write to the same worker")])
        b.upsert([Thread("small-b", "a short write to the other worker")])
        assert a.search("short write to the same worker", k=1)[0].thread_id == "small-a"
        assert not done
    finally:
        slow.release.set()
        writer.join(30)
    assert done and done[0].seq == 3  # acknowledged after the two small ones, in log order
    for live in (a, b):
        with live.reading() as index:
            assert {"big", "small-a", "small-b"} <= {t.id for t in index.threads()}


def test_another_worker_applies_a_large_write_with_the_writers_vectors_not_its_model(idx):
    a, b = LiveIndex(idx, FakeEmbedder()), LiveIndex(idx, FakeEmbedder())
    answers = tuple(Answer(f"big-{i}", f"answer number {i} about sleep and worry") for i in range(40))
    entry = a.upsert([Thread("big", "a large write", answers=answers)])
    kept = idx / "write-vectors" / f"{entry.id}.npz"
    assert kept.is_file() and stat.S_IMODE(kept.stat().st_mode) == 0o600
    before = b.index.embedder.texts_encoded
    b.catch_up()
    assert b.index.embedder.texts_encoded == before  # nothing went through b's model
    assert "big" in b.index
    hits_a = [(h.thread_id, round(h.score, 5)) for h in a.search("answer number 7 about sleep", k=3)]
    assert [(h.thread_id, round(h.score, 5)) for h in b.search("answer number 7 about sleep", k=3)] == hits_a
    small = a.upsert([Thread("small", "a small write")])  # cheaper to embed again than to keep
    assert not (idx / "write-vectors" / f"{small.id}.npz").exists()
    update_index(idx, [Thread("u1", "an operator's update")], FakeEmbedder())  # folds both in
    assert not kept.exists()


def test_a_write_whose_embedding_fails_is_not_logged(idx):
    class Broken(FakeEmbedder):
        def encode(self, texts, *, batch_size=64):
            if any("boom" in t for t in texts):
                raise RuntimeError("the model failed")
            return super().encode(texts, batch_size=batch_size)

    live = LiveIndex(idx, Broken())
    with pytest.raises(RuntimeError):
        live.upsert([Thread("x", "boom goes the model")])
    assert not any("seq" in r for r in _log_lines(idx))
    live.upsert([Thread("y", "a write that embeds")])
    assert [r["seq"] for r in _log_lines(idx) if "seq" in r] == [1]


# -- 2. the service: a size limit, a full disk ------------------------------------------------


@pytest.fixture
def client(idx):
    embedder = FakeEmbedder()
    app = create_app(Settings(index_dir=idx, api_key=KEY, max_write_chars=200), embedder=embedder)
    with TestClient(app) as c:
        c.embedder = embedder
        yield c


def test_a_write_over_max_write_chars_is_refused_before_the_model_sees_it(client, idx):
    calls = client.embedder.texts_encoded
    text = "private words " * 20  # 280 characters
    r = client.post("/v1/threads", headers={"X-API-Key": KEY},
                    json={"threads": [{"id": "w", "title": "t", "body": text}]})
    assert r.status_code == 413
    assert "281 characters" in r.json()["detail"] and "limit of 200" in r.json()["detail"]
    assert "private" not in r.text
    assert client.embedder.texts_encoded == calls and not _log_lines(idx)
    ok = client.post("/v1/threads", headers={"X-API-Key": KEY},
                     json={"threads": [{"id": "w", "title": "t", "body": "short"}]})
    assert ok.status_code == 200


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_a_507_logged_with_errno_and_search_goes_on(client, idx, monkeypatch, caplog, code):
    headers = {"X-API-Key": KEY}
    one = {"threads": [{"id": "w1", "title": "one"}]}
    two = {"threads": [{"id": "w2", "title": "two"}]}
    assert client.post("/v1/threads", headers=headers, json=one).is_success
    log = idx / LOG_NAME
    size = log.stat().st_size
    real_write = os.write

    def full_disk(fd, data):
        if os.path.samestat(os.fstat(fd), os.stat(log)):
            real_write(fd, bytes(data)[:7])  # a full disk takes part of it, then no more
            raise OSError(code, os.strerror(code))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with caplog.at_level(logging.ERROR, logger="qa_search.service"):
        r = client.post("/v1/threads", headers=headers, json=two)
        gone = client.delete("/v1/threads/w1", headers=headers)
    assert r.status_code == 507 and gone.status_code == 507
    assert r.json()["detail"].startswith("no space left on the index's disk")
    assert errno.errorcode[code] in caplog.text
    assert log.stat().st_size == size  # the part-written line is gone: nothing was acknowledged
    found = client.get("/v1/search", params={"q": "one"})
    assert found.status_code == 200 and [h["thread_id"] for h in found.json()["hits"]][:1] == ["w1"]
    monkeypatch.undo()
    assert client.post("/v1/threads", headers=headers, json=two).is_success
    assert [r["seq"] for r in _log_lines(idx) if "seq" in r] == [1, 2]


# -- 3. a full build beside live writes -------------------------------------------------------


def _ids(idx: Path) -> set[str]:
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        return {t.id for t in index.threads()}


def test_live_writes_newer_than_the_dump_survive_a_full_build_older_ones_do_not(tmp_path):
    idx = tmp_path / "idx"
    dump = forum(50)
    exported = datetime.now(timezone.utc) - timedelta(seconds=1)
    build_index(idx, dump, FakeEmbedder(), as_of=exported)
    live = LiveIndex(idx, FakeEmbedder())
    live.upsert([Thread("w1", "pushed live, then folded in by a publish")])
    live.delete(dump[3].id)
    update_index(idx, [dump[0]], FakeEmbedder())  # folds both in: generation 2
    assert WriteLog(idx).read_all() == []
    live.upsert([Thread("w2", "pushed live, still in the log")])

    # the dump was exported before those writes: all three are kept
    kept = build_index(idx, dump, FakeEmbedder(), as_of=exported)
    assert kept.removed == 0 and kept.kept_live_writes == 2 and kept.live_writes == 1
    ids = _ids(idx)
    assert {"w1", "w2"} <= ids and dump[3].id not in ids

    # a dump exported after them holds the forum's own account: it replaces them
    later = build_index(idx, dump, FakeEmbedder(), as_of=datetime.now(timezone.utc))
    ids = _ids(idx)
    assert "w1" not in ids and "w2" not in ids and dump[3].id in ids
    assert later.removed == 2 and later.kept_live_writes == 0


def test_threads_an_operators_publishes_changed_after_the_dump_survive_a_full_build(tmp_path):
    idx = tmp_path / "idx"
    dump = forum(50)
    exported = datetime.now(timezone.utc) - timedelta(seconds=2)
    build_index(idx, dump, FakeEmbedder(), as_of=exported)
    edited = Thread(dump[1].id, "an operator's edit after the export", body=dump[1].body)
    update_index(idx, [Thread("u1", "added by an operator's update"), edited], FakeEmbedder())
    delete_threads(idx, [dump[2].id], FakeEmbedder())

    kept = build_index(idx, dump, FakeEmbedder(), as_of=exported)
    assert kept.kept_published == 3 and kept.removed == 0 and kept.kept_live_writes == 0
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "u1" in index and dump[2].id not in index
        assert index.get(dump[1].id).title == "an operator's edit after the export"

    # a dump exported after those publishes replaces them, as far back as the generations go
    later = build_index(idx, dump, FakeEmbedder(), as_of=datetime.now(timezone.utc) + timedelta(seconds=2))
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "u1" not in index and dump[2].id in index and index.get(dump[1].id) == dump[1]
    assert later.kept_published == 0 and later.removed == 1


def test_an_operators_delete_after_a_folded_write_stands_through_a_rebuild(idx):
    live = LiveIndex(idx, FakeEmbedder())
    live.upsert([Thread("w1", "a write a moderator removes later")])
    delete_threads(idx, ["w1"], FakeEmbedder())
    build_index(idx, forum(50), FakeEmbedder(), as_of=datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert "w1" not in _ids(idx)


def test_the_removal_guard_trips_and_allow_removals_passes_it(idx):
    live = LiveIndex(idx, FakeEmbedder())
    live.upsert([Thread("w1", "a live write")])
    half = forum(50)[:25]
    with pytest.raises(QASearchError) as refused:
        build_index(idx, half, FakeEmbedder(), as_of=datetime.now(timezone.utc), max_removals=0.1)
    message = str(refused.value)
    assert "remove 26 of the 51 threads" in message and "51.0%" in message and "--allow-removals" in message
    assert current_generation(idx) == 1 and "w1" in _ids(idx)  # nothing published, the log intact
    assert len(WriteLog(idx).read_all()) == 1
    allowed = build_index(idx, half, FakeEmbedder(), as_of=datetime.now(timezone.utc), max_removals=0.1,
                          allow_removals=True)
    assert allowed.removed == 26 and allowed.threads == 25
    # a higher bound passes it too
    assert build_index(idx, forum(50)[:20], FakeEmbedder(), max_removals=0.25).removed == 5


def test_the_cli_build_keeps_writes_newer_than_the_dump_file_and_reports_removals(tmp_path, fake_cli):
    idx = tmp_path / "idx"
    dump = tmp_path / "dump.jsonl"
    write_dump(forum(30), dump)
    past = time.time() - 3600
    os.utime(dump, (past, past))
    assert fake_cli.invoke(main, ["build", str(dump), "--index", str(idx), "--quiet"]).exit_code == 0
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w1", "pushed after the export")])
    r = fake_cli.invoke(main, ["build", str(dump), "--index", str(idx), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["removed"] == 0 and "w1" in _ids(idx)
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w2", "pushed, and in the next export")])
    r = fake_cli.invoke(main, ["build", str(dump), "--index", str(idx), "--quiet",
                               "--as-of", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")])
    assert r.exit_code == 0, r.output
    assert "removed 2 threads the index held" in r.stdout and not {"w1", "w2"} & _ids(idx)
    small = tmp_path / "small.jsonl"
    write_dump(forum(10), small)
    r = fake_cli.invoke(main, ["build", str(small), "--index", str(idx), "--quiet"])
    assert r.exit_code == 1 and "remove 20 of the 30 threads" in r.stderr
    r = fake_cli.invoke(main, ["build", str(small), "--index", str(idx), "--quiet", "--max-removals", "0.7"])
    assert r.exit_code == 0, r.output
    bad = fake_cli.invoke(main, ["build", str(small), "--index", str(idx), "--as-of", "yesterday"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.stderr


# -- 4. data at rest ------------------------------------------------------------------------------


def _modes(idx: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(idx.stat().st_mode)}
    for p in idx.rglob("*"):
        out[str(p.relative_to(idx))] = stat.S_IMODE(p.lstat().st_mode)
    return out


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _exercise(idx: Path, **options) -> None:
    build_index(idx, forum(20), FakeEmbedder(), **options)
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w1", "a live write")])
    update_index(idx, [Thread("u1", "an update")], FakeEmbedder(), keep=1, **options)  # prunes: pruned/
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w2", "another")])


def test_index_files_are_owner_only_by_default(tmp_path, loose_umask):
    idx = tmp_path / "idx"
    _exercise(idx)
    modes = _modes(idx)
    names = set(modes)
    for expected in ("CURRENT", "HISTORY", "LOCK", LOG_NAME, LOCK_NAME, "cache", "generations"):
        assert expected in names
    assert any(n.startswith("cache/") and n.endswith(".npy") for n in names)
    wrong = {n: oct(m) for n, m in modes.items()
             if m != (0o700 if (idx / n).is_dir() else 0o600)}
    assert wrong == {}


def test_group_readable_indexes_and_an_older_world_readable_one_tightened(tmp_path, loose_umask):
    idx = tmp_path / "idx"
    _exercise(idx, group_readable=True)
    wrong = {n: oct(m) for n, m in _modes(idx).items() if m != (0o750 if (idx / n).is_dir() else 0o640)}
    assert wrong == {}
    # an index an older version left world-readable: the next publish makes it owner-only
    for p in [idx, *idx.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    update_index(idx, [Thread("u2", "one more")], FakeEmbedder())
    assert {m for n, m in _modes(idx).items()} == {0o700, 0o600}


# -- the write log's checksums and torn end -------------------------------------------------------


def test_a_line_edited_into_other_valid_json_fails_verify(idx, fake_cli):
    live = LiveIndex(idx, FakeEmbedder())
    live.upsert([Thread("w1", "what was written")])
    live.upsert([Thread("w2", "another")])
    log = idx / LOG_NAME
    lines = log.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"what was written", b"what was not said")
    log.write_bytes(b"".join(lines))
    problems = verify_index(idx, FakeEmbedder())["write log"]
    assert problems == [f"{log}, line 2, holds a damaged entry (its checksum does not match: the line was "
                        "changed after it was written); repair or remove that line"]
    r = fake_cli.invoke(main, ["verify", str(idx), "--no-model"])
    assert r.exit_code == 1 and "line 2" in r.stderr and "checksum" in r.stderr


def test_lines_without_a_checksum_are_read_as_before(idx):
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w1", "logged by an older version")])
    log = idx / LOG_NAME
    records = [json.loads(line) for line in log.read_bytes().splitlines()]
    assert all("check" in r for r in records)
    log.write_bytes(b"".join(json.dumps({k: v for k, v in r.items() if k != "check"}).encode() + b"\n"
                             for r in records))
    assert verify_index(idx, FakeEmbedder())["write log"] == []
    assert "w1" in _ids(idx)


def test_a_torn_last_line_is_a_warning_with_its_offset_and_length(idx, fake_cli):
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w1", "acknowledged")])
    log = idx / LOG_NAME
    size = log.stat().st_size
    with open(log, "ab") as fh:
        fh.write(b'{"seq": 2, "op": "ups')  # an append a crash cut short
    results = verify_index(idx, FakeEmbedder())
    assert not any(results.values())
    assert len(results.warnings) == 1
    assert f"ends with 21 bytes at byte offset {size}" in results.warnings[0]
    r = fake_cli.invoke(main, ["verify", str(idx), "--no-model"])
    assert r.exit_code == 0 and f"WARNING {idx}: write log:" in r.stderr
    assert json.loads(fake_cli.invoke(main, ["verify", str(idx), "--no-model", "--json"]).stdout)["warnings"]
    # the next write drops the torn bytes and its line starts on its own
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w2", "next")])
    assert verify_index(idx, FakeEmbedder()).warnings == []
    assert {"w1", "w2"} <= _ids(idx)
