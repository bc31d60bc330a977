"""HTTP Basic auth for the API (``--api-auth user:pass[,user2:pass2]``), as A1111 answers: 401 with
``WWW-Authenticate: Basic``."""
from __future__ import annotations

import base64
import binascii
import secrets

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from paragoger import messages


def credentials_ok(header: str | None, users: tuple[tuple[str, str], ...]) -> bool:
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Compare every pair in constant time so timing does not reveal which user exists.
    matched = False
    for known_user, known_password in users:
        matched |= secrets.compare_digest(user, known_user) & secrets.compare_digest(password, known_password)
    return matched


def install_basic_auth(app: FastAPI, users: tuple[tuple[str, str], ...], *, prefix: str | tuple[str, ...]) -> None:
    """Plain ASGI middleware (not ``@app.middleware``, which hides a client disconnect from the routes)."""
    app.add_middleware(BasicAuth, users=users, prefix=prefix)


class BasicAuth:
    def __init__(self, app, users: tuple[tuple[str, str], ...], prefix: str | tuple[str, ...]):
        self.app, self.users, self.prefix = app, users, prefix

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(self.prefix) \
                and not credentials_ok(Headers(scope=scope).get("authorization"), self.users):
            response = JSONResponse(status_code=401, content={"detail": messages.render("auth_required")},
                                    headers={"WWW-Authenticate": "Basic"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
