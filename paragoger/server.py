"""Assembles the web server: the API routes, then the Gradio page mounted at "/", served by uvicorn."""
from __future__ import annotations

import threading
import webbrowser

import uvicorn
from fastapi import FastAPI

from paragoger.api.auth import install_basic_auth
from paragoger.api.routes import build_router, install_error_handlers


def build_app(context) -> FastAPI:
    """The FastAPI app with the API and (unless --nowebui) the page. API routes go first: a mount at "/"
    would shadow routes added after it."""
    options = context.options
    app = FastAPI(title="Paragoger SD API", docs_url="/docs")
    install_error_handlers(app)
    if options.api_auth:
        install_basic_auth(app, options.api_auth, prefix="/sdapi/")
    app.include_router(build_router(context))
    if not options.nowebui:
        from paragoger.ui.app import mount_ui

        app = mount_ui(app, context)
    return app


def local_url(options) -> str:
    host = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host
    return f"http://{host}:{options.port}/"


def serve(context) -> None:
    options = context.options
    app = build_app(context)
    if options.host not in ("127.0.0.1", "localhost", "::1") and not (options.gradio_auth or options.api_auth):
        print(f"WARNING: listening on {options.host} without --gradio-auth or --api-auth: anyone on the network "
              "can use this app.")
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level="warning")
    server = uvicorn.Server(config)
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

