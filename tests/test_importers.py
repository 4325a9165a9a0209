"""Importers on small fixtures in each format (tests/fixtures), skipping invalid records, the
CLI's import commands, and flat memory on a large generated Stack Exchange dump."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DUMP, FakeEmbedder

from qa_search import Answer, DumpFormatError, ForumIndex, read_dump
from qa_search.cli import main
from qa_search.tools.csvreader import read_csv
from qa_search.tools.fields import html_to_text, parse_tags
from qa_search.tools.importers import FORMATS, check_inputs, read_threads
from qa_search.tools.stackexchange import (
    read_stackexchange_duplicates,
    read_stackexchange_posts,
    stackexchange_question_ids,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CSV = FIXTURES / "forum.csv"
BAD_CSV = FIXTURES / "forum_bad.csv"
POSTS = FIXTURES / "stackexchange" / "Posts.xml"
LINKS = FIXTURES / "stackexchange" / "PostLinks.xml"
MAPPING = {
    "id": "post_id",
    "title": "subject",
    "body": "text",
    "tags": "labels",
    "answer_id": "reply_id",
    "answer": "reply",
    "answer_score": "reply_votes",
}


def test_csv_with_a_column_mapping_groups_consecutive_rows_into_threads():
    threads = list(read_csv(CSV, MAPPING))
    assert [t.id for t in threads] == ["101", "102", "103"]
    t = threads[0]
    assert t.title == "How do I stop overthinking at night?"
    assert t.body == "Every night my brain replays the day, line by line."
    assert t.tags == ("sleep", "anxiety")
    assert [(a.id, a.score) for a in t.answers] == [("r1", 4), ("r2", 2)]
    assert (
        t.answers[1].body.startswith("A body scan helps me") and "if sleep won't come." in t.answers[1].body
    )
    assert threads[1].answers == () and threads[1].body == ""
    assert threads[2].title == "My flatmate never cleans, how do I bring it up?"


def test_csv_errors_name_file_and_line_and_can_be_skipped():
    with pytest.raises(DumpFormatError) as info:
        list(read_csv(BAD_CSV, MAPPING))
    assert (info.value.line, info.value.reason) == (3, "'title' must not be empty")

    skipped: list[DumpFormatError] = []
    threads = list(read_csv(BAD_CSV, MAPPING, on_error=skipped.append))
    assert [t.id for t in threads] == ["201", "204"]
    assert [(e.path, e.line) for e in skipped] == [(str(BAD_CSV), 3), (str(BAD_CSV), 4), (str(BAD_CSV), 6)]
    assert "'reply_votes' must be an integer" in skipped[1].reason
    assert "sort the file by thread id" in skipped[2].reason

    with pytest.raises(DumpFormatError, match=r"no column for title \(column 'title'\)"):
        list(read_csv(CSV, {"id": "post_id"}))


def test_stackexchange_posts_become_threads_with_answers_from_anywhere_in_the_file():
    skipped: list[DumpFormatError] = []
    threads = list(
        read_stackexchange_posts(POSTS, site_url="https://x.stackexchange.com/", on_error=skipped.append)
    )
    assert skipped == []
    assert [t.id for t in threads] == ["1", "2", "6"]  # question order; the tag wiki is not a thread
    t = threads[0]
    assert t.title == "How can I fix my sleep schedule?"
    assert t.body == "I fall asleep at 4am and wake at noon.\nAny tips & tricks?"
    assert t.answers == (
        Answer("3", "Keep a regular wake-up time, even at weekends.", 7, True),
        Answer("5", "Melatonin.\n3mg", -1, False),
    )
    assert (t.tags, t.score, t.created_at) == (("sleep", "habits"), 12, "2014-01-01T09:00:00.000")
    assert t.url == "https://x.stackexchange.com/questions/1"
    assert threads[1].tags == ("sleep",) and threads[1].extra == {"closed_at": "2014-01-04T00:00:00.000"}
    assert threads[2].answers[0].id == "7"


def test_stackexchange_orphans_and_malformed_xml(tmp_path):
    posts = tmp_path / "Posts.xml"
    posts.write_text(
        '<posts>\n<row Id="1" PostTypeId="1" Title="Q" Body="" />\n'
        '<row Id="2" PostTypeId="2" ParentId="99" Body="lost answer" />\n'
        '<row Id="3" PostTypeId="1" Body="no title" />\n'
        '<row Id="4" PostTypeId="2" ParentId="1" Body="&lt;p&gt;&lt;/p&gt;" />\n</posts>\n'
    )
    with pytest.raises(DumpFormatError, match="line 4: question 3 has no Title"):
        list(read_stackexchange_posts(posts))
    skipped: list[DumpFormatError] = []
    empty: list[DumpFormatError] = []
    threads = list(read_stackexchange_posts(posts, on_error=skipped.append, on_skip=empty.append))
    assert [t.id for t in threads] == ["1"]
    assert [(e.line, e.reason) for e in skipped] == [
        (4, "question 3 has no Title"),
        (3, "answer to question 99, which is not in the file"),
    ]
    # an answer with no text is passed over with a warning, not an error
    assert [(e.line, e.reason) for e in empty] == [(5, "answer 4 has no text")]
    broken = tmp_path / "Broken.xml"
    broken.write_text('<posts>\n<row Id="1" PostTypeId="1" Title="Q" />\n<row Id="2"\n</posts>\n')
    with pytest.raises(DumpFormatError, match=r"Broken.xml, line 4: malformed XML"):
        list(read_stackexchange_posts(broken))


def test_postlinks_duplicates_are_exported_as_labelled_pairs(tmp_path):
    assert list(read_stackexchange_duplicates(LINKS)) == [("2", "1"), ("9", "6")]
    out = tmp_path / "pairs.jsonl"
    # the Posts.xml beside PostLinks.xml lacks post 9 (a deleted post keeps its links)
    result = CliRunner().invoke(main, ["export-pairs", str(LINKS), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"id1": "2", "id2": "1", "label": 1},
    ]
    assert "skipped 1 links to posts not in Posts.xml" in result.stderr
    assert result.stdout == f"wrote 1 duplicate pairs to {out}\n"


def _write_links(path: Path, links: list[tuple[str, str]]) -> None:
    rows = "".join(
        f'<row Id="{100 + i}" PostId="{a}" RelatedPostId="{b}" LinkTypeId="3" />\n'
        for i, (a, b) in enumerate(links)
    )
    path.write_text(f"<postlinks>\n{rows}</postlinks>\n")


def test_export_pairs_checks_the_posts_it_is_given_and_says_when_it_cannot_check(tmp_path):
    links = tmp_path / "links" / "PostLinks.xml"
    links.parent.mkdir()
    _write_links(links, [("2", "1"), ("40", "1"), ("6", "41"), ("6", "2")])
    out = tmp_path / "pairs.jsonl"

    # no Posts.xml beside it: every link is written, and the operator is told nothing was checked
    r = CliRunner().invoke(main, ["export-pairs", str(links), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert "could not check" in r.stderr
    report = json.loads(r.stdout)
    assert (report["pairs"], report["skipped_missing"], report["posts"]) == (4, None, None)
    assert len(out.read_text().splitlines()) == 4

    # --posts names the dump's Posts.xml elsewhere: links to 40 and 41 are left out and counted
    args = ["export-pairs", str(links), "--out", str(out), "--posts", str(POSTS), "--json"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "skipped 2 links to posts not in Posts.xml" in r.stderr
    report = json.loads(r.stdout)
    assert (report["pairs"], report["skipped_missing"], report["posts"]) == (2, 2, str(POSTS))
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"id1": "2", "id2": "1", "label": 1},
        {"id1": "6", "id2": "2", "label": 1},
    ]


def test_an_image_only_answer_keeps_its_alt_text_and_an_empty_one_never_stops_the_import(tmp_path, caplog):
    posts = tmp_path / "Posts.xml"
    posts.write_text(
        '<posts>\n<row Id="1" PostTypeId="1" Title="Which plant is this?" Body="" />\n'
        '<row Id="2" PostTypeId="2" ParentId="1" Body="&lt;p&gt;&lt;img src=&quot;x.png&quot; '
        'alt=&quot;a snake plant in a pot&quot;&gt;&lt;/p&gt;" />\n'
        '<row Id="3" PostTypeId="2" ParentId="1" '
        'Body="&lt;p&gt;&lt;img src=&quot;y.png&quot;&gt;&lt;/p&gt;" />\n'
        "</posts>\n"
    )
    (thread,) = read_stackexchange_posts(posts)  # no on_error: nothing here is an error
    assert [a.body for a in thread.answers] == ["a snake plant in a pot"]
    assert "answer 3 has no text" in caplog.text


def test_a_closed_questions_duplicate_notice_is_left_out_of_its_body():
    old = (
        "<blockquote><p><strong>Possible Duplicate:</strong><br><a href='/q/1'>How do I cope?</a></p>"
        "</blockquote><p>My own words.</p><blockquote><p>A quote I keep.</p></blockquote>"
    )
    assert html_to_text(old) == "My own words.\nA quote I keep."
    new = (
        "<blockquote><div><strong>This question already has answers here</strong>:<ul><li>"
        "<a href='/q/1'>How do I cope?</a></li></ul></div></blockquote><p>Body.</p>"
    )
    assert html_to_text(new) == "Body."


def test_duplicate_links_to_posts_not_in_the_dump_are_skipped_and_reported():
    questions = stackexchange_question_ids(POSTS)
    assert {"1", "2", "6"} <= questions and "9" not in questions
    skipped: list[DumpFormatError] = []
    pairs = list(read_stackexchange_duplicates(LINKS, questions=questions, on_skip=skipped.append))
    assert pairs == [("2", "1")]
    assert [(e.line, e.reason) for e in skipped] == [(5, "duplicate link of post 9, not in Posts.xml")]


def test_helpers():
    assert parse_tags("<a><b-c>") == ["a", "b-c"]
    assert parse_tags("|a|b|") == ["a", "b"]
    assert parse_tags("a, b") == ["a", "b"]
    assert html_to_text("<p>x &lt; y</p><ul><li>one</li><li>two</li></ul>") == "x < y\none\ntwo"


def test_build_reads_each_format_and_skip_invalid_reports_what_it_skipped(tmp_path, fake_cli):
    idx = tmp_path / "idx"
    maps = [f"--map={k}={v}" for k, v in MAPPING.items()]
    r = fake_cli.invoke(main, ["build", str(BAD_CSV), *maps, "--index", str(idx), "--quiet"])
    assert r.exit_code == 1 and f"{BAD_CSV}, line 3: 'title' must not be empty" in r.output
    assert not idx.exists()

    r = fake_cli.invoke(
        main, ["build", str(BAD_CSV), *maps, "--index", str(idx), "--quiet", "--skip-invalid", "--json"]
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["threads"] == 2 and [s["line"] for s in summary["skipped"]] == [3, 4, 6]
    r = fake_cli.invoke(main, ["update", str(idx), str(BAD_CSV), *maps, "--quiet", "--skip-invalid"])
    assert (
        r.exit_code == 0
        and f"skipped 3 invalid record(s):\n  {BAD_CSV}:3: 'title' must not be empty" in r.output
    )

    r = fake_cli.invoke(main, ["build", str(POSTS), "--index", str(tmp_path / "se"), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    index = ForumIndex.load(tmp_path / "se", FakeEmbedder())
    assert len(index) == 3 and index.search("fix my sleep schedule", k=1)[0].thread_id == "1"

    r = fake_cli.invoke(
        main, ["build", str(CSV), "--index", str(tmp_path / "x"), "--format", "csv", "--map", "oops"]
    )
    assert r.exit_code == 2 and "expected FIELD=COLUMN" in r.output


def test_check_inputs_tells_each_format_from_the_names_alone_and_refuses_as_read_threads_does(tmp_path):
    absent = [tmp_path / "a.jsonl.gz", tmp_path / "b.CSV", tmp_path / "Posts.xml"]  # no file is opened
    assert check_inputs(absent) == [(absent[0], "jsonl"), (absent[1], "csv"), (absent[2], "stackexchange")]
    assert check_inputs(absent[:1], "csv", mapping={"id": "post_id"}) == [(absent[0], "csv")]
    assert check_inputs([], mapping={"id": "post_id"}, site_url="https://forum.example.org") == []
    refused = [
        ([tmp_path / "a.txt"], "auto", {}, "cannot tell the format of"),
        (absent[:1], "yaml", {}, "unknown format 'yaml'"),
        (absent[::2], "auto", {"mapping": {"id": "post_id"}}, "a column mapping is for CSV files"),
        (absent[:2], "auto", {"site_url": "https://forum.example.org"}, "a site URL is for Stack Exchange"),
    ]
    for paths, fmt, options, said in refused:
        with pytest.raises(ValueError, match=said):
            check_inputs(paths, fmt, **options)
        with pytest.raises(ValueError, match=said):
            read_threads(paths, fmt, **options)


@pytest.mark.parametrize("command", ["build", "import"])
def test_a_command_checks_its_options_then_reads_its_inputs_once(tmp_path, fake_cli, monkeypatch, command):
    import qa_search.cli._input as cli_input

    calls = []
    real = cli_input.read_threads

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli_input, "read_threads", counted)
    maps = [f"--map={k}={v}" for k, v in MAPPING.items()]
    where = ["--index", str(tmp_path / "ix")] if command == "build" else ["--out", str(tmp_path / "d.jsonl")]
    r = fake_cli.invoke(main, [command, str(CSV), *maps, *where, "-q"])
    assert r.exit_code == 0, r.output
    assert len(calls) == 1
    r = fake_cli.invoke(main, [command, str(CSV), *maps, *where, "-q", "--site-url", "https://x.example.org"])
    assert r.exit_code == 2 and "a site URL is for Stack Exchange" in r.output
    assert len(calls) == 1  # refused before any reading starts


EMPTY_ANSWERS = (
    '<posts>\n<row Id="1" PostTypeId="1" Title="Which plant is this?" Body="" />\n'
    '<row Id="2" PostTypeId="2" ParentId="1" Body="&lt;p&gt;a snake plant&lt;/p&gt;" />\n'
    '<row Id="3" PostTypeId="2" ParentId="1" Body="&lt;p&gt;&lt;img src=&quot;y.png&quot;&gt;&lt;/p&gt;" />\n'
    '<row Id="4" PostTypeId="1" Title="Why do leaves yellow?" Body="" />\n'
    '<row Id="5" PostTypeId="2" ParentId="4" Body="" />\n'
    "</posts>\n"
)


@pytest.mark.parametrize("command", ["import", "build", "update"])
def test_answers_with_no_text_are_counted_and_never_stop_an_import(tmp_path, fake_cli, command):
    posts = tmp_path / "Posts.xml"
    posts.write_text(EMPTY_ANSWERS)
    ix = tmp_path / "ix"
    if command == "update":  # an index to update, built from something else
        dump = tmp_path / "first.jsonl"
        dump.write_text(json.dumps({"id": "x", "title": "a first thread"}) + "\n")
        assert fake_cli.invoke(main, ["build", str(dump), "--index", str(ix), "-q"]).exit_code == 0
    args = {
        "import": ["import", str(posts), "--out", str(tmp_path / "forum.jsonl"), "-q"],
        "build": ["build", str(posts), "--index", str(ix), "-q"],
        "update": ["update", str(ix), str(posts), "-q"],
    }[command]
    for as_json in (False, True):
        r = fake_cli.invoke(main, args + (["--json"] if as_json else []))
        assert r.exit_code == 0, r.output
        assert "skipped 2 answers with no text" in r.stderr
        if as_json:
            assert json.loads(r.stdout)["skipped_empty_answers"] == 2
    if command == "import":
        threads = list(read_dump(tmp_path / "forum.jsonl"))
        assert [(t.id, [a.id for a in t.answers]) for t in threads] == [("1", ["2"]), ("4", [])]


def test_a_dump_with_every_answer_written_says_nothing_of_empty_answers(tmp_path, fake_cli):
    r = fake_cli.invoke(main, ["import", str(POSTS), "--out", str(tmp_path / "f.jsonl"), "-q", "--json"])
    assert r.exit_code == 0, r.output
    assert "answers with no text" not in r.stderr
    assert json.loads(r.stdout)["skipped_empty_answers"] == 0


def test_import_writes_a_jsonl_dump(tmp_path, fake_cli):
    out = tmp_path / "forum.jsonl"
    r = fake_cli.invoke(main, ["import", str(POSTS), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert [t.id for t in read_dump(out)] == ["1", "2", "6"]
    assert list(read_threads([out, CSV], mapping=MAPPING))[3] == list(read_csv(CSV, MAPPING))[0]


def _big_posts(path: Path, questions: int) -> None:
    """A Posts.xml whose answers all come after all of the questions (the worst interleaving)."""
    body = "&lt;p&gt;" + "words of a reasonably long post body " * 20 + "&lt;/p&gt;"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("<posts>\n")
        for i in range(questions):
            fh.write(f'<row Id="{i}" PostTypeId="1" Title="question {i}" Body="{body}" Tags="&lt;t&gt;" />\n')
        for i in range(questions):
            for j in range(2):
                fh.write(f'<row Id="a{i}-{j}" PostTypeId="2" ParentId="{i}" Body="{body}" />\n')
        fh.write("</posts>\n")


def _peak_bytes(path: Path) -> tuple[int, int]:
    tracemalloc.start()
    n = 0
    for thread in read_stackexchange_posts(path, workdir=path.parent):
        n += len(thread.answers)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return n, peak


def test_stackexchange_import_memory_stays_flat(tmp_path):
    small, large = tmp_path / "small.xml", tmp_path / "large.xml"
    _big_posts(small, 1000)
    _big_posts(large, 4000)
    n_small, peak_small = _peak_bytes(small)
    n_large, peak_large = _peak_bytes(large)
    assert (n_small, n_large) == (2000, 8000)
    # 4x the posts (about 11 MB of XML): the Python heap's peak does not grow with them
    assert peak_large < 1.3 * peak_small + 256 * 1024, (peak_small, peak_large)


def test_a_thread_id_read_twice_is_reported_and_the_last_record_wins(tmp_path, fake_cli):
    base, delta = tmp_path / "base.jsonl", tmp_path / "delta.jsonl"
    base.write_text("".join(json.dumps({"id": i, "title": f"old question {i}"}) + "\n" for i in "abc"))
    delta.write_text(
        json.dumps({"id": "b", "title": "new question b"})
        + "\n"
        + json.dumps({"id": "d", "title": "question d"})
        + "\n"
        + json.dumps({"id": "b", "title": "newest question b"})
        + "\n"
    )
    idx = tmp_path / "idx"
    r = fake_cli.invoke(main, ["build", str(base), str(delta), "--index", str(idx), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["repeated_ids"] == ["b"] and json.loads(r.stdout)["threads"] == 4
    index = ForumIndex.load(idx, FakeEmbedder())
    assert index.get("b").title == "newest question b"
    r = fake_cli.invoke(main, ["update", str(idx), str(delta), str(base), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "warning: 1 thread id(s) appear more than once in the input" in r.stderr and "'b'" in r.stderr
    assert ForumIndex.load(idx, FakeEmbedder()).get("b").title == "old question b"
    # no warning when every id is read once
    r = fake_cli.invoke(main, ["update", str(idx), str(base), "--quiet"])
    assert r.exit_code == 0 and "warning" not in r.output
    r = fake_cli.invoke(main, ["import", str(delta), "--out", str(tmp_path / "d.jsonl"), "--quiet", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["repeated_ids"] == ["b"]


def test_a_mapped_column_that_the_header_lacks_is_an_error(tmp_path):
    out = tmp_path / "forum.jsonl"
    maps = [f"--map={k}={'txet' if k == 'body' else v}" for k, v in MAPPING.items()]
    r = CliRunner().invoke(main, ["import", str(CSV), "--out", str(out), "-q", *maps])
    assert r.exit_code == 1 and not out.exists()
    assert f"{CSV}, line 1: no column for body (column 'txet') among the header's 8 columns; map" in r.output


def test_a_file_that_is_not_csv_is_refused_without_quoting_its_first_line(tmp_path):
    """A JSONL dump given as CSV has a post where the header would be: never printed."""
    r = CliRunner().invoke(main, ["import", str(SAMPLE_DUMP), "--out", str(tmp_path / "o.jsonl"), "-q",
                                  "--format", "csv"])
    first = json.loads(SAMPLE_DUMP.read_text(encoding="utf-8").splitlines()[0])
    assert r.exit_code == 1 and "no column for id" in r.output and "check the file is CSV" in r.output
    assert first["title"][:20] not in r.output
    # a field that is not mapped may lack its column: it is read only where there is one
    assert [t.id for t in read_csv(CSV, {"id": "post_id", "title": "subject"})] == ["101", "102", "103"]


def _latin(path: Path, bad_line: int, lines: int) -> None:
    """A CSV of ``lines`` physical lines whose line ``bad_line`` holds a Latin-1 byte."""
    rows = [b"id,title,body\n"] + [f"{i},question {i},body {i}\n".encode() for i in range(2, lines + 1)]
    rows[bad_line - 1] = b"caf\xe9" + rows[bad_line - 1]
    path.write_bytes(b"".join(rows))


@pytest.mark.parametrize(("bad_line", "lines"), [(3, 5), (800, 900), (1, 4)])
def test_a_byte_that_is_not_utf8_is_reported_on_its_own_line(tmp_path, bad_line, lines):
    path = tmp_path / "latin.csv"
    _latin(path, bad_line, lines)
    r = CliRunner().invoke(
        main, ["import", str(path), "--out", str(tmp_path / "x.jsonl"), "-q", "--skip-invalid"]
    )
    assert r.exit_code == 1
    assert f"{path}, line {bad_line}: not valid UTF-8 (invalid continuation byte)" in r.output


def test_csv_line_ends_and_a_byte_order_mark_read_as_before(tmp_path):
    text = 'id,title,answer\n1,"two\nlines",a\n1,"two\nlines",b\n2,t2,\n'
    for name, data in [
        ("lf.csv", text.encode()),
        ("crlf.csv", text.replace("\n", "\r\n").encode()),
        ("cr.csv", text.replace("\n", "\r").encode()),
        ("bom.csv", b"\xef\xbb\xbf" + text.encode()),
    ]:
        path = tmp_path / name
        path.write_bytes(data)
        threads = list(read_csv(path, {}))
        # a quoted line break is kept as written, as Python's csv module keeps it
        assert [(t.id, t.title.splitlines(), len(t.answers)) for t in threads] == [
            ("1", ["two", "lines"], 2),
            ("2", ["t2"], 0),
        ], name
    path = tmp_path / "cr_bad.csv"
    path.write_bytes(text.replace("\n", "\r").encode().replace(b"t2", b"t\xff"))
    with pytest.raises(DumpFormatError, match="line 6: not valid UTF-8"):
        list(read_csv(path, {}))


def test_a_bad_answer_cell_is_reported_once_on_its_own_line(tmp_path):
    skipped: list[DumpFormatError] = []
    list(read_csv(BAD_CSV, MAPPING, on_error=skipped.append))
    assert (skipped[1].line, skipped[1].reason) == (4, "column 'reply_votes' must be an integer, got 'lots'")
    # the second row of a thread is at fault: its own line is named, and the thread is skipped
    path = tmp_path / "forum.csv"
    path.write_text("id,title,answer,answer_score\n7,T,a,1\n7,T,b,many\n8,U,c,2\n")
    r = CliRunner().invoke(
        main, ["import", str(path), "--out", str(tmp_path / "x.jsonl"), "-q", "--skip-invalid"]
    )
    assert r.exit_code == 0, r.output
    assert f"  {path}:3: column 'answer_score' must be an integer, got 'many'\n" in r.output
    assert [t.id for t in read_dump(tmp_path / "x.jsonl")] == ["8"]


def test_an_answer_to_a_skipped_question_says_so(tmp_path):
    posts = tmp_path / "Posts.xml"
    posts.write_text(
        '<posts>\n<row Id="1" PostTypeId="1" Title="Q" Body="" />\n'
        '<row Id="7" PostTypeId="1" Body="no title" />\n'
        '<row Id="8" PostTypeId="2" ParentId="7" Body="an answer" />\n'
        '<row Id="9" PostTypeId="2" ParentId="99" Body="lost answer" />\n</posts>\n'
    )
    r = CliRunner().invoke(
        main, ["import", str(posts), "--out", str(tmp_path / "x.jsonl"), "-q", "--skip-invalid", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert [(s["line"], s["reason"]) for s in json.loads(r.stdout)["skipped"]] == [
        (3, "question 7 has no Title"),
        (4, "answer to question 7, which was skipped as invalid"),
        (5, "answer to question 99, which is not in the file"),
    ]


def test_export_pairs_leaves_the_old_file_when_it_fails(tmp_path):
    out = tmp_path / "keep.jsonl"
    out.write_text("precious\n")
    r = CliRunner().invoke(main, ["export-pairs", str(tmp_path / "missing.xml"), "--out", str(out)])
    assert r.exit_code == 1 and "dump file not found" in r.output
    links = tmp_path / "PostLinks.xml"
    links.write_text(
        '<postlinks>\n<row Id="1" PostId="2" RelatedPostId="1" LinkTypeId="3" />\n'
        '<row Id="2" PostId="" RelatedPostId="1" LinkTypeId="3" />\n</postlinks>\n'
    )
    r = CliRunner().invoke(main, ["export-pairs", str(links), "--out", str(out)])
    assert r.exit_code == 1 and f"{links}, line 3: duplicate link without PostId" in r.output
    assert out.read_text() == "precious\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "PostLinks.xml",
        "keep.jsonl",
    ]
    r = CliRunner().invoke(main, ["export-pairs", str(links), "--out", str(out), "--skip-invalid"])
    assert r.exit_code == 0 and out.read_text() == '{"id1": "2", "id2": "1", "label": 1}\n'


@pytest.mark.parametrize(
    ("fmt", "source"),
    [
        ("jsonl", '{"id": "1", "title": "From a pipe"}\n'),
        ("csv", "id,title\n1,From a pipe\n"),
        ("stackexchange", '<posts><row Id="1" PostTypeId="1" Title="From a pipe" /></posts>'),
    ],
)
def test_every_format_reads_from_a_pipe(tmp_path, fmt, source):
    import subprocess
    import sys

    out = tmp_path / "out.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "qa_search.cli",
            "import",
            "/dev/stdin",
            "--format",
            fmt,
            "--out",
            str(out),
            "-q",
        ],
        input=source.encode(),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert [(t.id, t.title) for t in read_dump(out)] == [("1", "From a pipe")]


def test_a_named_pipe_is_read_and_a_directory_is_refused(tmp_path):
    import contextlib
    import os
    import threading

    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)

    def write() -> None:
        with contextlib.suppress(BrokenPipeError):
            fifo.write_text('{"id": "1", "title": "From a FIFO"}\n')

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        assert [t.title for t in read_dump(fifo)] == ["From a FIFO"]
    finally:
        if writer.is_alive():  # nothing opened the pipe: open it, so the writer does not wait forever
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(timeout=10)
    for fmt in FORMATS:
        with pytest.raises(IsADirectoryError, match=f"{tmp_path} is a directory, not a dump file"):
            list(read_threads([tmp_path], fmt))
        with pytest.raises(FileNotFoundError, match="dump file not found"):
            list(read_threads([tmp_path / "missing"], fmt))
