"""What the engine asks of ControlNet: the hooks of one generation pass, from the request's units.

``ControlService(get_model=..., preprocessors=...)`` is built once by the app (``get_model(name) -> ControlModel``
from ``control.models``; ``preprocessors``: the annotator registry with ``.detect(name, image, resolution=...,
threshold_a=..., threshold_b=...)``, or None to use every unit's picture as its map; ``image_encoders``: the
``control.image_encoders.ImageEncoders`` IP-Adapter units need) and handed to ``Engine``.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

from paragoger.control.guidance import prepare_control
from paragoger.control.infotext import unit_fields
from paragoger.control.ip_adapter import IMAGE_ENCODER_MODULES, UNetLocks
from paragoger.core.denoise import ModelHooks

DETECTIONS_KEPT = 8   # detected maps kept for the next pass or batch (a Hires. fix, batch count, a retry)


class ControlService:
    def __init__(self, *, get_model, preprocessors=None, find_model=None, list_models=None,
                 image_encoders=None):
        self.get_model = get_model
        self.image_encoders = image_encoders
        self.unet_locks = UNetLocks()   # IP-Adapters on a shared UNet: one pass at a time
        self.find_model = find_model  # name -> model_files.ControlModelInfo (its title for the infotext)
        self.list_models = list_models  # () -> [ControlModelInfo]: the choices of the X/Y/Z plot's model axis
        self.registry = preprocessors
        self.preprocessors = _RememberedDetections(preprocessors) if preprocessors is not None else None

    def check_unit(self, unit) -> None:
        """UserError (before queueing) when a unit names a model or preprocessor that is not there."""
        if self.find_model is not None and unit.model and unit.model != "None":
            self.find_model(unit.model)
        lookup = getattr(self.registry, "get", None)  # a registry; a bare detector object has no names to check
        if lookup is not None and unit.module and unit.module != "none" and unit.module not in IMAGE_ENCODER_MODULES:
            lookup(unit.module)

    def model_names(self) -> list[str]:
        return [info.title for info in self.list_models()] if self.list_models is not None else []

    def infotext_fields(self, request) -> dict[str, str]:
        """sd-webui-controlnet's ``ControlNet N`` fields of the request's enabled units."""
        units = [unit for unit in getattr(request, "controlnet_units", None) or [] if unit.enabled]
        if not units:
            return {}
        titles = []
        for unit in units:
            title = unit.model or "None"
            if self.find_model is not None and title != "None":
                title = self.find_model(title).title
            titles.append(title)
        return unit_fields(units, titles)

    def prepare(self, request, *, width: int, height: int, picture=None, mask=None, family: str | None = None,
                stage: str = "only", video: bool = False) -> ModelHooks | None:
        """The hooks for one pass of ``request`` at ``width`` x ``height`` (see ``guidance.prepare_control``), or
        None when no unit takes part."""
        units = getattr(request, "controlnet_units", None) or []
        if not any(unit.enabled for unit in units):
            return None
        guidance = prepare_control(units, width=width, height=height, get_model=self.get_model, picture=picture,
                                   mask=mask, preprocessors=self.preprocessors, family=family, stage=stage,
                                   video=video, image_encoders=self.image_encoders, unet_locks=self.unet_locks)
        return guidance.hooks() if guidance else None


class _RememberedDetections:
    """The preprocessors, remembering their last few results: every pass and batch of a generation asks again
    for the same picture's map, and annotators are slow."""

    def __init__(self, preprocessors, kept: int = DETECTIONS_KEPT):
        self.preprocessors = preprocessors
        self.kept = kept
        self.results: OrderedDict = OrderedDict()

    def detect(self, name, image, **options):
        digest = hashlib.sha1(image.tobytes()).hexdigest()
        key = (name, image.mode, image.size, digest, tuple(sorted(options.items())))
        if key in self.results:
            self.results.move_to_end(key)
            return self.results[key]
        result = self.preprocessors.detect(name, image, **options)
        self.results[key] = result
        while len(self.results) > self.kept:
            self.results.popitem(last=False)
        return result
