"""Index settings: parsing and checking them, changing them on a built index, and the CLI's
``build --set`` and ``configure``."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DUMP, SAMPLE_GROUPS, FakeEmbedder, labelled_pairs

from qa_search import ForumIndex, IndexConfig, read_dump
from qa_search.cli import main
from qa_search.embedding.tuned import SETTINGS_FILE, model_index_settings
from qa_search.errors import ModelLoadError, QASearchError
from qa_search.operations.changes import reconfigure_index
from qa_search.operations.lifecycle import (
    build_index,
    current_config,
    current_model,
    starting_config,
)
from qa_search.storage.generations import current_generation

QUERIES = [
    "my therapist forgot what I told her last week",
    "how do I stop panic attacks before work",
    "my partner never listens when we argue about money",
]


def test_updated_parses_command_line_strings_and_checks_them():
    cfg = IndexConfig().updated({"lexical_weight": "0.7", "vote_cap": "50", "solved_boost": 0.1})
    assert (cfg.lexical_weight, cfg.vote_cap, cfg.solved_boost) == (0.7, 50, 0.1)
    assert cfg.changed() == {"lexical_weight": 0.7, "vote_cap": 50, "solved_boost": 0.1}
    assert IndexConfig().changed() == {}
    with pytest.raises(ValueError, match=r"unknown setting 'lexical'.*lexical_weight"):
        IndexConfig().updated({"lexical": "1"})
    with pytest.raises(ValueError, match="lexical_weight must be a number, got 'lots'"):
        IndexConfig().updated({"lexical_weight": "lots"})
    with pytest.raises(ValueError, match="vote_cap must be a whole number, got '2.5'"):
        IndexConfig().updated({"vote_cap": "2.5"})
    with pytest.raises(ValueError, match="finite"):
        IndexConfig().updated({"answer_weight": "nan"})
    with pytest.raises(ValueError, match="lexical_weight must be at least 0"):
        IndexConfig().updated({"lexical_weight": "-1"})
    with pytest.raises(ValueError, match="chunk_overlap must be at least 0 and below chunk_words"):
        IndexConfig().updated({"chunk_words": "20", "chunk_overlap": "20"})
    with pytest.raises(ValueError, match=r"duplicate_threshold is a cosine in \[-1, 1\]"):
        IndexConfig().updated({"duplicate_threshold": "1.5"})


def test_a_settings_kind_comes_from_its_declaration_not_its_value(tmp_path):
    # lexical_weight=0 (an int) is how the README turns the lexical index off; it is still a
    # float setting, in the object, in the saved snapshot and in every later change
    cfg = IndexConfig(lexical_weight=0)
    assert cfg.lexical_weight == 0.0 and isinstance(cfg.lexical_weight, float)
    assert cfg.updated({"lexical_weight": "0.5"}).lexical_weight == 0.5
    assert cfg.updated({"lexical_weight": 0.25}).lexical_weight == 0.25
    index = ForumIndex(FakeEmbedder(), cfg)
    index.upsert(list(read_dump(SAMPLE_DUMP))[:5])
    index.save(tmp_path / "idx")
    loaded = ForumIndex.load(tmp_path / "idx", FakeEmbedder())
    loaded.reconfigure({"lexical_weight": 0.5})
    assert loaded.config.lexical_weight == 0.5
    assert reconfigure_index(tmp_path / "idx", {"lexical_weight": "0.75"}, FakeEmbedder()).generation == 2
    assert current_config(tmp_path / "idx").lexical_weight == 0.75
    for kwargs, message in [
        ({"lexical_weight": "0.5"}, "lexical_weight must be a number, got '0.5'"),
        ({"answer_weight": float("inf")}, "answer_weight must be a finite number"),
        ({"chunk_words": 160.0}, "chunk_words must be a whole number"),
        ({"vote_cap": True}, "vote_cap must be a whole number"),
    ]:
        with pytest.raises(ValueError, match=message):
            IndexConfig(**kwargs)


@pytest.fixture(scope="module")
def threads():
    return list(read_dump(SAMPLE_DUMP))


def results(index: ForumIndex) -> list:
    return [[(h.thread_id, round(h.score, 5)) for h in index.search(q, k=8)] for q in QUERIES]


@pytest.mark.parametrize(
    ("start", "settings"),
    [
        ({}, {"lexical_weight": "0"}),
        ({}, {"lexical_weight": "0.3", "answer_weight": "0.5"}),
        # the boost bound found under a small boost must not survive a larger one
        ({"vote_boost": "0.01"}, {"vote_boost": "2"}),
    ],
)
def test_reconfigure_scores_exactly_as_a_fresh_build_with_those_settings(threads, start, settings):
    index = ForumIndex(FakeEmbedder(), IndexConfig().updated(start))
    index.upsert(threads)
    before = results(index)
    index.reconfigure(settings)
    fresh = ForumIndex(FakeEmbedder(), IndexConfig().updated({**start, **settings}))
    fresh.upsert(threads)
    assert results(index) == results(fresh)
    assert results(index) != before


def test_reconfigure_refuses_settings_that_change_what_is_embedded(threads):
    index = ForumIndex(FakeEmbedder(), IndexConfig())
    index.upsert(threads[:5])
    with pytest.raises(ValueError, match="cannot change chunk_words on a built index"):
        index.reconfigure({"chunk_words": "100", "lexical_weight": "0.2"})
    assert index.config == IndexConfig()  # nothing half-applied


def test_reconfigure_index_publishes_and_keeps_the_calibration(tmp_path, threads):
    emb = FakeEmbedder()
    groups = [set(g) for g in json.loads(SAMPLE_GROUPS.read_text())]
    index = ForumIndex(emb, IndexConfig())
    index.upsert(threads)
    pairs = labelled_pairs(threads, groups)
    index.calibrate([(a, b) for a, b, _ in pairs], [y for *_, y in pairs])
    index.save(tmp_path / "ix")
    report = reconfigure_index(tmp_path / "ix", {"lexical_weight": "0.25"}, emb)
    assert report.generation == 2 and report.embedded == 0 and report.threads == len(threads)
    again = ForumIndex.load(tmp_path / "ix", emb)
    assert again.config.lexical_weight == 0.25 and again.calibration is not None
    assert again.calibration.to_dict() == index.calibration.to_dict()
    # a later build without settings keeps the index's settings
    build_index(tmp_path / "ix", threads[:20], emb)
    assert current_config(tmp_path / "ix").lexical_weight == 0.25
    assert current_config(tmp_path / "new") == IndexConfig()


def test_cli_build_set_and_configure(tmp_path, fake_cli):
    ix = str(tmp_path / "ix")
    r = fake_cli.invoke(main, ["build", str(SAMPLE_DUMP), "--index", ix, "-q", "--set", "solved_boost=0.05"])
    assert r.exit_code == 0, r.output
    assert current_config(ix).solved_boost == 0.05
    # configure alone shows the settings and marks what differs from the defaults
    r = fake_cli.invoke(main, ["configure", ix])
    assert r.exit_code == 0, r.output
    assert "settings of generation 1" in r.output
    assert "solved_boost         0.05  (default 0.0)" in r.output
    assert "lexical_weight       0.5\n" in r.output
    # --set publishes a new generation; nothing else changes
    change = ["--set", "lexical_weight=0.7", "--set", "vote_boost=0.1"]
    r = fake_cli.invoke(main, ["configure", ix, *change, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["generation"] == 2 and current_generation(ix) == 2
    assert out["changed"] == {"lexical_weight": 0.7, "solved_boost": 0.05, "vote_boost": 0.1}
    assert out["config"] == asdict(current_config(ix))
    # asking again for what the index has publishes nothing
    r = fake_cli.invoke(main, ["configure", ix, *change])
    assert r.exit_code == 0 and "already has these settings; nothing published" in r.output
    assert current_generation(ix) == 2
    # a rebuild keeps them; --set changes one on top
    r = fake_cli.invoke(main, ["build", str(SAMPLE_DUMP), "--index", ix, "-q", "--set", "vote_boost=0"])
    assert r.exit_code == 0, r.output
    assert current_config(ix).changed() == {"lexical_weight": 0.7, "solved_boost": 0.05}
    # a value that clashes with one the index keeps is refused before anything is embedded
    r = fake_cli.invoke(main, ["build", str(SAMPLE_DUMP), "--index", ix, "-q", "--set", "chunk_words=40"])
    assert r.exit_code == 0, r.output
    r = fake_cli.invoke(main, ["build", str(SAMPLE_DUMP), "--index", ix, "-q", "--set", "chunk_overlap=40"])
    assert r.exit_code == 2 and "chunk_overlap must be at least 0 and below chunk_words (40)" in r.output
    assert current_config(ix).chunk_words == 40 and current_generation(ix) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "lexical=1"], "unknown setting 'lexical'"),
        (["--set", "lexical_weight"], "expected KEY=VALUE, got 'lexical_weight'"),
        (["--set", "lexical_weight=high"], "lexical_weight must be a number"),
        (["--set", "chunk_words=100"], "chunk_words can only change with a new build"),
    ],
)
def test_cli_configure_refuses_bad_settings_and_publishes_nothing(tmp_path, fake_cli, args, message):
    ix = tmp_path / "ix"
    index = ForumIndex(FakeEmbedder(), IndexConfig())
    index.upsert(list(read_dump(SAMPLE_DUMP))[:10])
    index.save(ix)
    r = fake_cli.invoke(main, ["configure", str(ix), *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert current_generation(ix) == 1


def test_cli_configure_an_empty_directory_says_build_first(tmp_path, fake_cli):
    (tmp_path / "empty").mkdir()
    r = fake_cli.invoke(main, ["configure", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "holds no published generation; build it first" in r.output


def tuned_model_dir(path, settings) -> str:
    """A directory standing in for a tuned model: only its settings file matters here."""
    path.mkdir()
    (path / SETTINGS_FILE).write_text(json.dumps({"tuned_from": "x", "index_settings": settings}))
    return str(path.resolve())


def test_a_tuned_models_settings_apply_when_an_index_starts_using_it(tmp_path, threads):
    model = tuned_model_dir(tmp_path / "tuned", {"lexical_weight": 0.25})
    # a weight recorded without its rule was measured under the fixed rule, and keeps it
    fixed = {"lexical_weight": 0.25, "lexical_mode": "fixed"}
    assert model_index_settings(model) == fixed
    both = tuned_model_dir(tmp_path / "tuned-coverage", {"lexical_weight": 0.25, "lexical_mode": "coverage"})
    assert model_index_settings(both) == {"lexical_weight": 0.25, "lexical_mode": "coverage"}
    assert model_index_settings(None) == {} and model_index_settings(str(tmp_path)) == {}
    ix = tmp_path / "ix"
    # a new index takes them
    assert starting_config(ix, model) == (IndexConfig(lexical_weight=0.25, lexical_mode="fixed"), fixed)
    build_index(ix, threads[:10], FakeEmbedder(name=model))
    assert current_config(ix).changed() == fixed
    # the operator's change survives a rebuild with the same model
    reconfigure_index(ix, {"lexical_weight": "0.6", "solved_boost": "0.02"}, FakeEmbedder(name=model))
    build_index(ix, threads[:10], FakeEmbedder(name=model))
    assert current_config(ix).changed() == {**fixed, "lexical_weight": 0.6, "solved_boost": 0.02}
    # another model without settings keeps the index's; a tuned one brings its own, boosts stay
    build_index(ix, threads[:10], FakeEmbedder(name="fake-other"))
    assert current_config(ix).changed() == {**fixed, "lexical_weight": 0.6, "solved_boost": 0.02}
    build_index(ix, threads[:10], FakeEmbedder(name=model))
    assert current_config(ix).changed() == {**fixed, "solved_boost": 0.02}


def test_a_damaged_settings_file_is_named(tmp_path):
    model = tuned_model_dir(tmp_path / "tuned", ["lexical_weight"])
    with pytest.raises(QASearchError, match=f"{SETTINGS_FILE} is damaged"):
        model_index_settings(model)
    unknown = tuned_model_dir(tmp_path / "newer", {"lexical_weight": 0.3, "rerank_depth": 50})
    with pytest.raises(QASearchError, match="do not fit this version: unknown setting 'rerank_depth'"):
        starting_config(tmp_path / "ix", unknown)


def test_a_snapshot_with_settings_this_version_refuses_names_itself(tmp_path, threads):
    from qa_search.errors import SnapshotError
    from qa_search.storage.generations import resolve_snapshot
    from qa_search.storage.snapshot import MANIFEST

    index = ForumIndex(FakeEmbedder(), IndexConfig())
    index.upsert(threads[:5])
    index.save(tmp_path / "ix")
    path = resolve_snapshot(tmp_path / "ix") / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["config"]["lexical_weight"] = -1
    path.write_text(json.dumps(manifest))
    with pytest.raises(SnapshotError, match="settings this version refuses: .*lexical_weight must be"):
        ForumIndex.load(tmp_path / "ix", FakeEmbedder())
    with pytest.raises(SnapshotError, match="records settings this version refuses"):
        current_config(tmp_path / "ix")


class _RecordingLoader:
    """A fake ``load_embedder`` that records what was asked for and answers with a fake model
    of that name on that backend (``"auto"`` gives the int8 default, as on a machine with ONNX)."""

    def __init__(self, unavailable: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str | None, str]] = []
        self.unavailable = unavailable

    def __call__(self, name=None, *, backend="auto", **_options):
        self.calls.append((name, backend))
        if backend in self.unavailable:
            raise ModelLoadError(f"no {backend} here")
        emb = FakeEmbedder(name=name or "default-model")
        emb.backend = "onnx-int8" if backend == "auto" else backend
        return emb


def _recorded(ix) -> tuple[str, str]:
    model = current_model(ix)
    return model["name"], model["backend"]


def test_a_rebuild_keeps_the_index_model_and_encoder(tmp_path, monkeypatch):
    loader = _RecordingLoader()
    monkeypatch.setattr(sys.modules["qa_search.operations.lifecycle"], "load_embedder", loader)
    monkeypatch.setattr(sys.modules["qa_search.embedding.loading"], "load_embedder", loader)
    cli, ix = CliRunner(), str(tmp_path / "ix")

    def run(*args):
        r = cli.invoke(main, [*args, "-q"])
        assert r.exit_code == 0, r.output
        return loader.calls[-1]

    # a new index: the default model on auto
    assert run("build", str(SAMPLE_DUMP), "--index", ix) == (None, "auto")
    assert _recorded(ix) == ("default-model", "onnx-int8")
    # the backend asked for is recorded (through the embedding cache) ...
    assert run("build", str(SAMPLE_DUMP), "--index", ix, "--model", "tuned-x", "--backend", "onnx") == (
        "tuned-x", "onnx")
    assert _recorded(ix) == ("tuned-x", "onnx")
    # ... and a rebuild or an update without --model / --backend keeps model and encoder
    assert run("build", str(SAMPLE_DUMP), "--index", ix) == ("tuned-x", "onnx")
    assert run("update", ix, str(SAMPLE_DUMP)) == ("tuned-x", "onnx")
    assert _recorded(ix) == ("tuned-x", "onnx")
    # naming the same model keeps its encoder; another model starts on auto
    assert run("build", str(SAMPLE_DUMP), "--index", ix, "--model", "tuned-x") == ("tuned-x", "onnx")
    assert run("build", str(SAMPLE_DUMP), "--index", ix, "--model", "other") == ("other", "auto")
    assert run("build", str(SAMPLE_DUMP), "--index", ix, "--backend", "torch") == ("other", "torch")
    assert _recorded(ix) == ("other", "torch")
    info = cli.invoke(main, ["info", ix])
    assert info.exit_code == 0 and "other (torch)" in info.output and "tuned-x (onnx)" in info.output
    gens = json.loads(cli.invoke(main, ["info", ix, "--json"]).stdout)["generations"]
    assert [g["backend"] for g in gens] == ["onnx", "onnx-int8", "torch"]  # the 3 kept


def test_a_recorded_encoder_missing_here_falls_back_to_auto(tmp_path, monkeypatch, caplog):
    loader = _RecordingLoader(unavailable=("onnx",))
    monkeypatch.setattr(sys.modules["qa_search.embedding.loading"], "load_embedder", loader)
    index = ForumIndex(_RecordingLoader()("tuned-x", backend="onnx"))
    index.upsert(list(read_dump(SAMPLE_DUMP))[:5])
    index.save(tmp_path / "ix")
    loaded = ForumIndex.load(tmp_path / "ix")
    assert loader.calls == [("tuned-x", "onnx"), ("tuned-x", "auto")]
    assert loaded.embedder.backend == "onnx-int8"
    assert "built on backend onnx, unavailable here" in caplog.text


def test_a_recorded_model_directory_that_is_gone_is_named_at_once(tmp_path, monkeypatch):
    loader = _RecordingLoader()
    monkeypatch.setattr(sys.modules["qa_search.embedding.loading"], "load_embedder", loader)
    gone = tmp_path / "tuned-model"
    index = ForumIndex(FakeEmbedder(name=str(gone)))
    index.upsert(list(read_dump(SAMPLE_DUMP))[:3])
    index.save(tmp_path / "ix")
    with pytest.raises(ModelLoadError, match=f"built with the model in {gone}, which is not there any more"):
        ForumIndex.load(tmp_path / "ix")
    r = CliRunner().invoke(main, ["build", str(SAMPLE_DUMP), "--index", str(tmp_path / "ix"), "-q"])
    assert r.exit_code == 1 and "rebuild with `qa-search build --model M`" in r.output
    assert loader.calls == []  # nothing was tried on the hub
