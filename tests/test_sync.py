"""qa-search sync: threads read straight from a forum's database, against real servers.

The Question2Answer preset runs on SQLite (no server) and on a MariaDB server, the Discourse
mapping on a PostgreSQL server; each server is a private instance the tests start in a
temporary directory (a unix socket, no network) and stop at the end. A test that needs a server
whose binaries are missing is skipped, saying which.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sa = pytest.importorskip("sqlalchemy")

from conftest import ROOT, FakeEmbedder  # noqa: E402

from qa_search import ForumIndex, QASearchError, sync_index  # noqa: E402
from qa_search.embedding.models import PROBE_TEXTS  # noqa: E402
from qa_search.operations.lifecycle import build_index  # noqa: E402
from qa_search.tools import sync as sync_module  # noqa: E402
from qa_search.tools.forumdb import moment_before  # noqa: E402
from qa_search.tools.sourcemapping import mapping_from_dict, read_mapping  # noqa: E402

DISCOURSE_MAPPING = ROOT / "docs" / "examples" / "discourse-mapping.yaml"
T0 = datetime(2025, 3, 1, 9, 0, 0)
NO_MARGIN = timedelta(0)


class Counting(FakeEmbedder):
    """The fake embedder, keeping the texts it embeds (less the probes every model load makes)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def encode(self, texts, *, batch_size: int = 64):
        self.embedded.extend(t for t in texts if t not in PROBE_TEXTS)
        return super().encode(texts, batch_size=batch_size)


# -- servers -------------------------------------------------------------------------------------


def _wait_for(path: Path, proc: subprocess.Popen, what: str, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            proc.kill()
            pytest.fail(f"{what} did not start:\n{tail}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def mariadb_url():
    """A private MariaDB server on a unix socket, with an empty database ``q2a``."""
    install, server = shutil.which("mariadb-install-db"), shutil.which("mariadbd") or shutil.which(
        "mariadbd", path="/usr/sbin")
    if not install or not server:
        pytest.skip("MariaDB is not installed (apt-get install mariadb-server; make install does it as root)")
    pytest.importorskip("pymysql")
    base = Path(tempfile.mkdtemp(prefix="qa-mdb-"))
    data, sock, log = base / "data", base / "mysqld.sock", base / "server.log"
    user = pwd.getpwuid(os.getuid()).pw_name
    subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", f"--user={user}",
         "--auth-root-authentication-method=normal", "--skip-test-db"],
        check=True, capture_output=True,
    )
    proc = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={data}", f"--socket={sock}", "--skip-networking",
         f"--user={user}", f"--pid-file={base / 'mysqld.pid'}", f"--log-error={log}",
         "--innodb-buffer-pool-size=32M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(sock, proc, "mariadbd", log)
        admin = sa.create_engine(f"mysql+pymysql://root@localhost/?unix_socket={sock}")
        for _ in range(100):  # the socket appears a moment before the server takes connections
            try:
                with admin.begin() as conn:
                    conn.execute(sa.text("CREATE DATABASE q2a CHARACTER SET utf8mb4"))
                break
            except sa.exc.OperationalError:
                time.sleep(0.1)
        admin.dispose()
        yield f"mysql+pymysql://root@localhost/q2a?unix_socket={sock}&charset=utf8mb4"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(base, ignore_errors=True)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="session")
