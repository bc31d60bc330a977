"""Starting latents for modes that begin from a picture: img2img, inpaint, outpaint, sketch.

The picture is encoded by the checkpoint's own VAE, noised to the point the denoising strength says, and the
denoising loop then runs only the rest of the schedule. For inpainting, ordinary checkpoints get the unmasked
area put back after every step (noised to the next step's level); inpainting checkpoints (9-channel UNet) get the
mask and the masked picture's latents as extra input channels instead. Depth checkpoints (5 channels) get the
picture's depth (``core.depth``); instruct-pix2pix checkpoints (8 channels) get the picture's latents, which the
guidance also takes away for its "no picture" copy (see ``denoise.Guidance``).

Random numbers are drawn in the order diffusers' img2img and inpaint pipelines draw them from one generator per
image (encode, then noise, then the masked picture), so the same seed gives the same pixels as those pipelines.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from paragoger.core.denoise import StepState

# A1111's "masked content" choices (the API's inpainting_fill integer is the index).
FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = 0, 1, 2, 3
# A1111's Image CFG scale slider default, used when a request for an instruct-pix2pix checkpoint leaves it unset.
DEFAULT_IMAGE_CFG_SCALE = 1.5


@dataclass
class StartLatents:
    latents: torch.Tensor                      # where sampling starts
    timesteps: torch.Tensor                    # the part of the schedule left to run
    steps: int                                 # how many sampling steps that is (what progress counts)
    generators: list[torch.Generator]          # continue into the sampler's per-step noise
    image_latents: torch.Tensor | None = None  # clean picture latents, for blending (ordinary inpaint)
    noise: torch.Tensor | None = None
    latent_mask: torch.Tensor | None = None    # 1 where the picture is regenerated, at latent size
    # extra UNet input channels: [mask, masked picture latents] (inpainting), depth, or picture latents (pix2pix)
    image_conditioning: torch.Tensor | None = None


def image_cfg_scale_for(request, components) -> float | None:
    """The Image CFG scale a generation uses: instruct-pix2pix img2img only (None for every other model/mode)."""
    if components.variant != "instruct-pix2pix" or request.mode != "img2img":
        return None
    return DEFAULT_IMAGE_CFG_SCALE if request.image_cfg_scale is None else float(request.image_cfg_scale)


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB pictures -> (N, 3, H, W) in -1..1, as diffusers' image processor makes them."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) * 2.0 - 1.0


def mask_to_tensor(masks: list[Image.Image]) -> torch.Tensor:
    """Masks -> (N, 1, H, W) of 0/1 (white = regenerate), binarised at one half like diffusers does."""
    arrays = [np.asarray(mask.convert("L"), dtype=np.float32) / 255.0 for mask in masks]
    tensor = torch.from_numpy(np.stack(arrays))[:, None]
    return (tensor >= 0.5).to(tensor.dtype)


def remaining_timesteps(scheduler, steps: int, strength: float, run: int | None = None) -> tuple[torch.Tensor, int]:
    """The tail of the schedule a denoising strength leaves: strength 0.75 of 20 steps runs the last 15.
    ``run`` says the number of steps outright (the hires fix runs exactly its "Hires steps")."""
    if run is None:
        # At least one step for any strength above 0 (A1111 does the same; diffusers refuses such requests).
        run = int(steps * strength)
    run = min(max(run, 1 if strength > 0 else 0), steps)
    start = max(steps - run, 0)
    timesteps = scheduler.timesteps[start * scheduler.order:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * scheduler.order)
    return timesteps, steps - start


def encode(vae, pixels: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Sample each picture's latents with its own generator (the VAE encodes a distribution)."""
    latents = [vae.encode(pixels[i:i + 1].to(vae.dtype)).latent_dist.sample(generator=generators[i])
               for i in range(pixels.shape[0])]
    return torch.cat(latents) * vae.config.scaling_factor


def encode_mode(vae, pixels: torch.Tensor) -> torch.Tensor:
    """The most likely latents, unscaled: what instruct-pix2pix was trained to see as its picture channels."""
    return vae.encode(pixels.to(vae.dtype)).latent_dist.mode()


