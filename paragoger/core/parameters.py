"""The generation parameters written into every image (A1111's infotext fields, in A1111's order)."""
from __future__ import annotations

from typing import Any

from paragoger import __version__
from paragoger.core.img2img import image_cfg_scale_for
from paragoger.imaging.infotext import ordered_params


def _number(value: float) -> float | int:
    """7.0 -> 7, as A1111 writes whole numbers."""
    return int(value) if float(value).is_integer() else value


def generation_parameters(request, *, seed: int, subseed: int, components, sampler: str, schedule: str,
                          clip_skip: int, rng: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ordered ``key -> value`` dict for one image; None values are left out when formatted."""
    info = components.info
    params: dict[str, Any] = {
        "Steps": request.steps,
        "Sampler": sampler,
        "Schedule type": None if schedule == "Automatic" else schedule,
        "CFG scale": _number(request.cfg_scale),
        "Image CFG scale": _optional_number(image_cfg_scale_for(request, components)),
        "Seed": seed,
        "Size": f"{request.width}x{request.height}",
        "Model hash": info.short_hash,
        "Model": info.model_name,
        "VAE hash": components.vae_hash,
        "VAE": components.vae_name,
        "Variation seed": subseed if request.subseed_strength > 0 else None,
        "Variation seed strength": _number(request.subseed_strength) if request.subseed_strength > 0 else None,
        "Seed resize from": (f"{request.seed_resize_from_w}x{request.seed_resize_from_h}"
                             if request.seed_resize_from_w > 0 and request.seed_resize_from_h > 0 else None),
        "Denoising strength": _number(request.denoising_strength) if request.mode == "img2img" else None,
        "Clip skip": clip_skip if clip_skip > 1 else None,
        "RNG": rng if rng != "GPU" else None,
    }
    params.update(_inpaint_parameters(request))
    params.update(extra or {})
    params.update(request.extra_params)
    params["Version"] = f"Paragoger-{__version__}"
    return ordered_params({key: value for key, value in params.items() if value is not None})


def _optional_number(value: float | None) -> float | int | None:
    return None if value is None else _number(value)


MASKED_CONTENT_LABELS = ("fill", "original", "latent noise", "latent nothing")


def _inpaint_parameters(request) -> dict[str, Any]:
    """A1111 writes these only for inpainting, and leaves out the values a reader assumes by default."""
    if request.mode != "img2img" or request.mask is None:
        return {}
    only_masked = request.inpaint_full_res
    return {
        "Mask blur": request.mask_blur,
        "Masked content": MASKED_CONTENT_LABELS[request.inpainting_fill] if request.inpainting_fill != 1 else None,
        "Inpaint area": "Only masked" if only_masked else None,
        "Masked area padding": request.inpaint_full_res_padding if only_masked else None,
        "Mask mode": "Inpaint not masked" if request.inpainting_mask_invert else None,
    }