def postgres_url():
    """A private PostgreSQL server on a unix socket (run as ``nobody`` when the tests run as
    root: PostgreSQL refuses root), with an empty database ``forum``."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; make install does it as root)")
    pytest.importorskip("psycopg")
    base = Path(tempfile.mkdtemp(prefix="qa-pg-"))
    data, log = base / "data", base / "server.log"
    as_user: list[str] = []
    if os.getuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"] if shutil.which("runuser") else ["su", "nobody", "-s",
                                                                                      "/bin/sh", "-c"]
        if as_user[0] == "su":
            pytest.skip("running PostgreSQL's tests as root needs runuser (util-linux)")
    base.chmod(0o700)
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60",
                    "-o", f"-k {base} -h '' -c fsync=off", "start"], check=True, capture_output=True)
    try:
        admin = sa.create_engine(f"postgresql+psycopg://postgres@/postgres?host={base}",
                                 isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE forum"))
        admin.dispose()
        yield f"postgresql+psycopg://postgres@/forum?host={base}"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


# -- a Question2Answer database ------------------------------------------------------------------

Q2A_TYPES = ("Q", "A", "C", "Q_HIDDEN", "A_HIDDEN", "C_HIDDEN", "Q_QUEUED", "A_QUEUED", "C_QUEUED", "NOTE")


def q2a_tables(prefix: str = "qa_") -> tuple[sa.MetaData, sa.Table, sa.Table]:
    """The columns of Question2Answer's posts and categories tables that a sync reads, with
    their types (the rest of its schema does not matter here)."""
    meta = sa.MetaData()
    categories = sa.Table(
        f"{prefix}categories", meta,
        sa.Column("categoryid", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("parentid", sa.Integer),
        sa.Column("title", sa.String(80), nullable=False),
        sa.Column("tags", sa.String(200), nullable=False),
    )
    posts = sa.Table(
        f"{prefix}posts", meta,
        sa.Column("postid", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("type", sa.Enum(*Q2A_TYPES, name="q2a_type", create_constraint=False), nullable=False),
        sa.Column("parentid", sa.Integer, sa.ForeignKey(f"{prefix}posts.postid")),
        sa.Column("categoryid", sa.Integer, sa.ForeignKey(f"{prefix}categories.categoryid")),
        sa.Column("acount", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("selchildid", sa.Integer),
        sa.Column("closedbyid", sa.Integer, sa.ForeignKey(f"{prefix}posts.postid")),
        sa.Column("upvotes", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("downvotes", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("netvotes", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("format", sa.String(20), nullable=False, server_default=""),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("updated", sa.DateTime),
        sa.Column("updatetype", sa.String(1)),
        sa.Column("title", sa.String(800)),
        sa.Column("content", sa.Text),
        sa.Column("tags", sa.String(800)),
    )
    return meta, posts, categories


_ENGINES: list = []


@pytest.fixture(autouse=True)
def _close_engines():
    """Close the tests' own connections to the forums (a driver warns of one left open)."""
    yield
    while _ENGINES:
        _ENGINES.pop().dispose()


class Q2AForum:
    """A Question2Answer database to write to as the forum would."""

    def __init__(self, url: str, prefix: str = "qa_") -> None:
        self.url = url
        self.engine = sa.create_engine(url)
        _ENGINES.append(self.engine)
        self.meta, self.posts, self.categories = q2a_tables(prefix)
        with self.engine.begin() as conn:
            self.meta.drop_all(conn)
            self.meta.create_all(conn)

    def add(self, **values) -> int:
        values.setdefault("created", T0)
        with self.engine.begin() as conn:
            return conn.execute(self.posts.insert().values(**values)).inserted_primary_key[0]

    def set(self, postid: int, **values) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.posts.update().where(self.posts.c.postid == postid).values(**values))

    def remove(self, postid: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.posts.update().where(self.posts.c.parentid == postid).values(parentid=None))
            conn.execute(self.posts.delete().where(self.posts.c.postid == postid))

    def seed(self) -> dict[str, int]:
        """A small forum: answered, hidden, queued and closed questions, comments, categories."""
        with self.engine.begin() as conn:
            conn.execute(self.categories.insert(), [
                {"categoryid": 1, "title": "Anxiety", "tags": "anxiety"},
                {"categoryid": 2, "title": "Sleep", "tags": "sleep"},
            ])
        ids = {}
        ids["q1"] = self.add(type="Q", categoryid=1, title="Racing heart before exams",
                             content="<p>My heart <b>races</b> before every exam.</p><p>What helps?</p>",
                             format="html", tags="anxiety,exams", netvotes=4, acount=2)
        ids["a1"] = self.add(type="A", parentid=ids["q1"], content="Slow breathing: four counts in, six out.",
                             netvotes=2)
        ids["a2"] = self.add(type="A", parentid=ids["q1"], format="html", netvotes=5,
                             content="<p>Talk to the <i>student</i> counsellor.</p>")
        self.add(type="C", parentid=ids["q1"], content="Same here, following.")
        self.add(type="A_HIDDEN", parentid=ids["q1"], content="Buy my miracle pills.")
        self.add(type="A_QUEUED", parentid=ids["q1"], content="Waiting for a moderator.")
        self.set(ids["q1"], selchildid=ids["a2"])
        ids["q2"] = self.add(type="Q", categoryid=2, title="Cannot fall asleep after night shifts",
                             content="I work nights and lie awake for hours.", tags="sleep, shift-work",
                             netvotes=1)
        ids["q3"] = self.add(type="Q_HIDDEN", title="Spam question", content="spam")
        ids["q4"] = self.add(type="Q_QUEUED", title="A question awaiting moderation", content="queued")
        ids["q5"] = self.add(type="Q", categoryid=1, title="Heart racing before tests",
                             content="Same as others.", created=T0 + timedelta(minutes=5))
        self.set(ids["q5"], closedbyid=ids["q1"], updated=T0 + timedelta(minutes=6), updatetype="C")
        return ids


