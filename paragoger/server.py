"""Assembles the web server: the API routes, then the Gradio page mounted at "/", served by uvicorn."""
from __future__ import annotations

import threading
import webbrowser

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware

from paragoger import messages
from paragoger.api.auth import install_basic_auth
from paragoger.api import controlnet as controlnet_api
from paragoger.api.routes import build_router, install_error_handlers

GRACEFUL_SHUTDOWN_S = 5
EXTENSION_ROUTES = "/ext/"


def build_app(context) -> FastAPI:
    """The FastAPI app with the API and (unless --nowebui) the page. API routes go first: a mount at "/"
    would shadow routes added after it."""
    options = context.options
    app = FastAPI(title="Paragoger SD API", docs_url="/docs")
    install_error_handlers(app)
    if options.api_auth:
        install_basic_auth(app, options.api_auth, prefix=("/sdapi/", EXTENSION_ROUTES))
    install_body_limit(app, int(options.api_max_request_mb * 1024 * 1024))
    install_cors(app, options)
    app.include_router(build_router(context))
    app.include_router(controlnet_api.build_router(context))  # sd-webui-controlnet's /controlnet/* routes
    for route in context.extensions.routes:  # /ext/<extension>/<path>, registered with ext.register_route
        app.add_api_route(f"{EXTENSION_ROUTES}{route.owner}{route.path}", route.endpoint, methods=list(route.methods),
                          tags=[f"extension: {route.owner}"])
    if not options.nowebui:
        from paragoger.ui.app import mount_ui

        app = mount_ui(app, context)
    return app


def install_body_limit(app: FastAPI, limit: int) -> None:
    """Refuse a request whose declared body is larger than ``limit`` bytes with 413, before reading it.
    Plain ASGI (not ``@app.middleware``) so that routes still hear a client disconnect."""
    app.add_middleware(BodyLimit, limit=limit)


class BodyLimit:
    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length")
            if declared and declared.isdigit() and int(declared) > self.limit:
                response = JSONResponse(status_code=413, content={
                    "error": "RequestTooLarge", "key": "request_too_large",
                    "detail": messages.render("request_too_large", size=int(declared), limit=self.limit)})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_cors(app: FastAPI, options) -> None:
    """``--cors-allow-origins a,b`` and ``--cors-allow-origins-regex RE`` as in A1111: those origins may call
    every route with any method and header, credentials included. Neither flag: no CORS headers at all."""
    if not options.cors_allow_origins and not options.cors_allow_origins_regex:
        return
    app.add_middleware(CORSMiddleware, allow_origins=list(options.cors_allow_origins),
                       allow_origin_regex=options.cors_allow_origins_regex, allow_methods=["*"],
                       allow_headers=["*"], allow_credentials=True)


def local_url(options) -> str:
    host = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host
    return f"http://{host}:{options.port}/"


def exposure_warning(options) -> str | None:
    """The warning printed when the app listens beyond this machine without any authentication."""
    if options.host in ("127.0.0.1", "localhost", "::1") or options.gradio_auth or options.api_auth:
        return None
    return (f"WARNING: listening on {options.host} without --gradio-auth or --api-auth: anyone on the network "
            "can use this app.")


class _Server(uvicorn.Server):
    """uvicorn's server, which tells the ServerControl's hooks first when it starts shutting down."""

    def __init__(self, config, control):
        super().__init__(config)
        self.control = control

    async def shutdown(self, sockets=None) -> None:
        self.control.shutting_down()
        await super().shutdown(sockets)


def serve(context) -> None:
    options = context.options
    app = build_app(context)
    warning = exposure_warning(options)
    if warning:
        print(warning, flush=True)
    # A restart or stop (paragoger/lifecycle.py) lets responses in flight finish, but the page keeps a few
    # streams open for as long as it is shown: those are cut after a few seconds.
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level="warning",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    server = _Server(config, context.control)
    context.control.attach(server)
    url = local_url(options)

    def announce():
        print(f"Running on local URL:  {url}", flush=True)
        if options.share:
            from paragoger.ui.app import start_share_tunnel

            start_share_tunnel(options.port)
        if options.autolaunch:
            webbrowser.open(url)

    threading.Timer(1.5, announce).start()
    server.run()
    context.control.after_serve(context)  # restart (re-exec) or stop, when one was asked for

