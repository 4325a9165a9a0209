"""A full sync and an incremental sync of a Question2Answer database, with the real model.

    .venv/bin/python benchmarks/sync.py [--threads 10000] [--edit 0.01] [--url URL] [--workdir DIR]

The forum is written into a Question2Answer-shaped database (its ``qa_posts`` and
``qa_categories`` columns, tables prefixed ``qabench_`` so that a scratch database on a real
server is not confused with a forum): a SQLite file by default, or the database at ``--url``
(``mysql+pymysql://...``, ``postgresql+psycopg://...``), whose ``qabench_`` tables are replaced.
Questions are Quora questions (../shared/data/quora/corpus.jsonl.gz) where that file is present,
otherwise generated sentences; each has one or two answers and a third of them a comment, and 2%
are hidden. The first sync reads and embeds everything; then ``--edit`` of the threads change
(half an edited question, half a new answer), 0.5% are hidden, and a second sync reads only
what changed. Times are wall time of ``sync_index`` (reading, embedding, writing, publishing),
the model already loaded. Prints a table, then the same figures as JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from qa_search import load_embedder, sync_index

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "quora" / "corpus.jsonl.gz"
PREFIX = "qabench_"
T0 = datetime(2026, 1, 1, 8, 0, 0)
WORDS = [
    "sleep", "anxiety", "panic", "exam", "work", "night", "family", "friend", "doctor", "therapy",
    "breathing", "walk", "music", "morning", "stress", "worry", "heart", "racing", "tired",
    "lonely", "grief", "support", "talk", "help", "week", "month",
]


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` short questions: Quora's where the shared data is there, generated otherwise."""
    if CORPUS.is_file():
        out = []
        with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
            for line in fh:
                out.append(json.loads(line)["text"])
                if len(out) >= n:
                    return out
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, int(rng.integers(6, 14)))).capitalize() + "?" for _ in range(n)]


def create_forum(engine: sa.Engine, n: int, seed: int = 0) -> list[int]:
    """Write ``n`` questions with their answers; returns the ids of those not hidden."""
    meta = sa.MetaData()
    sa.Table(f"{PREFIX}categories", meta, sa.Column("categoryid", sa.Integer, primary_key=True),
             sa.Column("title", sa.String(80)))
    posts = sa.Table(
        f"{PREFIX}posts", meta,
        sa.Column("postid", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(10), nullable=False), sa.Column("parentid", sa.Integer),
        sa.Column("categoryid", sa.Integer), sa.Column("selchildid", sa.Integer),
        sa.Column("closedbyid", sa.Integer), sa.Column("netvotes", sa.Integer, server_default="0"),
        sa.Column("format", sa.String(20), server_default=""), sa.Column("created", sa.DateTime),
        sa.Column("updated", sa.DateTime), sa.Column("title", sa.String(800)),
        sa.Column("content", sa.Text), sa.Column("tags", sa.String(800)),
        sa.Index(f"{PREFIX}parent", "parentid", "type"),
    )
    texts = sentences(5 * n, seed)
    rng = np.random.default_rng(seed)
    rows, questions, next_id = [], [], 1
    for i in range(n):
        qid, next_id = next_id, next_id + 1
        hidden = rng.random() < 0.02
        if not hidden:
            questions.append(qid)
        rows.append(dict(postid=qid, type="Q_HIDDEN" if hidden else "Q", parentid=None, categoryid=1 + i % 5,
                         selchildid=None, closedbyid=None, netvotes=int(rng.integers(0, 9)), format="",
                         created=T0 + timedelta(minutes=i), updated=None, title=texts[i],
                         content=texts[n + i], tags="stress,sleep"))
        for _ in range(int(rng.integers(1, 3))):
            body = " ".join(texts[k] for k in rng.integers(2 * n, 5 * n, 2)) + " Hope this helps."
            rows.append(dict(postid=next_id, type="A", parentid=qid, categoryid=None, selchildid=None,
                             closedbyid=None, netvotes=int(rng.integers(0, 5)), format="",
                             created=T0 + timedelta(minutes=i, seconds=1), updated=None, title=None,
                             content=body, tags=None))
            next_id += 1
        if i % 3 == 0:
            rows.append(dict(postid=next_id, type="C", parentid=qid, categoryid=None, selchildid=None,
                             closedbyid=None, netvotes=0, format="", created=T0 + timedelta(minutes=i),
                             updated=None, title=None, content="Same here.", tags=None))
            next_id += 1
    with engine.begin() as conn:
        meta.drop_all(conn)
        meta.create_all(conn)
        conn.execute(meta.tables[f"{PREFIX}categories"].insert(),
                     [{"categoryid": c, "title": f"Category {c}"} for c in range(1, 6)])
        for start in range(0, len(rows), 5000):
            conn.execute(posts.insert(), rows[start:start + 5000])
    return questions


