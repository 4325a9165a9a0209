"""A moderator's and a tuner's labelled pairs as the docs tell them to write them: a pair that a
file holds twice (the same link both ways round, two files that overlap) weighs once in eval,
calibrate and tune and is said on stderr; a pair labelled both ways is refused naming both lines;
an empty pair file or id pairs without their dump say so; export-pairs writes each link once;
tune's reranker-only options are a usage error before any file is read. Fake embedder only."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from conftest import SAMPLE_DUMP, SAMPLE_GROUPS, FakeEmbedder

from qa_search import ForumIndex, QASearchError, read_dump, read_stackexchange_duplicates, read_tuning_pairs
from qa_search.cli import main
from qa_search.errors import DumpFormatError
from qa_search.storage.generations import current_generation
from qa_search.tools.evaluation import read_pairs


def _lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sample_pairs() -> list[dict]:
    """Every pair inside a documented group (1) and each grouped thread with the next two
    ungrouped ones (0): both labels, a few dozen pairs."""
    groups = json.loads(SAMPLE_GROUPS.read_text())
    grouped = {t for g in groups for t in g}
    others = [t.id for t in read_dump(SAMPLE_DUMP) if t.id not in grouped]
    rows = [{"id1": a, "id2": b, "label": 1} for g in groups for a, b in itertools.combinations(g, 2)]
    for i, t in enumerate(sorted(grouped)):
        rows += [{"id1": t, "id2": others[(2 * i + j) % len(others)], "label": 0} for j in range(2)]
    return rows


@pytest.fixture
def sample_index(tmp_path) -> Path:
    index = ForumIndex(FakeEmbedder())
    index.upsert(list(read_dump(SAMPLE_DUMP)))
    index.save(tmp_path / "index")
    return tmp_path / "index"


def test_eval_and_calibrate_count_a_repeated_pair_once_and_say_so(sample_index, fake_cli, tmp_path):
    rows = _sample_pairs()
    once = _lines(tmp_path / "once.jsonl", rows)
    # a reciprocal link (both ways round) and a plain copy, as two exports of one forum give
    swapped = [{"id1": r["id2"], "id2": r["id1"], "label": r["label"]} for r in rows[:3]]
    twice = _lines(tmp_path / "twice.jsonl", rows + swapped + [rows[5]])
    n = len(rows)

    got = {}
    for name, path in (("once", once), ("twice", twice)):
        r = fake_cli.invoke(main, ["eval", str(sample_index), "--pairs", str(path), "--json"])
        assert r.exit_code == 0, r.output
        got[name] = json.loads(r.stdout)
    assert got["twice"] == got["once"] and got["once"]["pairs"] == n
    assert f"4 line(s) of {twice} repeat an earlier pair" in r.stderr
    assert f"line {n + 1} (of line 1)" in r.stderr and f"line {n + 4} (of line 6)" in r.stderr

    r = fake_cli.invoke(main, ["calibrate", str(sample_index), "--pairs", str(twice), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)["report"]
    assert (report["pairs"], report["positives"]) == (n, sum(row["label"] for row in rows))


def test_a_pair_labelled_both_ways_is_refused_naming_both_lines(sample_index, fake_cli, tmp_path):
    rows = _sample_pairs()
    bad = _lines(tmp_path / "bad.jsonl", [*rows, {"id1": rows[2]["id2"], "id2": rows[2]["id1"], "label": 0}])
    with pytest.raises(DumpFormatError) as info:
        read_pairs(bad)
    assert info.value.line == len(rows) + 1
    assert info.value.reason.startswith(
        "the pair of line 3 again (either order), labelled 1 there and 0 here"
    )

    before = current_generation(sample_index)
    for command in ("eval", "calibrate"):
        r = fake_cli.invoke(main, [command, str(sample_index), "--pairs", str(bad)])
        assert r.exit_code == 1 and f"{bad}, line {len(rows) + 1}: the pair of line 3" in r.output
    assert current_generation(sample_index) == before


def test_tuning_pairs_repeated_across_files_are_read_once(tmp_path):
    first = _lines(tmp_path / "a.jsonl", [
        {"id1": "t003", "id2": "t078", "label": 1},
        {"text1": "cannot sleep", "text2": "insomnia again", "label": 1},
        {"id1": "t003", "id2": "t001", "label": 0},
    ])
    second = _lines(tmp_path / "b.jsonl", [
        {"id1": "t078", "id2": "t003", "label": 1},
        {"text1": "cannot sleep", "text2": "insomnia again", "label": 1},
        {"id1": "t008", "id2": "t017", "label": 1},
    ])
    seen: list[tuple] = []
    pairs = read_tuning_pairs([first, second], [SAMPLE_DUMP], on_repeat=lambda *where: seen.append(where))
    assert [p.label for p in pairs] == [1, 1, 0, 1]
    assert seen == [(str(second), 1, str(first), 1), (str(second), 2, str(first), 2)]

    against = _lines(tmp_path / "c.jsonl", [{"id1": "t001", "id2": "t003", "label": 1}])
    with pytest.raises(DumpFormatError) as info:
        read_tuning_pairs([first, against], [SAMPLE_DUMP])
    assert (info.value.path, info.value.line) == (str(against), 1)
    assert f"the pair of line 3 of {first} again" in info.value.reason


def test_tuning_says_which_pair_file_is_empty_and_when_no_dump_was_given(tmp_path, fake_cli):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    ids = _lines(tmp_path / "ids.jsonl", [{"id1": "t003", "id2": "t078", "label": 1}])
    with pytest.raises(QASearchError, match=f"^{empty} holds no pairs"):
        read_tuning_pairs([ids, empty], [SAMPLE_DUMP])
    with pytest.raises(QASearchError, match="no forum dump was given .*--corpus"):
        read_tuning_pairs([ids])

    r = fake_cli.invoke(main, ["tune", "--pairs", str(empty), "--out", str(tmp_path / "m")])
    assert r.exit_code == 1 and f"{empty} holds no pairs" in r.output
    assert not (tmp_path / "m").exists()


def test_reranker_options_without_reranker_are_a_usage_error_before_reading(tmp_path, fake_cli):
    absent = tmp_path / "not-yet.jsonl"
    args = ["tune", "--pairs", str(absent), "--out", str(tmp_path / "m"), "--max-steps", "3"]
    r = fake_cli.invoke(main, args)
    assert r.exit_code == 2 and "--max-pairs, --max-steps and --threads go with --reranker" in r.output


def test_export_pairs_writes_each_link_once(tmp_path, fake_cli):
    links = tmp_path / "PostLinks.xml"
    rows = [("2", "1"), ("1", "2"), ("6", "2"), ("6", "2"), ("7", "1")]
    body = "".join(
        f'<row Id="{100 + i}" PostId="{a}" RelatedPostId="{b}" LinkTypeId="3" />\n'
        for i, (a, b) in enumerate(rows)
    )
    links.write_text(f"<postlinks>\n{body}</postlinks>\n")
    out = tmp_path / "pairs.jsonl"
    r = fake_cli.invoke(main, ["export-pairs", str(links), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert (json.loads(r.stdout)["pairs"], json.loads(r.stdout)["repeated"]) == (3, 2)
    assert [tuple(json.loads(x).values())[:2] for x in out.read_text().splitlines()] == [
        ("2", "1"), ("6", "2"), ("7", "1")
    ]
    assert "left out 2 link(s) between posts already paired" in r.stderr
    # the library's reader gives each pair once too, telling which lines it left out
    repeats: list = []
    assert list(read_stackexchange_duplicates(links, on_repeat=repeats.append)) == [
        ("2", "1"), ("6", "2"), ("7", "1")]
    assert [e.line for e in repeats] == [3, 5]


def test_dedupe_on_a_forum_calibrated_index_names_its_probability_tier(sample_index, fake_cli, tmp_path):
    pairs = _lines(tmp_path / "pairs.jsonl", _sample_pairs())
    r = fake_cli.invoke(main, ["calibrate", str(sample_index), "--pairs", str(pairs), "--json"])
    assert r.exit_code == 0, r.output
    tier = json.loads(r.stdout)["tiers"]["duplicate"]

    r = fake_cli.invoke(main, ["dedupe", str(sample_index), "-q"])
    assert r.exit_code == 0, r.output
    assert "clustered by raw question cosine, threshold 0.800" in r.stdout
    assert f"--min-probability {tier:.3f} (its \"duplicate\" tier)" in r.stderr
    # asked for a cosine, or given a probability, it has nothing to point out
    for option in (["--min-cosine", "0.7"], ["--min-probability", f"{tier:.3f}"]):
        r = fake_cli.invoke(main, ["dedupe", str(sample_index), "-q", *option])
        assert r.exit_code == 0 and "note:" not in r.stderr


def test_configure_that_changes_nothing_says_what_was_already_so(sample_index, fake_cli):
    # the fake model has no shipped defaults, and a new index no reranker
    cases = {
        ("--refresh-defaults",): "the package ships no defaults for the index's model; nothing published",
        ("--no-reranker",): "the index already has no reranker; nothing published",
        ("--set", "lexical_weight=0.5", "--no-reranker"):
            "the index already has these settings and no reranker; nothing published",
    }
    for options, said in cases.items():
        r = fake_cli.invoke(main, ["configure", str(sample_index), *options])
        assert r.exit_code == 0 and said in r.output, r.output
    assert current_generation(sample_index) == 1


def test_a_label_holding_text_is_named_not_quoted(tmp_path, sample_index, fake_cli):
    post = "I have not slept properly since the funeral"
    rows = [{"id1": "t003", "id2": "t078", "label": 1}, {"id1": "t003", "id2": "t001", "label": post}]
    path = _lines(tmp_path / "shifted.jsonl", rows)
    for args in (["eval", str(sample_index), "--pairs", str(path)],
                 ["tune", "--pairs", str(path), "--corpus", str(SAMPLE_DUMP), "--out", str(tmp_path / "m")]):
        r = fake_cli.invoke(main, args)
        assert r.exit_code == 1 and f"{path}, line 2: 'label' must be 0 or 1, got a string" in r.output
        assert "slept" not in r.output


def test_eval_warns_when_every_pair_has_one_label(sample_index, fake_cli, tmp_path):
    rows = _sample_pairs()
    for label, kind in ((1, "duplicates (label 1)"), (0, "non-duplicates (label 0)")):
        path = _lines(tmp_path / f"only{label}.jsonl", [r for r in rows if r["label"] == label])
        r = fake_cli.invoke(main, ["eval", str(sample_index), "--pairs", str(path), "--json"])
        assert r.exit_code == 0, r.output
        assert f"all {json.loads(r.stdout)['pairs']} pairs scored are {kind}" in r.stderr
    r = fake_cli.invoke(main, ["eval", str(sample_index), "--pairs", str(_lines(tmp_path / "p.jsonl", rows))])
    assert r.exit_code == 0 and "warning" not in r.stderr


def test_tuning_on_a_handful_of_duplicates_is_warned_about_before_it_starts(tmp_path, fake_cli):
    pairs = tmp_path / "few.jsonl"
    lines = [{"text1": f"how do I sleep {i}", "text2": f"cannot sleep {i}", "label": 1} for i in range(3)]
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "m"
    out.mkdir()
    (out / "taken").write_text("x")  # tune refuses it after the warning: nothing is trained here
    r = fake_cli.invoke(main, ["tune", "--pairs", str(pairs), "--out", str(out)])
    assert r.exit_code == 1
    assert "warning: 3 duplicate pair(s) are few to learn from" in r.stderr
