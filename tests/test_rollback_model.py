"""Generations, the live-write log, rollbacks and pruning against a small reference model of what
they mean: random sequences of live writes, builds, updates, operator deletes, rollbacks (to any
kept generation, older or newer; some killed after they set the write log and before they moved
CURRENT) and prunes, and after every step a freshly started LiveIndex must serve what the model
says.

The model: each generation G has a state S(G) and the set held(G) of live writes it holds,
held(G) = held(parent) + the writes folded into G. The service serves S(current) with the pending
writes applied in order. A rollback from C to T puts back the writes held(C) holds and held(T)
does not (in the order they were acknowledged) ahead of the pending ones T does not hold. A prune
changes neither what is served nor what later rollbacks do."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from conftest import FakeEmbedder

from qa_search import LiveIndex, Thread, UnknownThreadError
from qa_search.operations.changes import delete_threads, update_index
from qa_search.operations.lifecycle import build_index
from qa_search.storage.generations import (
    current_generation,
    list_generations,
    prune,
    rollback,
    serving_generation,
    writer_lock,
)
from qa_search.storage.writelog import writes_for_switch

#: The dumps a build may index (each a few threads; some ids and titles shared, some not).
DUMPS = [
    {"d1": "can a weighted blanket help me sleep", "d2": "talking to my sister about money",
     "d3": "panic attacks before exams"},
    {"d1": "weighted blankets and sleep, second dump", "d3": "panic attacks before exams",
     "d4": "how to stop overthinking at night"},
    {"d2": "money worries and my sister, third dump", "d5": "feeling lonely after moving cities"},
]
#: The ids live writes, updates and deletes pick from: live-only ones and some of the dumps'.
POOL = ["w1", "w2", "w3", "w4", "d1", "d2", "d4"]
STEPS = 20
SEQUENCES = 40


@dataclass
class Write:
    number: int  # the order it was acknowledged in
    op: str  # "upsert" (``threads`` id -> title) or "delete" (``ids``)
    threads: dict[str, str] = field(default_factory=dict)
    ids: tuple[str, ...] = ()

    def apply(self, state: dict[str, str]) -> None:
        if self.op == "upsert":
            state.update(self.threads)
        else:
            for tid in self.ids:
                state.pop(tid, None)


@dataclass
class Model:
    states: dict[int, dict[str, str]] = field(default_factory=dict)
    held: dict[int, frozenset[int]] = field(default_factory=dict)
    parent: dict[int, int | None] = field(default_factory=dict)
    writes: dict[int, Write] = field(default_factory=dict)
    pending: list[Write] = field(default_factory=list)
    kept: set[int] = field(default_factory=set)
    current: int | None = None

    def served(self) -> dict[str, str]:
        state = dict(self.states[self.current]) if self.current is not None else {}
        for w in self.pending:
            w.apply(state)
        return state

    def log(self, op: str, **what) -> None:
        w = Write(len(self.writes) + 1, op, **what)
        self.writes[w.number] = w
        self.pending.append(w)

    def publish(self, state: dict[str, str], keep: int) -> None:
        g = len(self.states) + 1  # numbers are never reused, even once pruned
        parent_held = self.held[self.current] if self.current is not None else frozenset()
        self.states[g] = state
        self.held[g] = parent_held | {w.number for w in self.pending}
        self.parent[g] = self.current
        self.pending, self.current = [], g
        self.kept.add(g)
        self.prune(keep)

    def prune(self, keep: int) -> None:
        self.kept = set(sorted(self.kept)[-keep:]) | {self.current}

    def rollback(self, to: int) -> None:
        target = self.held[to]
        restored = sorted(self.held[self.current] - target)
        kept = [w for w in self.pending if w.number not in target]
        self.pending = [self.writes[n] for n in restored] + kept
        self.current = to


def _threads(titles: dict[str, str]) -> list[Thread]:
    return [Thread(tid, title) for tid, title in titles.items()]


def _edits(rng: random.Random, step: int, who: str) -> dict[str, str]:
    ids = rng.sample(POOL, rng.choice([1, 1, 2]))
    return {tid: f"{tid} {who} edit {step} about sleep and money" for tid in ids}


def _next_op(rng: random.Random, model: Model, step: int) -> tuple:
    """A random operation that makes sense in the model's state."""
    if model.current is None:
        return ("build", rng.randrange(len(DUMPS)), 100)
    targets = sorted(model.kept - {model.current})
    while True:
        kind = rng.choices(
            ["live_upsert", "live_delete", "build", "update", "delete", "rollback", "rollback_killed",
             "prune"],
            weights=[6, 3, 3, 2, 2, 4, 1, 1],
        )[0]
        keep = rng.choice([3, 100, 100])  # what a publish prunes to afterwards
        if kind == "live_upsert":
            return (kind, _edits(rng, step, "live"))
        if kind == "live_delete":  # an id nothing holds is logged all the same
            return (kind, tuple(rng.sample([*POOL, "d3", "nowhere"], rng.choice([1, 1, 2]))))
        if kind == "build":
            return (kind, rng.randrange(len(DUMPS)), keep)
        if kind == "update":
            return (kind, _edits(rng, step, "operator"), keep)
        if kind == "delete":
            ids = tuple(rng.sample([*POOL, "d3", "nowhere"], rng.choice([1, 2])))
            return (kind, ids, rng.random() < 0.8, keep)
        if kind in ("rollback", "rollback_killed") and targets:
            return (kind, rng.choice(targets))
        if kind == "prune":
            return (kind, rng.choice([2, 3]))