@pytest.fixture(params=["sqlite", "mariadb"])
def q2a(request, tmp_path) -> Q2AForum:
    if request.param == "sqlite":
        return Q2AForum(f"sqlite:///{tmp_path / 'q2a.sqlite'}")
    return Q2AForum(request.getfixturevalue("mariadb_url"))


def _stored(index_dir: Path) -> dict:
    index = ForumIndex.load(index_dir, FakeEmbedder())
    return {t.id: t for t in index.threads()}


def _sync(index_dir: Path, url: str, embedder: FakeEmbedder, **options):
    options.setdefault("schema", "q2a")
    options.setdefault("margin", NO_MARGIN)
    return sync_index(index_dir, url, embedder=embedder, **options)


# -- the Question2Answer preset ------------------------------------------------------------------


def test_q2a_full_sync_reads_questions_answers_votes_and_categories(q2a, tmp_path):
    ids = q2a.seed()
    fake = Counting()
    report = _sync(tmp_path / "index", q2a.url, fake)
    assert report.full and report.published
    threads = _stored(tmp_path / "index")
    # hidden and queued questions are not searchable
    assert set(threads) == {str(ids["q1"]), str(ids["q2"]), str(ids["q5"])}
    assert (report.threads, report.read, report.removed) == (3, 3, 0)
    q1 = threads[str(ids["q1"])]
    assert q1.title == "Racing heart before exams"
    assert q1.body == "My heart races before every exam.\nWhat helps?"  # HTML turned into text
    assert q1.category == "Anxiety" and q1.tags == ("anxiety", "exams") and q1.score == 4
    # comments are not answers; hidden and queued answers are left out
    assert [(a.id, a.body, a.score, a.accepted) for a in q1.answers] == [
        (str(ids["a1"]), "Slow breathing: four counts in, six out.", 2, False),
        (str(ids["a2"]), "Talk to the student counsellor.", 5, True),
    ]
    assert threads[str(ids["q2"])].tags == ("sleep", "shift-work")
    assert threads[str(ids["q2"])].category == "Sleep"
    closed = threads[str(ids["q5"])]
    assert closed.extra["duplicate_of"] == str(ids["q1"])
    assert closed.extra["closed_at"].startswith("2025-03-01") and "closed_at" not in q1.extra
    # every text embedded once: 3 questions and 2 answers
    assert report.embedded == len(fake.embedded) == 5
    state = json.loads((tmp_path / "index" / "sync-state.json").read_text())
    assert state["generation"] == report.generation and set(state["threads"]) == set(threads)
    assert "password" not in json.dumps(state)


def test_q2a_edit_reembeds_only_the_edited_text(q2a, tmp_path):
    ids = q2a.seed()
    index_dir = tmp_path / "index"
    fake = Counting()
    first = _sync(index_dir, q2a.url, fake)
    # nothing changed: nothing read past the margin, nothing published
    again = _sync(index_dir, q2a.url, fake)
    assert not again.published and again.generation == first.generation and again.embedded == 0
    assert not again.full and again.read == 0

    q2a.set(ids["a1"], content="Slow breathing: four counts in, eight out.", updated=T0 + timedelta(hours=1))
    before = len(fake.embedded)
    report = _sync(index_dir, q2a.url, fake)
    assert not report.full and report.published and report.generation == first.generation + 1
    assert (report.read, report.changed, report.removed) == (1, 1, 0)
    assert report.embedded == 1 and len(fake.embedded) - before == 1
    q1 = _stored(index_dir)[str(ids["q1"])]
    assert q1.answers[0].body == "Slow breathing: four counts in, eight out."

    # a new question and a new answer to another: only their texts are embedded
    later = T0 + timedelta(hours=2)
    q6 = q2a.add(type="Q", title="Panic at night", content="I wake up panicking.", created=later)
    q2a.add(type="A", parentid=ids["q2"], content="Blackout curtains helped me.", created=later)
    before = len(fake.embedded)
    report = _sync(index_dir, q2a.url, fake)
    assert (report.read, report.changed, report.embedded) == (2, 2, 2)
    assert len(fake.embedded) - before == 2
    assert str(q6) in _stored(index_dir) and report.threads == 4


