"""Generation parameters read back from an infotext (A1111's "paste" and PNG drop): which request fields take
which values, and which checkpoint the picture was made with. Pure: no model, no UI."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paragoger.imaging.infotext import parse_infotext

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
}


@dataclass
class PastedParameters:
    prompt: str
    negative_prompt: str
    fields: dict[str, Any] = field(default_factory=dict)   # GenerationRequest field -> value
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
    return pasted
