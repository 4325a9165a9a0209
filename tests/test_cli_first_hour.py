"""What a newcomer meets in the first hour: messages, progress bars, timings, the export notice,
stopping the server, and what git sees after the quickstart."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, SAMPLE_DUMP, FakeEmbedder

import qa_search
from qa_search.cli import main
from qa_search.cli._input import StepBar
from qa_search.cli.serve import _stopped_by_signal
from qa_search.embedding import onnx, onnxexport


def _build(fake_cli, index_dir, *extra: str):
    r = fake_cli.invoke(main, ["build", str(SAMPLE_DUMP), "--index", str(index_dir), "-q", *extra])
    assert r.exit_code == 0, r.output
    return r


def test_every_public_name_is_importable_from_the_package():
    for name in qa_search.__all__:
        assert hasattr(qa_search, name), name


def test_a_malformed_json_line_is_named_by_line_and_column_without_its_text(tmp_path, fake_cli):
    dump = tmp_path / "dump.jsonl"
    good = SAMPLE_DUMP.read_text(encoding="utf-8").splitlines()[0]
    secret = "do-not-echo-me"
    dump.write_text(good + "\n" + '{"id": "x", "title": "' + secret + "\tafter a tab\"}\n", encoding="utf-8")
    r = fake_cli.invoke(main, ["build", str(dump), "--index", str(tmp_path / "ix"), "-q"])
    assert r.exit_code == 1
    assert f"{dump}, line 2: invalid JSON: Invalid control character at column 37" in r.output
    assert secret not in r.output


def test_build_reports_the_whole_step_including_the_model_load(tmp_path, fake_cli, monkeypatch):
    def slow_model(name=None, **_options):
        time.sleep(0.5)  # as a first ONNX export would, for a minute
        return FakeEmbedder()

    monkeypatch.setattr("qa_search.operations.lifecycle.load_embedder", slow_model)
    r = _build(fake_cli, tmp_path / "ix", "--json")
    assert json.loads(r.stdout)["seconds"] >= 0.5


def test_verify_of_a_directory_that_is_no_index_says_so_once(tmp_path, fake_cli):
    empty = tmp_path / "not-an-index"
    empty.mkdir()
    r = fake_cli.invoke(main, ["verify", str(empty), "--no-model"])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAILED ")
    assert lines[0].count(str(empty)) == 1


def test_delete_of_nothing_with_missing_ok_says_nothing_was_published(tmp_path, fake_cli):
    ix = tmp_path / "ix"
    _build(fake_cli, ix)
    r = fake_cli.invoke(main, ["delete", str(ix), "no-such-thread", "--missing-ok"])
    assert r.exit_code == 0, r.output
    assert "deleted nothing" in r.output and "no generation published" in r.output
    assert "published generation" not in r.output
    info = json.loads(fake_cli.invoke(main, ["info", str(ix), "--json"]).stdout)
    assert info["current"] == 1 and len(info["generations"]) == 1


def test_progress_bars_count_rates_from_the_first_report_in_plural_units(capsys):
    with StepBar("embedding", quiet=False) as bar:
        bar(64, 394)  # the first batch: no rate yet, not 64 texts over a few microseconds
        assert bar.bar is not None and "? texts/s" in str(bar.bar)
        time.sleep(0.05)
        bar(128, 394)
        shown = str(bar.bar)
    rate = float(re.search(r"([\d.]+) texts/s", shown).group(1))
    assert "128/394" in shown and rate < 64 / 0.05 * 1.01
    capsys.readouterr()


def test_the_onnx_export_is_announced_before_it_starts(tmp_path, monkeypatch, capsys):
    if not onnx.onnx_available():
        pytest.skip("onnxruntime is not installed")

    def export(model_dir, out_dir):
        assert "exporting the model to ONNX once" in capsys.readouterr().err
        raise RuntimeError("stopped before the real export")

    monkeypatch.setattr(onnx, "export_model", export)
    with pytest.raises(RuntimeError, match="stopped before"):
        onnx.OnnxEmbedder(cache_dir=tmp_path)


def test_the_exporter_leaves_logging_as_it_found_it():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    with onnxexport.logging_kept():
        logging.basicConfig(level=logging.DEBUG)  # what onnxscript and the quantiser do
        assert not registration.isEnabledFor(logging.WARNING)  # "torchvision is not installed"
    assert root.handlers == handlers and root.level == level
    assert registration.isEnabledFor(logging.WARNING)


def test_the_server_ends_with_an_ordinary_exit_on_sigterm_and_ctrl_c():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    for sig in (signal.SIGTERM, signal.SIGINT):
        with _stopped_by_signal():
            signal.raise_signal(sig)  # as uvicorn does once it has shut down
            pytest.fail("the block went on after the signal")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_serving_on_a_port_in_use_is_one_line_and_exit_1_before_uvicorn_starts(tmp_path, fake_cli,
                                                                                monkeypatch):
    ix = tmp_path / "ix"
    _build(fake_cli, ix)
    for name in [n for n in os.environ if n.startswith("QA_SEARCH_")]:
        monkeypatch.delenv(name)
    started = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: started.append(kw))
    with socket.socket() as taken:  # a server already listening there (a second make run)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            r = fake_cli.invoke(main, ["serve", str(ix), "--port", str(port), "--workers", workers])
            assert r.exit_code == 1, r.output
            assert r.stderr.strip().splitlines() == [
                f"Error: cannot serve on 127.0.0.1:{port}: Address already in use: another process is "
                "listening there; stop it, or choose another port (--port; PORT= for make run)"]
    assert started == []
    r = fake_cli.invoke(main, ["serve", str(ix), "--host", "no-such-host.invalid"])
    assert r.exit_code == 1 and "cannot serve on no-such-host.invalid:8000: " in r.stderr
    assert started == []
    r = fake_cli.invoke(main, ["serve", str(ix), "--port", str(port)])  # free again: it starts
    assert r.exit_code == 0, r.output
    assert [(kw["host"], kw["port"]) for kw in started] == [("127.0.0.1", port)]


def test_info_of_a_snapshot_folder_says_to_give_it_the_index_directory(tmp_path, fake_cli):
    ix = tmp_path / "ix"
    _build(fake_cli, ix)
    snapshot = ix / "generations" / "000001"
    for extra in ([], ["--json"]):
        r = fake_cli.invoke(main, ["info", str(snapshot), *extra])
        assert r.exit_code == 1, r.output
        assert r.output.strip().splitlines() == [
            f"Error: {snapshot} is a single snapshot, not an index directory: give the directory "
            f"that holds its generations/ folder (`qa-search verify {snapshot}` checks this snapshot)"]
    assert json.loads(fake_cli.invoke(main, ["info", str(ix), "--json"]).stdout)["current"] == 1


def test_a_reader_that_stops_early_ends_the_command_without_an_error_line(tmp_path, fake_cli):
    ix = tmp_path / "ix"
    _build(fake_cli, ix)
    with subprocess.Popen([sys.executable, "-m", "qa_search.cli", "info", str(ix)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # as `| head -1` does once it has its line: every write now fails with EPIPE
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 1
    assert "Broken pipe" not in err and "Error" not in err, err


def test_make_run_execs_the_server():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"^\t@?exec \$\(BIN\)/qa-search serve ", recipe, re.MULTILINE)


def test_indexes_built_under_indexes_are_not_seen_by_git(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        cmd = ["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", path]
        return subprocess.run(cmd, check=False).returncode == 0

    for built in ("indexes/my-forum/CURRENT", "indexes/my-forum/generations/000001/manifest.json",
                  "indexes/sample/index/CURRENT", "indexes/notes.txt"):
        assert ignored(built), built
    for kept in ("indexes/sample/threads.jsonl", "indexes/sample/duplicate_groups.json"):
        assert not ignored(kept), kept
