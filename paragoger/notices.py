"""Notices: what the app tells the person outside any one request (a precision it did not use, a checkpoint loaded
instead of the chosen one), shown on the page's model status line and in the API's /memory, and written to the log
when they are given. Each has a key, so it can be replaced or withdrawn when things change."""
from __future__ import annotations

import threading
from typing import Callable

from paragoger import messages


class Notices:
    def __init__(self, log: Callable[[str], None] | None = None):
        self._items: dict[str, tuple[str, dict]] = {}
        self._lock = threading.Lock()
        self._log = log or (lambda text: print(text, flush=True))

    def give(self, key: str, message_id: str, /, **params) -> None:
        """Show message ``message_id`` under ``key`` (replacing the one there); logged when it is new."""
        with self._lock:
            new = self._items.get(key) != (message_id, params)
            self._items[key] = (message_id, params)
        if new:
            self._log(messages.render(message_id, **params))

    def withdraw(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def texts(self, catalogue: dict[str, str] | None = None) -> list[str]:
        """Every notice, rendered in the given language."""
        with self._lock:
            items = list(self._items.values())
        return [messages.render(message_id, catalogue, **params) for message_id, params in items]

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)
