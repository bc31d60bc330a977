"""ControlNet preprocessors (annotators) under sd-webui-controlnet's module names, and its "Pixel Perfect".

A ``Preprocessor`` turns a picture into a control map: ``run(image, *, resolution, threshold_a, threshold_b)``, PIL
RGB in and out (the inpaint ones: RGBA, see ``pictures``). ``PreprocessorRegistry`` holds them; the AppContext
owns one (``default_preprocessors``) and extensions may register more. Its ``detect`` is the one entry point the
API, the page preview and the units use: it finds the module (by name or by one of the extension's internal
names), reads any picture mode, fills in the slider defaults and runs it.

Thresholds: None or -1 (the extension API's "not set") mean the module's default; other values are kept inside
the slider's range (a zero blur or a negative rate would fail inside OpenCV rather than mean anything).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image

from paragoger.control import image_ops
from paragoger.control.depth_maps import (DEPTH_ANYTHING_FOLDER, MIDAS_FILE, DepthSources, depth_map,
                                          estimate_depth, normal_map)
from paragoger.control.network_annotators import NETWORK_ANNOTATORS, not_runnable
from paragoger.control.pictures import inpaint_map, rgb_pixels, with_mask
from paragoger.errors import UserError

DEFAULT_RESOLUTION = 512
RESOLUTION_RANGE = (8, 8192)  # below 64 only for tiny pictures through Pixel Perfect; above, memory runs out


class SliderSpec(NamedTuple):
    label: str
    default: float
    minimum: float
    maximum: float
    step: float


RESOLUTION = SliderSpec("Resolution", DEFAULT_RESOLUTION, 64, 2048, 1)


@dataclass(frozen=True)
class Preprocessor:
    name: str                                # sd-webui-controlnet's module name (what its UI lists)
    label: str                               # what the page shows
    run: Callable[..., Image.Image]          # run(image, *, resolution, threshold_a, threshold_b) -> map
    threshold_a: SliderSpec | None
    threshold_b: SliderSpec | None
    needs_files: tuple[str, ...] = ()        # annotator weight files it needs (names users have)
    aliases: tuple[str, ...] = ()            # the extension's internal names for it ("depth" -> "depth_midas")
    resolution: SliderSpec | None = None     # the resolution slider, where the extension shows one
    uses_mask: bool = False                  # inpaint: the map carries the mask as alpha (see ``pictures``)
    tags: tuple[str, ...] = ()               # the extension's control types it serves (page filters)


class PreprocessorRegistry:
    """Preprocessors by name. Registering a name again replaces the earlier one (an extension may override)."""

    def __init__(self):
        self._by_name: dict[str, Preprocessor] = {}

    def register(self, preprocessor: Preprocessor) -> None:
        self._by_name[preprocessor.name] = preprocessor

    def names(self) -> list[str]:
        return list(self._by_name)

    def aliases(self) -> dict[str, str]:
        """``{internal name: module name}`` for every registered module's aliases."""
        return {alias: p.name for p in self._by_name.values() for alias in p.aliases}

    def get(self, name: str) -> Preprocessor:
        """By module name or alias (exactly, then ignoring case); unknown: UserError("control_module_unknown")."""
        aliases = self.aliases()
        wanted = name if name in self._by_name else aliases.get(name, name)
        if wanted not in self._by_name and isinstance(name, str):
            every = {**aliases, **{known: known for known in self._by_name}}
            wanted = {key.casefold(): value for key, value in every.items()}.get(name.casefold(), name)
        if wanted not in self._by_name:
            raise UserError("control_module_unknown", name=name, known=", ".join(self._by_name))
        return self._by_name[wanted]

    def detect(self, name: str, image: Image.Image, *, resolution: int | None = DEFAULT_RESOLUTION,
               threshold_a: float | None = None, threshold_b: float | None = None,
               mask: Image.Image | None = None) -> Image.Image:
        """The control map of ``image`` by module ``name``. ``mask`` is for the inpaint modules (white = repaint).
        ``resolution`` None or -1: 512."""
        preprocessor = self.get(name)
        image = with_mask(image, mask) if preprocessor.uses_mask else Image.fromarray(rgb_pixels(image), "RGB")
        return preprocessor.run(image, resolution=checked_resolution(resolution),
                                threshold_a=slider_value(preprocessor.threshold_a, threshold_a),
                                threshold_b=slider_value(preprocessor.threshold_b, threshold_b))


