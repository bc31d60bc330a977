"""Errors a person is meant to read: each carries a message id from ``messages`` and an HTTP status."""
from __future__ import annotations

from paragoger import messages


class UserError(Exception):
    """Something the user can fix. ``str(err)`` is the English sentence; ``key``/``params`` allow translation."""

    status = 400

    def __init__(self, message_id: str, /, **params):
        self.key = message_id
        self.params = params
        super().__init__(messages.render(message_id, **params))

    def render(self, catalogue: dict[str, str] | None = None) -> str:
        return messages.render(self.key, catalogue, **self.params)


class NotFoundError(UserError):
    status = 404


class ModelLoadError(UserError):
    """A checkpoint or VAE could not be loaded; the previously loaded model is untouched."""

    status = 400


class QueueFullError(UserError):
    status = 429


class AccessRefusedError(UserError):
    """Refused by a rule of the app (e.g. installing extensions while listening beyond this machine)."""

    status = 403


class UnavailableError(UserError):
    """The app cannot take this now (it is restarting)."""

    status = 503
