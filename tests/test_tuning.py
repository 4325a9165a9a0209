"""Fine-tuning: reading pair files, building training examples, and a real (tiny) tuning run."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from click.testing import CliRunner

from qa_search import ForumIndex, IndexConfig, Thread, load_embedder
from qa_search.cli import main
from qa_search.dumps import write_dump
from qa_search.embedding.tuned import SETTINGS_FILE, model_index_settings
from qa_search.operations.lifecycle import current_config
from qa_search.tools.tuning import RECIPE, TUNED_INDEX_SETTINGS, ranking_loss, tune, tuned_recipe
from qa_search.tools.tuningdata import (
    LabelledPair,
    PairFormatError,
    UnknownPairIdsError,
    read_pairs,
    training_examples,
)

THREADS = [
    Thread("t1", "How do I stop panic attacks at night?", body="They wake me up at 3am."),
    Thread("t2", "Night-time panic attacks keep waking me", body="What helps?"),
    Thread("t3", "How do I talk to my boss about burnout?"),
    Thread("t4", "Telling my manager I am burnt out"),
    Thread("t5", "Best way to budget as a couple?"),
]
ID_PAIRS = [
    {"id1": "t1", "id2": "t2", "label": 1},
    {"id1": "t1", "id2": "t3", "label": 0},
    {"id1": "t3", "id2": "t4", "label": 1},
    {"id1": "t3", "id2": "t5", "label": 0},
    {"id1": "t4", "id2": "t1", "label": 0},
]
TEXT_PAIRS = [
    LabelledPair(THREADS[a].question_text, THREADS[b].question_text, p["label"])
    for p, (a, b) in zip(ID_PAIRS, [(0, 1), (0, 2), (2, 3), (2, 4), (3, 0)], strict=True)
]


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_read_pairs_inline_and_by_id_give_the_same_texts(tmp_path):
    dump = tmp_path / "forum.jsonl"
    write_dump(THREADS, dump)
    by_id = _write_lines(tmp_path / "ids.jsonl", [json.dumps(p) for p in ID_PAIRS])
    inline = tmp_path / "text.jsonl.gz"
    with gzip.open(inline, "wt", encoding="utf-8") as fh:
        for p in TEXT_PAIRS:
            fh.write(json.dumps({"text1": p.text1, "text2": p.text2, "label": p.label}) + "\n\n")
    assert read_pairs([by_id], [dump]) == TEXT_PAIRS
    assert read_pairs([inline]) == TEXT_PAIRS
    assert read_pairs([by_id, inline], [dump]) == TEXT_PAIRS + TEXT_PAIRS


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("{not json", "invalid JSON"),
        ('{"text1": "a", "text2": "b", "label": 2}', "'label' must be 0 or 1"),
        ('{"text1": "a", "text2": "b", "label": true}', "'label' must be 0 or 1"),
        ('{"text1": "a", "label": 1}', "'text2' must be a non-empty string"),
        ('{"id1": "t1", "label": 0}', "'id2' must be"),
        ('{"text1": "a", "text2": "b"}', "missing required field 'label'"),
        ('{"a": 1, "label": 0}', "expected 'id1' and 'id2' or 'text1' and 'text2'"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_pair_lines_name_file_line_and_reason(tmp_path, bad_line, reason):
    good = '{"text1": "a", "text2": "b", "label": 1}'
    path = _write_lines(tmp_path / "pairs.jsonl", [good, "", bad_line, good])
    with pytest.raises(PairFormatError) as err:
        read_pairs([path])
    assert err.value.line == 3
    assert err.value.path == str(path)
    assert f"{path}, line 3: {reason}" in str(err.value)


def test_a_truncated_or_false_gzip_pair_file_and_a_directory_are_named(tmp_path):
    import gzip

    whole = gzip.compress(b'{"text1": "a", "text2": "b", "label": 1}\n' * 2000)
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "plain.jsonl.gz").write_bytes(b'{"text1": "a", "text2": "b", "label": 1}\n')
    for name in ("cut.jsonl.gz", "plain.jsonl.gz"):
        with pytest.raises(PairFormatError, match="cannot read"):
            read_pairs([tmp_path / name])
    with pytest.raises(IsADirectoryError, match="is a directory, not a pair file"):
        read_pairs([tmp_path])


def test_unknown_ids_are_named(tmp_path):
    dump = tmp_path / "forum.jsonl"
    write_dump(THREADS, dump)
    path = _write_lines(
        tmp_path / "ids.jsonl",
        ['{"id1": "t1", "id2": "ghost", "label": 1}', '{"id1": "t9", "id2": "t2", "label": 0}'],
    )
    with pytest.raises(UnknownPairIdsError, match="'ghost', 't9'") as err:
        read_pairs([path], [dump])
    assert err.value.missing == ("ghost", "t9")
    with pytest.raises(FileNotFoundError, match="pair file not found"):
        read_pairs([tmp_path / "missing.jsonl"])


def test_cli_reports_a_bad_pair_line_and_writes_nothing(tmp_path):
    path = _write_lines(tmp_path / "pairs.jsonl", ['{"text1": "a", "text2": "b", "label": 1}', "oops"])
    result = CliRunner().invoke(main, ["tune", "--pairs", str(path), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert f"{path}, line 2: invalid JSON" in result.output
    assert not (tmp_path / "m").exists()


def test_training_examples_use_labelled_negatives_as_hard_negatives():
    pairs = [
        LabelledPair("a", "a2", 1),
        LabelledPair("a", "x", 0),
        LabelledPair("a", "y", 0),
        LabelledPair("a", "a3", 1),
        LabelledPair("b", "b2", 1),  # neither side has a labelled negative
        LabelledPair("c", "c", 1),  # identical texts teach nothing
    ]
    ex = training_examples(pairs, seed=3)
    # a's two duplicates each get one of a's negatives, spread over both; a2/a3 as anchors have none
    assert sorted(t[:2] for t in ex.triplets) == [("a", "a2"), ("a", "a3")]
    assert sorted(t[2] for t in ex.triplets) == ["x", "y"]
    assert sorted(ex.positive_pairs) == [("a2", "a"), ("a3", "a"), ("b", "b2"), ("b2", "b")]
    assert len(ex.labelled) == 5 and ("c", "c", 1) not in ex.labelled
    assert training_examples(pairs, seed=3) == ex


def test_tune_refuses_pairs_without_duplicates_and_a_used_out_dir(tmp_path):
    from qa_search.errors import QASearchError

    with pytest.raises(QASearchError, match="no duplicate pairs"):
        tune([LabelledPair("a", "b", 0)], tmp_path / "m")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("x")
    with pytest.raises(QASearchError, match="not empty"):
        tune(TEXT_PAIRS, tmp_path / "used")


@pytest.mark.slow
def test_the_ranking_loss_holds_a_duplicate_pair_in_both_directions():
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from qa_search.embedding.models import resolve_model

    model = SentenceTransformer(resolve_model(None)[1], device="cpu")
    unit = torch.nn.functional.normalize
    anchors = unit(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    # each anchor's own positive is its nearest, but the second positive is nearer the first
    # anchor than its own: right one way round, wrong the other
    positives = unit(torch.tensor([[1.0, 0.0], [1.2, 1.0]]))
    loss = ranking_loss(model)
    forward_only = MultipleNegativesRankingLoss(model)
    pair, swapped = [anchors, positives], [positives, anchors]
    assert float(forward_only.compute_loss_from_embeddings(pair, None)) != pytest.approx(
        float(forward_only.compute_loss_from_embeddings(swapped, None)), rel=0.05
    )
    # the tuning loss sees the pair both ways: swapping anchors and positives changes nothing,
    # and it charges for the positive that is nearer another anchor
    assert float(loss.compute_loss_from_embeddings(pair, None)) == pytest.approx(
        float(loss.compute_loss_from_embeddings(swapped, None))
    )
    assert float(loss.compute_loss_from_embeddings(pair, None)) > float(
        forward_only.compute_loss_from_embeddings(pair, None)
    )


def test_a_tuned_models_recipe_tells_older_tunings_apart(tmp_path):
    (tmp_path / "older").mkdir()  # what tune wrote before it recorded the recipe
    (tmp_path / "older" / SETTINGS_FILE).write_text(json.dumps({"tuned_from": "x", "index_settings": {}}))
    (tmp_path / "plain").mkdir()  # any other sentence-transformers directory
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / SETTINGS_FILE).write_text("{")
    assert tuned_recipe(tmp_path / "older") == 1
    assert tuned_recipe(tmp_path / "plain") is None and tuned_recipe(tmp_path / "missing") is None
    assert tuned_recipe(tmp_path / "damaged") is None


PROBES = ["night panic attacks", "burnout and my manager", "a couple's budget"]


@pytest.mark.slow
def test_tuning_changes_the_model_reproducibly_and_the_result_builds_an_index(tmp_path, real_embedder):
    first = tune(TEXT_PAIRS, tmp_path / "m1", epochs=1, batch_size=4, seed=7)
    assert (first.pairs, first.duplicates, first.non_duplicates, first.epochs) == (5, 2, 3, 1)
    assert first.steps >= 1 and first.seconds > 0
    assert tuned_recipe(first.out_dir) == RECIPE == 2
    tuned = load_embedder(first.out_dir, backend="torch")
    assert tuned.dimension == real_embedder.dimension
    base = load_embedder(None, backend="torch").encode(PROBES)
    after = tuned.encode(PROBES)
    assert np.max(np.abs(after - base)) > 1e-4  # training moved the weights
    # same data, same seed: the same weights
    second = tune(TEXT_PAIRS, tmp_path / "m2", epochs=1, batch_size=4, seed=7)
    np.testing.assert_array_equal(load_embedder(second.out_dir, backend="torch").encode(PROBES), after)
    # the tuned directory is a model the index takes
    index = ForumIndex(tuned, IndexConfig())
    index.upsert(THREADS)
    assert index.search("I keep waking up with panic at night", k=2)[0].thread_id in {"t1", "t2"}


@pytest.mark.slow
def test_cli_tunes_from_id_pairs_and_build_takes_the_model(tmp_path):
    dump = tmp_path / "forum.jsonl"
    write_dump(THREADS, dump)
    pairs = _write_lines(tmp_path / "ids.jsonl", [json.dumps(p) for p in ID_PAIRS])
    out = tmp_path / "model"
    runner = CliRunner()
    args = ["tune", "--pairs", str(pairs), "--corpus", str(dump), "--out", str(out)]
    settings = ["--epochs", "1", "--batch-size", "4", "--learning-rate", "3e-5"]
    result = runner.invoke(main, [*args, *settings, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # a warning about few pairs goes to stderr
    assert summary["pairs"] == 5 and summary["out_dir"] == str(out.resolve())
    assert summary["learning_rate"] == 3e-5
    assert (out / "modules.json").is_file()
    assert summary["index_settings"] == TUNED_INDEX_SETTINGS == model_index_settings(str(out))
    assert summary["recipe"] == RECIPE == tuned_recipe(out)
    built = runner.invoke(
        main,
        [
            "build",
            str(dump),
            "--index",
            str(tmp_path / "idx"),
            "--model",
            str(out),
            "--backend",
            "torch",
            "-q",
        ],
    )
    assert built.exit_code == 0, built.output
    assert "5 threads" in built.output
    assert "settings recommended by the tuned model: lexical_mode=fixed, lexical_weight=0.25" in built.output
    assert current_config(tmp_path / "idx").changed() == TUNED_INDEX_SETTINGS


def test_onnx_export_accepts_the_layout_sentence_transformers_6_saves(tmp_path):
    """A tuned model is saved in the v6 layout: pooling mode as a word, max length in the tokenizer."""
    from qa_search.embedding.onnx import _model_layout
    from qa_search.errors import ModelLoadError

    modules = [
        {
            "idx": 0,
            "name": "0",
            "path": "",
            "type": "sentence_transformers.base.modules.transformer.Transformer",
        },
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "x.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "x.Normalize"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "sentence_bert_config.json").write_text('{"transformer_task": "feature-extraction"}')
    (tmp_path / "tokenizer_config.json").write_text('{"model_max_length": 256}')
    pooling = tmp_path / "1_Pooling" / "config.json"
    pooling.write_text('{"embedding_dimension": 384, "pooling_mode": "mean", "include_prompt": true}')
    assert _model_layout(tmp_path) == (tmp_path, 256)
    pooling.write_text('{"embedding_dimension": 384, "pooling_mode": "cls"}')
    with pytest.raises(ModelLoadError, match="mean pooling only"):
        _model_layout(tmp_path)
