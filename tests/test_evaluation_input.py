"""Reading the labelled files of ``eval`` and ``calibrate``: every bad line, byte or gzip stream is a
one-line error naming the file and line, and a file without any pair or query is refused."""

from __future__ import annotations

import gzip
import json
import sys

import pytest
from click.testing import CliRunner
from conftest import FakeEmbedder

from qa_search.cli import main
from qa_search.errors import DumpFormatError, QASearchError
from qa_search.storage.generations import current_generation
from qa_search.tools.evaluation import LabelledPair, LabelledQuery, read_pairs, read_queries

PAIR = json.dumps({"id1": "a", "id2": "b", "label": 1})
QUERY = json.dumps({"query_id": "a", "text": "trouble sleeping", "relevant_ids": ["b"]})


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"id1": "a", "id2": "b", "label": "yes"}', "'label' must be 0 or 1, got a string"),
        ('{"id1": "a", "id2": "b", "label": null}', "'label' must be 0 or 1, got None"),
        ('{"id1": "a", "id2": "b", "label": 0.7}', "'label' must be 0 or 1, got 0.7"),
        ('{"id1": "a", "id2": "b", "label": true}', "'label' must be 0 or 1, got True"),
        ('{"id1": "a", "id2": "b", "label": 2}', "'label' must be 0 or 1, got 2"),
        ('{"id1": "a", "id2": "b"}', "missing required field 'label'"),
        ('{"id1": null, "id2": "b", "label": 1}', "'id1' must be a string or an integer"),
        ('{"id1": "a", "id2": " ", "label": 0}', "'id2' must not be empty"),
        ('{"id1": "a", "id2": "b", "label": 1', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"id1": "a", "id2": " a", "label": 1}', "'id1' and 'id2' are the same thread ('a')"),
    ],
)
def test_a_bad_pair_line_is_named_by_its_line(tmp_path, line, reason):
    path = tmp_path / "pairs.jsonl"
    path.write_text(f"{PAIR}\n\n{line}\n")
    with pytest.raises(DumpFormatError) as info:
        read_pairs(path)
    assert (info.value.path, info.value.line) == (str(path), 3)
    assert info.value.reason.startswith(reason)


