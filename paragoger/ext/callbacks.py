"""Callbacks extensions registered, by kind, each with its owner (the extension) and an optional scope (one
generation). A callback that raises is reported to ``on_error`` (which disables its extension) and the others
still run."""
from __future__ import annotations

import contextlib
import itertools
import threading
from dataclasses import dataclass
from typing import Any, Callable

from paragoger.ext.api import CALLBACK_KINDS


@dataclass
class Callback:
    kind: str
    fn: Callable
    owner: str
    scope: int | None = None


class CallbackRegistry:
    def __init__(self, on_error: Callable[[str, BaseException], None]):
        self._callbacks: list[Callback] = []
        self._lock = threading.Lock()
        self._scopes = itertools.count(1)
        self._on_error = on_error

    def add(self, kind: str, fn: Callable, *, owner: str, scope: int | None = None) -> None:
        if kind not in CALLBACK_KINDS:
            raise ValueError(f"unknown callback kind {kind!r}; known: {', '.join(CALLBACK_KINDS)}")
        with self._lock:
            self._callbacks.append(Callback(kind, fn, owner, scope))

    def remove_owner(self, owner: str) -> None:
        with self._lock:
            self._callbacks = [cb for cb in self._callbacks if cb.owner != owner]

    def registered(self, kind: str | None = None, scope: int | None = None) -> list[Callback]:
        with self._lock:
            return [cb for cb in self._callbacks
                    if (kind is None or cb.kind == kind) and (scope is None or cb.scope == scope)]

    @contextlib.contextmanager
    def scope(self):
        """A new scope id; every callback added with it is removed when the block ends, however it ends."""
        scope = next(self._scopes)
        try:
            yield scope
        finally:
            with self._lock:
                self._callbacks = [cb for cb in self._callbacks if cb.scope != scope]

    def call(self, kind: str, *args: Any, scope: int | None = None) -> None:
        """Run the app-wide callbacks of ``kind`` and those of ``scope`` (one generation), in order."""
        with self._lock:
            chosen = [cb for cb in self._callbacks if cb.kind == kind and cb.scope in (None, scope)]
        for cb in chosen:
            try:
                cb.fn(*args)
            except Exception as err:  # an extension's bug must not stop the app or the other extensions
                self._on_error(cb.owner, err)
