"""Widget labels pass through ``label`` so a localization file can replace them later (A1111's JSON format:
English label -> translated label). The translation table is chosen per app, never stored globally."""
from __future__ import annotations

from contextvars import ContextVar

# The table in use while one UI is being built (set by ui.app.build_ui for the duration of the build).
_TABLE: ContextVar[dict[str, str]] = ContextVar("paragoger_label_table", default={})


def label(english: str) -> str:
    return _TABLE.get().get(english, english)


def use_table(table: dict[str, str]):
    """Context manager-ish token for ``build_ui``: ``token = use_table(t) ... reset_table(token)``."""
    return _TABLE.set(dict(table))


def reset_table(token) -> None:
    _TABLE.reset(token)