def test_q2a_hide_and_delete_at_the_source_remove_the_thread(q2a, tmp_path):
    ids = q2a.seed()
    index_dir = tmp_path / "index"
    fake = Counting()
    _sync(index_dir, q2a.url, fake)
    q2a.set(ids["q2"], type="Q_HIDDEN", updated=T0 + timedelta(hours=1))
    report = _sync(index_dir, q2a.url, fake, allow_removals=True)
    assert report.removed == 1 and report.published and report.embedded == 0
    assert str(ids["q2"]) not in _stored(index_dir)

    # a hard deletion leaves no change time behind: the live ids tell
    q2a.remove(ids["q5"])
    report = _sync(index_dir, q2a.url, fake, allow_removals=True)
    assert report.removed == 1 and set(_stored(index_dir)) == {str(ids["q1"])}

    # hiding an answer changes its thread; showing the question again brings it back
    q2a.set(ids["a1"], type="A_HIDDEN", updated=T0 + timedelta(hours=2))
    q2a.set(ids["q2"], type="Q", updated=T0 + timedelta(hours=2))
    report = _sync(index_dir, q2a.url, fake)
    threads = _stored(index_dir)
    assert set(threads) == {str(ids["q1"]), str(ids["q2"])}
    assert [a.id for a in threads[str(ids["q1"])].answers] == [str(ids["a2"])]
    assert report.embedded == 0  # both texts were embedded before: taken from the cache


def test_a_full_build_from_an_older_export_keeps_what_later_syncs_published(tmp_path):
    forum = Q2AForum(f"sqlite:///{tmp_path / 'q2a.sqlite'}")
    ids = forum.seed()
    index_dir = tmp_path / "index"
    _sync(index_dir, forum.url, FakeEmbedder())
    export = list(_stored(index_dir).values())  # the forum as an export made now has it
    exported = datetime.now(timezone.utc) - timedelta(seconds=2)
    new = forum.add(type="Q", title="Nightmares after a car crash", content="Every night since.",
                    created=T0 + timedelta(hours=1))
    forum.set(ids["q2"], title="Cannot sleep after night shifts, even with blackout blinds",
              updated=T0 + timedelta(hours=1))
    forum.set(ids["q5"], type="Q_HIDDEN", updated=T0 + timedelta(hours=1))
    _sync(index_dir, forum.url, FakeEmbedder(), allow_removals=True)

    report = build_index(index_dir, export, FakeEmbedder(), as_of=exported, allow_removals=True)
    threads = _stored(index_dir)
    assert set(threads) == {str(ids["q1"]), str(ids["q2"]), str(new)} and report.kept_published == 3
    assert threads[str(ids["q2"])].title.endswith("even with blackout blinds")
    # the next sync reads on from where the last left off, and finds nothing to change
    assert not _sync(index_dir, forum.url, FakeEmbedder()).published


def test_removal_guard_stops_a_sync_that_would_empty_the_index(tmp_path):
    forum = Q2AForum(f"sqlite:///{tmp_path / 'q2a.sqlite'}")
    ids = forum.seed()
    index_dir = tmp_path / "index"
    first = _sync(index_dir, forum.url, FakeEmbedder())
    for key in ("q1", "q2"):
        forum.set(ids[key], type="Q_HIDDEN", updated=T0 + timedelta(hours=1))
    with pytest.raises(QASearchError, match="would remove 2 of the 3 threads"):
        _sync(index_dir, forum.url, FakeEmbedder())
    assert len(_stored(index_dir)) == 3
    state = json.loads((index_dir / "sync-state.json").read_text())
    assert state["generation"] == first.generation