def checked_resolution(resolution: int | None) -> int:
    if resolution is None or resolution == -1:
        return DEFAULT_RESOLUTION
    low, high = RESOLUTION_RANGE
    if not low <= resolution <= high:
        raise UserError("control_resolution_out_of_range", value=resolution, low=low, high=high)
    return int(resolution)


def slider_value(spec: SliderSpec | None, value: float | None) -> float:
    if spec is None:
        return 0.0 if value is None else float(value)
    if value is None or value == -1:
        return float(spec.default)
    return float(min(max(float(value), spec.minimum), spec.maximum))


# ------------------------------------------------------------------------------------------------ Pixel Perfect
RESIZE_MODE_NAMES = {"just resize": "Just Resize", "crop and resize": "Crop and Resize",
                     "resize and fill": "Resize and Fill", "just resize (latent upscale)": "Just Resize",
                     "inner fit (scale to fit)": "Crop and Resize", "outer fit (shrink to fit)": "Resize and Fill",
                     "envelope (outer fit)": "Resize and Fill", "scale to fit (inner fit)": "Crop and Resize"}
RESIZE_MODE_NUMBERS = ("Just Resize", "Crop and Resize", "Resize and Fill", "Just Resize")  # 3: latent upscale


def resize_mode_name(resize_mode: str | int) -> str:
    """"Just Resize", "Crop and Resize" or "Resize and Fill" from the API's names, old names or numbers."""
    if isinstance(resize_mode, int) and not isinstance(resize_mode, bool) and 0 <= resize_mode < 4:
        return RESIZE_MODE_NUMBERS[resize_mode]
    if isinstance(resize_mode, str) and resize_mode.strip().casefold() in RESIZE_MODE_NAMES:
        return RESIZE_MODE_NAMES[resize_mode.strip().casefold()]
    raise UserError("control_resize_mode_unknown", value=resize_mode,
                    known=", ".join(dict.fromkeys(RESIZE_MODE_NAMES.values())))


def pixel_perfect_resolution(image_size: tuple[int, int], target_size: tuple[int, int],
                             resize_mode: str | int) -> int:
    """The preprocessor resolution that makes the map exactly as large as the generation needs.

    Sizes are (width, height). The preprocessors scale the picture's short side to the resolution; the unit then
    scales the map to the generation size by ``resize_mode``. "Crop and Resize" (and "Just Resize") scale so the
    picture covers the target: by the larger of the two side ratios; "Resize and Fill" so it fits inside: by the
    smaller. The resolution is the short side after that scaling, rounded (half to even).
    """
    (width, height), (target_width, target_height) = image_size, target_size
    ratios = (target_width / width, target_height / height)
    scale = min(ratios) if resize_mode_name(resize_mode) == "Resize and Fill" else max(ratios)
    return int(round(scale * min(width, height)))


# ----------------------------------------------------------------------------------------- the built-in modules
def _on_pixels(function) -> Callable[..., Image.Image]:
    """A ``run`` from a function of (H, W, 3) uint8 RGB pixels and the three settings."""
    def run(image: Image.Image, *, resolution: int = DEFAULT_RESOLUTION, threshold_a: float = 0.0,
            threshold_b: float = 0.0) -> Image.Image:
        result = function(rgb_pixels(image), resolution, threshold_a, threshold_b)
        return Image.fromarray(np.ascontiguousarray(result), "RGB")

    return run


def _inpaint(image: Image.Image, **_settings) -> Image.Image:
    return inpaint_map(image)


