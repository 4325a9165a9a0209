import numpy as np
import pytest

from qa_search import DEFAULT_MODEL, ModelLoadError, SentenceTransformerEmbedder
from qa_search.embedding import models as emb_mod
from qa_search.embedding.models import model_fingerprint, probe_vectors, resolve_model, same_model


def test_default_model_uses_the_packaged_copy_when_installed():
    name, source = resolve_model(None)
    assert name == DEFAULT_MODEL
    assert source == str(emb_mod.packaged_model_path())
    assert resolve_model("default") == resolve_model("all-MiniLM-L6-v2") == (name, source)


def test_default_model_falls_back_to_the_hub_name_without_the_package(monkeypatch):
    monkeypatch.setattr(emb_mod, "packaged_model_path", lambda: None)
    assert resolve_model(None) == (DEFAULT_MODEL, DEFAULT_MODEL)


def test_other_names_and_local_directories_pass_through(tmp_path):
    assert resolve_model("org/some-model") == ("org/some-model", "org/some-model")
    assert resolve_model(str(tmp_path)) == (str(tmp_path.resolve()), str(tmp_path.resolve()))


def test_fingerprints_tolerate_tiny_numeric_noise():
    rng = np.random.default_rng(0)
    probe = rng.standard_normal((3, 8)).astype(np.float32)
    assert same_model(probe, probe + 1e-5)
    assert not same_model(probe, rng.standard_normal((3, 8)))
    assert not same_model(probe, probe[:, :4])
    assert model_fingerprint(probe) == model_fingerprint(probe.copy())


@pytest.mark.slow
def test_real_model_embeds_normalised_float32_and_loads_from_a_path(real_embedder):
    vecs = real_embedder.encode(["How do I sleep better?", "Insomnia tips please", "My cat is sick"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]
    assert real_embedder.encode([]).shape == (0, 384)
    by_path = SentenceTransformerEmbedder(str(emb_mod.packaged_model_path()))
    assert by_path.name == str(emb_mod.packaged_model_path().resolve())
    # the default backend may be quantised (ONNX int8): it declares its own tolerance
    assert same_model(probe_vectors(by_path), probe_vectors(real_embedder), real_embedder.probe_min_cosine)


def test_a_directory_that_is_not_a_model_fails_clearly(tmp_path):
    (tmp_path / "README.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match="cannot load embedding model"):
        SentenceTransformerEmbedder(str(tmp_path))


def test_a_model_name_not_on_this_machine_fails_at_once_when_the_hub_is_out_of_reach(monkeypatch):
    from qa_search import load_embedder
    from qa_search.embedding import models as embedding

    # the message comes from the check made before any download is tried (offline, a download
    # retries for a minute or more before it fails)
    monkeypatch.setattr(embedding, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError, match="cannot be reached to download it"):
        load_embedder("no-such-org/no-such-model", backend="torch")


def test_behind_a_proxy_the_hub_check_leaves_the_decision_to_the_download(monkeypatch):
    import urllib.request

    from qa_search.embedding import models as embedding

    monkeypatch.setattr(urllib.request, "getproxies", lambda: {"https": "http://proxy.internal:3128"})
    assert embedding.hub_reachable(timeout=0.01) is True


def test_a_malformed_hub_endpoint_falls_back_to_the_default_host(monkeypatch):
    from huggingface_hub import constants

    from qa_search.embedding import models as embedding

    monkeypatch.setattr(constants, "ENDPOINT", "https://mirror.example:99999")
    assert embedding._hub_address() == ("huggingface.co", 443)
