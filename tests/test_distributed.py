"""The Ray rebuild path equals the local path (local Ray, 2 CPUs)."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install 'qa-search[ray]')")

import conftest  # noqa: E402
from conftest import FakeEmbedder  # noqa: E402

from qa_search import Answer, ForumIndex, Thread  # noqa: E402
from qa_search.tools.distributed import upsert_on_ray  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # the fake embedder lives in tests/, which Ray's workers cannot import: ship it by value
    ray.cloudpickle.register_pickle_by_value(conftest)
    yield
    ray.shutdown()


def _threads(n: int, seed: int = 0) -> list[Thread]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(200)]

    def text(k: int) -> str:
        return " ".join(rng.choice(words, k))

    return [
        Thread(
            f"t{i}",
            text(6),
            body=text(12),
            answers=tuple(Answer(f"t{i}-a{j}", text(30)) for j in range(i % 3)),
        )
        for i in range(n)
    ]


def _contents(index: ForumIndex) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    q_ids, q_vecs = index._questions.vectors()
    a_ids, a_vecs = index._answers.vectors()
    return dict(index._parts), q_ids, q_vecs, a_ids, a_vecs


@pytest.mark.slow  # starting Ray takes 10-50 s on 2 cores
def test_ray_rebuild_gives_the_same_ids_and_vectors_as_the_local_path(local_ray):
    threads = _threads(120)
    local, remote = ForumIndex(FakeEmbedder()), ForumIndex(FakeEmbedder())
    local_stats = local.upsert(threads)
    remote_stats = upsert_on_ray(remote, threads, FakeEmbedder, actors=2)
    assert remote_stats == local_stats
    want, got = _contents(local), _contents(remote)
    assert got[0] == want[0]  # part id -> (thread, answer, chunk, hash)
    for w, g in zip(want[1:], got[1:], strict=True):
        assert np.array_equal(w, g) if w.dtype == np.int64 else np.allclose(w, g, atol=1e-6)
    assert remote.search("w1 w2 w3", k=5) == local.search("w1 w2 w3", k=5)

    # an incremental rebuild: unchanged texts are reused, only the edit goes to Ray
    edited = [Thread("t5", "an entirely new title", body=threads[5].body, answers=threads[5].answers)]
    assert upsert_on_ray(remote, edited, FakeEmbedder) == local.upsert(edited)
    assert _contents(remote)[0] == _contents(local)[0]