def apply_op(op: tuple, idx, model: Model, embedder: FakeEmbedder) -> None:
    """Do ``op`` to the index directory and to the model."""
    kind = op[0]
    if kind == "live_upsert":
        LiveIndex(idx, embedder).upsert(_threads(op[1]))
        model.log("upsert", threads=dict(op[1]))
    elif kind == "live_delete":
        LiveIndex(idx, embedder).delete(list(op[1]))
        model.log("delete", ids=op[1])
    elif kind == "build":
        dump = DUMPS[op[1]]
        build_index(idx, _threads(dump), embedder, keep=op[2])
        state = dict(dump)
        for w in model.pending:
            w.apply(state)
        model.publish(state, op[2])
    elif kind == "update":
        update_index(idx, _threads(op[1]), embedder, keep=op[2])
        model.publish({**model.served(), **op[1]}, op[2])
    elif kind == "delete":
        _, ids, missing_ok, keep = op
        served = model.served()
        if not missing_ok and any(tid not in served for tid in ids):
            with pytest.raises(UnknownThreadError):
                delete_threads(idx, list(ids), embedder, missing_ok=False, keep=keep)
            return
        delete_threads(idx, list(ids), embedder, missing_ok=missing_ok, keep=keep)
        if any(tid in served for tid in ids):  # else nothing is published
            model.publish({k: v for k, v in served.items() if k not in ids}, keep)
    elif kind == "rollback":
        assert rollback(idx, to=op[1]) == op[1]
        model.rollback(op[1])
    elif kind == "rollback_killed":  # killed after it set the log, before it moved CURRENT
        with writer_lock(idx):  # as a rollback holds it (which finishes an earlier killed one)
            writes_for_switch(idx, current_generation(idx), op[1])
        model.rollback(op[1])  # served as meant at once; the next writer finishes it
    elif kind == "prune":
        prune(idx, keep=op[1])
        model.prune(op[1])
    else:
        raise ValueError(kind)


def check(idx, model: Model, embedder: FakeEmbedder) -> str | None:
    """What differs between the index directory and the model (None when nothing does)."""
    if serving_generation(idx) != model.current or list_generations(idx) != sorted(model.kept):
        return (f"generations {list_generations(idx)} (serving {serving_generation(idx)}), "
                f"the model keeps {sorted(model.kept)} (current {model.current})")
    with LiveIndex(idx, embedder).reading() as index:
        served = {t.id: t.title for t in index.threads()}
    expected = model.served()
    if served != expected:
        wrong = sorted(k for k in served.keys() | expected.keys() if served.get(k) != expected.get(k))
        return "; ".join(f"{k}: served {served.get(k)!r}, the model {expected.get(k)!r}" for k in wrong)
    return None


