"""The mapping presets ``qa-search sync --schema`` names: a Question2Answer database's."""

from __future__ import annotations

import re
from collections.abc import Callable

from qa_search.errors import QASearchError
from qa_search.tools.sourcemapping import RecordQuery, SourceMapping

_PREFIX = re.compile(r"^[A-Za-z0-9_]{0,40}$")


def q2a_mapping(prefix: str = "qa_") -> SourceMapping:
    """The mapping of a Question2Answer database whose tables are named ``{prefix}posts`` and
    ``{prefix}categories``.

    Questions (type ``Q``) are threads, answers (``A``) their answers, the question's
    ``selchildid`` the accepted one; hidden (``*_HIDDEN``) and queued (``*_QUEUED``) posts are
    left out, and so are comments (``C``) and notes. ``netvotes`` is the score, the category its
    title, ``tags`` the comma-separated tags; HTML content (``format`` ``html``) becomes text. A
    closed question (``closedbyid`` set) keeps ``closed_at`` (its last update, which the close
    sets) and, when it was closed as a duplicate of another question, ``duplicate_of``.
    """
    if not _PREFIX.match(prefix):
        raise QASearchError("the table prefix may hold letters, digits and underscores only")
    posts, categories = f"{prefix}posts", f"{prefix}categories"
    threads = f"""
        SELECT q.postid AS id, q.title AS title, q.content AS body, q.format AS format,
               q.tags AS tags, c.title AS category, q.created AS created_at,
               q.netvotes AS score, COALESCE(q.updated, q.created) AS updated_at,
               CASE WHEN q.closedbyid IS NOT NULL THEN COALESCE(q.updated, q.created) END AS closed_at,
               d.postid AS duplicate_of
        FROM {posts} q
        LEFT JOIN {categories} c ON c.categoryid = q.categoryid
        LEFT JOIN {posts} d ON d.postid = q.closedbyid AND d.type = 'Q'
        WHERE q.type = 'Q'"""
    answers = f"""
        SELECT a.parentid AS id, a.postid AS answer_id, a.content AS answer, a.format AS format,
               a.netvotes AS answer_score,
               CASE WHEN q.selchildid = a.postid THEN 1 ELSE 0 END AS answer_accepted,
               COALESCE(a.updated, a.created) AS updated_at
        FROM {posts} a
        JOIN {posts} q ON q.postid = a.parentid AND q.type = 'Q'
        WHERE a.type = 'A'"""
    # every question, answer and comment, whatever its state: hiding or queueing one changes its
    # thread, and so does an answer converted to a comment (type C, its parent the question or
    # one of its answers), which leaves the answers query without touching the question
    changes = f"""
        SELECT CASE WHEN p.type IN ('Q', 'Q_HIDDEN', 'Q_QUEUED') THEN p.postid
                    WHEN p.type IN ('A', 'A_HIDDEN', 'A_QUEUED') THEN p.parentid
                    WHEN up.type IN ('A', 'A_HIDDEN', 'A_QUEUED') THEN up.parentid
                    ELSE p.parentid END AS id,
               COALESCE(p.updated, p.created) AS updated_at
        FROM {posts} p
        LEFT JOIN {posts} up ON up.postid = p.parentid
        WHERE p.type IN ('Q', 'Q_HIDDEN', 'Q_QUEUED', 'A', 'A_HIDDEN', 'A_QUEUED',
                         'C', 'C_HIDDEN', 'C_QUEUED')"""
    return SourceMapping(
        name=f"Question2Answer ({posts})",
        threads=RecordQuery(" ".join(threads.split())),
        answers=RecordQuery(" ".join(answers.split())),
        changes=RecordQuery(" ".join(changes.split())),
    )


#: The presets ``--schema`` names, each a function of the table prefix.
SCHEMAS: dict[str, Callable[[str], SourceMapping]] = {"q2a": q2a_mapping}
