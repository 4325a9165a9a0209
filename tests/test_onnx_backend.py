"""The ONNX Runtime backend against torch, with the real packaged model (slow: one export)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FakeEmbedder

from qa_search import ForumIndex, IncompatibleSnapshotError, ModelLoadError, Thread, load_embedder
from qa_search.embedding.onnx import MIN_INT8_COSINE, OnnxEmbedder

TEXTS = [
    "ok",
    "How do I stop texting my ex after a breakup?",
    "My therapist forgot what I told her last week. Should I say something, or find someone new?",
    "Is it normal to feel nothing at all after a loss? " * 40,  # beyond 256 tokens: truncated
    "Café, naïve, 日本語 and emoji 🙂 in one question",
]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_embedder():
    return load_embedder(backend="torch")


@pytest.fixture(scope="module")
def onnx_fp32(onnx_cache):
    return load_embedder(backend="onnx", onnx_cache_dir=onnx_cache)


@pytest.fixture(scope="module")
def onnx_int8(onnx_cache, onnx_fp32):  # after fp32: the export is made once, then reused
    return load_embedder(backend="onnx-int8", onnx_cache_dir=onnx_cache)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_onnx_fp32_matches_torch_across_lengths_and_batch_sizes(torch_embedder, onnx_fp32, batch_size):
    want = torch_embedder.encode(TEXTS, batch_size=batch_size)
    got = onnx_fp32.encode(TEXTS, batch_size=batch_size)
    assert got.shape == want.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cosines(got, want).min() >= 0.999


@pytest.mark.slow
def test_onnx_int8_stays_close_to_torch_and_ranks_the_same_nearest(torch_embedder, onnx_int8):
    assert onnx_int8.backend == "onnx-int8"
    want = torch_embedder.encode(TEXTS)
    got = onnx_int8.encode(TEXTS)
    cos = _cosines(got, want)
    assert cos.min() >= MIN_INT8_COSINE
    assert cos[1:].min() >= 0.98  # sentences; a two-letter text ("ok") is the worst case
    # the nearest neighbour of every text among the others is the same under both encoders
    np.fill_diagonal(sims_t := want @ want.T, -1)
    np.fill_diagonal(sims_q := got @ got.T, -1)
    assert sims_t.argmax(1).tolist() == sims_q.argmax(1).tolist()


@pytest.mark.slow
def test_export_is_cached_and_records_its_agreement(onnx_cache, onnx_fp32):
    exports = [p for p in onnx_cache.iterdir() if not p.name.startswith(".")]
    assert len(exports) == 1, "one export per model, reused by every precision"
    record = json.loads((exports[0] / "export.json").read_text())
    assert record["min_cosine_to_torch"]["fp32"] >= 0.999
    assert record["min_cosine_to_torch"]["int8"] >= MIN_INT8_COSINE
    assert (exports[0] / "model.onnx").stat().st_size > (exports[0] / "model.int8.onnx").stat().st_size
    again = OnnxEmbedder(cache_dir=onnx_cache)  # reuses the export: no torch involved
    assert again.export_dir == exports[0]
    assert np.array_equal(again.encode(TEXTS[:2]), onnx_fp32.encode(TEXTS[:2]))


@pytest.mark.slow
def test_snapshot_moves_between_backends_and_records_its_backend(tmp_path, torch_embedder, onnx_int8):
    threads = [Thread(str(i), t) for i, t in enumerate(TEXTS)]
    index = ForumIndex(torch_embedder)
    index.upsert(threads)
    index.save(tmp_path / "idx")
    manifest = json.loads(
        next((tmp_path / "idx" / "generations").iterdir()).joinpath("manifest.json").read_text()
    )
    assert manifest["model"]["backend"] == "torch"
    loaded = ForumIndex.load(tmp_path / "idx", onnx_int8)  # quantised queries, fp32 vectors
    assert loaded.search(TEXTS[2], k=1)[0].thread_id == "2"
    with pytest.raises(IncompatibleSnapshotError, match="fake-bow"):
        ForumIndex.load(tmp_path / "idx", FakeEmbedder(dimension=384))


def test_onnx_backend_refuses_models_it_cannot_export_faithfully(tmp_path):
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    with pytest.raises(ModelLoadError, match="mean pooling only"):
        OnnxEmbedder(str(tmp_path), cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="backend must be one of"):
        load_embedder(backend="tensorrt")


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_a_damaged_cached_export_is_made_again_not_trusted(tmp_path, onnx_cache, onnx_int8, monkeypatch,
                                                          caplog, damage):
    import shutil

    from qa_search.embedding import onnx as onnx_backend

    (pristine,) = [p for p in onnx_cache.iterdir() if not p.name.startswith(".")]
    assert "files" in json.loads((pristine / "export.json").read_text())  # checksums are recorded
    cache = tmp_path / "cache"
    shutil.copytree(pristine, cache / pristine.name)
    target = cache / pristine.name / "model.int8.onnx"
    data = bytearray(target.read_bytes())
    if damage == "truncate":  # a full disk, an interrupted copy
        target.write_bytes(bytes(data[: len(data) // 3]))
    else:  # same size, different bytes in the middle: still parses, gives wrong vectors
        mid = len(data) // 2
        data[mid : mid + 200_000] = b"\x7f" * 200_000
        target.write_bytes(bytes(data))
    exports = []

    def export_again(model_dir, out_dir):  # stands in for the minute-long export
        exports.append(out_dir)
        shutil.copytree(pristine, out_dir)
        return json.loads((out_dir / "export.json").read_text())

    monkeypatch.setattr(onnx_backend, "export_model", export_again)
    again = OnnxEmbedder(precision="int8", cache_dir=cache)
    assert exports == [cache / pristine.name] and "exporting again" in caplog.text
    assert np.array_equal(again.encode(TEXTS[:3]), onnx_int8.encode(TEXTS[:3]))


def test_an_unwritable_export_cache_or_a_malformed_model_is_a_model_load_error(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ModelLoadError, match="cannot write the ONNX export"):
        load_embedder(backend="onnx-int8", onnx_cache_dir=blocker / "onnx")
    # auto falls back to torch, saying why, rather than failing
    emb = load_embedder(backend="auto", onnx_cache_dir=blocker / "onnx")
    assert emb.backend == "torch" and "cannot write the ONNX export" in caplog.text
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "modules.json").write_text('{"a": 1}')
    with pytest.raises(ModelLoadError, match="not a sentence-transformers model directory"):
        OnnxEmbedder(str(tmp_path / "model"), cache_dir=tmp_path / "cache")