def run_ops(ops: list[tuple], idx, embedder: FakeEmbedder | None = None) -> tuple[int, str] | None:
    """Replay ``ops`` (as the random test records them), checking after each; returns the step
    that first went wrong and how, or None. Operations that make no sense in the model's state
    (a rollback to a generation not kept) are skipped, so a shortened sequence still runs."""
    embedder = embedder or FakeEmbedder()
    model = Model()
    for step, op in enumerate(ops):
        if model.current is None and op[0] != "build":
            continue
        if op[0].startswith("rollback") and (op[1] not in model.kept or op[1] == model.current):
            continue
        apply_op(op, idx, model, embedder)
        problem = check(idx, model, embedder)
        if problem:
            return step, problem
    return None


@pytest.mark.parametrize("seed", range(SEQUENCES))
def test_random_writes_builds_rollbacks_and_prunes_serve_what_the_model_says(tmp_path, seed):
    rng = random.Random(seed)
    embedder = FakeEmbedder()
    idx = tmp_path / "idx"
    model = Model()
    ops: list[tuple] = []
    for step in range(STEPS):
        op = _next_op(rng, model, step)
        ops.append(op)
        apply_op(op, idx, model, embedder)
        problem = check(idx, model, embedder)
        assert problem is None, f"seed {seed}, after step {step} of {ops}: {problem}"


# The two sequences below are the shortest the random runs found where the index parted from the
# model, before a prune kept the record of what a generation between kept ones had folded in
# (DIR/pruned/): both turn on such a generation being pruned.

W1 = {"w1": "w1 live edit about sleep"}


def test_rolling_forward_does_not_bring_back_a_write_the_target_holds_through_a_pruned_generation(tmp_path):
    ops = [
        ("build", 0, 3),  # 1
        ("live_upsert", W1),
        ("build", 0, 3),  # 2 on 1 folds the write in first
        ("rollback", 1),  # the write back in the log, first folded in by 2
        ("build", 0, 3),  # 3 on 1 folds it in again
        ("rollback", 1),  # back in the log once more
        ("build", 0, 3),  # 4 on 1 folds it in a third time; 1 is pruned
        ("rollback", 3),
        ("delete", ("w1",), False, 3),  # 5 on 3: the moderator deletes w1
        ("update", {"d1": "d1 operator edit about sleep"}, 3),  # 6 on 5; 2 and 3 are pruned
        ("rollback", 4),
        ("rollback", 6),  # 6 holds the write (through 3) and w1's delete: w1 must stay deleted
    ]
    assert run_ops(ops, tmp_path / "idx") is None


def test_a_rollback_past_a_pruned_generation_keeps_the_writes_it_folded_in(tmp_path):
    ops = [
        ("build", 0, 100),  # 1
        ("live_upsert", W1),
        ("build", 0, 100),  # 2 folds the write in
        ("build", 0, 100),  # 3 on 2
        ("rollback", 1),  # the write back in the log
        ("prune", 1),  # keeps 3 and the current 1; 2 goes
        ("rollback", 3),  # 3 holds the write (through 2): it leaves the log
        ("rollback", 1),  # 1 does not hold it: it must come back, w1 served
    ]
    idx = tmp_path / "idx"
    assert run_ops(ops, idx) is None
    assert [p.name for p in (idx / "pruned").iterdir()] == ["000002.jsonl"]
    prune(idx, keep=1)  # 3 is the newest, 1 the current: the record stays between them
    assert list_generations(idx) == [1, 3] and (idx / "pruned" / "000002.jsonl").is_file()
    # once only one generation is kept, no rollback can need the record: it goes
    rollback(idx, to=3)
    prune(idx, keep=1)
    assert list_generations(idx) == [3] and list((idx / "pruned").iterdir()) == []
