"""Generation parameters read back from an infotext (A1111's "paste" and PNG drop): which request fields take
which values, and which checkpoint the picture was made with. Pure: no model, no UI."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paragoger.control.infotext import units_from_infotext
from paragoger.imaging.infotext import parse_infotext, split_sampler_and_schedule

# infotext key -> (request field, converter)
_FIELDS: dict[str, tuple[str, Any]] = {
    "Steps": ("steps", int),
    "Sampler": ("sampler_name", str),
    "Schedule type": ("scheduler", str),
    "CFG scale": ("cfg_scale", float),
    "Image CFG scale": ("image_cfg_scale", float),
    "Seed": ("seed", int),
    "Size-1": ("width", int),
    "Size-2": ("height", int),
    "Variation seed": ("subseed", int),
    "Variation seed strength": ("subseed_strength", float),
    "Seed resize from-1": ("seed_resize_from_w", int),
    "Seed resize from-2": ("seed_resize_from_h", int),
    "Denoising strength": ("denoising_strength", float),
    "Clip skip": ("clip_skip", int),
    "Mask blur": ("mask_blur", int),
    "Masked area padding": ("inpaint_full_res_padding", int),
    # Hires. fix (A1111; "Hires CFG Scale" is Forge's)
    "Hires upscale": ("hr_scale", float),
    "Hires steps": ("hr_second_pass_steps", int),
    "Hires upscaler": ("hr_upscaler", str),
    "Hires resize-1": ("hr_resize_x", int),
    "Hires resize-2": ("hr_resize_y", int),
    "Hires sampler": ("hr_sampler_name", str),
    "Hires schedule type": ("hr_scheduler", str),
    "Hires prompt": ("hr_prompt", str),
    "Hires negative prompt": ("hr_negative_prompt", str),
    "Hires CFG Scale": ("hr_cfg", float),
}
# What a hires infotext leaves out means "as the first pass" / "by Upscale by" (A1111's reading defaults).
_HIRES_DEFAULTS: dict[str, Any] = {"hr_second_pass_steps": 0, "hr_resize_x": 0, "hr_resize_y": 0,
                                   "hr_sampler_name": None, "hr_scheduler": None, "hr_prompt": "",
                                   "hr_negative_prompt": "", "hr_cfg": None}


@dataclass
class PastedParameters:
    prompt: str
    negative_prompt: str
    # GenerationRequest field -> value; "controlnet_units" is {unit index: {unit field: value}}
    fields: dict[str, Any] = field(default_factory=dict)
    model_hash: str | None = None
    model_name: str | None = None
    unknown: dict[str, str] = field(default_factory=dict)  # keys we do not map (extensions' fields)

    @property
    def checkpoint_query(self) -> str | None:
        """What to look the checkpoint up by: the hash identifies the file; the name is a fallback."""
        return self.model_hash or self.model_name


def parameters_from_infotext(text: str) -> PastedParameters:
    parsed = parse_infotext(text)
    pasted = PastedParameters(prompt=parsed.get("Prompt", ""), negative_prompt=parsed.get("Negative prompt", ""),
                              model_hash=parsed.get("Model hash"), model_name=parsed.get("Model"))
    for key, value in parsed.items():
        if key in _FIELDS:
            name, convert = _FIELDS[key]
            try:
                pasted.fields[name] = convert(value)
            except ValueError:
                pasted.unknown[key] = value
        elif key not in ("Prompt", "Negative prompt", "Model hash", "Model"):
            pasted.unknown[key] = value
    if "Inpaint area" in parsed:
        pasted.fields["inpaint_full_res"] = parsed["Inpaint area"] == "Only masked"
    _hires_fields(parsed, pasted.fields)
    units = units_from_infotext(parsed)   # sd-webui-controlnet's "ControlNet N" fields; no pictures in them
    if units:
        pasted.fields["controlnet_units"] = units
        for index in units:
            pasted.unknown.pop(f"ControlNet {index}", None)
    return pasted


def _hires_fields(parsed: dict[str, str], fields: dict[str, Any]) -> None:
    """A1111 ticks Hires. fix when the text has a denoising strength and any hires size or upscaler; then the
    hires fields it leaves out go back to "same as the first pass"."""
    fields["enable_hr"] = "Denoising strength" in parsed and any(
        key in parsed for key in ("Hires upscale", "Hires upscaler", "Hires resize-1"))
    if not fields["enable_hr"]:
        return
    for name, default in _HIRES_DEFAULTS.items():
        fields.setdefault(name, default)
    if fields["hr_sampler_name"]:  # an old combined name ("DPM++ 2M Karras") carries the schedule
        sampler, schedule = split_sampler_and_schedule(fields["hr_sampler_name"])
        fields["hr_sampler_name"] = sampler
        if schedule and not fields["hr_scheduler"]:
            fields["hr_scheduler"] = schedule
