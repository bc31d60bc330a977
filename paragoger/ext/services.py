"""What an extension's own tabs and HTTP routes may ask of the running app (``ext.app``), re-exported by the
public API. Everything goes through the app's queue and registries, so an extension's tab or route behaves like the
app's own: one generation at a time, the same checks, the same saved files."""
from __future__ import annotations

from typing import Any


class AppServices:
    """``ext.app``: bound to the app that loaded the extension. Usable once the app has started (in tabs, routes
    and callbacks), not while ``setup`` runs."""

    def __init__(self, context):
        self._context = context

    def generate(self, **fields: Any):
        """Queue a generation (fields of a GenerationRequest: ``prompt``, ``steps``, ``width``, ...; ``mode=
        "img2img"`` with ``init_images``) and wait for it; returns the GenerationResult (``.images[i].image``,
        ``.path``, ``.infotext``). Raises the app's UserError for a request that cannot run."""
        from paragoger.core.payloads import GenerationJob
        from paragoger.core.request import GenerationRequest

        request = self._context.check(GenerationRequest(**fields))  # the page's and the API's check
        return self._context.run_and_wait(GenerationJob(request))

    def upscale(self, image, scale: float, upscaler: str = "Lanczos"):
        """``image`` (PIL) enlarged ``scale`` times by the upscaler of that name (run by the app's worker, between
        generations)."""
        found = self._context.upscalers.get(upscaler)  # an unknown name fails at once
        picture = image.convert("RGB")
        return self._context.run_in_worker(lambda: found.upscale(picture, float(scale)))

    def caption(self, image, captioner: str = "clip") -> str:
        """The text a captioner ("clip", "deepdanbooru" or one an extension registered) gives ``image``."""
        return self._context.interrogate(image, captioner)

    def setting(self, key: str) -> Any:
        """The current value of a setting (the app's own or one an extension registered)."""
        return self._context.settings[key]

    def sampler_names(self) -> list[str]:
        return [spec["name"] for spec in self._context.samplers.samplers()]

    def upscaler_names(self) -> list[str]:
        return self._context.upscalers.names()

    def checkpoint_names(self) -> list[str]:
        return [info.title for info in self._context.library.checkpoints()]
