"""Paragoger SD entry point: flags -> AppContext -> web server. No logic lives here."""
from __future__ import annotations

import os
import sys

# Nothing may call out at start: no model hub look-ups, no Gradio analytics or version checks.
# These must be set before huggingface_hub and gradio are first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DISABLE_TELEMETRY", "1")


def main(argv: list[str] | None = None) -> None:
    from paragoger.cli import parse_args
    from paragoger.context import AppContext
    from paragoger.server import serve

    options = parse_args(sys.argv[1:] if argv is None else argv)
    context = AppContext(options)
    context.startup()
    serve(context)


if __name__ == "__main__":
    main()
