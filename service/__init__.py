"""The HTTP layer of qa_search: a thin FastAPI app over the library's public API."""
