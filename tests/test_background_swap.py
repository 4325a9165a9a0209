"""A new generation is loaded by the watcher while the old one serves: a request never waits for
a load, a failed load keeps the old generation serving and is reported and tried again.

The loads are made slow or failing through the handle's loader (no sleeps): a request that
waited for the load would not come back while the load is held, which each test checks with a
bound far above what a request takes.
"""

import threading
import time

import pytest
from conftest import TWO_THREADS, FakeEmbedder, two_thread_index

from qa_search import ForumIndex, LiveIndex, SnapshotError, Thread
from qa_search.storage.generations import rollback
from service.metrics import Metrics

BASE = TWO_THREADS
NEW = Thread("d", "my dog died and I cannot stop crying")


@pytest.fixture
def index_dir(tmp_path):
    return two_thread_index(tmp_path / "idx")


def _publish(index_dir):
    """Another process publishes generation 2, which holds NEW."""
    newer = ForumIndex(FakeEmbedder())
    newer.upsert([*BASE, NEW])
    newer.save(index_dir)


class Loader:
    """ForumIndex.load, held until the test releases it, or failing while ``broken``."""

    def __init__(self, *, held: bool = False, broken: bool = False) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        if not held:
            self.release.set()
        self.broken = broken
        self.calls = 0

    def __call__(self, path, embedder):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(30)
        if self.broken:
            raise SnapshotError(f"{path}: manifest.json is damaged")
        return ForumIndex.load(path, embedder)


def _eventually(check, seconds: float = 20.0) -> bool:
    """Whether ``check`` comes true within ``seconds`` (the watcher works in its own thread)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def _ids(live: LiveIndex, text: str) -> list[str]:
    """A request's answer; it fails the test if the request does not come back (it waited)."""
    out: list[list[str]] = []
    request = threading.Thread(target=lambda: out.append([h.thread_id for h in live.search(text, k=3)]))
    request.start()
    request.join(timeout=10)
    assert not request.is_alive(), "the request waited for the generation being loaded"
    return out[0]


def test_requests_during_a_slow_load_answer_from_the_old_generation_until_the_swap(index_dir):
    live = LiveIndex(index_dir, FakeEmbedder())
    live._loader = loader = Loader(held=True)
    live.start(0.01)
    try:
        _publish(index_dir)
        assert loader.entered.wait(10) and live.loading_generation == 2
        for _ in range(3):
            assert "d" not in _ids(live, NEW.title)
            assert live.generation == 1
        # writes go on meanwhile, into the old generation and then onto the new one
        live.upsert(Thread("w", "a write made while the new generation loads"))
        assert "w" in _ids(live, "a write made while the new generation loads")
        loader.release.set()
        assert _eventually(lambda: live.generation == 2)
        assert live.loading_generation is None and loader.calls == 1
        assert _ids(live, NEW.title)[0] == "d"
        assert "w" in live.index and "a" in live.index
    finally:
        loader.release.set()
        live.stop()


def test_a_request_that_meets_a_rollback_wakes_the_watcher_and_does_not_load_it(index_dir):
    _publish(index_dir)
    live = LiveIndex(index_dir, FakeEmbedder())
    assert live.generation == 2
    live._loader = loader = Loader(held=True)
    live.start(3600)  # no tick in this test: only a request can wake the watcher
    try:
        rollback(index_dir, to=1)
        assert _ids(live, NEW.title)[0] == "d"  # still generation 2's answer
        assert loader.entered.wait(10)  # the request woke the watcher, which loads 1
        assert live.generation == 2 and "d" in _ids(live, NEW.title)
        loader.release.set()
        assert _eventually(lambda: live.generation == 1)
        assert "d" not in _ids(live, NEW.title)
    finally:
        loader.release.set()
        live.stop()


def test_a_failing_load_keeps_the_old_generation_serving_is_reported_and_tried_again(
    index_dir, monkeypatch
):
    monkeypatch.setattr(LiveIndex, "retry_seconds", 0.01)
    live = LiveIndex(index_dir, FakeEmbedder())
    live._loader = loader = Loader(broken=True)
    metrics = Metrics()
    metrics.track(live)
    live.start(0.01)
    try:
        _publish(index_dir)
        assert _eventually(lambda: loader.calls >= 3)  # tried again, not given up on
        assert live.generation == 1 and live.load_failures >= 2
        assert live.load_error is not None and "generation 2" in live.load_error
        assert _ids(live, "how to sleep better at night")[0] == "a"
        page = metrics.render().decode()
        assert "qa_search_generation_load_failing 1.0" in page
        assert "qa_search_generation_load_failures_total" in page
        assert "qa_search_index_generation 1.0" in page
        loader.broken = False  # repaired: the next try swaps
        assert _eventually(lambda: live.generation == 2)
        assert live.load_error is None and _ids(live, NEW.title)[0] == "d"
        assert "qa_search_generation_load_failing 0.0" in metrics.render().decode()
    finally:
        live.stop()


def test_without_a_watcher_the_call_that_notices_a_rollback_loads_it(index_dir):
    # a script's handle (no watcher thread): nothing else would load it
    _publish(index_dir)
    live = LiveIndex(index_dir, FakeEmbedder())
    live._loader = loader = Loader()
    rollback(index_dir, to=1)
    with live.reading() as index:
        assert live.generation == 1 and "d" not in index
    assert loader.calls == 1


def test_duplicate_verdicts_name_the_scorer_of_the_generation_that_judged_them(index_dir):
    """A swap that comes while a duplicates request reads must not label generation 1's hits
    (raw cosines) with generation 2's calibrated scorer."""
    from conftest import calibrated_sample_index

    live = LiveIndex(index_dir, FakeEmbedder())
    calibrated_sample_index().save(index_dir)  # generation 2: calibrated
    loaded = threading.Event()

    def load(path, embedder):
        fresh = ForumIndex.load(path, embedder)
        loaded.set()
        return fresh

    live._loader = load
    swap = threading.Thread(target=live.check_generation)
    first = live.index.find_duplicates

    def swap_meanwhile(*args, **kwargs):
        swap.start()
        assert loaded.wait(30)  # generation 2 is loaded and now waits to be swapped in
        time.sleep(0.05)
        return first(*args, **kwargs)

    live.index.find_duplicates = swap_meanwhile
    found = live.duplicate_verdicts(TWO_THREADS[0].title, threshold=0.0)
    swap.join(30)
    assert live.generation == 2
    assert {h.thread_id for h in found.hits} <= {"a", "b"} and found.hits
    assert found.scorer == "cosine"
    text = "I feel anxious all the time"
    after = live.duplicate_verdicts(text)
    assert after.scorer == "calibrated"
    assert [h.thread_id for h in after.hits] == [h.thread_id for h in live.find_duplicates(text)]
