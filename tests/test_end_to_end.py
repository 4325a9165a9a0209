"""End to end with the real packaged model: the CLI, a real uvicorn server and the sample forum."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import SAMPLE_DUMP, SAMPLE_GROUPS
from realserver import free_port

from qa_search import ForumIndex, read_dump

pytestmark = pytest.mark.slow

QA_SEARCH = [sys.executable, "-m", "qa_search.cli"]
QUERY = "what happens when my counsellor makes a mistake in our session?"


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*QA_SEARCH, *args], capture_output=True, text=True, timeout=300, check=check)


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "index"
    proc = _run("build", str(SAMPLE_DUMP), "--index", str(out), "--json", "--quiet")
    summary = json.loads(proc.stdout)
    n_threads = sum(1 for _ in read_dump(SAMPLE_DUMP))
    assert summary["threads"] == n_threads and summary["generation"] == 1
    assert summary["embedded"] == summary["vectors"] > n_threads
    return out


@pytest.fixture(scope="module")
def loaded(sample_index, real_embedder) -> ForumIndex:
    return ForumIndex.load(sample_index, real_embedder)


def test_every_duplicate_group_is_found_in_the_top_3(loaded):
    groups = json.loads(SAMPLE_GROUPS.read_text())
    assert len(groups) >= 15
    members = [tid for g in groups for tid in g]
    results = loaded.search_many([loaded.get(tid).question_text for tid in members], k=4)
    misses = []
    for tid, hits in zip(members, results, strict=True):
        others = [h.thread_id for h in hits if h.thread_id != tid][:3]
        group = next(g for g in groups if tid in g)
        missing = [m for m in group if m != tid and m not in others]
        if missing:
            misses.append((tid, missing, others))
    assert not misses


def test_duplicates_flag_a_paraphrase_and_not_an_unrelated_question(loaded):
    groups = json.loads(SAMPLE_GROUPS.read_text())
    a, b = groups[0][:2]
    dups = loaded.find_duplicates(loaded.get(a).question_text, threshold=0.5, k=3)
    assert b in [d.thread_id for d in dups]
    assert loaded.find_duplicates("What is the capital of Australia?") == []


def test_cli_search_json_and_http_search_return_the_same_hits(sample_index):
    cli = json.loads(_run("search", str(sample_index), QUERY, "-k", "5", "--json").stdout)
    assert len(cli["hits"]) == 5
    # filtered: two tags (any of them) within one category
    threads = {t.id: t for t in read_dump(SAMPLE_DUMP)}
    tags, category = ["boundaries", "guilt"], "therapy"
    flags = ["--tag", tags[0], "--tag", tags[1], "--category", category]
    cli_filtered = json.loads(_run("search", str(sample_index), QUERY, "-k", "5", *flags, "--json").stdout)
    assert cli_filtered["hits"] and cli_filtered["hits"] != cli["hits"]
    for hit in cli_filtered["hits"]:
        t = threads[hit["thread_id"]]
        assert t.category == category and set(t.tags) & set(tags)

    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [*QA_SEARCH, "serve", str(sample_index), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:
                    assert json.load(resp) == {"status": "ok"}
                break
            except OSError:
                assert server.poll() is None, "server exited early"
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.3)
        url = f"{base}/v1/search?" + urllib.parse.urlencode({"q": QUERY, "k": 5})
        with urllib.request.urlopen(url, timeout=30) as resp:
            http = json.load(resp)
        assert http == cli
        query = [("q", QUERY), ("k", 5), *(("tags", t) for t in tags), ("category", category)]
        with urllib.request.urlopen(f"{base}/v1/search?" + urllib.parse.urlencode(query), timeout=30) as resp:
            assert json.load(resp) == cli_filtered
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    # the access log shows the route but never the user's text
    assert "GET /v1/search" in log
    assert "counsellor" not in log and "counsellor" not in urllib.parse.unquote_plus(log)


def test_cli_duplicates_and_errors(sample_index, tmp_path):
    groups = json.loads(SAMPLE_GROUPS.read_text())
    dump = {t.id: t for t in read_dump(SAMPLE_DUMP)}
    a, b = groups[1][:2]
    out = json.loads(_run("duplicates", str(sample_index), dump[a].question_text, "--threshold", "0.5",
                          "--json").stdout)
    assert b in [d["thread_id"] for d in out["duplicates"]]

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "title": "ok"}\n{"id": "2"}\n')
    proc = _run("build", str(bad), "--index", str(tmp_path / "x"), "--quiet", check=False)
    assert proc.returncode == 1
    assert f"{bad}, line 2: missing required field 'title'" in proc.stderr
    assert not (tmp_path / "x").exists()

    # a blank question is a usage error, not a list of arbitrary threads
    for command in ("search", "duplicates"):
        proc = _run(command, str(sample_index), "  ", check=False)
        assert proc.returncode == 2 and proc.stdout == ""
        assert "Invalid value for 'TEXT': is empty" in proc.stderr
