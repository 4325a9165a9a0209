"""The shipped relevance model and duplicate calibration an index uses are recorded in its
snapshot: a package with other fitted values changes no existing index until it is told to."""

from __future__ import annotations

import copy
import json
import threading

import pytest
from conftest import FakeEmbedder

import qa_search.embedding.model_defaults as model_defaults_module
import qa_search.index.defaults as defaults_module
from qa_search import Answer, ForumIndex, Thread, build, configure_index, describe_index
from qa_search.cli import main
from qa_search.embedding.model_defaults import ShippedDefaults, model_defaults
from qa_search.embedding.models import DEFAULT_MODEL
from qa_search.storage.generations import resolve_snapshot
from qa_search.storage.snapshot import MANIFEST, file_sha256

THREADS = [
    Thread("a1", "how do I stop panic attacks at work", answers=(Answer("a1-1", "breathe slowly"),)),
    Thread("a2", "how can I stop my panic attacks at work"),
    Thread("b1", "my partner and I fight about money all the time"),
    Thread("b2", "my partner and I always fight about money"),
    Thread("c1", "is it normal to feel numb after a loss"),
]


def _fitted(duplicate_tier: float, intercept: float) -> dict:
    """Shipped defaults as a package would hold them for the fake model: the real file's, with
    the duplicate tier and the relevance model's intercept set to tell versions apart."""
    content = copy.deepcopy(model_defaults(DEFAULT_MODEL))
    content["duplicate_calibration"]["tiers"]["duplicate"] = duplicate_tier
    content["relevance"]["intercept"] = intercept
    return content


OLD, NEW = _fitted(0.8, -14.0), _fitted(0.6, -4.0)


@pytest.fixture
def package(monkeypatch):
    """``package["content"]`` is what the installed package ships for the fake model."""
    state = {"content": OLD}
    real = model_defaults_module.model_defaults
    monkeypatch.setattr(
        model_defaults_module,
        "model_defaults",
        lambda model: state["content"] if model == "fake-bow" else real(model),
    )
    return state


def _built(tmp_path) -> str:
    index = ForumIndex(FakeEmbedder())
    index.upsert(THREADS)
    index.save(tmp_path / "ix")
    return str(tmp_path / "ix")


def _relevance(index: ForumIndex) -> list[float | None]:
    return [h.relevance for h in index.search("panic attacks at work", k=3)]


def test_an_index_keeps_the_defaults_it_was_built_with_until_refreshed(package, fake_cli, tmp_path):
    # fake_cli: configure loads the fake model by the name the snapshot records
    ix = _built(tmp_path)
    before = ForumIndex.load(ix, FakeEmbedder())
    assert before.duplicate_cutoff() == (0.8, "calibrated")
    relevance_before = _relevance(before)
    # the package is upgraded: other fitted values for the same model
    package["content"] = NEW
    fresh = ForumIndex(FakeEmbedder())
    fresh.upsert(THREADS)
    assert fresh.duplicate_cutoff() == (0.6, "calibrated")  # a new index takes the package's
    assert _relevance(fresh) != relevance_before
    kept = ForumIndex.load(ix, FakeEmbedder())
    assert kept.duplicate_cutoff() == (0.8, "calibrated")
    assert _relevance(kept) == relevance_before
    described = describe_index(ix).defaults
    assert described["recorded"] and not described["current"] and described["calibration"] == "shipped"
    assert described["shipped"]["sha256"] == ShippedDefaults.of("fake-bow", OLD).sha256
    # a full rebuild with the same model, and reconfiguring, keep them too
    build(ix, THREADS)
    assert ForumIndex.load(ix, FakeEmbedder()).duplicate_cutoff() == (0.8, "calibrated")
    done = configure_index(ix, {"lexical_weight": 0.2})
    assert done.published is not None and not done.defaults["current"]
    assert ForumIndex.load(ix, FakeEmbedder()).duplicate_cutoff() == (0.8, "calibrated")
    # refreshing adopts the package's
    done = configure_index(ix, refresh_defaults=True)
    assert done.published is not None and done.defaults["current"] and done.defaults["recorded"]
    refreshed = ForumIndex.load(ix, FakeEmbedder())
    assert refreshed.duplicate_cutoff() == (0.6, "calibrated")
    assert _relevance(refreshed) == _relevance(fresh)
    assert refreshed.config.lexical_weight == 0.2
    # asking again publishes nothing
    again = configure_index(ix, refresh_defaults=True)
    assert again.published is None and again.generation == done.generation


def test_a_snapshot_written_before_the_record_uses_the_packages_until_refreshed(package, fake_cli, tmp_path):
    ix = _built(tmp_path)
    snap = resolve_snapshot(ix)
    # as an older version wrote it: no record, no file
    (snap / "shipped_defaults.json").unlink()
    manifest = json.loads((snap / MANIFEST).read_text())
    del manifest["shipped_defaults"], manifest["files"]["shipped_defaults.json"]
    (snap / MANIFEST).write_text(json.dumps(manifest))
    package["content"] = NEW
    old = ForumIndex.load(ix, FakeEmbedder())
    assert old.shipped_defaults is None
    assert old.duplicate_cutoff() == (0.6, "calibrated")
    described = describe_index(ix).defaults
    assert not described["recorded"] and described["current"]
    done = configure_index(ix, refresh_defaults=True)
    assert done.published is not None and done.defaults["recorded"]
    new_snap = resolve_snapshot(ix)
    assert json.loads((new_snap / MANIFEST).read_text())["files"]["shipped_defaults.json"]["sha256"] == (
        file_sha256(new_snap / "shipped_defaults.json")
    )
    package["content"] = OLD
    assert ForumIndex.load(ix, FakeEmbedder()).duplicate_cutoff() == (0.6, "calibrated")


