"""A forum's operator connecting it as docs/forum-integration.md says, against real servers:
database URLs with the password in the query, an unescaped '@', a scheme without its driver;
a Question2Answer database whose tables have another prefix; HTML posts holding scripts; a
Discourse webhook event carrying more than ``POST /v1/threads`` would store; a CSV in a code
page. Every message is one line and names neither a password nor a post's text.

The MariaDB and PostgreSQL servers are test_sync.py's (private, on unix sockets); a test whose
server is not installed is skipped, saying which.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta

import pytest
from conftest import FakeEmbedder

sa = pytest.importorskip("sqlalchemy")

# the servers and the forum are test_sync.py's fixtures, started once per module that uses them
from test_sync import (  # noqa: E402, F401
    DISCOURSE_MAPPING,
    NO_MARGIN,
    T0,
    DiscourseForum,
    Q2AForum,
    _close_engines,
    _stored,
    mariadb_url,
    postgres_url,
)
from test_webhooks import GENERIC, SECRET, _client, post, send, stored, topic  # noqa: E402

from qa_search import ForumIndex, QASearchError, Thread, sync_index  # noqa: E402
from qa_search.tools.importers import read_threads  # noqa: E402
from qa_search.tools.sync import STATE_NAME  # noqa: E402

PASSWORD = "Op3rator-s3cret"


def _sync(index_dir, url, **options):
    options.setdefault("schema", "q2a")
    return sync_index(index_dir, url, embedder=FakeEmbedder(), **options)


def _refused(index_dir, url, **options) -> str:
    with pytest.raises(QASearchError) as caught:
        _sync(index_dir, url, **options)
    message = str(caught.value)
    assert "\n" not in message and PASSWORD not in message
    return message


# -- database URLs ---------------------------------------------------------------------------------


def test_a_password_in_the_urls_query_is_hidden_in_errors_logs_and_the_state(
        postgres_url, tmp_path, caplog):  # noqa: F811
    """libpq's own form, ``?password=``, is as much a password as the one before the '@'."""
    admin = sa.create_engine(postgres_url.replace("/forum?", "/postgres?"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS operator_reader"))
        conn.execute(sa.text(f"CREATE ROLE operator_reader LOGIN PASSWORD '{PASSWORD}'"))
        conn.execute(sa.text("GRANT pg_read_all_data TO operator_reader"))
    admin.dispose()
    forum = Q2AForum(postgres_url)
    forum.seed()
    host = postgres_url.partition("?")[2]
    url = f"postgresql+psycopg:///forum?{host}&user=operator_reader&password={PASSWORD}"
    caplog.set_level(logging.DEBUG)
    index_dir = tmp_path / "index"
    assert _sync(index_dir, url).threads == 3
    state = (index_dir / STATE_NAME).read_text()
    assert PASSWORD not in state and "password=***" in json.loads(state)["where"]
    message = _refused(tmp_path / "other", url, prefix="nothere_")  # a query fails after connecting
    assert "password=***" in message
    unreachable = f"postgresql+psycopg://operator_reader@127.0.0.1:1/forum?password={PASSWORD}"
    assert "connecting failed" in _refused(tmp_path / "other", unreachable)
    assert PASSWORD not in caplog.text


def test_a_password_with_an_unescaped_at_is_refused_without_its_tail(tmp_path):
    # parsed, the tail after the first '@' would be the host, which a driver's error quotes
    message = _refused(tmp_path / "index", "postgresql+psycopg://reader:Op3rator@s3cret@127.0.0.1:1/forum")
    assert "percent-encode" in message and "%40" in message and "s3cret" not in message
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize("scheme, wanted", [("mysql", "mysql+pymysql"), ("postgres", "postgresql+psycopg")])
def test_a_scheme_without_the_extras_driver_names_the_one_to_write(tmp_path, scheme, wanted):
    # mysql:// means MySQLdb, postgres:// (Heroku's, Discourse's own config) no dialect at all;
    # installing the sync extra again, as the message said, fixed neither
    message = _refused(tmp_path / "index", f"{scheme}://reader:{PASSWORD}@db.internal/forum")
    assert f"write {wanted}:// instead" in message and "pip install" not in message


# -- Question2Answer on MariaDB ------------------------------------------------------------------------


def test_q2a_tables_with_another_prefix_and_the_wrong_credentials(mariadb_url, tmp_path):  # noqa: F811
    forum = Q2AForum(mariadb_url, prefix="forum_")
    ids = forum.seed()
    index_dir = tmp_path / "index"
    message = _refused(index_dir, mariadb_url)  # the default prefix, qa_
    assert "qa_posts" in message and "--prefix" in message and "QA_MYSQL_TABLE_PREFIX" in message
    assert not index_dir.exists()
    wrong = mariadb_url.replace("root@", f"root:{PASSWORD}@")
    message = _refused(index_dir, wrong, prefix="forum_")
    assert "connecting failed" in message and "Access denied" in message and "--prefix" not in message
    assert _sync(index_dir, mariadb_url, prefix="forum_").threads == 3
    assert _stored(index_dir)[str(ids["q1"])].answers[1].body == "Talk to the student counsellor."


def test_scripts_and_styles_in_an_html_post_are_not_its_text(mariadb_url, tmp_path):  # noqa: F811
    forum = Q2AForum(mariadb_url)
    qid = forum.add(type="Q", title="Embedded video", format="html",
                    content="<p>Watch this</p><script>trackVisitor('x')</script>"
                            "<style>p { color: red }</style><p>then tell me</p>")
    forum.add(type="A", parentid=qid, format="html", content="<script>evil()</script><p>Not for me.</p>")
    _sync(tmp_path / "index", mariadb_url)
    thread = _stored(tmp_path / "index")[str(qid)]
    assert thread.body == "Watch this\nthen tell me"
    assert [a.body for a in thread.answers] == ["Not for me."]


def test_a_stack_exchange_body_loses_its_script_too(tmp_path):
    path = tmp_path / "Posts.xml"
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n'
                    '<row Id="1" PostTypeId="1" Title="T" Score="1" CreationDate="2020-01-01T00:00:00" '
                    'Body="&lt;p&gt;hi&lt;/p&gt;&lt;script&gt;evil()&lt;/script&gt;" />\n</posts>\n')
    assert [t.body for t in read_threads([path])] == ["hi"]


# -- a CSV export --------------------------------------------------------------------------------------


def test_a_csv_in_a_code_page_says_how_to_convert_it(tmp_path):
    from qa_search import DumpFormatError

    path = tmp_path / "export.csv"
    path.write_bytes(b"id,title,body\n1,Caf\xe9 talk,Je suis fatigu\xe9\n")
    with pytest.raises(DumpFormatError) as caught:
        list(read_threads([path]))
    message = str(caught.value)
    assert "line 2: not valid UTF-8" in message and "iconv -f WINDOWS-1252 -t UTF-8" in message
    assert "fatigu" not in message


# -- Discourse webhooks --------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path):
    index = ForumIndex(FakeEmbedder())
    index.upsert([Thread("old", "Is it normal to miss my ex months later?")])
    index.save(tmp_path / "index")
    with _client(tmp_path / "index", discourse_secret=SECRET, webhook_secret=GENERIC,
                 write_rate="1000/second") as c:
        yield c


def test_a_discourse_event_is_held_to_the_bounds_of_a_write(client):
    """The generic webhook checks threads as POST /v1/threads does; a Discourse event stored a
    100,000-character title, a 5,000-character id or a million-character post as it came."""
    for payload in (topic(tid=5, title="t" * 100_000), topic(tid="9" * 5000),
                    topic(tid=6, tags=[f"tag{i}" for i in range(500)])):
        r = send(client, "topic_created", payload)
        assert r.status_code == 422 and "nothing was written" in r.json()["detail"]
        assert "ttttt" not in r.text and "tag499" not in r.text
    assert stored(client, "5") is None and stored(client, "6") is None
    assert send(client, "topic_created", topic(tid=7)).json()["action"] == "upserted"
    long_post = "I cannot sleep " * 20_000  # 300,000 characters
    for number in (1, 2):
        r = send(client, "post_created", post(70 + number, number, long_post, tid=7))
        assert r.status_code == 422 and "the post's text (at most 200000 characters)" in r.json()["detail"]
        assert "cannot sleep" not in r.text
    assert stored(client, "7").body == "" and stored(client, "7").answers == ()
    r = send(client, "post_created", post(72, 2, "Try a fixed wake-up time.", tid=7))
    assert r.json()["action"] == "upserted"
    assert stored(client, "7").answers[0].body == "Try a fixed wake-up time."


def test_events_on_a_thread_a_sync_stored_beyond_those_bounds_still_apply(client):
    # a sync stores a forum's thread whole; only what an event changes is held to the bounds
    live = client.app.state.live
    big = Thread("8", "Megathread", body="x " * 149_999 + "x")
    live.upsert(big)
    r = send(client, "post_created", post(81, 2, "A reply to the long first post.", tid=8))
    assert r.status_code == 200 and r.json()["action"] == "upserted"
    assert stored(client, "8").body == big.body and len(stored(client, "8").answers) == 1


def test_a_sqlite_path_with_no_database_is_refused_and_nothing_is_created(tmp_path, monkeypatch):
    # sqlite:///forum.db is relative to the working directory: a cron job's is not the operator's
    monkeypatch.chdir(tmp_path)
    message = _refused(tmp_path / "index", "sqlite:///forum.sqlite")
    assert "no SQLite database at forum.sqlite" in message and "four slashes" in message
    assert not (tmp_path / "forum.sqlite").exists() and not (tmp_path / "index").exists()


def test_a_postgresql_database_in_sql_ascii_is_read_as_utf8(postgres_url, tmp_path):  # noqa: F811
    """An old forum's database created without an encoding is SQL_ASCII: the server hands out
    whatever bytes the forum stored (UTF-8, for Question2Answer)."""
    admin = sa.create_engine(postgres_url.replace("/forum?", "/postgres?"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("DROP DATABASE IF EXISTS legacy"))
        conn.execute(sa.text("CREATE DATABASE legacy ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
                             "TEMPLATE template0"))
    admin.dispose()
    url = postgres_url.replace("/forum?", "/legacy?")
    forum = Q2AForum(f"{url}&client_encoding=utf8")  # the forum writes UTF-8
    qid = forum.add(type="Q", title="Café au lait et anxiété", format="html",
                    content="<p>Je suis fatigué</p>")
    _sync(tmp_path / "index", url)
    assert _stored(tmp_path / "index")[str(qid)].body == "Je suis fatigué"


# -- Discourse on PostgreSQL: who may read a category ------------------------------------------------

#: The docs' way to index a read-restricted category for its groups (docs/forum-integration.md).
VISIBLE_TO = """CASE WHEN c.read_restricted THEN ARRAY(SELECT g.name FROM category_groups cg
     JOIN groups g ON g.id = cg.group_id WHERE cg.category_id = c.id ORDER BY g.name) END AS visible_to"""
RESTRICTED_KEPT = ("AND (NOT COALESCE(c.read_restricted, false) OR EXISTS (SELECT 1 FROM category_groups cg "
                   "WHERE cg.category_id = c.id))")


def _discourse_with_groups(url: str) -> DiscourseForum:
    forum = DiscourseForum(url)
    forum.run("DROP TABLE IF EXISTS category_groups, groups")
    forum.run("CREATE TABLE groups (id serial PRIMARY KEY, name varchar NOT NULL)")
    forum.run("CREATE TABLE category_groups (category_id integer, group_id integer, permission_type integer)")
    forum.run("INSERT INTO categories (id, name, read_restricted) VALUES (1, 'Sleep', false), "
              "(2, 'Members only', true), (3, 'Staff', true)")
    forum.run("INSERT INTO groups (id, name) VALUES (10, 'members'), (11, 'trust_level_2')")
    forum.run("INSERT INTO category_groups VALUES (2, 10, 1), (2, 11, 1)")
    return forum


def test_the_discourse_example_leaves_read_restricted_categories_out(postgres_url, tmp_path):  # noqa: F811
    forum = _discourse_with_groups(postgres_url)
    public = forum.topic("Awake after night shifts", "<p>I lie awake for hours.</p>", 1)
    moved = forum.topic("My flatmate's drinking", "<p>Names and details of my flatmate.</p>", 1)
    forum.topic("Relapsed after a year", "<p>Only our group should read this.</p>", 2)
    index_dir = tmp_path / "index"
    sync = dict(mapping=DISCOURSE_MAPPING, embedder=FakeEmbedder(), margin=NO_MARGIN)
    sync_index(index_dir, postgres_url, **sync)
    assert set(_stored(index_dir)) == {str(public), str(moved)}
    # a moderator moves a topic into a restricted category: no time of it changes
    forum.run("UPDATE topics SET category_id = 3 WHERE id = :t", t=moved)
    report = sync_index(index_dir, postgres_url, allow_removals=True, **sync)
    assert report.removed == 1 and set(_stored(index_dir)) == {str(public)}


def test_a_mapping_gives_a_restricted_categorys_topics_to_its_groups(postgres_url, tmp_path):  # noqa: F811
    forum = _discourse_with_groups(postgres_url)
    public = forum.topic("Awake after night shifts", "<p>I lie awake for hours.</p>", 1)
    members = forum.topic("Relapsed after a year", "<p>Only our group should read this.</p>", 2)
    forum.topic("Banned users list", "<p>staff notes</p>", 3)  # restricted, to no group listed
    example = DISCOURSE_MAPPING.read_text()
    assert "AND NOT COALESCE(c.read_restricted, false)" in example
    mapping = tmp_path / "discourse.yaml"
    mapping.write_text(example.replace("SELECT t.id, t.title,", f"SELECT t.id, t.title, {VISIBLE_TO},")
                       .replace("AND NOT COALESCE(c.read_restricted, false)", RESTRICTED_KEPT))
    sync_index(tmp_path / "index", postgres_url, mapping=mapping, embedder=FakeEmbedder(), margin=NO_MARGIN)
    threads = _stored(tmp_path / "index")
    assert set(threads) == {str(public), str(members)}
    assert threads[str(public)].visible_to == ()
    assert threads[str(members)].visible_to == ("members", "trust_level_2")


# -- Question2Answer: an answer turned into a comment ----------------------------------------------------


@pytest.mark.parametrize("parent", ["question", "answer"])
def test_an_answer_turned_into_a_comment_leaves_its_thread(mariadb_url, tmp_path, parent):  # noqa: F811
    """Question2Answer's "convert to comment" sets the post's type to C and its parent to the
    question or one of its answers, recording an update of the post (updatetype T); the
    question is not touched."""
    forum = Q2AForum(mariadb_url)
    ids = forum.seed()
    index_dir = tmp_path / "index"
    sync = dict(margin=NO_MARGIN)
    _sync(index_dir, mariadb_url, **sync)
    assert [a.id for a in _stored(index_dir)[str(ids["q1"])].answers] == [str(ids["a1"]), str(ids["a2"])]
    new_parent = ids["q1"] if parent == "question" else ids["a2"]
    forum.set(ids["a1"], type="C", parentid=new_parent, updated=T0 + timedelta(hours=1), updatetype="T")
    report = _sync(index_dir, mariadb_url, **sync)
    assert (report.full, report.changed) == (False, 1)
    assert [a.id for a in _stored(index_dir)[str(ids["q1"])].answers] == [str(ids["a2"])]


def test_a_csv_post_longer_than_the_csv_modules_default_field_is_read(tmp_path):
    path = tmp_path / "export.csv"
    body = "I have been writing this down for months. " * 4000  # 172,000 characters
    path.write_text(f'id,title,body\n1,A long story,"{body}"\n2,Short,fine\n', encoding="utf-8")
    threads = list(read_threads([path]))
    assert [t.id for t in threads] == ["1", "2"] and threads[0].body == body.strip()


def test_a_database_host_that_never_answers_is_given_up_on_in_one_line(tmp_path, monkeypatch):
    """A host that takes the connection and says nothing (a firewall, a stuck proxy): libpq
    would wait for the system's TCP timeout; the sync gives up after its connect timeout."""
    import socket

    from qa_search.tools import forumdb

    monkeypatch.setattr(forumdb, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel's backlog and are never answered
        port = silent.getsockname()[1]
        url = f"postgresql+psycopg://reader@127.0.0.1:{port}/forum?password={PASSWORD}"
        messages: list[str] = []
        # without a timeout no answer ever comes: the sync runs aside, so a regression fails
        # here instead of hanging the suite
        attempt = threading.Thread(target=lambda: messages.append(_refused(tmp_path / "index", url)),
                                   daemon=True)
        attempt.start()
        attempt.join(60)
        assert not attempt.is_alive(), "the sync still waits on a host that never answers"
    assert messages and "timeout" in messages[0].lower() and "127.0.0.1" in messages[0]