def _model_free() -> list[Preprocessor]:
    ops = image_ops
    return [
        Preprocessor("none", "none", _on_pixels(lambda p, r, a, b: p), None, None),
        Preprocessor("invert (from white bg & black line)", "invert (from white bg & black line)",
                     _on_pixels(lambda p, r, a, b: ops.invert(p)), None, None, aliases=("invert",),
                     tags=("Canny", "Lineart", "Scribble", "Sketch", "MLSD")),
        Preprocessor("blur_gaussian", "blur_gaussian", _on_pixels(lambda p, r, a, b: ops.blur_gaussian(p, r, a)),
                     SliderSpec("Sigma", 9.0, 0.01, 64.0, 0.01), None, resolution=RESOLUTION, tags=("Tile", "Blur")),
        Preprocessor("canny", "canny", _on_pixels(lambda p, r, a, b: ops.canny(p, r, a, b)),
                     SliderSpec("Canny Low Threshold", 100, 1, 255, 1),
                     SliderSpec("Canny High Threshold", 200, 1, 255, 1), resolution=RESOLUTION, tags=("Canny",)),
        Preprocessor("inpaint_global_harmonious", "inpaint_global_harmonious", _inpaint, None, None,
                     aliases=("inpaint",), uses_mask=True, tags=("Inpaint",)),
        Preprocessor("inpaint_only", "inpaint_only", _inpaint, None, None, uses_mask=True, tags=("Inpaint",)),
        Preprocessor("scribble_xdog", "scribble_xdog", _on_pixels(lambda p, r, a, b: ops.scribble_xdog(p, r, a)),
                     SliderSpec("XDoG Threshold", 32, 1, 64, 1), None, resolution=RESOLUTION,
                     tags=("Scribble", "Sketch")),
        Preprocessor("threshold", "threshold", _on_pixels(lambda p, r, a, b: ops.threshold(p, r, a)),
                     SliderSpec("Binarization Threshold", 127, 0, 255, 1), None, resolution=RESOLUTION),
        Preprocessor("tile_resample", "tile_resample", _on_pixels(lambda p, r, a, b: ops.tile_resample(p, a)),
                     SliderSpec("Down Sampling Rate", 1.0, 1.0, 8.0, 0.01), None, tags=("Tile", "Blur")),
    ]


def _depth_modules(sources: DepthSources) -> list[Preprocessor]:
    def midas(p, r, a, b):
        return depth_map(estimate_depth(sources.midas("depth_midas"), p, r))

    def anything(p, r, a, b):
        return depth_map(estimate_depth(sources.depth_anything("depth_anything"), p, r))

    def normal(p, r, a, b):
        return normal_map(estimate_depth(sources.midas("normal_midas"), p, r), a)

    return [
        Preprocessor("depth_anything", "depth_anything", _on_pixels(anything), None, None,
                     needs_files=(DEPTH_ANYTHING_FOLDER,), tags=("Depth",)),
        Preprocessor("depth_midas", "depth_midas", _on_pixels(midas), None, None, needs_files=(MIDAS_FILE,),
                     aliases=("depth",), resolution=RESOLUTION, tags=("Depth",)),
        Preprocessor("normal_midas", "normal_midas", _on_pixels(normal),
                     SliderSpec("Normal Background Threshold", 0.4, 0.0, 1.0, 0.01), None,
                     needs_files=(MIDAS_FILE,), aliases=("normal_map",), resolution=RESOLUTION,
                     tags=("NormalMap",)),
    ]


def _network_modules(annotator_dir: Path) -> list[Preprocessor]:
    modules = []
    for annotator in NETWORK_ANNOTATORS:
        sliders = [SliderSpec(*spec) for spec in annotator.sliders] + [None, None]
        modules.append(Preprocessor(annotator.name, annotator.name, not_runnable(annotator, annotator_dir),
                                    sliders[0], sliders[1], needs_files=annotator.files, aliases=annotator.aliases,
                                    resolution=RESOLUTION if annotator.shows_resolution else None))
    return modules


def default_preprocessors(*, annotator_dir: Path, depth_estimators=None, device=None,
                          manager=None) -> PreprocessorRegistry:
    """Every built-in preprocessor. ``annotator_dir``: models/ControlNet/annotators (the files below it, in any
    subfolder); ``depth_estimators``: the app's ``DepthEstimators`` (models/depth); ``manager``: the app's model
    manager (default: the estimators' own); ``device``: where the depth networks run."""
    registry = PreprocessorRegistry()
    sources = DepthSources(annotator_dir, depth_estimators=depth_estimators, manager=manager, device=device)
    model_free = _model_free()
    for preprocessor in model_free[:2] + sorted(model_free[2:] + _depth_modules(sources)
                                                + _network_modules(Path(annotator_dir)) + _image_encoder_modules(),
                                                key=lambda p: p.name):
        registry.register(preprocessor)
    return registry


def _image_encoder_modules() -> list[Preprocessor]:
    """IP-Adapter's modules: the picture goes to the adapter's image encoder as it is (no map; the preview shows
    the picture), so they are listed for the page and /controlnet/module_list like any other."""
    from paragoger.control.ip_adapter import IMAGE_ENCODER_MODULES

    return [Preprocessor(name, name, _on_pixels(lambda p, r, a, b: p), None, None, tags=("IP-Adapter",))
            for name in IMAGE_ENCODER_MODULES[:3]]

