"""Service settings, read from the environment (prefix ``QA_SEARCH_``) or passed in directly.

Only the service reads the environment; the library takes typed objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_SEARCH_", extra="ignore")

    #: Index directory (or snapshot) to serve.
    index_dir: Path = Path("indexes/sample/index")
    #: Key that writes (POST/DELETE /v1/threads) must present; writes are refused while unset.
    api_key: SecretStr | None = None
    #: Origins allowed to call the API from a browser (CORS), comma-separated in the environment.
    cors_origins: Annotated[list[str], NoDecode] = []
    #: Largest k a request may ask for.
    max_k: int = Field(50, ge=1, le=1000)
    #: Longest query accepted, in characters.
    max_query_chars: int = Field(2000, ge=1)
    #: Queries shorter than this (after trimming) return no hits without touching the model.
    min_query_chars: int = Field(3, ge=1)
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = Field(1_000_000, ge=1024)
    #: Most threads one upsert may carry.
    max_batch_threads: int = Field(500, ge=1)
    #: Query embeddings kept in the LRU cache (0 disables it).
    cache_size: int = Field(4096, ge=0)
    #: CPU threads for the model and FAISS per process (unset: the libraries' defaults).
    threads: int | None = Field(None, ge=1)
    #: Seconds between checks for a newly published generation and for other processes' writes.
    poll_seconds: float = Field(0.5, gt=0)
    #: Write query text to the logs (off: access logs show the route only). For debugging.
    log_queries: bool = False

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value
