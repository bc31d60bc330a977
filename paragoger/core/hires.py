"""Hires. fix: txt2img's second pass at a higher resolution, as AUTOMATIC1111 users know it.

1. The first pass makes the picture at width x height as usual (``Engine._sample``).
2. The picture is enlarged to the hires size. The "Latent ..." upscalers resize the latents themselves (torch's
   ``interpolate`` in the mode the name says); any other name is a picture upscaler from the app's
   ``UpscalerRegistry``, applied to the decoded picture, which the VAE then encodes again.
3. img2img runs over the enlarged picture (``img2img.prepare_start`` and the one denoising loop) with the same
   seeds, at the denoising strength, with the hires sampler, schedule type, prompts and CFG scale when given,
   else the first pass's.

Size: "Upscale by" multiplies width and height; "Resize width/height to" replace it (0 = from the other side,
keeping the aspect ratio; both given: the picture is enlarged to cover that size and its middle is kept). The
result is a whole number of latent cells (a multiple of 8 pixels).

Steps: as in A1111, the second pass runs exactly "Hires steps" (0 = the first pass's steps), as the tail of a
schedule ``int(steps / strength)`` long: "Hires steps: 10" at strength 0.7 runs 10 steps, not 7. Progress counts
both passes; prompt editing counts the second pass's steps (``prompts.schedule``'s ``hires_steps``).

Random numbers: the second pass draws as img2img does with the same seeds. With a picture upscaler it is exactly
img2img of the enlarged picture; with a latent upscaler its noise is each seed's first draw at the hires size.

This is a part of the engine kept in its own module: ``HiresFix.run`` calls the engine's sampling and decoding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from PIL import Image

from paragoger.core import img2img
from paragoger.core.parameters import _number
from paragoger.core.prompting import PreparedPrompts, prepare_prompts
from paragoger.core.seeds import LATENT_SCALE
from paragoger.errors import UserError
from paragoger.imaging import saving

# A1111's latent upscale modes, in its order: name -> (torch interpolate mode, antialias).
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
DEFAULT_UPSCALER = "Latent"
DEFAULT_DENOISING_STRENGTH = 0.7
# What A1111's dropdowns (and its API) say for "as in the first pass".
SAME_SAMPLER, SAME_SCHEDULER = "Use same sampler", "Use same scheduler"
FIRST_PASS_SUFFIX = "-before-highres-fix"


def wanted(request) -> bool:
    return request.mode == "txt2img" and bool(request.enable_hr)


# --- sizes ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HiresSize:
    """The picture is first enlarged to ``cover`` (w, h), then its middle ``width`` x ``height`` is kept."""

    width: int
    height: int
    cover: tuple[int, int]

    @property
    def cover_cells(self) -> tuple[int, int]:
        """(h, w) of the enlarged latents."""
        return self.cover[1] // LATENT_SCALE, self.cover[0] // LATENT_SCALE

    @property
    def crop_cells(self) -> tuple[int, int]:
        """(top, left) of the kept part, in latent cells (A1111 crops the same way: the odd cell goes right)."""
        height, width = self.cover_cells
        return (height - self.height // LATENT_SCALE) // 2, (width - self.width // LATENT_SCALE) // 2


def hires_size(width: int, height: int, scale: float, resize_x: int = 0, resize_y: int = 0) -> HiresSize:
    """A1111's hires size: by ``scale``, or to ``resize_x`` x ``resize_y`` (see the module text)."""
    if resize_x <= 0 and resize_y <= 0:
        cover = target = (int(width * scale), int(height * scale))
    elif resize_y <= 0:
        cover = target = (resize_x, resize_x * height // width)
    elif resize_x <= 0:
        cover = target = (resize_y * width // height, resize_y)
    else:
        target = (resize_x, resize_y)
        cover = ((resize_x, resize_x * height // width) if width / height < resize_x / resize_y
                 else (resize_y * width // height, resize_y))
    return HiresSize(width=target[0] // LATENT_SCALE * LATENT_SCALE,
                     height=target[1] // LATENT_SCALE * LATENT_SCALE, cover=cover)


def request_size(request) -> HiresSize:
    return hires_size(request.width, request.height, request.hr_scale, request.hr_resize_x, request.hr_resize_y)


# --- checks ---------------------------------------------------------------------------------------------------------

def validate(request, *, low: int, high: int, max_steps: int) -> None:
    """What can be checked without the app: sizes, steps, strength, CFG (``GenerationRequest.validate``)."""
    if request.hr_resize_x < 0 or request.hr_resize_y < 0:
        raise UserError("hires_resize_negative", width=request.hr_resize_x, height=request.hr_resize_y)
    if request.hr_resize_x == 0 and request.hr_resize_y == 0 and not (
            math.isfinite(request.hr_scale) and 0 < request.hr_scale <= high / low):
        raise UserError("hires_scale_out_of_range", value=request.hr_scale, high=high // low)
    if not 0 <= request.hr_second_pass_steps <= max_steps:
        raise UserError("hires_steps_out_of_range", high=max_steps, steps=request.hr_second_pass_steps)
    if not 0.0 <= request.denoising_strength <= 1.0:
        raise UserError("denoising_out_of_range", value=request.denoising_strength)
    if request.hr_cfg is not None and not 0 <= request.hr_cfg <= 100:
        raise UserError("cfg_out_of_range", cfg=request.hr_cfg)
    size = request_size(request)
    if not (low <= size.width <= high and low <= size.height <= high):
        raise UserError("hires_size_out_of_range", low=low, high=high, width=size.width, height=size.height)


def latent_mode(name: str | None) -> tuple[str, bool] | None:
    """(interpolate mode, antialias) for a latent upscaler's name (any case); None for a picture upscaler."""
    folded = {key.casefold(): mode for key, mode in LATENT_UPSCALE_MODES.items()}
    return folded.get((name or DEFAULT_UPSCALER).strip().casefold())


def upscaler_names(upscalers) -> list[str]:
    """What the Upscaler dropdown offers: the latent modes, then the picture upscalers."""
    return [*LATENT_UPSCALE_MODES, *(upscalers.names() if upscalers is not None else [])]


def sampler_and_schedule(request) -> tuple[str, str]:
    """The second pass's sampler and schedule type names ("Use same ..." or nothing: the first pass's)."""
    sampler, schedule = request.hr_sampler_name, request.hr_scheduler
    return (sampler if sampler and sampler != SAME_SAMPLER else request.sampler_name,
            schedule if schedule and schedule != SAME_SCHEDULER else request.scheduler)


def picture_upscaler(name: str | None, upscalers):
    """The picture upscaler of that name; UserError naming every choice (latent modes too) when unknown."""
    try:
        return upscalers.get(name)
    except UserError:
        raise UserError("unknown_upscaler", name=name, known=", ".join(upscaler_names(upscalers))) from None


def check(request, samplers, upscalers) -> None:
    """What needs the app's registries (UserError before anything is queued): the upscaler and the hires sampler
    and schedule type must exist."""
    if not wanted(request):
        return
    if latent_mode(request.hr_upscaler) is None:
        picture_upscaler(request.hr_upscaler, upscalers)
    samplers.resolve(*sampler_and_schedule(request))


# --- the second pass ------------------------------------------------------------------------------------------------

class HiresFix:
    """The second pass of one txt2img generation: planned once (names resolved, prompts scheduled), run per batch.

    ``sampler`` and ``schedule`` are the first pass's (resolved by the engine's sampler registry)."""

    def __init__(self, engine, request, settings, *, sampler, schedule):
        self.engine, self.request, self.settings = engine, request, settings
        self.size = request_size(request)
        self.steps = request.hr_second_pass_steps or request.steps
        self.strength = float(request.denoising_strength)
        self.latent_mode = latent_mode(request.hr_upscaler)
        self.upscaler = None if self.latent_mode else picture_upscaler(request.hr_upscaler, engine.upscalers)
        self.upscaler_name = (self.upscaler.name if self.upscaler else
                              next(name for name, mode in LATENT_UPSCALE_MODES.items() if mode == self.latent_mode))
        self.first_sampler, self.first_schedule = sampler, schedule
        self.sampler, self.schedule = engine.samplers.resolve(*sampler_and_schedule(request))
        self.cfg_scale = request.cfg_scale if request.hr_cfg is None else float(request.hr_cfg)
        schedule_steps = int(self.steps / min(self.strength, 0.999)) if self.strength > 0 else self.steps
        # What the loop sees: the hires size, the longer schedule, the hires CFG; seeds as the first pass.
        self.second = request.copy(width=self.size.width, height=self.size.height, steps=schedule_steps,
                                   cfg_scale=self.cfg_scale, seed_resize_from_w=0, seed_resize_from_h=0)
        self.prompts = prepare_prompts(request.hr_prompt or request.prompt,
                                       request.hr_negative_prompt or request.negative_prompt,
                                       steps=request.steps, hires_steps=self.steps, styles=engine.styles,
                                       style_names=request.styles, comments=settings["enable_prompt_comments"])
        self._first_pass: list[Image.Image] = []

    @property
    def total_steps(self) -> int:
        """Both passes, as the progress bar counts them."""
        return self.request.steps + (self.steps if self.strength > 0 else 0)

    @property
    def first_pass_progress(self) -> tuple[int, int]:
        return 0, self.total_steps

    def parameters(self, prompts: PreparedPrompts) -> dict:
        """A1111's infotext fields (in its order); ``prompts`` are the first pass's, for the "only when different"
        fields."""
        request = self.request
        resized = request.hr_resize_x > 0 or request.hr_resize_y > 0
        return {
            "Denoising strength": _number(self.strength),
            "Hires upscale": None if resized else _number(request.hr_scale),
            "Hires resize": f"{request.hr_resize_x}x{request.hr_resize_y}" if resized else None,
            "Hires steps": request.hr_second_pass_steps or None,
            "Hires upscaler": self.upscaler_name,
            "Hires sampler": self.sampler.name if self.sampler.name != self.first_sampler.name else None,
            "Hires schedule type": (self.schedule.label if self.schedule.label != self.first_schedule.label
                                    else None),
            "Hires prompt": self.prompts.prompt if self.prompts.prompt != prompts.prompt else None,
            "Hires negative prompt": (self.prompts.negative_prompt
                                      if self.prompts.negative_prompt != prompts.negative_prompt else None),
            "Hires CFG Scale": _number(self.cfg_scale) if self.cfg_scale != request.cfg_scale else None,
        }

    def run(self, *, components, encoder, batch, latents: torch.Tensor, job, run=None) -> list[Image.Image]:
        """First-pass latents -> the finished pictures at the hires size. When the first pass was interrupted or
        skipped, its own pictures (no second pass)."""
        engine = self.engine
        keep_first = self.request.save_images and self.settings["save_images_before_highres_fix"]
        pictures = engine._decode(components, latents) if keep_first or not self.latent_mode else None
        self._first_pass = pictures if keep_first else []
        if job.interrupted or job.progress.step < self.request.steps:
            self._first_pass = []
            return pictures or engine._decode(components, latents)
        if self.latent_mode:
            start_latents, start_pixels = self._enlarge_latents(latents), None
        else:
            enlarged = [self._enlarge_picture(picture) for picture in pictures]
            if self.strength == 0:
                return enlarged  # nothing to denoise
            start_latents, start_pixels = None, img2img.pil_to_tensor(enlarged)
        if self.strength == 0:
            return engine._decode(components, start_latents)
        device, dtype = engine.cache.device.device, engine.cache.device.dtype

        def start_from(scheduler) -> img2img.StartLatents:
            return img2img.prepare_start(components, scheduler, pixels=start_pixels, latents=start_latents,
                                         seeds=batch.seeds, steps=self.second.steps, strength=self.strength,
                                         run_steps=self.steps, device=device, dtype=dtype)

        final = engine._sample(self.second, components, encoder, self.prompts, batch, self.sampler, self.schedule,
                               self.settings, job, run=run, start_from=start_from,
                               progress=(self.request.steps, self.total_steps), stage="hires")
        return engine._decode(components, final)

    def _enlarge_latents(self, latents: torch.Tensor) -> torch.Tensor:
        mode, antialias = self.latent_mode
        top, left = self.size.crop_cells
        with torch.inference_mode():
            enlarged = torch.nn.functional.interpolate(latents.float(), size=self.size.cover_cells, mode=mode,
                                                       antialias=antialias).to(latents.dtype)
        return enlarged[:, :, top:top + self.size.height // LATENT_SCALE, left:left + self.size.width // LATENT_SCALE]

    def _enlarge_picture(self, picture: Image.Image) -> Image.Image:
        """The upscaler enlarges (only ever up, as in A1111), Lanczos makes the size exact, then the crop."""
        cover = self.size.cover
        scale = max(cover[0] / picture.width, cover[1] / picture.height)
        enlarged = self.upscaler.upscale(picture.convert("RGB"), scale) if scale > 1 else picture.convert("RGB")
        if enlarged.size != cover:
            enlarged = enlarged.resize(cover, Image.Resampling.LANCZOS)
        top, left = (cells * LATENT_SCALE for cells in self.size.crop_cells)
        return enlarged.crop((left, top, left + self.size.width, top + self.size.height))

    def save_first_pass(self, index: int, item) -> None:
        """The first-pass picture of batch image ``index`` beside the final one (setting
        "save_images_before_highres_fix"), named ``NNNNN-<seed>-before-highres-fix`` and with the same infotext."""
        if index >= len(self._first_pass):
            return
        settings = self.settings
        saving.save_image(self._first_pass[index], item.infotext,
                          outdir=self.engine._output_dir(settings, "outdir_txt2img_samples"), seed=item.seed,
                          extension=settings["samples_format"], jpeg_quality=settings["jpeg_quality"],
                          filename_pattern="[seed]" + FIRST_PASS_SUFFIX)
