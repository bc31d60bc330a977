"""sd-webui-controlnet's HTTP contract, so its client scripts and webuiapi's ControlNetUnit work unchanged.

- ``"alwayson_scripts": {"controlnet": {"args": [unit, ...]}}`` on /sdapi/v1/txt2img and /img2img (the title in
  any case: webuiapi sends "ControlNet"); each unit is the extension's dict (``control.units.ControlUnit``).
- GET /controlnet/version, /controlnet/model_list, /controlnet/module_list, /controlnet/settings;
  POST /controlnet/detect.
"""
from __future__ import annotations

from fastapi import APIRouter, Body
from fastapi.concurrency import run_in_threadpool

from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from paragoger.imaging.transport import decode_image_base64, encode_png_base64

SCRIPT_TITLE = "controlnet"
API_VERSION = 2              # what the extension's /controlnet/version answers today
UNIT_COUNT_SETTING = "control_net_unit_count"


def take_controlnet(request: GenerationRequest) -> GenerationRequest:
    """The request with the ControlNet script's units moved from ``alwayson_scripts`` into
    ``request.controlnet_units``. ``{"args": []}`` (webuiapi sends it to say "none") gives no units."""
    from paragoger.control.units import ControlUnit

    scripts = dict(request.alwayson_scripts or {})
    key = next((name for name in scripts if str(name).lower() == SCRIPT_TITLE), None)
    if key is None:
        return request
    entry = scripts.pop(key)
    args = entry.get("args", []) if isinstance(entry, dict) else entry
    if isinstance(args, dict):
        args = [args]
    if not isinstance(args, list):
        raise UserError("control_units_invalid", kind=type(args).__name__)
    units = [ControlUnit.from_api(unit, index) for index, unit in enumerate(args) if isinstance(unit, dict)]
    return request.copy(alwayson_scripts=scripts, controlnet_units=[unit for unit in units if unit.enabled])


def module_detail(preprocessor) -> dict:
    """The extension's per-module slider list, for clients that build their own forms."""
    sliders = []
    for spec in (preprocessor.resolution, preprocessor.threshold_a, preprocessor.threshold_b):
        if spec is not None:
            sliders.append({"name": spec.label, "value": spec.default, "min": spec.minimum, "max": spec.maximum,
                            "step": spec.step})
    return {"model_free": False, "sliders": sliders}  # every module here needs a model (no reference_only yet)


def build_router(context) -> APIRouter:
    router = APIRouter(prefix="/controlnet")

    @router.get("/version")
    def version():
        return {"version": API_VERSION}

    @router.get("/model_list")
    def model_list(update: bool = True):
        library = context.control_models.library
        if update:
            library.refresh()
        return {"model_list": [info.title for info in library.entries()]}

    @router.get("/module_list")
    def module_list(alias_names: bool = False):
        registry = context.preprocessors
        names = registry.names()
        return {"module_list": names,
                "module_detail": {name: module_detail(registry.get(name)) for name in names}}

    @router.get("/settings")
    def settings():
        return {UNIT_COUNT_SETTING: context.settings[UNIT_COUNT_SETTING]}

    @router.post("/detect")
    async def detect(body: dict = Body(...)):
        """``{controlnet_module, controlnet_input_images (or webuiapi's controlnet_images), controlnet_masks,
        controlnet_processor_res, controlnet_threshold_a, controlnet_threshold_b}`` -> ``{"images": [...],
        "info": "Success"}``; -1 or a missing number means the module's default."""
        def run():
            module = body.get("controlnet_module", "none")
            context.preprocessors.get(module)  # an unknown module: 400 before anything is queued
            images = body.get("controlnet_input_images") or body.get("controlnet_images") or []
            if not images:
                raise UserError("control_detect_no_images")
            masks = body.get("controlnet_masks") or []
            results = []
            for index, data in enumerate(images):
                picture = decode_image_base64(data, field=f"controlnet_input_images[{index}]").convert("RGB")
                mask = (decode_image_base64(masks[index], field=f"controlnet_masks[{index}]").convert("L")
                        if index < len(masks) and masks[index] else None)
                # in the worker, between generations: depth modules run a network on the device
                detected = context.run_in_worker(lambda picture=picture, mask=mask: context.preprocessors.detect(
                    module, picture, resolution=_number(body.get("controlnet_processor_res"), 512),
                    threshold_a=_number(body.get("controlnet_threshold_a"), None),
                    threshold_b=_number(body.get("controlnet_threshold_b"), None), mask=mask))
                results.append(encode_png_base64(detected, None))
            return {"images": results, "info": "Success"}

        return await run_in_threadpool(run)

    return router


def _number(value, default):
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError("number_invalid", field="controlnet threshold", value=value) from None
    return None if number == -1 and default is None else number
