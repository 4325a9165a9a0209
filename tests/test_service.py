import logging

import pytest
from conftest import FakeEmbedder
from fastapi.testclient import TestClient

from qa_search import Answer, ForumIndex, Thread
from service.app import _DropQueryString, create_app
from service.settings import Settings


@pytest.fixture
def client():
    index = ForumIndex(FakeEmbedder())
    index.upsert([
        Thread("t1", "How do I calm down before a panic attack?", url="https://f/t1",
               answers=(Answer("t1-a1", "Slow breathing helps: in for four, out for six."),)),
        Thread("t2", "Is it normal to miss my ex months later?"),
    ])
    with TestClient(create_app(Settings(max_k=5), index=index)) as c:
        yield c


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_search_returns_hits_like_the_library(client):
    body = client.get("/v1/search", params={"q": "slow breathing in for four", "k": 2}).json()
    assert [h["thread_id"] for h in body["hits"]] == ["t1", "t2"]
    first = body["hits"][0]
    assert first["matched"] == "answer" and first["answer_id"] == "t1-a1"
    assert set(first) == {"thread_id", "score", "title", "matched", "answer_id", "snippet", "url"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "x", "k": 6}, "k must be at most 5"),
        ({"q": "x", "k": 0}, "greater than or equal to 1"),
        ({"q": "x", "k": "many"}, "valid integer"),
        ({"q": "   "}, "q must contain some text"),
        ({}, "Field required"),
        ({"q": "x" * 2001}, "at most 2000 characters"),
    ],
)
def test_bad_search_requests_get_a_4xx_with_a_message(client, params, message):
    resp = client.get("/v1/search", params=params)
    assert resp.status_code == 422
    assert message in resp.text


def test_access_log_lines_drop_the_query_string():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/v1/search?q=my+secret", "1.1", 200), None)
    assert _DropQueryString().filter(record)
    assert "secret" not in record.getMessage() and "/v1/search" in record.getMessage()
