"""A forum nobody tuned for, brought in as its operator would: an export in its own JSON shape
converted to a dump, the input options that apply to other formats, and dedupe's report on a
forum without thread votes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from conftest import ROOT, FakeEmbedder

from qa_search import ForumIndex, IndexConfig, Thread, read_dump, read_threads
from qa_search.cli import main

# one row as CounselChat's export has it: its own field names, answers as {"text", "upvotes"}
EXPORT_ROW = {
    "thread_id": "how-can-i-sleep",
    "title": "How can I sleep when my mind races?",
    "body": "Every night I lie awake going over the day.",
    "topic": "sleep-improvement",
    "topics": ["sleep-improvement", "anxiety"],
    "url": "https://counselchat.com/questions/how-can-i-sleep",
    "source_split": "train",
    "answers": [{"text": "Write the thoughts down before bed.", "upvotes": 2, "views": 40}],
}


@pytest.fixture
def export(tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps(EXPORT_ROW) + "\n", encoding="utf-8")
    return path


def test_a_column_mapping_given_with_no_csv_input_is_refused_before_anything_is_read(
    tmp_path, export, fake_cli
):
    # the export's own field names with --map, as an operator reading "--map FIELD=COLUMN" tries:
    # the mapping used to be ignored, and the error then blamed the data ("missing required
    # field 'id'") instead of the option
    index = tmp_path / "ix"
    r = fake_cli.invoke(main, ["build", str(export), "--index", str(index), "--map", "id=thread_id", "-q"])
    assert r.exit_code == 2, r.output
    assert "a column mapping is for CSV files, and no input is one" in r.output
    assert f"{export} is read as jsonl" in r.output and "missing required field" not in r.output
    assert not index.exists()
    out = str(tmp_path / "d.jsonl")
    r = fake_cli.invoke(main, ["import", str(export), "--out", out, "--map", "id=thread_id"])
    assert r.exit_code == 2 and "a column mapping is for CSV files" in r.output
    assert not (tmp_path / "d.jsonl").exists()
    # the library refuses at the call, before opening a file
    with pytest.raises(ValueError, match="a column mapping is for CSV files"):
        read_threads([tmp_path / "absent.jsonl"], mapping={"id": "thread_id"})


def test_a_mapping_still_applies_to_the_csv_inputs_beside_a_dump(tmp_path):
    dump = tmp_path / "d.jsonl"
    dump.write_text(json.dumps({"id": "j1", "title": "From the dump"}) + "\n", encoding="utf-8")
    csv = tmp_path / "f.csv"
    csv.write_text("post_id,subject\nc1,From the CSV\n", encoding="utf-8")
    threads = list(read_threads([dump, csv], mapping={"id": "post_id", "title": "subject"}))
    assert [(t.id, t.title) for t in threads] == [("j1", "From the dump"), ("c1", "From the CSV")]


def test_a_site_url_given_with_no_stack_exchange_input_is_refused(tmp_path, fake_cli):
    csv = tmp_path / "f.csv"
    csv.write_text("id,title\nc1,How do I sleep?\n", encoding="utf-8")
    r = fake_cli.invoke(
        main, ["import", str(csv), "--out", str(tmp_path / "d.jsonl"), "--site-url", "https://forum.example.org"]
    )
    assert r.exit_code == 2, r.output
    said = "a site URL is for Stack Exchange Posts.xml files, and no input is one"
    assert f"{said} ({csv} is read as csv)" in r.output
    assert not (tmp_path / "d.jsonl").exists()


def test_an_answer_with_its_text_under_another_name_is_missing_its_body_not_empty(tmp_path, fake_cli):
    # renaming the thread's fields and not the answers' is the likely slip; "answers[0].body must
    # not be empty" sent the operator looking for blank answers in their data
    answer = {"text": "A private answer text", "upvotes": 2}
    row = {"id": "t1", "title": "How can I sleep?", "answers": [answer]}
    path = tmp_path / "half.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    r = fake_cli.invoke(main, ["import", str(path), "--out", str(tmp_path / "d.jsonl"), "-q"])
    assert r.exit_code == 1
    assert f"{path}, line 1: answers[0]: missing required field 'body' (the answer's text)" in r.output
    assert "private answer" not in r.output
    # an answer whose body is there but blank is still the empty one
    path.write_text(json.dumps({**row, "answers": [{"body": "  "}]}) + "\n", encoding="utf-8")
    r = fake_cli.invoke(main, ["import", str(path), "--out", str(tmp_path / "d.jsonl"), "-q"])
    assert r.exit_code == 1 and "answers[0].body must not be empty" in r.output


def _documented_jq_program() -> str:
    text = (ROOT / "docs" / "data-formats.md").read_text(encoding="utf-8")
    section = text.split("### Another JSON export", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the section shows its conversion in a sh block"
    program = re.search(r"jq -c '(.*?)'", block.group(1), re.S)
    assert program, "the sh block runs jq -c '...'"
    return program.group(1)


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_the_documented_conversion_of_another_export_gives_a_dump_that_reads(tmp_path, export):
    out = subprocess.run(
        ["jq", "-c", _documented_jq_program(), str(export)], capture_output=True, text=True, check=True
    ).stdout
    (tmp_path / "forum.jsonl").write_text(out, encoding="utf-8")
    [thread] = read_dump(tmp_path / "forum.jsonl")
    assert (thread.id, thread.title, thread.body) == (
        EXPORT_ROW["thread_id"], EXPORT_ROW["title"], EXPORT_ROW["body"]
    )
    assert thread.category == "sleep-improvement" and thread.tags == ("sleep-improvement", "anxiety")
    assert thread.url == EXPORT_ROW["url"]
    assert [(a.body, a.score) for a in thread.answers] == [("Write the thoughts down before bed.", 2)]


def _saved(tmp_path, threads):
    index = ForumIndex(FakeEmbedder(), IndexConfig())
    index.upsert(threads)
    index.save(tmp_path / "ix")
    return str(tmp_path / "ix")


def test_dedupe_leaves_votes_out_where_no_clustered_thread_has_any(tmp_path, fake_cli):
    threads = [
        Thread("a1", "how do I stop panic attacks at work"),
        Thread("a2", "how can I stop my panic attacks at work"),
        Thread("b1", "my partner and I fight about money all the time"),
        Thread("c1", "grief after losing my dog"),
    ]
    ix = _saved(tmp_path, threads)
    r = fake_cli.invoke(main, ["dedupe", ix, "--min-cosine", "0.5", "-q"])
    assert r.exit_code == 0, r.output
    assert "keep  [a1] how do I stop panic attacks at work  (0 answer(s))" in r.output
    assert "vote(s)" not in r.output
    # one voted thread among them, and every line gives its votes again
    voted = [Thread("a1", "how do I stop panic attacks at work", score=3), *threads[1:]]
    r = fake_cli.invoke(main, ["dedupe", _saved(tmp_path / "v", voted), "--min-cosine", "0.5", "-q"])
    assert r.exit_code == 0, r.output
    assert "(0 answer(s), 3 vote(s))" in r.output and "(0 answer(s), 0 vote(s); cos=" in r.output
