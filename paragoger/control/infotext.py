"""The infotext fields sd-webui-controlnet writes, one per unit, and reading them back:

    ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1, Resize Mode: Crop and Resize,
    Low Vram: False, Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0, Guidance End: 1,
    Pixel Perfect: False, Control Mode: Balanced"

The value is one quoted string of ``Key: value`` pairs (the infotext writer quotes values holding commas).
"""
from __future__ import annotations

import re

FIELD = re.compile(r"^ControlNet (\d+)$")

# infotext key -> unit field, in the order the extension writes them
KEYS = (("Module", "module"), ("Model", "model"), ("Weight", "weight"), ("Resize Mode", "resize_mode"),
        ("Low Vram", "low_vram"), ("Processor Res", "processor_res"), ("Threshold A", "threshold_a"),
        ("Threshold B", "threshold_b"), ("Guidance Start", "guidance_start"), ("Guidance End", "guidance_end"),
        ("Pixel Perfect", "pixel_perfect"), ("Control Mode", "control_mode"))
_NUMBERS = {"weight", "threshold_a", "threshold_b", "guidance_start", "guidance_end"}
_BOOLEANS = {"low_vram", "pixel_perfect"}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def unit_fields(units, model_titles: list[str]) -> dict[str, str]:
    """``{"ControlNet 0": "Module: ..., ..."}`` for each enabled unit (numbered as the extension numbers them: by
    position among the units given). ``model_titles``: the title of each unit's model ("None" when it has none)."""
    fields = {}
    for index, (unit, title) in enumerate(zip(units, model_titles)):
        if not unit.enabled:
            continue
        parts = []
        for key, name in KEYS:
            value = title if name == "model" else getattr(unit, name)
            if name in ("threshold_a", "threshold_b", "processor_res") and value in (-1, None):
                continue  # the module takes no such setting
            if name in _NUMBERS:
                value = _number(value)
            parts.append(f"{key}: {value}")
        fields[f"ControlNet {index}"] = ", ".join(parts)
    return fields


def parse_unit_field(value: str) -> dict:
    """A ``ControlNet N`` value -> the unit fields it names (numbers and booleans converted, others as text)."""
    unit = {}
    names = dict(KEYS)
    for part in _split(value):
        key, _, text = part.partition(":")
        name = names.get(key.strip())
        if name is None:
            continue
        text = text.strip()
        try:
            if name in _NUMBERS:
                unit[name] = float(text)
            elif name == "processor_res":
                unit[name] = int(float(text))
            elif name in _BOOLEANS:
                unit[name] = text.lower() == "true"
            else:
                unit[name] = text
        except ValueError:
            continue  # a field we cannot read is left at its default
    return unit


def _split(value: str) -> list[str]:
    """Split on ", " before a ``Key:`` (model titles hold no comma, but "[hash]" and module names may hold spaces
    and parentheses)."""
    return [part for part in re.split(r",\s*(?=[A-Z][A-Za-z ]*:)", value.strip().strip('"')) if part.strip()]


def units_from_infotext(parameters: dict) -> dict[int, dict]:
    """``{index: unit fields}`` from a parsed infotext's parameters (``imaging.infotext.parse_infotext``)."""
    found = {}
    for key, value in parameters.items():
        match = FIELD.match(str(key))
        if match and isinstance(value, str):
            found[int(match.group(1))] = parse_unit_field(value)
    return found