def change_forum(engine: sa.Engine, questions: list[int], fraction: float, seed: int = 1) -> tuple[int, int]:
    """Edit ``fraction`` of the questions (half the question, half a new answer) and hide 0.5%;
    returns (threads edited, threads hidden)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(questions), int(round(fraction * len(questions))) + len(questions) // 200,
                        replace=False).tolist()
    n_hidden = len(questions) // 200
    later = T0 + timedelta(minutes=len(questions) * 2)  # after every post
    mysql = engine.dialect.name in ("mysql", "mariadb")
    edited = "CONCAT(content, ' (edited)')" if mysql else "content || ' (edited)'"
    with engine.begin() as conn:
        next_id = conn.execute(sa.text(f"SELECT MAX(postid) + 1 FROM {PREFIX}posts")).scalar()
        for k, i in enumerate(chosen[n_hidden:]):
            qid = questions[i]
            if k % 2 == 0:
                sql = f"UPDATE {PREFIX}posts SET content = {edited}, updated = :at WHERE postid = :q"
                conn.execute(sa.text(sql),
                             {"at": later, "q": qid})
            else:
                conn.execute(sa.text(f"INSERT INTO {PREFIX}posts (postid, type, parentid, netvotes, format, "
                                     "created, content) VALUES (:id, 'A', :q, 0, '', :at, :body)"),
                             {"id": next_id, "q": qid, "at": later, "body": f"A new answer, number {k}."})
                next_id += 1
        for i in chosen[:n_hidden]:
            sql = f"UPDATE {PREFIX}posts SET type = 'Q_HIDDEN', updated = :at WHERE postid = :q"
            conn.execute(sa.text(sql),
                         {"at": later, "q": questions[i]})
    return len(chosen) - n_hidden, n_hidden


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=10_000)
    ap.add_argument("--edit", type=float, default=0.01, help="fraction of threads edited")
    ap.add_argument("--url", default=None, help="a scratch database (default: a SQLite file in the workdir)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the index goes (default: a temp dir)")
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="qa-search-sync-"))
    work.mkdir(parents=True, exist_ok=True)
    index_dir = work / "index"
    shutil.rmtree(index_dir, ignore_errors=True)
    url = args.url or f"sqlite:///{work / 'forum.sqlite'}"
    engine = sa.create_engine(url)
    questions = create_forum(engine, args.threads)

    started = time.perf_counter()
    embedder = load_embedder()
    load_s = time.perf_counter() - started
    full = sync_index(index_dir, url, schema="q2a", prefix=PREFIX, embedder=embedder)
    edited, hidden = change_forum(engine, questions, args.edit)
    incremental = sync_index(index_dir, url, schema="q2a", prefix=PREFIX, embedder=embedder,
                             allow_removals=True)
    engine.dispose()

    where = engine.dialect.name
    print(f"{full.threads} threads in a {where} database; {edited} edited and {hidden} hidden before the "
          f"second sync; model load {load_s:.1f} s (not counted)")
    print(f"{'sync':<13} {'seconds':>8} {'read':>6} {'changed':>8} {'embedded':>9} {'reused':>7} "
          f"{'removed':>8}")
    for name, r in (("full", full), ("incremental", incremental)):
        print(f"{name:<13} {r.seconds:>8.1f} {r.read:>6} {r.changed:>8} {r.embedded:>9} {r.reused:>7} "
              f"{r.removed:>8}")
    figures = {
        "database": where,
        "threads": full.threads,
        "edited_threads": edited,
        "hidden_threads": hidden,
        **{name: {k: getattr(r, k) for k in ("seconds", "read", "changed", "embedded", "reused", "removed")}
           for name, r in (("full", full), ("incremental", incremental))},
        "model_load_seconds": round(load_s, 1),
        "date": datetime.now().date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
    }
    print(json.dumps(figures))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    ok = incremental.embedded == edited and incremental.removed == hidden
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
