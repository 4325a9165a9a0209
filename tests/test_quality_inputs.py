"""The quality commands' edges: calibrating on a few labels, tier targets, numbers that are not
numbers, ties between canonical threads, and the benchmarks' arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLE_DUMP, FakeEmbedder, calibrated_sample_index

from qa_search import ForumIndex, Thread, find_duplicate_clusters, read_dump
from qa_search.cli import main
from qa_search.scoring.calibration import FEATURES, fit_calibration
from qa_search.tools.dedupe import id_order


@pytest.fixture(scope="module")
def threads():
    return list(read_dump(SAMPLE_DUMP))


def _features(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(float)
    x = rng.random((n, len(FEATURES)))
    x[:, 0] = 0.5 + 0.4 * y + 0.05 * rng.standard_normal(n)  # the cosine separates them
    return x, y


def test_pairs_that_all_share_a_thread_get_the_cosine_not_unmeasured_trees():
    x, y = _features(12)
    # one connected component: every fold's other pairs are empty, so the trees cannot be scored
    # by pairs they did not see, and the cosine is the scorer (its probabilities are calibrated)
    cal = fit_calibration(x, y, groups=["t003"] * 12)
    assert cal.scorer == "cosine" and cal.report["ap_out_of_fold_boosted"] is None
    probs = cal.probability(x)
    assert probs[y == 1].min() > probs[y == 0].max()  # usable, not all 0
    # a tie between the trees and the cosine keeps the cosine
    x, y = _features(60)
    cal = fit_calibration(x, y)
    assert cal.report["ap_out_of_fold_cosine"] == 1.0 and cal.scorer == "cosine"


@pytest.mark.parametrize(
    ("n", "labels", "targets", "message"),
    [
        (12, [1] * 12, None, r"all 12 pairs are duplicates \(1\): need labelled pairs of both kinds"),
        (6, [0, 1] * 3, None, "need at least 10 labelled pairs, got 6"),
        (12, [0, 2] * 6, None, "labels must be 0"),
        (12, [0, 1] * 5, None, "12 pairs but 10 labels"),
        (12, [0, 1] * 6, {"duplicate": 0.5, "related": 0.9}, "must be at least the related tier's"),
        (12, [0, 1] * 6, {"duplicate": float("nan")}, r"must be a number in \(0, 1\]"),
    ],
)
def test_calibration_refuses_labels_and_targets_it_cannot_use(n, labels, targets, message):
    x, _ = _features(n)
    with pytest.raises(ValueError, match=message):
        fit_calibration(x, np.asarray(labels), targets)


@pytest.mark.parametrize(
    "args",
    [
        ["calibrate", "IDX", "--pairs", "PAIRS", "--duplicate-precision", "0.5",
         "--related-precision", "0.9"],
        ["calibrate", "IDX", "--pairs", "PAIRS", "--related-precision", "nan"],
        ["calibrate", "IDX", "--pairs", "PAIRS", "--duplicate-precision", "0"],
        ["dedupe", "IDX", "--min-cosine", "nan"],
        ["dedupe", "IDX", "--min-probability", "nan"],
        ["tune", "--pairs", "PAIRS", "--out", "OUT", "--learning-rate", "nan"],
        ["tune", "--pairs", "PAIRS", "--out", "OUT", "--seed", "-1"],
        ["tune", "--pairs", "PAIRS", "--out", "OUT", "--seed", str(2**32)],
    ],
)
def test_numbers_out_of_range_are_usage_errors_before_any_work(tmp_path, fake_cli, args):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"id1": "a", "id2": "b", "label": 1}\n')
    subs = {"IDX": str(tmp_path / "idx"), "PAIRS": str(pairs), "OUT": str(tmp_path / "out")}
    r = fake_cli.invoke(main, [subs.get(a, a) for a in args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and not (tmp_path / "idx").exists() and not (tmp_path / "out").exists()


def test_the_canonical_threads_tie_break_orders_numeric_ids_by_value():
    assert sorted(["10", "9", "b", "a", "100"], key=id_order) == ["9", "10", "100", "a", "b"]
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("10", "how can I stop my panic attacks at work"),
                  Thread("9", "how can I stop my panic attacks at work?")])
    (cluster,) = find_duplicate_clusters(index, 0.5, neighbours=2).clusters
    assert cluster.canonical == "9"


def test_duplicates_show_the_probability_below_the_tiers_too(tmp_path, fake_cli, threads):
    index = calibrated_sample_index()
    index.save(tmp_path / "idx")
    text = threads[0].question_text
    r = fake_cli.invoke(main, ["duplicates", str(tmp_path / "idx"), text, "--threshold", "-1", "-k", "5"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 5 and all("(p=" in line for line in lines)
    assert any("below the tiers" in line for line in lines)


@pytest.mark.parametrize(
    "args",
    [
        ["semeval.py", "/no/such/file.jsonl"],
        ["semeval.py", "SEMEVAL_DEV", "--lexical-weight", "-5"],
        ["semeval_pairs.py", "map", "--dev", "/no/such/file.jsonl"],
        ["semeval_pairs.py", "pairs", "/no/such/dir/pairs.jsonl"],
    ],
)
def test_benchmark_scripts_refuse_bad_arguments_in_one_line(args):
    dev = ROOT.parent / "shared" / "data" / "semeval_cqa" / "semeval2016_subtaskB_dev.jsonl"
    script, *rest = args
    cmd = [sys.executable, str(ROOT / "benchmarks" / script),
           *(str(dev) if a == "SEMEVAL_DEV" else a for a in rest)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "error:" in r.stderr, r.stderr


def test_semeval_benchmark_names_a_bad_line_of_its_input(tmp_path):
    dev = ROOT.parent / "shared" / "data" / "semeval_cqa" / "semeval2016_subtaskB_dev.jsonl"
    first = dev.read_text(encoding="utf-8").splitlines()[0]
    question = json.loads(first)
    unlabelled = json.loads(first)
    del unlabelled["candidates"][2]["label"]
    maybe = json.loads(first)
    maybe["candidates"][0]["label"] = "Maybe"  # would otherwise count as relevant
    cases = {
        "json.jsonl": (f"{first}\n{{bad\n", "line 2: invalid JSON"),
        "nolabel.jsonl": (json.dumps(unlabelled), "line 1: candidate 3: missing required field 'label'"),
        "maybe.jsonl": (json.dumps(maybe), "line 1: candidate 1: label 'Maybe' is not one of PerfectMatch"),
        "object.jsonl": (f"{json.dumps(question)}\n[1]\n", "line 2: expected a JSON object"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content + "\n", encoding="utf-8")
        r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "semeval.py"), str(tmp_path / name)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (name, r.stderr)
        assert r.stderr.startswith(f"error: {tmp_path / name}, {message}"), (name, r.stderr)
        assert r.stderr.count("\n") == 1, (name, r.stderr)
