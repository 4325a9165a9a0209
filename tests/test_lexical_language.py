"""The lexical analyser's language as an index setting: checked, recorded in the snapshot, used
for the lexical index and its queries, changed by configure (lexical index only) and build --set,
and English for a snapshot that records none."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qa_search import ForumIndex, IndexConfig
from qa_search.cli import main
from qa_search.scoring.analyser import LANGUAGES
from qa_search.storage.generations import current_generation, resolve_snapshot

FORUM = [
    {"id": "1", "title": "les chats dorment toute la journée"},
    {"id": "2", "title": "mon chien aboie la nuit"},
    {"id": "3", "title": "comment nourrir un lapin"},
]


def test_the_setting_defaults_to_english_and_refuses_a_language_it_cannot_stem():
    assert IndexConfig().lexical_language == "english"
    assert IndexConfig().updated({"lexical_language": " french "}).lexical_language == "french"
    assert IndexConfig.from_dict({"lexical_weight": 0.5}).lexical_language == "english"
    with pytest.raises(ValueError, match="lexical language must be one of danish, .*turkish, got 'klingon'"):
        IndexConfig().updated({"lexical_language": "klingon"})
    with pytest.raises(ValueError, match="must be a string"):
        IndexConfig(lexical_language=3)  # type: ignore[arg-type]
    assert "french" in LANGUAGES and "english" in LANGUAGES


@pytest.mark.parametrize(("language", "stop_word_scores"), [("french", False), ("english", True)])
def test_the_lexical_index_stems_and_drops_stop_words_in_the_settings_language(
    fake_embedder, language, stop_word_scores
):
    from qa_search import Thread

    index = ForumIndex(fake_embedder, IndexConfig(lexical_language=language))
    index.upsert([Thread(id=t["id"], title=t["title"]) for t in FORUM])
    lexical = index.lexical_index()
    assert lexical.language == language
    # "la" is a French stop word: it scores only where the analyser is English
    assert bool(lexical.scores("la").any()) is stop_word_scores
    # French stemming folds "nourrissant" and "nourrir" together; English does not
    assert bool(lexical.scores("nourrissant").any()) is (language == "french")


def _build(fake_cli, tmp_path, *extra):
    dump = tmp_path / "forum.jsonl"
    dump.write_text("".join(json.dumps(t) + "\n" for t in FORUM))
    ix = tmp_path / "ix"
    r = fake_cli.invoke(main, ["build", str(dump), "--index", str(ix), "-q", *extra])
    assert r.exit_code == 0, r.output
    return ix


def test_build_set_records_the_language_and_configure_rebuilds_only_the_lexical_index(tmp_path, fake_cli):
    # the lexical score decides here (the fake embedder's cosines are noise): the whole weight
    ix = _build(fake_cli, tmp_path, "--set", "lexical_language=french", "--set", "lexical_mode=fixed",
                "--set", "lexical_weight=1")
    snap = resolve_snapshot(ix)
    assert json.loads((snap / "manifest.json").read_text())["config"]["lexical_language"] == "french"
    loaded = ForumIndex.load(ix, embedder=_fake())
    assert loaded.config.lexical_language == "french" and loaded.lexical_index().language == "french"
    assert loaded.search("nourrissant", 1)[0].thread_id == "3"

    r = fake_cli.invoke(main, ["configure", str(ix), "--set", "lexical_language=german", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["changed"]["lexical_language"] == "german"
    after = resolve_snapshot(ix)
    assert current_generation(ix) == 2 and after != snap
    for name in ("questions.faiss", "answers.faiss"):  # the vectors are carried over untouched
        assert (after / name).read_bytes() == (snap / name).read_bytes()
    loaded = ForumIndex.load(ix, embedder=_fake())
    assert loaded.lexical_index().language == "german"
    assert np.load(after / "lexical.npz")["language"] == "german"

    r = fake_cli.invoke(main, ["configure", str(ix), "--set", "lexical_language=klingon"])
    assert r.exit_code != 0 and "lexical language must be one of" in r.output
    assert current_generation(ix) == 2


def test_a_snapshot_that_records_no_language_loads_as_english(tmp_path, fake_cli):
    ix = _build(fake_cli, tmp_path)
    mf = resolve_snapshot(ix) / "manifest.json"
    manifest = json.loads(mf.read_text())
    del manifest["config"]["lexical_language"]
    mf.write_text(json.dumps(manifest))
    loaded = ForumIndex.load(ix, embedder=_fake())
    assert loaded.config.lexical_language == "english" and loaded.lexical_index().language == "english"
    # a lexical index stored in another language than the settings name is built again on loading
    manifest["config"]["lexical_language"] = "french"
    mf.write_text(json.dumps(manifest))
    assert ForumIndex.load(ix, embedder=_fake()).lexical_index().language == "french"


def _fake():
    from conftest import FakeEmbedder

    return FakeEmbedder()