def test_a_sync_killed_after_reading_leaves_the_index_and_resumes(q2a, tmp_path):
    ids = q2a.seed()
    index_dir = tmp_path / "index"
    fake = Counting()
    first = _sync(index_dir, q2a.url, fake)
    state_before = (index_dir / "sync-state.json").read_bytes()
    published = _stored(index_dir)
    q2a.set(ids["q2"], content="I work nights and sleep three hours.", updated=T0 + timedelta(hours=1))
    q2a.set(ids["q5"], type="Q_HIDDEN", updated=T0 + timedelta(hours=1))

    def killed() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _sync(index_dir, q2a.url, fake, after_read=killed, allow_removals=True)
    assert (index_dir / "CURRENT").read_text().strip() == str(first.generation)
    assert (index_dir / "sync-state.json").read_bytes() == state_before
    assert _stored(index_dir) == published

    report = _sync(index_dir, q2a.url, fake, allow_removals=True)
    assert (report.changed, report.removed) == (1, 1)
    threads = _stored(index_dir)
    assert threads[str(ids["q2"])].body == "I work nights and sleep three hours."
    assert str(ids["q5"]) not in threads


def test_a_sync_killed_between_publish_and_state_resumes_from_the_older_state(tmp_path, monkeypatch):
    forum = Q2AForum(f"sqlite:///{tmp_path / 'q2a.sqlite'}")
    ids = forum.seed()
    index_dir = tmp_path / "index"
    fake = Counting()
    first = _sync(index_dir, forum.url, fake)
    forum.set(ids["q2"], content="Edited once.", updated=T0 + timedelta(hours=1))

    def lost(*_args) -> None:
        raise OSError("killed")

    monkeypatch.setattr(sync_module, "write_state", lost)
    with pytest.raises(OSError):
        _sync(index_dir, forum.url, fake)
    monkeypatch.undo()
    assert json.loads((index_dir / "sync-state.json").read_text())["generation"] == first.generation
    before = len(fake.embedded)
    report = _sync(index_dir, forum.url, fake)
    # read again from the older state; the text is in the cache, the published threads agree
    assert report.read == 1 and len(fake.embedded) == before
    assert _stored(index_dir)[str(ids["q2"])].body == "Edited once."
    assert json.loads((index_dir / "sync-state.json").read_text())["generation"] == report.generation


_KILLED_SYNC = """
import sys, time
from datetime import timedelta
from qa_search import sync_index
sys.path.insert(0, "tests")
from conftest import FakeEmbedder

def wait():
    open(sys.argv[3], "w").close()
    time.sleep(60)

sync_index(sys.argv[1], sys.argv[2], schema="q2a", embedder=FakeEmbedder(), margin=timedelta(0),
           after_read=wait)
"""


def test_a_sync_killed_with_sigkill_leaves_the_published_generation(tmp_path):
    forum = Q2AForum(f"sqlite:///{tmp_path / 'q2a.sqlite'}")
    ids = forum.seed()
    index_dir = tmp_path / "index"
    first = _sync(index_dir, forum.url, FakeEmbedder())
    forum.set(ids["q1"], title="Racing heart before every exam", updated=T0 + timedelta(hours=1))
    ready = tmp_path / "read"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_SYNC, str(index_dir), forum.url, str(ready)],
                            cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the sync did not get as far as reading"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (index_dir / "CURRENT").read_text().strip() == str(first.generation)
    report = _sync(index_dir, forum.url, FakeEmbedder())  # the dead writer's lock is taken over
    assert report.changed == 1
    assert _stored(index_dir)[str(ids["q1"])].title == "Racing heart before every exam"


