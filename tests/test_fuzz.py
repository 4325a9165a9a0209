"""Fuzzing every operation of the OpenAPI schema (bounded): no request may cause a 5xx."""

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from conftest import FakeEmbedder
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from qa_search import ForumIndex, Thread
from service.app import create_app
from service.settings import Settings

KEY = "fuzz-key"
# the app is built at import, because schemathesis reads its schema while collecting the tests
INDEX_DIR = Path(tempfile.mkdtemp(prefix="qa-search-fuzz-")) / "index"
_index = ForumIndex(FakeEmbedder())
_index.upsert([Thread("t1", "how to sleep better", tags=("sleep",)), Thread("t2", "missing my ex")])
_index.save(INDEX_DIR)
# with the webhooks' secrets set, so an unsigned event is the 401 it is in production, not a 503
APP = create_app(Settings(index_dir=INDEX_DIR, api_key=KEY, max_body_bytes=20_000, discourse_secret=KEY,
                          webhook_secret=KEY), embedder=FakeEmbedder())
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def running_app():
    try:
        with TestClient(APP):  # runs the lifespan: the index is loaded while the fuzzer calls the app
            yield
    finally:
        shutil.rmtree(INDEX_DIR.parent, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_no_input_causes_a_server_error(case):
    # with the key, so writes are exercised past authentication
    case.call_and_validate(headers={"X-API-Key": KEY}, checks=[not_a_server_error])
