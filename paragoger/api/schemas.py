"""Request and response bodies of the A1111-compatible API. Unknown request fields are accepted and ignored; a
number that is NaN or Infinity (Python's json writes them, many clients send them) is refused with the field's
name (422), like any other wrong value."""
from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


def non_finite_path(value: Any, path: str = "") -> str | None:
    """Where in a JSON value a NaN or Infinity is ("script_args[2]", "override_settings.cfg"); None when nowhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "body"
    items = (value.items() if isinstance(value, dict) else
             ((f"[{i}]", item) for i, item in enumerate(value)) if isinstance(value, list) else ())
    for key, item in items:
        found = non_finite_path(item, f"{path}{key}" if str(key).startswith("[") else
                                f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


class RequestBody(BaseModel):
    """A request body: unknown fields allowed, and no NaN or Infinity anywhere (also in script arguments,
    override_settings and unknown fields, which are echoed back in ``parameters``)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _finite_numbers(cls, data: Any) -> Any:
        found = non_finite_path(data)
        if found:
            raise ValueError(f"{found} must be a finite number (not NaN or Infinity)")
        return data


class Txt2ImgBody(RequestBody):

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = Field(default_factory=list)
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None     # older clients send the sampler here
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    script_name: str | None = None
    script_args: list[Any] | dict[str, Any] = Field(default_factory=list)  # by position (A1111) or by name
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    enable_hr: bool = False
    # Hires. fix (A1111's names; hr_cfg is Forge's): 0 / None / "" mean "from the scale" / "as the first pass"
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    hr_cfg: float | None = None


class ImagesResponse(BaseModel):
    images: list[str] | None
    parameters: dict[str, Any]
    info: str


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    queue_size: int = 0


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None


class Img2ImgBody(Txt2ImgBody):
    init_images: list[str] = Field(default_factory=list)
    mask: str | None = None
    resize_mode: int = 0
    denoising_strength: float = 0.75
    image_cfg_scale: float | None = None
    mask_blur: int | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    include_init_images: bool = False
    outpaint: dict[str, Any] | None = None   # beyond A1111: {"left", "right", "top", "bottom", "fill"}
    depth_map: str | None = None             # beyond A1111: a depth picture for SD 2 depth checkpoints


class PngInfoBody(RequestBody):
    image: str = ""


class InterrogateBody(RequestBody):
    image: str = ""         # base64 or data URL
    model: str = "clip"     # a captioner name: "clip", "deepdanbooru", or one an extension registered


class InterrogateResponse(BaseModel):
    caption: str


class ExtrasBody(RequestBody):
    """A1111's postprocessing fields (extra-single-image and extra-batch-images share them)."""

    resize_mode: int = 0                   # 0 scale by upscaling_resize, 1 scale to upscaling_resize_w x _h
    show_extras_results: bool = True
    gfpgan_visibility: float = 0.0         # face restoration is not available: must be 0
    codeformer_visibility: float = 0.0
    codeformer_weight: float = 0.0
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
    upscale_first: bool = False
    save_images: bool = False              # beyond A1111 (whose API never saves): also save to extras-images


class ExtrasSingleImageBody(ExtrasBody):
    image: str = ""                        # base64 or data URL


class ExtrasFile(BaseModel):
    data: str                              # base64 or data URL
    name: str = ""


class ExtrasBatchImagesBody(ExtrasBody):
    imageList: list[ExtrasFile] = Field(default_factory=list)  # noqa: N815 - A1111's field name


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]