def test_state_files_are_owner_only_and_a_prefix_is_honoured(tmp_path):
    forum = Q2AForum(f"sqlite:///{tmp_path / 'q2a.sqlite'}", prefix="forum_")
    forum.seed()
    index_dir = tmp_path / "index"
    report = _sync(index_dir, forum.url, FakeEmbedder(), prefix="forum_")
    assert report.threads == 3
    assert (index_dir / "sync-state.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(QASearchError, match="no such table"):
        _sync(tmp_path / "other", forum.url, FakeEmbedder())  # the default prefix, qa_
    with pytest.raises(QASearchError, match="letters, digits and underscores"):
        _sync(tmp_path / "other", forum.url, FakeEmbedder(), prefix="x; DROP TABLE y")


def test_a_changed_source_means_a_full_sync(tmp_path):
    forum = Q2AForum(f"sqlite:///{tmp_path / 'q2a.sqlite'}")
    forum.seed()
    index_dir = tmp_path / "index"
    _sync(index_dir, forum.url, FakeEmbedder())
    shutil.copy(tmp_path / "q2a.sqlite", tmp_path / "copy.sqlite")
    report = _sync(index_dir, f"sqlite:///{tmp_path / 'copy.sqlite'}", FakeEmbedder())
    assert report.full and report.embedded == 0  # every text from the cache
    assert _sync(index_dir, f"sqlite:///{tmp_path / 'copy.sqlite'}", FakeEmbedder(), full=True).full


def test_a_rollback_past_the_state_means_a_full_sync(tmp_path):
    from qa_search import rollback_index

    forum = Q2AForum(f"sqlite:///{tmp_path / 'q2a.sqlite'}")
    ids = forum.seed()
    index_dir = tmp_path / "index"
    first = _sync(index_dir, forum.url, FakeEmbedder())
    forum.set(ids["q2"], content="Edited after the first sync.", updated=T0 + timedelta(hours=1))
    assert not _sync(index_dir, forum.url, FakeEmbedder()).full
    rollback_index(index_dir, to=first.generation)  # the index no longer holds the edit
    report = _sync(index_dir, forum.url, FakeEmbedder())
    assert report.full and report.published
    assert _stored(index_dir)[str(ids["q2"])].body == "Edited after the first sync."


def test_database_errors_name_the_source_without_its_password(tmp_path):
    with pytest.raises(QASearchError) as caught:
        _sync(tmp_path / "index", "postgresql+psycopg://reader:s3cret-pass@127.0.0.1:1/forum", FakeEmbedder())
    assert "s3cret-pass" not in str(caught.value) and "reader:***@127.0.0.1" in str(caught.value)
    assert not (tmp_path / "index").exists()  # nothing left behind by a sync that read nothing
    with pytest.raises(QASearchError, match="not a database URL"):
        _sync(tmp_path / "index", "not a url", FakeEmbedder())
    with pytest.raises(QASearchError, match="preset"):
        sync_index(tmp_path / "index", "sqlite://", embedder=FakeEmbedder())


def test_cli_sync_reports_json(tmp_path, fake_cli):
    from qa_search.cli import main

    forum = Q2AForum(f"sqlite:///{tmp_path / 'q2a.sqlite'}")
    ids = forum.seed()
    index_dir = tmp_path / "index"
    result = fake_cli.invoke(main, ["sync", str(index_dir), "--from", forum.url, "--schema", "q2a", "--json",
                                    "--quiet"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["threads"], out["embedded"], out["removed"], out["full"]) == (3, 5, 0, True)
    forum.set(ids["q2"], type="Q_HIDDEN", updated=T0 + timedelta(hours=1))
    result = fake_cli.invoke(main, ["sync", str(index_dir), "--schema", "q2a", "--json", "--margin", "1",
                                    "--allow-removals"], env={"QA_SEARCH_SYNC_URL": forum.url})
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (out["threads"], out["embedded"], out["removed"], out["full"]) == (2, 0, 1, False)
    result = fake_cli.invoke(main, ["sync", str(index_dir), "--from", forum.url])
    assert result.exit_code != 0 and "--schema q2a, or --mapping FILE" in result.output


# -- a generic mapping: Discourse on PostgreSQL ------------------------------------------------------

DISCOURSE_SCHEMA = """
CREATE TABLE categories (id serial PRIMARY KEY, name varchar NOT NULL,
                         read_restricted boolean NOT NULL DEFAULT false);
CREATE TABLE tags (id serial PRIMARY KEY, name varchar NOT NULL);
CREATE TABLE topics (
    id serial PRIMARY KEY, title varchar NOT NULL, category_id integer REFERENCES categories,
    created_at timestamp NOT NULL, updated_at timestamp NOT NULL, deleted_at timestamp,
    visible boolean NOT NULL DEFAULT true, closed boolean NOT NULL DEFAULT false,
    archetype varchar NOT NULL DEFAULT 'regular');
CREATE TABLE topic_tags (topic_id integer REFERENCES topics, tag_id integer REFERENCES tags);
CREATE TABLE posts (
    id serial PRIMARY KEY, topic_id integer NOT NULL REFERENCES topics, post_number integer NOT NULL,
    raw text NOT NULL, cooked text NOT NULL, like_count integer NOT NULL DEFAULT 0,
    post_type integer NOT NULL DEFAULT 1, hidden boolean NOT NULL DEFAULT false,
    created_at timestamp NOT NULL, updated_at timestamp NOT NULL, deleted_at timestamp);
"""


class DiscourseForum:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url)
        _ENGINES.append(self.engine)
        with self.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS posts, topic_tags, topics, tags, categories"))
            for statement in DISCOURSE_SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(sa.text(statement))

    def run(self, sql: str, **params) -> list:
        with self.engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return list(result) if result.returns_rows else []

    def topic(self, title: str, cooked: str, category: int | None = None, **fields) -> int:
        (tid,) = self.run("INSERT INTO topics (title, category_id, created_at, updated_at, archetype) "
                          "VALUES (:t, :c, :at, :at, :a) RETURNING id", t=title, c=category, at=T0,
                          a=fields.get("archetype", "regular"))[0]
        self.post(tid, cooked)
        return tid

    def post(self, topic: int, cooked: str, **fields) -> int:
        (number,) = self.run("SELECT COALESCE(MAX(post_number), 0) + 1 FROM posts WHERE topic_id = :t",
                             t=topic)[0]
        (pid,) = self.run(
            "INSERT INTO posts (topic_id, post_number, raw, cooked, like_count, post_type, created_at,"
            " updated_at) VALUES (:t, :n, :raw, :cooked, :likes, :kind, :at, :at) RETURNING id",
            t=topic, n=number, raw=cooked, cooked=cooked, likes=fields.get("likes", 0),
            kind=fields.get("post_type", 1), at=T0,
        )[0]
        return pid


def test_discourse_mapping_on_postgresql(postgres_url, tmp_path):
    forum = DiscourseForum(postgres_url)
    forum.run("INSERT INTO categories (id, name) VALUES (1, 'Anxiety'), (2, 'Sleep')")
    forum.run("INSERT INTO tags (id, name) VALUES (1, 'exams'), (2, 'panic')")
    t1 = forum.topic("Racing heart before exams", "<p>My heart <strong>races</strong> before exams.</p>", 1)
    forum.run("INSERT INTO topic_tags VALUES (:t, 2), (:t, 1)", t=t1)
    p2 = forum.post(t1, "<p>Slow breathing helps me.</p>", likes=3)
    forum.post(t1, "<p>closed this topic</p>", post_type=3)  # a small action, not an answer
    p4 = forum.post(t1, "<p>Talk to a counsellor.</p>")
    t2 = forum.topic("Awake after night shifts", "<p>I lie awake for hours.</p>", 2)
    forum.topic("A private message", "<p>hello</p>", archetype="private_message")
    t4 = forum.topic("Unlisted topic", "<p>hidden from lists</p>")
    forum.run("UPDATE topics SET visible = false WHERE id = :t", t=t4)

    index_dir = tmp_path / "index"
    fake = Counting()
    report = sync_index(index_dir, postgres_url, mapping=DISCOURSE_MAPPING, embedder=fake, margin=NO_MARGIN)
    threads = _stored(index_dir)
    assert set(threads) == {str(t1), str(t2)} and report.embedded == 4
    first = threads[str(t1)]
    assert first.body == "My heart races before exams." and first.category == "Anxiety"
    assert first.tags == ("exams", "panic") and first.url == f"https://forum.example.org/t/{t1}"
    assert [(a.id, a.body, a.score) for a in first.answers] == [
        (str(p2), "Slow breathing helps me.", 3), (str(p4), "Talk to a counsellor.", 0)]

    # an edited post: only its text is embedded again
    later = T0 + timedelta(hours=1)
    forum.run("UPDATE posts SET cooked = '<p>Slow breathing and a walk help me.</p>', updated_at = :at "
              "WHERE id = :p", at=later, p=p2)
    before = len(fake.embedded)
    report = sync_index(index_dir, postgres_url, mapping=DISCOURSE_MAPPING, embedder=fake, margin=NO_MARGIN)
    assert (report.full, report.read, report.changed, report.embedded) == (False, 1, 1, 1)
    assert len(fake.embedded) - before == 1
    assert _stored(index_dir)[str(t1)].answers[0].body == "Slow breathing and a walk help me."

    # a deleted post leaves its thread; a deleted topic leaves the index
    forum.run("UPDATE posts SET deleted_at = :at WHERE id = :p", at=T0 + timedelta(hours=2), p=p4)
    forum.run("UPDATE topics SET deleted_at = :at WHERE id = :t", at=T0 + timedelta(hours=2), t=t2)
    report = sync_index(index_dir, postgres_url, mapping=DISCOURSE_MAPPING, embedder=fake, margin=NO_MARGIN,
                        allow_removals=True)
    threads = _stored(index_dir)
    assert report.removed == 1 and set(threads) == {str(t1)}
    assert [a.id for a in threads[str(t1)].answers] == [str(p2)]
    again = sync_index(index_dir, postgres_url, mapping=DISCOURSE_MAPPING, embedder=fake, margin=NO_MARGIN)
    assert not again.published and again.read == 0


# -- mappings ---------------------------------------------------------------------------------------


def test_a_generic_mapping_on_sqlite_without_change_times_compares_records(tmp_path):
    db = tmp_path / "forum.sqlite"
    engine = sa.create_engine(f"sqlite:///{db}")
    _ENGINES.append(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE q (qid TEXT, subject TEXT, text TEXT)"))
        conn.execute(sa.text("CREATE TABLE r (rid TEXT, qid TEXT, text TEXT, best INTEGER)"))
        conn.execute(sa.text("INSERT INTO q VALUES ('a', 'Feeling low in winter', 'Every November.'),"
                             " ('b', 'Exam nerves', '')"))
        conn.execute(sa.text("INSERT INTO r VALUES ('r1', 'a', 'A daylight lamp.', 1)"))
    mapping = tmp_path / "forum.json"
    mapping.write_text(json.dumps({
        "threads": {"query": "SELECT qid, subject, text FROM q",
                    "columns": {"id": "qid", "title": "subject", "body": "text"}},
        "answers": {"query": "SELECT * FROM r;",
                    "columns": {"id": "qid", "answer_id": "rid", "answer": "text",
                                "answer_accepted": "best"}},
    }))
    fake = Counting()
    index_dir = tmp_path / "index"
    report = sync_index(index_dir, f"sqlite:///{db}", mapping=mapping, embedder=fake)
    threads = _stored(index_dir)
    assert report.threads == 2 and threads["a"].answers[0].accepted and threads["b"].body == ""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE q SET subject = 'Exam nerves every term' WHERE qid = 'b'"))
    report = sync_index(index_dir, f"sqlite:///{db}", mapping=mapping, embedder=fake)
    assert (report.full, report.read, report.changed, report.embedded) == (False, 2, 1, 1)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({}, "'threads' query"),
        ({"threads": {"query": "SELECT 1", "columns": {"colour": "c"}}}, "cannot map colour"),
        ({"threads": {"query": ""}}, "needs a 'query'"),
        ({"threads": "SELECT 1", "answer": "SELECT 2"}, "unknown keys answer"),
        ({"threads": {"query": "SELECT 1", "html": "yes"}}, "true or false"),
    ],
)
def test_bad_mappings_say_what_is_wrong(obj, message):
    with pytest.raises(QASearchError, match=message):
        mapping_from_dict(obj)


def test_the_discourse_example_reads_as_a_mapping_and_the_docs_show_it_as_it_is():
    mapping = read_mapping(DISCOURSE_MAPPING)
    assert mapping.answers is not None and mapping.answers.column("answer") == "cooked"
    assert mapping.threads.html and mapping.changes is not None
    page = (ROOT / "docs" / "forum-integration.md").read_text(encoding="utf-8")
    assert "```yaml\n" + DISCOURSE_MAPPING.read_text(encoding="utf-8") + "```" in page


def test_change_times_move_back_by_the_margin_in_their_own_form():
    margin = timedelta(minutes=10)
    nine = {"kind": "datetime", "value": "2025-03-01T09:00:00"}
    assert moment_before(nine, margin) == datetime(2025, 3, 1, 8, 50)
    assert moment_before({"kind": "number", "value": 1000}, margin) == 400
    assert moment_before({"kind": "text", "value": "2025-03-01 09:00:00"}, margin) == "2025-03-01 08:50:00"
    utc = {"kind": "text", "value": "2025-03-01T09:00:00.5Z"}
    assert moment_before(utc, margin) == "2025-03-01T08:50:00.500000Z"
    assert moment_before({"kind": "text", "value": "v42"}, margin) == "v42"
