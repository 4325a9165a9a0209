"""What an operator's routine commands must not lose or hide: live writes across a rollback, the
calibration across a rebuild, what a skip-everything build skipped, and plain errors for the
operating system's refusals and for a missing index."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DUMP, FakeEmbedder, calibrated_sample_index

from qa_search import (
    ForumIndex,
    IncompatibleSnapshotError,
    LiveIndex,
    SnapshotError,
    Thread,
    read_dump,
    write_dump,
)
from qa_search.cli import main
from qa_search.operations.changes import delete_threads, update_index
from qa_search.operations.lifecycle import build_index
from qa_search.operations.verify import verify_index, verify_snapshot
from qa_search.storage.generations import (
    current_generation,
    generation_path,
    lineage,
    list_generations,
    prune,
    resolve_snapshot,
    rollback,
)
from qa_search.storage.layout import FOLDED_NAME, read_history
from qa_search.storage.snapshot import read_manifest
from qa_search.storage.writelog import WriteLog


@pytest.fixture(scope="module")
def threads():
    return list(read_dump(SAMPLE_DUMP))[:30]


def test_a_rollback_puts_the_writes_later_generations_folded_in_back_into_the_log(tmp_path, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    live = LiveIndex(idx, FakeEmbedder())
    live.upsert([Thread("w1", "first write: can a weighted blanket help me sleep")])
    live.upsert([Thread("w1", "first write, edited: weighted blankets and sleep")])
    report = build_index(idx, threads, FakeEmbedder())  # folds both writes in, empties the log
    assert report.live_writes == 2 and WriteLog(idx).read_all() == []
    assert (generation_path(idx, 2) / FOLDED_NAME).is_file()
    live.delete(["w1"])
    live.upsert([Thread("w2", "second write: talking to my sister about money")])
    assert build_index(idx, threads, FakeEmbedder()).live_writes == 2  # generation 3
    live.upsert([Thread("w3", "a write not folded yet")])

    assert rollback(idx, to=1) == 1
    assert read_history(idx)[-1]["restored_writes"] == 4
    # the log now holds the writes of generations 2 and 3, oldest first, then its own (the first
    # write's thread, which the edit after it superseded, is not kept in generation 2's record)
    entries = WriteLog(idx).read_all()
    assert [(e.op, [t.id for t in e.threads] or list(e.ids)) for e in entries] == [
        ("upsert", []), ("upsert", ["w1"]), ("delete", ["w1"]), ("upsert", ["w2"]), ("upsert", ["w3"])
    ]
    fresh = LiveIndex(idx, FakeEmbedder())
    with fresh.reading() as index:
        assert "w1" not in index and "w2" in index and "w3" in index
    with live.reading():  # the old process swaps (its watcher would) and ends in the same state
        live.check_generation()
    with live.reading() as index:
        assert sorted(t.id for t in index.threads()) == sorted(t.id for t in fresh.index.threads())
    # rolling forward restores nothing (generation 3 has those writes), and nothing is lost
    assert rollback(idx, to=3) == 3 and read_history(idx)[-1]["restored_writes"] == 0
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "w1" not in index and "w2" in index and "w3" in index


def test_a_rollback_follows_the_line_generations_were_built_on_not_their_numbers(tmp_path, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())  # 1
    live = LiveIndex(idx, FakeEmbedder())
    live.upsert([Thread("w1", "a write a moderator removes later")])
    delete_threads(idx, ["w1"], FakeEmbedder())  # 2: folds the write in, then deletes w1
    live.upsert([Thread("w2", "a write generation 3 folds in")])
    build_index(idx, threads, FakeEmbedder())  # 3, on top of 2
    assert rollback(idx, to=1) == 1  # puts both writes back
    build_index(idx, threads, FakeEmbedder())  # 4, on top of 1: holds w1 and w2 again
    assert read_manifest(generation_path(idx, 4))["parent"] == 1
    assert lineage(idx, 4) == [4, 1] and lineage(idx, 3) == [3, 2, 1]

    # generation 2 holds the first write and the moderator's delete after it: only the write
    # that 4 holds and 2 does not (w2) goes back; the first must not bring w1 back
    assert rollback(idx, to=2) == 2
    assert read_history(idx)[-1]["restored_writes"] == 1
    assert [[t.id for t in e.threads] for e in WriteLog(idx).read_all()] == [["w2"]]
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "w1" not in index and "w2" in index
    # forward to 3, which holds w2 already: the log gives it up, nothing comes back
    assert rollback(idx, to=3) == 3
    assert read_history(idx)[-1] == {**read_history(idx)[-1], "restored_writes": 0, "dropped_writes": 1}
    assert WriteLog(idx).read_all() == []
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "w1" not in index and "w2" in index


def test_a_write_held_by_a_pruned_ancestor_of_the_target_is_not_put_back(tmp_path, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())  # 1
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w1", "a write a moderator removes later")])
    delete_threads(idx, ["w1"], FakeEmbedder())  # 2: the write, then the delete
    update_index(idx, [threads[0]], FakeEmbedder())  # 3, on top of 2
    assert rollback(idx, to=1) == 1
    build_index(idx, threads, FakeEmbedder())  # 4, on top of 1, folds the write in again
    prune(idx, keep=2)  # 1 and 2 go, with the record of what 2 folded in
    assert list_generations(idx) == [3, 4]
    # the write says which generation first folded it in (2), and 3 is built on 2
    assert rollback(idx, to=3) == 3
    assert read_history(idx)[-1]["restored_writes"] == 0
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "w1" not in index


def test_a_rollback_killed_between_the_log_and_the_pointer_is_served_and_finished_as_meant(
    tmp_path, threads, monkeypatch
):
    import qa_search.storage.generations as store

    def served(idx) -> tuple[int, dict[str, str]]:
        live = LiveIndex(idx, FakeEmbedder())
        with live.reading() as index:
            return live.generation, {t.id: t.title for t in index.threads()}

    def history(idx) -> None:
        build_index(idx, threads, FakeEmbedder())  # 1
        live = LiveIndex(idx, FakeEmbedder())
        live.upsert([Thread("w1", "a write a moderator removes later")])
        delete_threads(idx, ["w1"], FakeEmbedder())  # 2
        live.upsert([Thread("w2", "a write generation 3 folds in")])
        build_index(idx, threads, FakeEmbedder())  # 3
        assert rollback(idx, to=1) == 1
        live.upsert([Thread("w3", "a write pending on generation 1")])

    history(tmp_path / "a")
    rollback(tmp_path / "a", to=3)
    expected = served(tmp_path / "a")
    assert expected[0] == 3 and "w2" in expected[1] and "w3" in expected[1] and "w1" not in expected[1]

    idx = tmp_path / "b"
    history(idx)
    real = store._set_current

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies after the log is rewritten, before CURRENT

    monkeypatch.setattr(store, "_set_current", die)
    with pytest.raises(KeyboardInterrupt):
        rollback(idx, to=3)
    monkeypatch.setattr(store, "_set_current", real)
    # CURRENT still names 1, but the log is 3's: the service serves 3, never 1 with 3's log
    assert current_generation(idx) == 1 and served(idx) == expected
    assert rollback(idx, to=3) == 3  # the operator runs it again: the same end
    assert served(idx) == expected and current_generation(idx) == 3

    # and back, killed the same way; the next writer of any kind finishes the switch
    rollback(tmp_path / "a", to=2)
    expected = served(tmp_path / "a")
    assert expected[0] == 2 and "w1" not in expected[1] and "w2" in expected[1] and "w3" in expected[1]
    monkeypatch.setattr(store, "_set_current", die)
    with pytest.raises(KeyboardInterrupt):
        rollback(idx, to=2)
    monkeypatch.setattr(store, "_set_current", real)
    assert current_generation(idx) == 3 and served(idx) == expected
    # loading, searching and verifying go by the generation served, too
    assert int(resolve_snapshot(idx).name) == 2
    assert "generation 2 (current)" in verify_index(idx, check_model=False)
    info = CliRunner().invoke(main, ["info", str(idx), "--json"])
    assert json.loads(info.stdout)["current"] == 3 and json.loads(info.stdout)["serving"] == 2
    assert "a rollback to generation 2 was stopped" in CliRunner().invoke(main, ["info", str(idx)]).output
    prune(idx, keep=100)
    assert current_generation(idx) == 2 and served(idx) == expected
    record = read_history(idx)[-1]
    assert record["action"] == "rollback" and record["finished_after_a_crash"] is True

    # a plain `rollback` (to the previous generation) killed, then run again, stops where the
    # first one meant to go, not a generation further; --json counts both steps' writes
    rollback(tmp_path / "a", to=1)
    expected = served(tmp_path / "a")
    monkeypatch.setattr(store, "_set_current", die)
    with pytest.raises(KeyboardInterrupt):
        rollback(idx)
    monkeypatch.setattr(store, "_set_current", real)
    (idx / ".tmp-CURRENT.dead1234").write_text("1\n")  # what a kill in the middle of its write leaves
    r = CliRunner().invoke(main, ["rollback", str(idx), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["from"], out["current"]) == (2, 1) and out["restored_writes"] >= 1
    assert served(idx) == expected
    assert not list(idx.glob(".tmp-*"))  # the killed one's leftovers are cleaned up


def test_a_running_worker_swaps_when_a_rollback_has_set_the_log_and_never_applies_it_to_the_old_one(
    tmp_path, threads
):
    from qa_search.storage.writelog import writes_for_switch

    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())  # 1
    reader, writer = LiveIndex(idx, FakeEmbedder()), LiveIndex(idx, FakeEmbedder())
    reader.upsert([Thread("ma", "a write a moderator removes")])
    delete_threads(idx, ["ma"], FakeEmbedder())  # 2: the write, then the delete
    for live in (reader, writer):
        live.check_generation()
        with live.reading() as index:
            assert live.generation == 2 and "ma" not in index
    # the first half of a rollback to 1: the log now holds the write again, for generation 1
    writes_for_switch(idx, 2, 1)
    assert current_generation(idx) == 2
    with reader.reading() as index:  # a request: it swaps instead of bringing "ma" back on 2
        assert reader.generation == 1 and "ma" in index
    writer.upsert([Thread("nw", "a write in the moment between")])  # a write, likewise
    assert writer.generation == 1
    with writer.reading() as index:
        assert "ma" in index and "nw" in index


def test_a_publish_killed_before_it_compacted_the_log_is_not_folded_in_twice(tmp_path, threads, monkeypatch):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w1", "a write a moderator removes")])

    def die(self, *args, **kwargs):
        raise KeyboardInterrupt  # killed after CURRENT moved on, before the log was compacted

    monkeypatch.setattr(WriteLog, "truncate_through", die)
    with pytest.raises(KeyboardInterrupt):
        delete_threads(idx, ["w1"], FakeEmbedder())  # generation 2: the write, then the delete
    monkeypatch.undo()
    assert current_generation(idx) == 2 and len(WriteLog(idx).read_all()) == 1  # still in the log
    # the next publish leaves out what generation 2 folded in already: the delete sticks
    report = update_index(idx, [threads[0]], FakeEmbedder())
    assert report.live_writes == 0 and WriteLog(idx).read_all() == []
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "w1" not in index


def test_a_thread_deleted_through_the_service_leaves_no_copy_after_a_rebuild_and_prune(tmp_path, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    live = LiveIndex(idx, FakeEmbedder())
    live.upsert([Thread("px", "my secretword7731 and what happened"), Thread("w2", "a thread that stays")])
    live.upsert([Thread("px", "edited: my secretword7731 again")])
    live.delete(["px"])
    build_index(idx, threads, FakeEmbedder(), keep=1)  # the README's recipe
    copies = [p for p in idx.rglob("*") if p.is_file() and b"secretword7731" in p.read_bytes()]
    assert copies == []
    # the generation's record keeps every write (with its id), less the superseded thread
    record = [json.loads(line) for line in (generation_path(idx, 2) / FOLDED_NAME).read_text().splitlines()]
    assert [(r["op"], [t["id"] for t in r.get("threads", [])]) for r in record] == [
        ("upsert", ["w2"]), ("upsert", []), ("delete", [])
    ]
    assert all(r["id"] for r in record)
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "px" not in index and "w2" in index


def test_lineage_of_generations_published_before_parents_were_recorded_comes_from_the_history(
    tmp_path, threads
):
    idx = tmp_path / "idx"
    for _ in range(3):
        build_index(idx, threads, FakeEmbedder())
    rollback(idx, to=1)
    build_index(idx, threads, FakeEmbedder())  # 4, on top of 1
    for g in list_generations(idx):  # as an earlier version wrote them: no parent
        path = generation_path(idx, g) / "manifest.json"
        manifest = json.loads(path.read_text())
        del manifest["parent"]
        path.write_text(json.dumps(manifest))
    assert lineage(idx, 4) == [4, 1] and lineage(idx, 3) == [3, 2, 1]
    (idx / "HISTORY").unlink()  # nothing to say otherwise: numbers in a line
    assert lineage(idx, 4) == [4, 3, 2, 1]


def test_cli_rollback_says_how_many_writes_it_restored(tmp_path, fake_cli, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w1", "a write from the forum")])
    build_index(idx, threads, FakeEmbedder())
    r = fake_cli.invoke(main, ["rollback", str(idx), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"from": 2, "current": 1, "restored_writes": 1, "dropped_writes": 0}
    r = fake_cli.invoke(main, ["rollback", str(idx), "--to", "2", "--json"])
    assert json.loads(r.stdout) == {"from": 1, "current": 2, "restored_writes": 0, "dropped_writes": 1}
    r = fake_cli.invoke(main, ["info", str(idx)])
    assert "last publishes and rollbacks" in r.output and "rollback  generation 1" in r.output
    # info says which generation each was made on top of
    rollback(idx, to=1)
    build_index(idx, threads, FakeEmbedder())
    gens = json.loads(fake_cli.invoke(main, ["info", str(idx), "--json"]).stdout)["generations"]
    assert [(g["number"], g["parent"]) for g in gens] == [(1, None), (2, 1), (3, 1)]
    rows = fake_cli.invoke(main, ["info", str(idx)]).output.splitlines()
    assert rows[1].split()[:2] == ["gen", "on"] and rows[4].split()[:3] == ["*", "3", "1"]


def test_a_rebuild_keeps_the_calibration_of_the_same_model_and_says_when_it_cannot(tmp_path, fake_cli):
    all_threads = list(read_dump(SAMPLE_DUMP))
    index = calibrated_sample_index()
    index.save(tmp_path / "idx")
    dump = tmp_path / "d.jsonl"
    write_dump(all_threads, dump)
    r = fake_cli.invoke(main, ["build", str(dump), "--index", str(tmp_path / "idx"), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["calibration_dropped"] is None
    rebuilt = ForumIndex.load(tmp_path / "idx", FakeEmbedder())
    assert rebuilt.calibration is not None
    assert rebuilt.calibration.to_dict() == index.calibration.to_dict()
    # another model: the calibration cannot carry over, and the build says so
    other = build_index(tmp_path / "idx", all_threads, FakeEmbedder(name="other-model", seed=3))
    assert "other-model" not in other.calibration_dropped and "fake-bow" in other.calibration_dropped
    assert ForumIndex.load(tmp_path / "idx", FakeEmbedder(name="other-model", seed=3)).calibration is None


def test_live_writes_a_build_folds_in_are_counted_and_cached(tmp_path, fake_cli, threads):
    idx = tmp_path / "idx"
    dump = tmp_path / "d.jsonl"
    write_dump(threads, dump)
    build_index(idx, threads, FakeEmbedder())
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w1", "a brand new question", body="with a new body")])
    r = fake_cli.invoke(main, ["build", str(dump), "--index", str(idx), "--quiet", "--json"])
    out = json.loads(r.stdout)
    assert out["live_writes"] == 1 and out["embedded"] == 1  # the write's question, embedded at the fold
    write_dump([*threads, Thread("w1", "a brand new question", body="with a new body")], dump)
    again = fake_cli.invoke(main, ["build", str(dump), "--index", str(idx), "--quiet", "--json"])
    out = json.loads(again.stdout)
    assert out["embedded"] == 0  # taken from the cache the fold filled
    # a delete, configure or calibrate folds writes in too, and counts and caches them the same way
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("w2", "another brand new question")])
    r = fake_cli.invoke(main, ["delete", str(idx), "w1", "--json"])
    out = json.loads(r.stdout)
    assert out["live_writes"] == 1 and out["embedded"] == 1 and out["reused"] == 0
    write_dump([*threads, Thread("w2", "another brand new question")], dump)
    again = fake_cli.invoke(main, ["build", str(dump), "--index", str(idx), "--quiet", "--json"])
    assert json.loads(again.stdout)["embedded"] == 0


def test_skip_invalid_says_what_it_skipped_even_when_nothing_is_left(tmp_path, fake_cli):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1"}\n{"title": "no id"}\n')
    args = ["build", str(bad), "--index", str(tmp_path / "idx"), "--skip-invalid", "--quiet"]
    r = fake_cli.invoke(main, args)
    assert r.exit_code == 1
    assert "skipped 2 invalid record(s)" in r.stderr and "missing required field 'title'" in r.stderr
    assert "the input is empty" in r.stderr


def test_writers_refuse_a_snapshot_directory_before_putting_anything_in_it(tmp_path, fake_cli, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    snap = generation_path(idx, 1)
    before = sorted(p.name for p in snap.iterdir())
    dump = tmp_path / "d.jsonl"
    write_dump(threads[:3], dump)
    for args in (["build", str(dump), "--index", str(snap)], ["update", str(snap), str(dump)]):
        r = fake_cli.invoke(main, [*args, "--quiet"])
        assert r.exit_code == 1 and "is a single snapshot, not an index directory" in r.stderr
    assert sorted(p.name for p in snap.iterdir()) == before


def test_a_delete_that_changes_nothing_publishes_nothing(tmp_path, fake_cli, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    report = delete_threads(idx, ["no-such-thread"], FakeEmbedder(), missing_ok=True)
    assert report.generation == 1 and report.deleted == 0 and list_generations(idx) == [1]
    r = fake_cli.invoke(main, ["delete", str(idx), "nope", "--missing-ok", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["generation"] == 1 and current_generation(idx) == 1


def test_operating_system_errors_and_a_missing_index_are_one_line_and_status_1(tmp_path, fake_cli):
    dump = tmp_path / "d.jsonl"
    write_dump([Thread("1", "a question")], dump)
    r = fake_cli.invoke(main, ["build", str(dump), "--index", str(dump / "idx"), "--quiet"])
    assert r.exit_code == 1 and "Not a directory" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    for args in (["search", str(tmp_path / "nope"), "hello"], ["info", str(tmp_path / "nope")],
                 ["duplicates", str(tmp_path / "nope"), "hello"]):
        r = fake_cli.invoke(main, args)
        assert r.exit_code == 1 and f"no index at {tmp_path / 'nope'}" in r.stderr, args
    for args in (["update", str(tmp_path / "nope"), str(dump)], ["delete", str(tmp_path / "nope"), "1"],
                 ["rollback", str(tmp_path / "nope")]):
        # a writer of an existing index says there is none, and leaves no directory behind
        r = fake_cli.invoke(main, args)
        assert r.exit_code == 1 and f"no index at {tmp_path / 'nope'}: build one" in r.stderr, args
        assert not (tmp_path / "nope").exists()
    (tmp_path / "empty").mkdir()
    r = fake_cli.invoke(main, ["info", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "holds no published snapshot" in r.stderr
    assert "qa-search build DUMP --index DIR" in r.stderr
    # the folder above an index (indexes/sample for indexes/sample/index) points to it
    built = tmp_path / "forum" / "index"
    assert fake_cli.invoke(main, ["build", str(dump), "--index", str(built), "-q"]).exit_code == 0
    r = fake_cli.invoke(main, ["search", str(tmp_path / "forum"), "a question"])
    assert r.exit_code == 1 and f"did you mean {built}?" in r.stderr
    for value in ("nan", "5", "-1.5"):
        r = fake_cli.invoke(main, ["duplicates", str(tmp_path), "hello", "--threshold", value])
        assert r.exit_code == 2 and "--threshold" in r.stderr, value


class _Encoder(FakeEmbedder):
    """A fake model on a named encoder; ``drift`` mixes in another model, as a fine-tuned copy
    of the same model would differ (probe cosine about 0.995 at drift 0.1)."""

    def __init__(self, backend: str, drift: float = 0.0) -> None:
        super().__init__()
        self.backend, self.drift, self.probe_min_cosine = backend, drift, 0.95
        self._other = FakeEmbedder(seed=7)

    def encode(self, texts, *, batch_size=64):
        out = super().encode(texts) + self.drift * self._other.encode(texts)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_the_same_encoder_is_held_to_the_strict_fingerprint_by_load_and_verify_alike(tmp_path, threads):
    index = ForumIndex(_Encoder("onnx-int8"))
    index.upsert(threads)
    snap = index.save(tmp_path / "idx")
    assert verify_snapshot(snap, _Encoder("onnx-int8")) == []
    ForumIndex.load(snap, _Encoder("onnx-int8"))
    # the model directory's weights changed under the same name and encoder: refused by both
    with pytest.raises(IncompatibleSnapshotError):
        ForumIndex.load(snap, _Encoder("onnx-int8", drift=0.1))
    assert any("no longer matches" in p for p in verify_snapshot(snap, _Encoder("onnx-int8", drift=0.1)))
    # another encoder of the model (int8 against fp32) differs about that much, and is allowed
    ForumIndex.load(snap, _Encoder("onnx", drift=0.1))
    assert verify_snapshot(snap, _Encoder("onnx", drift=0.1)) == []


def test_verify_prints_one_line_per_problem(tmp_path, fake_cli, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    snap = generation_path(idx, 1)
    for name in ("parts.jsonl", "threads.jsonl"):
        with open(snap / name, "ab") as fh:
            fh.write(b"\n")
    r = fake_cli.invoke(main, ["verify", str(idx), "--no-model"])
    assert r.exit_code == 1
    failed = [line for line in r.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2 and "parts.jsonl has" in failed[0] and "threads.jsonl has" in failed[1]


def test_verify_finds_a_damaged_write_log_line_before_a_restart_would(tmp_path, fake_cli, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    live = LiveIndex(idx, FakeEmbedder())
    live.upsert([Thread("w1", "a live write the service logged")])
    live.upsert([Thread("w2", "another one")])
    r = fake_cli.invoke(main, ["verify", str(idx), "--no-model"])
    assert r.exit_code == 0 and f"ok {idx}: write log" in r.stdout
    log = idx / "writes.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"title"', b'"titel"')  # a flipped byte after every worker read it
    log.write_bytes(b"".join(lines))
    with live.reading() as index:  # the running service still holds both writes, and says nothing
        assert "w1" in index and "w2" in index
    r = fake_cli.invoke(main, ["verify", str(idx), "--no-model"])
    assert r.exit_code == 1
    failed = [line for line in r.stderr.splitlines() if line.startswith("FAILED")]
    assert failed == [f"FAILED {idx}: write log: {log}, line 3, holds a damaged entry "
                      "(missing required field 'title'); repair or remove that line"]
    checked = json.loads(fake_cli.invoke(main, ["verify", str(idx), "--no-model", "--json"]).stdout)
    assert not checked["ok"] and checked["checked"]["generation 1 (current)"] == []
    assert log.read_bytes() == b"".join(lines)  # verify only reads
    # a bare snapshot directory has no write log to check
    assert list(verify_index(generation_path(idx, 1), check_model=False)) == ["generation 1"]
    # nor is there more than itself to check with --all (it used to check nothing and pass)
    assert verify_index(generation_path(idx, 1), all_generations=True, check_model=False) == {
        "generation 1": []
    }


def test_an_operators_delete_and_update_win_over_older_pending_writes(tmp_path, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    first, second = threads[0].id, threads[1].id
    live = LiveIndex(idx, FakeEmbedder())
    live.upsert([Thread(first, "an edit the forum pushed before the moderator's delete")])
    live.upsert([Thread(second, "the back end's edit")])
    live.upsert([Thread("live-only", "a thread only the write log holds")])
    report = delete_threads(idx, [first, "live-only"], FakeEmbedder())
    assert report.deleted == 2 and report.live_writes == 3
    update_index(idx, [Thread(second, "the operator's later correction")], FakeEmbedder())
    for index in (ForumIndex.load(idx, FakeEmbedder()), LiveIndex(idx, FakeEmbedder()).index):
        assert first not in index and "live-only" not in index
        assert index.get(second).title == "the operator's later correction"


def test_a_rollback_refuses_a_damaged_log_and_changes_nothing(tmp_path, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    live = LiveIndex(idx, FakeEmbedder())
    live.upsert([Thread("w1", "folded into generation 2")])
    build_index(idx, threads, FakeEmbedder())
    for i in range(3):
        live.upsert([Thread(f"p{i}", f"pending write {i}")])
    log_path = idx / "writes.jsonl"
    lines = log_path.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"seq": 3, "op": "upsert", "threads": [{"id": "x"}]}\n'  # the middle write, damaged
    log_path.write_bytes(b"".join(lines))
    damaged = log_path.read_bytes()
    with pytest.raises(SnapshotError, match="damaged entry"):
        rollback(idx)
    assert current_generation(idx) == 2 and log_path.read_bytes() == damaged


def test_a_write_not_wholly_on_disk_is_refused_and_leaves_nothing(tmp_path, threads, monkeypatch):
    import errno
    import os

    from qa_search.storage import writelog

    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    live = LiveIndex(idx, FakeEmbedder())
    live.upsert([Thread("w1", "a first write")])
    log_path = idx / "writes.jsonl"
    before = log_path.read_bytes()
    real_write = os.write
    calls = []

    def full_disk(fd, data):  # takes part of the line, then the disk is full
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writelog.os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        live.upsert([Thread("w2", "a write the disk only half took")])
    monkeypatch.setattr(writelog.os, "write", real_write)
    assert log_path.read_bytes() == before  # nothing of it stays behind
    # a torn fragment left by a crash mid-append is dropped by the next write, not joined to it
    with open(log_path, "ab") as fh:
        fh.write(b'{"seq": 2, "op": "upsert", "threads": [{"id": "torn"')
    live.upsert([Thread("w3", "the next write")])
    entries = WriteLog(idx).read_all_strict()
    assert [t.id for e in entries for t in e.threads] == ["w1", "w3"] and [e.seq for e in entries] == [1, 2]
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "w1" in index and "w3" in index and "w2" not in index


def test_a_rewritten_log_is_noticed_even_when_it_keeps_the_inode(tmp_path, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    writer, reader = WriteLog(idx), WriteLog(idx)
    for i in range(3):
        writer.append_upsert([Thread(f"a{i}", f"write {i}")])
    assert len(reader.poll()) == 3
    log_path, keep = idx / "writes.jsonl", tmp_path / "old-inode"
    os.link(log_path, keep)  # hold on to the inode the reader knows
    with writer.locked():
        writer.restore([], 1)  # a rewrite: a new file, a new header token
    keep.write_bytes(log_path.read_bytes())  # ... given the old inode back, as a file system may
    os.replace(keep, log_path)
    writer.append_upsert([Thread("b", "after the rewrite")])
    assert reader.changed()
    got = reader.poll()
    assert [t.id for e in got for t in e.threads] == ["a0", "a1", "a2", "b"]  # renumbered, none missed


def test_warnings_reach_stderr_with_json_too(tmp_path, fake_cli):
    dump = tmp_path / "d.jsonl"
    write_dump([Thread("1", "first"), Thread("2", "second")], dump)
    args = ["build", str(dump), str(dump), "--index", str(tmp_path / "idx"), "-q", "--json"]
    r = fake_cli.invoke(main, args)
    assert r.exit_code == 0 and json.loads(r.stdout)["repeated_ids"] == ["1", "2"]
    assert "2 thread id(s) appear more than once" in r.stderr


def test_query_text_that_is_not_utf8_is_a_usage_error(tmp_path, fake_cli, threads):
    build_index(tmp_path / "idx", threads, FakeEmbedder())
    for command in ("search", "duplicates"):
        r = fake_cli.invoke(main, [command, str(tmp_path / "idx"), "text \udcff"])  # a stray byte 0xff
        assert r.exit_code == 2 and "is not valid UTF-8 text" in r.stderr and "Traceback" not in r.output


def test_a_worker_loading_a_generation_before_the_log_is_compacted_keeps_the_operators_delete(
    tmp_path, threads, monkeypatch
):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("x", "a thread the moderator then deletes")])
    # the moment between the publish and the log's compaction, held open
    monkeypatch.setattr(WriteLog, "truncate_through", lambda self, seq, generation: None)
    delete_threads(idx, ["x"], FakeEmbedder())
    assert len(WriteLog(idx).read_all()) == 1  # the folded write is still in the log
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "x" not in index


def test_rolling_forward_after_a_rollback_does_not_undo_the_newer_generation(tmp_path, threads):
    idx = tmp_path / "idx"
    build_index(idx, threads, FakeEmbedder())
    LiveIndex(idx, FakeEmbedder()).upsert([Thread("x", "a write, then deleted by the moderator")])
    delete_threads(idx, ["x"], FakeEmbedder())  # generation 2 folds the write, then deletes x
    rollback(idx, to=1)
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "x" in index  # generation 1 plus the write put back
    rollback(idx, to=2)
    with LiveIndex(idx, FakeEmbedder()).reading() as index:
        assert "x" not in index
    assert WriteLog(idx).read_all_strict() == []


def test_data_stored_by_an_earlier_version_still_loads(tmp_path, threads):
    import math

    idx = tmp_path / "idx"
    index = ForumIndex(FakeEmbedder())
    nested: list = [0]
    for _ in range(40):
        nested = [nested]
    index.upsert([*threads[:5], Thread("odd", "odd extras", extra={"ratio": math.nan, "deep": nested})])
    index.save(idx)
    with open(idx / "writes.jsonl", "wb") as fh:  # a log line as the earlier version wrote it
        fh.write(b'{"seq": 1, "op": "upsert", "threads": [{"id": "w", "title": "old write", "r": NaN}]}\n')
    live = LiveIndex(idx, FakeEmbedder())
    with live.reading() as served:
        assert "odd" in served and "w" in served
    with pytest.raises(ValueError, match="not plain JSON"):  # new writes to the log are checked
        live.upsert([Thread("n", "new", extra={"r": math.inf})])


def test_writing_a_dump_through_a_link_keeps_the_link(tmp_path):
    target = tmp_path / "real.jsonl"
    link = tmp_path / "link.jsonl"
    target.write_text("old\n")
    link.symlink_to(target)
    write_dump([Thread("1", "a question")], link)
    assert link.is_symlink() and [t.id for t in read_dump(target)] == ["1"]
