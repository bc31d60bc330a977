"""The upscaler registry: every way of enlarging a picture, by the name users see in dropdowns and the API.

An ``Upscaler`` turns a PIL picture into one ``scale`` times larger. The built-in ones need no file (None, Lanczos,
Nearest, A1111's first three); model upscalers (files in models/ESRGAN and friends) and extension upscalers are
added with ``register``. Callers ask by name and get a clear error for an unknown one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from paragoger.errors import UserError

# scale -> image. ``image`` is RGB; the result is about ``scale`` times its size (the caller resizes exactly).
UpscaleFunction = Callable[[Image.Image, float], Image.Image]


@dataclass
class Upscaler:
    name: str
    upscale_fn: UpscaleFunction
    scale: float = 4.0                 # the model's native factor (what /sdapi/v1/upscalers reports)
    model_path: Path | None = None     # the file behind a model upscaler
    source: str = "builtin"            # "builtin", "model" or the extension's name
    model_name: str | None = None      # the family A1111 reports as model_name ("ESRGAN", "RealESRGAN", ...)

    def upscale(self, image: Image.Image, scale: float) -> Image.Image:
        return self.upscale_fn(image, scale)


def _resample(method: Image.Resampling) -> UpscaleFunction:
    def upscale(image: Image.Image, scale: float) -> Image.Image:
        width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        return image.resize((width, height), resample=method)
    return upscale


def builtin_upscalers() -> list[Upscaler]:
    return [Upscaler("None", lambda image, scale: image, scale=1.0),
            Upscaler("Lanczos", _resample(Image.Resampling.LANCZOS), scale=4.0),
            Upscaler("Nearest", _resample(Image.Resampling.NEAREST), scale=4.0)]


class UpscalerRegistry:
    """Name -> Upscaler, in the order users see them (built-ins first)."""

    def __init__(self, upscalers: list[Upscaler] | None = None):
        self._by_name: dict[str, Upscaler] = {}
        for upscaler in upscalers if upscalers is not None else builtin_upscalers():
            self.register(upscaler)

    def register(self, upscaler: Upscaler) -> None:
        self._by_name[upscaler.name] = upscaler

    def replace_source(self, source: str, upscalers: list[Upscaler]) -> None:
        """Drop every upscaler of ``source`` and register ``upscalers`` instead (a rescan of model folders)."""
        self._by_name = {name: u for name, u in self._by_name.items() if u.source != source}
        for upscaler in upscalers:
            self.register(upscaler)

    def names(self) -> list[str]:
        return list(self._by_name)

    def all(self) -> list[Upscaler]:
        return list(self._by_name.values())

    def get(self, name: str | None) -> Upscaler:
        key = (name or "None").strip()
        if key in self._by_name:
            return self._by_name[key]
        folded = {existing.lower(): upscaler for existing, upscaler in self._by_name.items()}
        if key.lower() in folded:
            return folded[key.lower()]
        raise UserError("unknown_upscaler", name=name, known=", ".join(self.names()))

    def upscale(self, image: Image.Image, scale: float, name: str | None) -> Image.Image:
        return self.get(name).upscale(image, scale)
