"""The README's duplicates and dedupe examples, run as written on the sample forum built as
`make run` builds it (no calibration step), with the packaged model."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from conftest import ROOT, SAMPLE_DUMP, SAMPLE_GROUPS

from qa_search.cli import main

README = ROOT / "README.md"


@pytest.mark.slow
def test_the_readme_examples_find_the_samples_documented_groups_without_calibrating(tmp_path):
    groups = [set(g) for g in json.loads(SAMPLE_GROUPS.read_text())]
    ix = str(tmp_path / "index")
    runner = CliRunner()
    r = runner.invoke(main, ["build", str(SAMPLE_DUMP), "--index", ix, "-q"])
    assert r.exit_code == 0, r.output

    readme = README.read_text()
    query = re.search(r'\$ qa-search duplicates indexes/sample/index "([^"]+)"', readme).group(1)
    r = runner.invoke(main, ["duplicates", ix, query, "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)["duplicates"]
    assert hits and all(h["tier"] in ("duplicate", "related") for h in hits)
    # the query is one thread's title: its documented duplicates come with it
    group = next(g for g in groups if hits[0]["thread_id"] in g)
    assert group <= {h["thread_id"] for h in hits}
    # the README prints the text output as it is
    r = runner.invoke(main, ["duplicates", ix, query])
    for line in r.stdout.splitlines():
        assert line in readme, line

    r = runner.invoke(main, ["dedupe", ix, "-q", "--json"])
    assert r.exit_code == 0, r.output
    assert "no calibration of its own" in r.stderr
    out = json.loads(r.stdout)
    clusters = [{t["thread_id"] for t in c["threads"]} for c in out["clusters"]]
    whole = sum(any(g <= c for c in clusters) for g in groups)
    assert whole >= len(groups) - 1, whole
    # what the README says it finds is what it finds
    assert f"{whole} of the sample's {len(groups)} documented groups" in readme
    assert f"{len(clusters)} duplicate cluster(s) holding" in readme
    assert out["linkage"] == "complete" and out["calibrated"] and out["by"] == "probability"
