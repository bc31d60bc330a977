"""Where a video's sampling starts: noise (text to video), a picture (image to video) or a source video (video to
video), as ``[1, channels, frames, h, w]`` latents.

Random numbers come from one CPU generator seeded with the video's seed and are drawn in the order diffusers'
AnimateDiffPipeline and AnimateDiffVideoToVideoPipeline draw them from one generator (encode, then noise), so the
same seed gives the same frames as those pipelines.
"""
from __future__ import annotations

import torch

from paragoger.core import img2img
from paragoger.core.img2img import StartLatents


def frames_to_pixels(frames) -> torch.Tensor:
    """PIL frames -> [frames, 3, H, W] in -1..1."""
    return img2img.pil_to_tensor(frames)


def encode_frames(vae, pixels: torch.Tensor, generator: torch.Generator, chunk: int) -> torch.Tensor:
    """[frames, 3, H, W] -> [frames, C, h, w] scaled latents, sampled chunk by chunk with one generator."""
    latents = [vae.encode(pixels[i:i + chunk].to(vae.dtype)).latent_dist.sample(generator=generator)
               for i in range(0, pixels.shape[0], chunk)]
    return torch.cat(latents) * vae.config.scaling_factor


def from_video(vae, scheduler, *, pixels: torch.Tensor, seed: int, steps: int, strength: float,
               device: torch.device, dtype: torch.dtype, chunk: int = 16,
               mask: torch.Tensor | None = None) -> StartLatents:
    """Video to video: every frame encoded and noised to the level the denoising strength says. ``mask``
    ([frames, 1, H, W], 1 = regenerate) keeps the rest of each frame (put back after every step)."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    timesteps, run_steps = img2img.remaining_timesteps(scheduler, steps, strength)
    clean = encode_frames(vae, pixels.to(device), generator, chunk).to(dtype)[None]       # [1, F, C, h, w]
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
    if strength >= 1.0:
        latents = noise * scheduler.init_noise_sigma
    else:
        latents = scheduler.add_noise(clean, noise, timesteps[:1])
    start = StartLatents(latents=latents.permute(0, 2, 1, 3, 4), timesteps=timesteps, steps=run_steps,
                         generators=[generator], image_latents=clean.permute(0, 2, 1, 3, 4),
                         noise=noise.permute(0, 2, 1, 3, 4))
    if mask is not None:
        small = torch.nn.functional.interpolate(mask.to(device), size=clean.shape[-2:])       # [F, 1, h, w]
        start.latent_mask = small.permute(1, 0, 2, 3)[None].to(dtype)                          # [1, 1, F, h, w]
    return start


def from_picture(vae, scheduler, *, pixels: torch.Tensor, frames: int, seed: int, steps: int, strength: float,
                 latent_power: float, latent_scale: float, device: torch.device, dtype: torch.dtype) -> StartLatents:
    """Image to video: frame f starts from ``w_f * picture + (1 - w_f) * noise`` with ``w_f = 1 - f ** power /
    scale`` (the A1111 AnimateDiff extension's latent power and scale: the first frame is the picture, later ones
    drift from it), noised to the level the denoising strength says."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    timesteps, run_steps = img2img.remaining_timesteps(scheduler, steps, strength)
    picture = encode_frames(vae, pixels[:1].to(device), generator, 1).to(dtype)             # [1, C, h, w]
    shape = (1, picture.shape[1], frames, *picture.shape[-2:])
    noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
    weights = torch.tensor([max(0.0, 1.0 - (f ** latent_power) / latent_scale) for f in range(frames)],
                           device=device, dtype=dtype).view(1, 1, frames, 1, 1)
    clean = picture[:, :, None] * weights + noise * (1 - weights)
    if strength >= 1.0:
        latents = noise * scheduler.init_noise_sigma
    else:
        latents = scheduler.add_noise(clean, noise, timesteps[:1])
    return StartLatents(latents=latents, timesteps=timesteps, steps=run_steps, generators=[generator],
                        image_latents=clean, noise=noise)