def prepare_start(components, scheduler, *, pixels: torch.Tensor | None, seeds: list[int], steps: int,
                  strength: float, device: torch.device, dtype: torch.dtype, mask: torch.Tensor | None = None,
                  masked_content: int = ORIGINAL, depth: torch.Tensor | None = None,
                  latent_size: tuple[int, int] | None = None, latents: torch.Tensor | None = None,
                  run_steps: int | None = None) -> StartLatents:
    """Everything sampling needs to start from ``pixels`` (N, 3, H, W), optionally inpainting under ``mask``.

    ``latent_size`` (h, w), when it differs from the pixels' own: A1111's "latent upscale" resize mode, where the
    encoded latents are resized (bilinear) rather than the picture; used for ordinary checkpoints without a mask.

    ``latents``: the picture already as (scaled) latents, used instead of encoding ``pixels``, which may then be
    None (the hires fix's latent upscale). ``run_steps``: run exactly this many of the ``steps`` (default: as
    many as the strength leaves).

    ``depth`` is the (N, 1, h, w) depth conditioning, required for depth checkpoints (``core.depth``).
    """
    generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
    timesteps, run_steps = remaining_timesteps(scheduler, steps, strength, run_steps)
    full_strength = strength >= 1.0
    vae = components.vae
    factor = components.vae_scale_factor
    pixels = pixels.to(device) if pixels is not None else None
    inpaint_model = components.variant == "inpaint"
    edit_model = components.variant == "instruct-pix2pix"
    count = pixels.shape[0] if pixels is not None else latents.shape[0]
    own_size = ((pixels.shape[2] // factor, pixels.shape[3] // factor) if pixels is not None
                else tuple(latents.shape[-2:]))
    latent_shape = (count, components.latent_channels, *(latent_size or own_size))

    image_latents = None
    if latents is not None:
        image_latents = latents.to(device=device, dtype=dtype)
    # At full strength the picture's sampled latents are not needed (pure noise starts), except to blend back an
    # ordinary inpaint; skipping them keeps the random draws in the order diffusers' pipelines make them.
    elif not (full_strength and (inpaint_model or (edit_model and mask is None))):
        image_latents = encode(vae, pixels, generators).to(dtype)
        if image_latents.shape[-2:] != latent_shape[-2:]:
            image_latents = torch.nn.functional.interpolate(image_latents, size=latent_shape[-2:], mode="bilinear")
    noise = _randn(latent_shape, generators, device, dtype)
    latent_mask = None
    if mask is not None:
        latent_mask = torch.nn.functional.interpolate(mask.to(device), size=latent_shape[-2:]).to(dtype)
        if image_latents is not None and masked_content in (LATENT_NOISE, LATENT_NOTHING):
            # A1111's latent fills: the masked area starts from fresh noise, or from nothing at all.
            replacement = (_randn(latent_shape, generators, device, dtype) if masked_content == LATENT_NOISE
                           else torch.zeros_like(image_latents))
            image_latents = image_latents * (1 - latent_mask) + replacement * latent_mask

    if full_strength:
        latents = noise * scheduler.init_noise_sigma
    else:
        latents = scheduler.add_noise(image_latents, noise, timesteps[:1].repeat(latent_shape[0]))

    image_conditioning = None
    if inpaint_model:
        if pixels is None:  # known only as latents: all of the picture is regenerated (a grey masked picture)
            masked_pixels = torch.zeros(count, 3, latent_shape[2] * factor, latent_shape[3] * factor, device=device)
        else:
            mask_full = mask if mask is not None else torch.ones_like(pixels[:, :1])
            masked_pixels = pixels * (mask_full.to(device) < 0.5)
        masked_latents = encode(vae, masked_pixels, generators).to(dtype)
        small_mask = latent_mask if latent_mask is not None else torch.ones_like(noise[:, :1])
        image_conditioning = torch.cat([small_mask, masked_latents], dim=1)
    elif components.variant == "depth":
        if depth is None:
            raise ValueError("a depth checkpoint needs its depth conditioning (core.depth)")
        image_conditioning = depth
    elif edit_model:
        image_conditioning = encode_mode(vae, pixels).to(dtype)
    return StartLatents(latents=latents, timesteps=timesteps, steps=run_steps, generators=generators,
                        image_latents=image_latents, noise=noise,
                        latent_mask=None if inpaint_model else latent_mask, image_conditioning=image_conditioning)


def _randn(shape, generators, device, dtype) -> torch.Tensor:
    noise = [torch.randn((1, *shape[1:]), generator=generator, dtype=torch.float32) for generator in generators]
    return torch.cat(noise).to(device=device, dtype=dtype)


def blend_hook(start: StartLatents, scheduler):
    """Ordinary checkpoints inpaint by putting the unmasked picture back after each step, noised to the level of
    the step that comes next (clean after the last one)."""
    timesteps = start.timesteps

    def hook(state: StepState) -> None:
        known = start.image_latents
        if state.index < len(timesteps) - 1:
            known = scheduler.add_noise(known, start.noise, timesteps[state.index + 1:state.index + 2])
        state.latents = (1 - start.latent_mask) * known + start.latent_mask * state.latents

    return hook
