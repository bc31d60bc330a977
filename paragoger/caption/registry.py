"""The captioner registry: every way of turning a picture into text, by the name the API and the UI use.

A captioner is any object with a ``name`` and ``caption(image, options) -> str`` (``options``: the app's setting
values, a mapping by A1111 key). One that holds models may also have ``unload()``; the registry calls it after use
unless "interrogate_keep_models_in_memory" is on, and then keeps only the captioner used last loaded. The built-in
ones are "clip" (BLIP caption plus CLIP-ranked flavours) and "deepdanbooru" (booru tags); extensions add theirs
with ``register``.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

from PIL import Image

from paragoger.errors import NotFoundError

KEEP_MODELS = "interrogate_keep_models_in_memory"


class Captioner(Protocol):
    name: str

    def caption(self, image: Image.Image, options: Mapping[str, Any]) -> str: ...


class CaptionerRegistry:
    """Name -> captioner, in the order registered (built-ins first)."""

    def __init__(self, captioners: list | None = None):
        self._by_name: dict[str, Captioner] = {}
        self._last_used: Captioner | None = None
        for captioner in captioners or []:
            self.register(captioner)

    def register(self, captioner: Captioner) -> None:
        self._by_name[captioner.name] = captioner

    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str | None) -> Captioner:
        key = (name or "").strip()
        found = self._by_name.get(key) or {n.lower(): c for n, c in self._by_name.items()}.get(key.lower())
        if found is None:
            raise NotFoundError("unknown_captioner", name=name, known=", ".join(self.names()))
        return found

    def caption(self, name: str | None, image: Image.Image, options: Mapping[str, Any]) -> str:
        """The text for ``image`` from captioner ``name``; models are freed afterwards unless kept by setting.
        Call it from the job worker only (see AppContext.interrogate): it loads models on the device."""
        captioner = self.get(name)
        keep = bool(options.get(KEEP_MODELS, False))
        if self._last_used is not None and self._last_used is not captioner:
            _unload(self._last_used)
        self._last_used = captioner
        try:
            return captioner.caption(flatten_rgb(image), options)
        finally:
            if not keep:
                _unload(captioner)
                self._last_used = None

    def unload_all(self) -> None:
        for captioner in self._by_name.values():
            _unload(captioner)
        self._last_used = None


def flatten_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent parts shown on white (as taggers are trained and as a person sees the picture)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
        canvas.alpha_composite(image.convert("RGBA"))
        return canvas.convert("RGB")
    return image.convert("RGB")


def _unload(captioner: Captioner) -> None:
    unload = getattr(captioner, "unload", None)
    if callable(unload):
        unload()