def test_an_index_of_a_model_with_no_shipped_defaults_records_none(tmp_path):
    ix = _built(tmp_path)
    assert not (resolve_snapshot(ix) / "shipped_defaults.json").exists()
    described = describe_index(ix).defaults
    assert described == {"calibration": "none", "shipped": None, "recorded": True, "current": True,
                         "reranker": False, "verdicts": "cosine"}
    assert ForumIndex.load(ix, FakeEmbedder()).duplicate_cutoff()[1] == "cosine"


def test_its_own_calibration_is_named_as_such(package, tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert(THREADS)
    ids = [t.id for t in THREADS]
    pairs = [(a, b) for a in ids for b in ids if a < b]
    index.calibrate(pairs, [int(a[0] == b[0]) for a, b in pairs])
    index.save(tmp_path / "ix")
    assert describe_index(tmp_path / "ix").defaults["calibration"] == "own"


class _ArrivalLock:
    """A lock that reports each caller as it asks for it, before it waits."""

    def __init__(self, arrive) -> None:
        self._lock = threading.Lock()
        self._arrive = arrive

    def __enter__(self) -> bool:
        self._arrive()
        return self._lock.__enter__()

    def __exit__(self, *exc) -> None:
        self._lock.__exit__(*exc)


def test_callers_arriving_together_on_a_fresh_index_share_one_measure_of_its_scale(package, monkeypatch):
    index = ForumIndex(FakeEmbedder())
    # enough questions for the forum's scale to be measured (and a calibration of its own made)
    index.upsert([Thread(f"q{i}", f"how do I cope with worry {i % 7} and sleep {i % 5} at night {i}")
                  for i in range(2 * defaults_module.SCALE_MIN_QUESTIONS)])
    callers = 6
    guard = threading.Lock()
    arrived: set[int] = set()
    everyone = threading.Event()
    measures: list[int] = []
    all_arrived_first: list[bool] = []

    def arrive() -> None:
        with guard:
            arrived.add(threading.get_ident())
            if len(arrived) == callers:
                everyone.set()

    real = defaults_module.neighbour_quartiles

    def measure(ix, *args, **kwargs):
        with guard:
            measures.append(threading.get_ident())
        arrive()
        # a measure goes on only once every caller has arrived: none is stored before they have
        all_arrived_first.append(everyone.wait(timeout=30))
        return real(ix, *args, **kwargs)

    monkeypatch.setattr(defaults_module, "neighbour_quartiles", measure)
    # a caller that waits for the first measure has arrived once it asks for the index's lock
    index.__dict__["_shipped_calibration_lock"] = _ArrivalLock(arrive)
    start = threading.Barrier(callers)
    got: list[object] = [None] * callers

    def call(i: int) -> None:
        start.wait(timeout=30)
        got[i] = defaults_module.duplicate_calibration(index)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert all_arrived_first and all(all_arrived_first)
    assert len(measures) == 1
    assert got[0] is not None and all(g is got[0] for g in got)
    assert got[0] is not defaults_module.shipped_calibration(index)  # put on the forum's scale
    assert defaults_module.duplicate_calibration(index) is got[0]  # and kept
    assert len(measures) == 1


def test_a_damaged_record_is_refused_not_used():
    record = ShippedDefaults.of("fake-bow", OLD)
    assert ShippedDefaults.from_bytes(record.to_bytes()) == record
    tampered = json.loads(record.to_bytes())
    tampered["duplicate_calibration"]["tiers"]["duplicate"] = 0.1
    with pytest.raises(ValueError, match="do not match their SHA-256"):
        ShippedDefaults.from_bytes(json.dumps(tampered).encode())
    with pytest.raises(ValueError, match="not a record"):
        ShippedDefaults.from_bytes(b"[1, 2]")


def test_configure_refresh_defaults_and_info_on_the_command_line(package, fake_cli, tmp_path):
    ix = _built(tmp_path)
    r = fake_cli.invoke(main, ["info", ix])
    assert r.exit_code == 0, r.output
    assert "duplicate verdicts: the shipped calibration" in r.output
    assert "recorded in the snapshot" in r.output and "--refresh-defaults" not in r.output
    package["content"] = NEW
    r = fake_cli.invoke(main, ["info", ix])
    assert "the package has others (configure --refresh-defaults adopts them)" in r.output
    r = fake_cli.invoke(main, ["configure", ix, "--refresh-defaults", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["generation"] == 2 and out["defaults"]["current"]
    assert out["defaults"]["shipped"]["sha256"] == ShippedDefaults.of("fake-bow", NEW).sha256
    r = fake_cli.invoke(main, ["configure", ix, "--refresh-defaults"])
    assert r.exit_code == 0 and "nothing published" in r.output and "recorded in the snapshot" in r.output
