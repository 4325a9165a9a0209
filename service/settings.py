"""Service settings, read from the environment (prefix ``QA_SEARCH_``) or passed in directly.

Only the service reads the environment; the library takes typed objects.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_SEARCH_", extra="ignore")

    #: Index directory (or snapshot) to serve.
    index_dir: Path = Path("indexes/sample/index")
    #: Largest k a search may ask for.
    max_k: int = Field(50, ge=1, le=1000)
    #: Longest query accepted, in characters.
    max_query_chars: int = Field(2000, ge=1)
    #: Write query text to the logs (off: access logs show the route only). For debugging.
    log_queries: bool = False