def test_good_pairs_and_queries_are_read(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    # a byte-order mark, integer ids and the label 1.0 (equal to 1, as tune reads it) are fine
    pairs.write_bytes(
        b"\xef\xbb\xbf"
        + f'{PAIR}\n{{"id1": 3, "id2": "c", "label": 0}}\n{{"id1": "c", "id2": "d", "label": 1.0}}\n'.encode()
    )
    assert read_pairs(pairs) == [
        LabelledPair("a", "b", 1),
        LabelledPair("3", "c", 0),
        LabelledPair("c", "d", 1),
    ]
    assert [type(p.label) for p in read_pairs(pairs)] == [int, int, int]
    queries = tmp_path / "queries.jsonl.gz"
    with gzip.open(queries, "wt", encoding="utf-8") as fh:
        fh.write(QUERY + "\n")
    assert read_queries(queries) == [LabelledQuery("a", "trouble sleeping", frozenset({"b"}))]


@pytest.mark.parametrize("reader", [read_pairs, read_queries])
def test_a_byte_that_is_not_utf8_is_named_by_its_line(tmp_path, reader):
    good = PAIR if reader is read_pairs else QUERY
    path = tmp_path / "labels.jsonl"
    path.write_bytes(f"{good}\n{good}\n".encode() + b'{"caf\xe9": 1}\n')
    with pytest.raises(
        DumpFormatError, match=r"labels.jsonl, line 3: not valid UTF-8 \(invalid continuation byte\)"
    ):
        reader(path)


@pytest.mark.parametrize("reader", [read_pairs, read_queries])
def test_a_truncated_or_false_gzip_file_is_named_with_the_line_reached(tmp_path, reader):
    good = PAIR if reader is read_pairs else QUERY
    whole = gzip.compress("".join(f"{good}\n" for _ in range(2000)).encode())
    truncated = tmp_path / "labels.jsonl.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DumpFormatError, match="cannot read") as info:
        reader(truncated)
    assert info.value.path == str(truncated) and 1 < info.value.line < 2000
    plain = tmp_path / "plain.jsonl.gz"
    plain.write_text(f"{good}\n")
    with pytest.raises(DumpFormatError, match=r"plain.jsonl.gz, line 1: cannot read: Not a gzipped file"):
        reader(plain)


def test_a_file_without_pairs_or_queries_is_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(QASearchError, match=f"{empty} holds no pairs"):
        read_pairs(empty)
    with pytest.raises(QASearchError, match=f"{empty} holds no queries"):
        read_queries(empty)


@pytest.fixture
def index_dir(tmp_path, monkeypatch):
    """A small index built by the CLI with the fake embedder in place of the real model."""
    fake = lambda name=None, **_options: FakeEmbedder()  # noqa: E731
    for module in ("qa_search.operations.lifecycle", "qa_search.embedding.loading"):
        monkeypatch.setattr(sys.modules[module], "load_embedder", fake)
    dump = tmp_path / "forum.jsonl"
    titles = [
        "trouble sleeping at night",
        "cannot sleep at night",
        "a noisy flatmate",
        "my flatmate is noisy",
    ]
    dump.write_text(
        "".join(json.dumps({"id": i, "title": t}) + "\n" for i, t in zip("abcd", titles, strict=True))
    )
    ix = tmp_path / "ix"
    r = CliRunner().invoke(main, ["build", str(dump), "--index", str(ix), "-q"])
    assert r.exit_code == 0, r.output
    return ix


def _bad_files() -> dict[str, tuple[bytes, str]]:
    """File name -> (content, what the one-line error must say)."""
    whole = gzip.compress("".join(f"{PAIR}\n" for _ in range(2000)).encode())
    return {
        "label.jsonl": (f'{PAIR}\n{{"id1": "a", "id2": "c", "label": "yes"}}\n'.encode(), "line 2: 'label'"),
        "null.jsonl": (b'{"id1": "a", "id2": "c", "label": null}\n', "line 1: 'label' must be 0 or 1"),
        "latin.jsonl": (f"{PAIR}\n".encode() + b'{"id1": "caf\xe9"}\n', "line 2: not valid UTF-8"),
        "cut.jsonl.gz": (whole[: len(whole) // 2], ": cannot read: "),
        "plain.jsonl.gz": (f"{PAIR}\n".encode(), "line 1: cannot read: Not a gzipped file"),
        "empty.jsonl": (b"", "holds no pairs"),
        # a thread the index lacks is named with the first line that holds it
        "unknown.jsonl": (
            f'{PAIR}\n{{"id1": "zz", "id2": "a", "label": 0}}\n'
            f'{{"id1": "b", "id2": "zz", "label": 0}}\n'.encode(),
            "line 2: no thread with id 'zz' in the index",
        ),
    }


@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_cli_reports_a_bad_pair_file_in_one_line(tmp_path, index_dir, command):
    for name, (content, message) in _bad_files().items():
        path = tmp_path / name
        path.write_bytes(content)
        r = CliRunner().invoke(main, [command, str(index_dir), "--pairs", str(path)])
        assert r.exit_code == 1, (name, r.output)
        assert isinstance(r.exception, SystemExit), (name, r.exception)
        assert r.output.startswith(f"Error: {path}") and message in r.output, (name, r.output)
        assert r.output.count("\n") == 1, (name, r.output)
    assert current_generation(index_dir) == 1  # calibrate published nothing


def test_cli_reports_a_bad_query_file_in_one_line(tmp_path, index_dir):
    whole = gzip.compress("".join(f"{QUERY}\n" for _ in range(2000)).encode())
    cut = tmp_path / "queries.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    empty = tmp_path / "queries.jsonl"
    empty.write_text("")
    for path, message in [(cut, "cannot read: "), (empty, "holds no queries")]:
        r = CliRunner().invoke(main, ["eval", str(index_dir), "--queries", str(path)])
        assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.output
        assert r.output.startswith(f"Error: {path}") and message in r.output, r.output


def _write_pairs(path, pairs) -> None:
    path.write_text("".join(json.dumps({"id1": a, "id2": b, "label": y}) + "\n" for a, b, y in pairs))


def test_eval_skip_missing_skips_and_counts_pairs_naming_threads_the_index_lacks(tmp_path, index_dir):
    known = [("a", "b", 1), ("c", "d", 1), ("a", "c", 0), ("b", "d", 0)]
    path = tmp_path / "pairs.jsonl"
    _write_pairs(path, [known[0], ("a", "gone", 1), *known[1:3], ("gone", "also-gone", 0), known[3]])
    only_known = tmp_path / "known.jsonl"
    _write_pairs(only_known, known)

    r = CliRunner().invoke(main, ["eval", str(index_dir), "--pairs", str(path)])
    assert r.exit_code == 1
    assert "line 2: no thread with id 'gone' in the index" in r.output and "--skip-missing" in r.output

    r = CliRunner().invoke(main, ["eval", str(index_dir), "--pairs", str(path), "--skip-missing", "--json"])
    assert r.exit_code == 0, r.output
    assert f"skipped 2 pair(s) of {path} naming a thread not in the index (line 2, line 5)" in r.stderr
    result = json.loads(r.stdout)
    assert result["skipped_missing"] == 2 and result["pairs"] == 4
    # the figures are those of the known pairs alone
    r = CliRunner().invoke(main, ["eval", str(index_dir), "--pairs", str(only_known), "--json"])
    assert {**json.loads(r.stdout), "skipped_missing": 2} == result

    r = CliRunner().invoke(main, ["eval", str(index_dir), "--pairs", str(path), "--skip-missing"])
    assert r.exit_code == 0 and "skipped_missing  2" in r.stdout

    _write_pairs(path, [("gone", "a", 1)])
    r = CliRunner().invoke(main, ["eval", str(index_dir), "--pairs", str(path), "--skip-missing"])
    assert r.exit_code == 1 and "none of the 1 pairs names two threads of the index" in r.output


def test_calibrate_skip_missing_fits_on_the_pairs_the_index_has(tmp_path, fake_cli):
    from conftest import SAMPLE_DUMP, SAMPLE_GROUPS, labelled_pairs

    from qa_search import read_dump

    ix = tmp_path / "ix"
    assert fake_cli.invoke(main, ["build", str(SAMPLE_DUMP), "--index", str(ix), "-q"]).exit_code == 0
    threads = list(read_dump(SAMPLE_DUMP))
    groups = [set(g) for g in json.loads(SAMPLE_GROUPS.read_text())]
    pairs = labelled_pairs(threads, groups)
    chosen = [p for p in pairs if p[2]] + [p for p in pairs if not p[2]][:300]
    path = tmp_path / "pairs.jsonl"
    missing = [("deleted-1", chosen[0][0], 1), (chosen[1][1], "deleted-2", 0)]
    _write_pairs(path, [*chosen[:3], missing[0], *chosen[3:], missing[1]])

    r = fake_cli.invoke(main, ["calibrate", str(ix), "--pairs", str(path)])
    assert r.exit_code == 1 and "line 4: no thread with id 'deleted-1'" in r.output
    assert "--skip-missing" in r.output
    assert current_generation(ix) == 1

    r = fake_cli.invoke(main, ["calibrate", str(ix), "--pairs", str(path), "--skip-missing", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["skipped_missing"] == 2
    assert out["report"]["pairs"] == len(chosen)
    assert current_generation(ix) == 2
    lines = f"(line 4, line {len(chosen) + 2})"
    assert f"skipped 2 pair(s) of {path} naming a thread not in the index {lines}" in r.stderr
