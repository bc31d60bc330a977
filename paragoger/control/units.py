"""A ControlNet / T2I-Adapter unit: what one of sd-webui-controlnet's units asks for, from the page or the API.

The API takes the extension's unit objects (``"alwayson_scripts": {"controlnet": {"args": [unit, ...]}}``) and
what webuiapi's ``ControlNetUnit.to_dict()`` sends: pictures as base64 (``image`` or its older name
``input_image``; an empty string is no picture), numbers possibly as strings, ``resize_mode`` and
``control_mode`` by name or by number. Unknown keys are ignored, as the extension does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from paragoger.errors import UserError
from paragoger.imaging.transport import decode_image_base64

# The extension's names, in the order its numbers count them.
RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
HR_OPTIONS = ("Both", "Low res only", "High res only")   # which passes of a Hires. fix the unit takes part in
# Older names of the resize modes that clients still send (the extension maps them the same way).
RESIZE_MODE_ALIASES = {
    "Inner Fit (Scale to Fit)": "Crop and Resize",
    "Scale to Fit (Inner Fit)": "Crop and Resize",
    "Outer Fit (Shrink to Fit)": "Resize and Fill",
    "Envelope (Outer Fit)": "Resize and Fill",
}
LATENT_UPSCALE_RESIZE = 3   # A1111's "Just resize (latent upscale)": the extension treats it as Just Resize
DEFAULT_PROCESSOR_RES = 512
MAX_PROCESSOR_RES = 8192
NO_MODEL = "None"


@dataclass
class ControlUnit:
    enabled: bool = True
    module: str = "none"            # preprocessor name
    model: str = NO_MODEL           # control model name/title
    weight: float = 1.0
    image: Any = None               # PIL picture (the unit's input); None: the generation's own picture (img2img)
    mask: Any = None                # PIL, optional
    resize_mode: str = "Crop and Resize"
    processor_res: int = DEFAULT_PROCESSOR_RES   # -1 = default
    threshold_a: float = -1         # -1 = the module's default
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: str = "Balanced"
    pixel_perfect: bool = False
    low_vram: bool = False          # accepted, no effect (the model manager decides where models live)
    hr_option: str = "Both"

    @property
    def soft_injection(self) -> bool:
        """The extension's "soft injection" (both modes other than Balanced): deeper layers keep more weight."""
        return self.control_mode != "Balanced"

    @property
    def cfg_injection(self) -> bool:
        """"ControlNet is more important": the control reaches only the copies with the positive prompt."""
        return self.control_mode == "ControlNet is more important"

    @property
    def resolution(self) -> int:
        return DEFAULT_PROCESSOR_RES if self.processor_res == -1 else self.processor_res

    @classmethod
    def from_api(cls, data: dict, index: int = 0) -> "ControlUnit":
        """One unit of the extension's API; ``index`` (from 0, as the extension counts) names it in errors."""
        if isinstance(data, ControlUnit):
            return data.validate(index)
        if not isinstance(data, dict):
            raise UserError("controlnet_unit_not_object", unit=index, kind=type(data).__name__)
        values: dict[str, Any] = {}
        for name, parse in _PARSERS.items():
            key = name if name in data else next((alias for alias, target in _ALIASES.items()
                                                  if target == name and alias in data), None)
            if key is None or (data[key] is None and name not in ("image", "mask")):
                continue
            values[name] = parse(data[key], index, key)
        picture = data.get("image", data.get("input_image"))
        if values.get("mask") is None and isinstance(picture, dict):
            values["mask"] = _mask_of(picture, index, "mask")
        if "control_mode" not in values and data.get("guessmode"):   # the extension's name before 1.1
            values["control_mode"] = "ControlNet is more important"
        return cls(**values).validate(index)

    def validate(self, index: int = 0) -> "ControlUnit":
        def bad(field: str, reason: str):
            raise UserError("controlnet_unit_bad_value", unit=index, field=field, value=getattr(self, field),
                            reason=reason)

        if not math.isfinite(self.weight) or self.weight < 0:
            bad("weight", "it must be a number of 0 or more")
        for name in ("guidance_start", "guidance_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(name, "it must lie between 0 and 1")
        if self.guidance_start > self.guidance_end:
            bad("guidance_start", f"it must not be after guidance_end ({self.guidance_end})")
        if self.processor_res != -1 and not 1 <= self.processor_res <= MAX_PROCESSOR_RES:
            bad("processor_res", f"it must be -1 (the default) or 1 to {MAX_PROCESSOR_RES}")
        for name, choices in (("resize_mode", RESIZE_MODES), ("control_mode", CONTROL_MODES),
                              ("hr_option", HR_OPTIONS)):
            if getattr(self, name) not in choices:
                bad(name, "it must be one of " + ", ".join(choices))
        for name in ("threshold_a", "threshold_b"):
            if not math.isfinite(getattr(self, name)):
                bad(name, "it must be a number")
        return self

    def copy(self, **changes) -> "ControlUnit":
        return replace(self, **changes)

    def to_api(self) -> dict:
        """The unit as the extension's API shows it, without the pictures."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("image", "mask")}


def enabled_units(units) -> list[tuple[int, ControlUnit]]:
    """(index, unit) of the units that take part, indexed as the extension counts them (disabled ones too)."""
    return [(index, unit) for index, unit in enumerate(units or ()) if unit.enabled]


# --- parsing the API's values ---------------------------------------------------------------------------------------

def _fail(index: int, field: str, value, reason: str):
    shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
    raise UserError("controlnet_unit_bad_value", unit=index, field=field, value=shown, reason=reason)


def _bool(value, index, field) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    _fail(index, field, value, "it must be true or false")


def _float(value, index, field) -> float:
    if isinstance(value, bool):
        _fail(index, field, value, "it must be a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        _fail(index, field, value, "it must be a number")
    if not math.isfinite(number):
        _fail(index, field, value, "it must be a finite number")
    return number


def _int(value, index, field) -> int:
    number = _float(value, index, field)
    if number != int(number):
        _fail(index, field, value, "it must be a whole number")
    return int(number)


def _text(value, index, field) -> str:
    if not isinstance(value, str):
        _fail(index, field, value, "it must be text")
    return value


def _choice(choices: tuple[str, ...], aliases: dict[str, str] | None = None, extra_numbers: dict | None = None):
    folded = {name.casefold(): name for name in (*choices, *(aliases or {}))}

    def parse(value, index, field) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool) or (
                isinstance(value, str) and value.strip().lstrip("-").isdigit()):
            number = _int(value, index, field)
            if number in (extra_numbers or {}):
                return extra_numbers[number]
            if 0 <= number < len(choices):
                return choices[number]
            _fail(index, field, value, f"it must be 0 to {len(choices) - 1} or one of " + ", ".join(choices))
        if isinstance(value, str) and value.strip().casefold() in folded:
            name = folded[value.strip().casefold()]
            return (aliases or {}).get(name, name)
        _fail(index, field, value, "it must be one of " + ", ".join(choices))

    return parse


def _picture(value, index, field):
    """A base64 picture, a data URL, or the extension's {"image": ..., "mask": ...} form; "" or None: none."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        value = value.get("image")
        if value is None or value == "":
            return None
    if hasattr(value, "size") and hasattr(value, "mode"):   # already a PIL picture (the page)
        return value
    if not isinstance(value, str):
        _fail(index, field, type(value).__name__, "it must be a base64 picture")
    return decode_image_base64(value, field=f"ControlNet {index} {field}")


def _mask_of(value, index, field):
    if isinstance(value, dict):   # {"image": ..., "mask": ...}: the mask rides with the picture
        return _picture(value.get("mask"), index, field)
    return None


_PARSERS = {
    "enabled": _bool, "module": _text, "model": _text, "weight": _float, "image": _picture, "mask": _picture,
    "resize_mode": _choice(RESIZE_MODES, RESIZE_MODE_ALIASES, {LATENT_UPSCALE_RESIZE: "Just Resize"}),
    "processor_res": _int, "threshold_a": _float, "threshold_b": _float, "guidance_start": _float,
    "guidance_end": _float, "control_mode": _choice(CONTROL_MODES), "pixel_perfect": _bool, "low_vram": _bool,
    "hr_option": _choice(HR_OPTIONS),
}
_ALIASES = {"input_image": "image", "mask_image": "mask"}   # older field names -> today's
