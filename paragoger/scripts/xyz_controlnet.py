"""X/Y/Z plot axes for ControlNet, named as sd-webui-controlnet registers them ("[ControlNet] Weight", ...).

Each axis changes the request's first enabled unit, in a copy of the unit list (the request's own units are never
changed). Numbers are read as the other number axes read them (``0.5, 1``, ``0-1 [3]``); model, preprocessor and
the modes by name (case-insensitive; the modes also by their number, as the extension's API takes them).
"""
from __future__ import annotations

from typing import Any

from paragoger.ext.api import CONTROL_MODES, RESIZE_MODES, UserError, enabled_units
from paragoger.scripts.xyz_grid import Axis, _choose, parse_floats, parse_ints, split_list


def first_enabled_unit(units) -> int:
    """The list index of the first enabled unit; UserError when none is enabled."""
    found = enabled_units(units)
    if not found:
        raise UserError("xyz_controlnet_no_unit")
    return found[0][0]


def _apply_to_unit(field: str):
    def apply(changes: dict, value: Any, base) -> None:
        units = list(changes.get("controlnet_units", base.controlnet_units))
        index = first_enabled_unit(units)
        units[index] = units[index].copy(**{field: value}).validate(index)
        changes["controlnet_units"] = units
    return apply


def _needs_unit(parse):
    """Refuse the axis before reading its values when the request has no enabled unit to change."""
    def checked(p, text: str) -> list:
        first_enabled_unit(p.request.controlnet_units)
        return parse(p, text)
    return checked


def _names(choices):
    def parse(p, text: str) -> list[str]:
        return [_choose(value, choices(p), "name", strict=False) for value in split_list(text)]
    return parse


def _modes(choices: tuple[str, ...], what: str):
    def parse(p, text: str) -> list[str]:
        values = []
        for value in split_list(text):
            if value.isdigit() and int(value) < len(choices):
                values.append(choices[int(value)])
            else:
                values.append(_choose(value, list(choices), what))
        return values
    return parse


def _axis(name: str, field: str, parse, *, choices=None, labelled: bool = True, expensive: bool = False) -> Axis:
    return Axis(f"[ControlNet] {name}", _needs_unit(parse), _apply_to_unit(field), labelled=labelled,
                choices=choices, expensive=expensive)


_floats = lambda p, text: parse_floats(text)   # noqa: E731
_ints = lambda p, text: parse_ints(text)       # noqa: E731
_models = lambda p: p.controlnet_model_names()      # noqa: E731
_modules = lambda p: p.controlnet_module_names()    # noqa: E731

CONTROLNET_AXES: list[Axis] = [
    _axis("Weight", "weight", _floats),
    _axis("Model", "model", _names(_models), choices=_models, labelled=False, expensive=True),
    _axis("Preprocessor", "module", _names(_modules), choices=_modules, labelled=False),
    _axis("Guidance Start", "guidance_start", _floats),
    _axis("Guidance End", "guidance_end", _floats),
    _axis("Resize Mode", "resize_mode", _modes(RESIZE_MODES, "resize mode"), choices=lambda p: list(RESIZE_MODES),
          labelled=False),
    _axis("Control Mode", "control_mode", _modes(CONTROL_MODES, "control mode"),
          choices=lambda p: list(CONTROL_MODES), labelled=False),
    _axis("Pre Resolution", "processor_res", _ints),
    _axis("Pre Threshold A", "threshold_a", _floats),
    _axis("Pre Threshold B", "threshold_b", _floats),
]
