"""What a tuned model directory records beside the model: the index settings that suit it."""

from __future__ import annotations

import json
from pathlib import Path

from qa_search.embedding.models import resolve_model
from qa_search.errors import QASearchError

#: Written into a tuned model's directory: the index settings that suit the model, which a new
#: index built with it starts from (see :func:`model_index_settings`).
SETTINGS_FILE = "qa_search.json"


def model_index_settings(model: str | None) -> dict[str, object]:
    """The index settings a model directory recommends (its :data:`SETTINGS_FILE`), or ``{}``.

    Only tuned models written by :func:`~qa_search.tools.tuning.tune` carry them; the packaged
    model, hub names and other directories give ``{}``. A damaged file raises
    :class:`QASearchError`. A lexical weight recorded without its rule comes from a tuning made
    when the fixed rule was the only one, and was measured under it, so it keeps that rule.
    """
    _, source = resolve_model(model)
    path = Path(source) / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))["index_settings"]
        if not isinstance(settings, dict):
            raise TypeError("index_settings is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise QASearchError(f"{path} is damaged: {exc}") from exc
    if "lexical_weight" in settings and "lexical_mode" not in settings:
        settings = {**settings, "lexical_mode": "fixed"}
    return settings
