"""The one denoising loop every mode runs, over a diffusers UNet and scheduler.

It reads like diffusers' StableDiffusionPipeline loop on purpose, and adds what that loop lacks: the
conditioning may change at any step (prompt editing), per-step hooks may read or change the latents, and the
job's interrupt/skip flags are honoured after each step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from paragoger.core.conditioning import TextConditioning


@dataclass
class ScheduledConditioning:
    """Conditioning for a batch over the steps: ``entries`` are (end_step, TextConditioning) in step order.

    Each entry's tensors already have the batch dimension. A plain prompt has one entry; prompt editing
    (``[cat:dog:10]``) has one per change.
    """

    entries: list[tuple[int, TextConditioning]]

    def at(self, step: int) -> TextConditioning:
        for end_step, conditioning in self.entries:
            if step < end_step:
                return conditioning
        return self.entries[-1][1]


@dataclass
class StepState:
    """What a per-step hook sees: it may replace ``latents``; ``stop`` ends sampling after this step."""

    index: int                 # index into scheduler.timesteps
    step: int                  # sampling step as a person counts it (0-based)
    steps: int
    timestep: torch.Tensor
    latents: torch.Tensor
    noise_pred: torch.Tensor
    stop: bool = False


StepHook = Callable[[StepState], None]


def sampling_step(index: int, order: int, steps: int) -> int:
    """Second-order samplers (Heun, DPM2) visit most timesteps twice: map a timestep index to the step."""
    return min(steps - 1, math.ceil(index / order)) if order > 1 else min(index, steps - 1)


def denoise(*, unet, scheduler, latents: torch.Tensor, cond: ScheduledConditioning,
            uncond: ScheduledConditioning, cfg_scale: float, steps: int, step_kwargs: dict,
            added_time_ids: torch.Tensor | None = None, image_conditioning: torch.Tensor | None = None,
            hooks: tuple[StepHook, ...] = ()) -> torch.Tensor:
    """Run ``scheduler.timesteps`` (already set) from ``latents``; returns the final (or interrupted) latents.

    ``image_conditioning`` is concatenated to the UNet input's channels for models that take more than the
    latents (inpainting: mask + masked-image latents), after the scheduler has scaled the latents.
    """
    use_cfg = cfg_scale > 1.0
    timesteps = scheduler.timesteps
    for index, t in enumerate(timesteps):
        step = sampling_step(index, scheduler.order, steps)
        positive, negative = cond.at(step), uncond.at(step)

        # 1. Expand the latents for classifier-free guidance and let the scheduler scale them.
        model_input = torch.cat([latents] * 2) if use_cfg else latents
        model_input = scheduler.scale_model_input(model_input, t)
        if image_conditioning is not None:
            extra = torch.cat([image_conditioning] * 2) if use_cfg else image_conditioning
            model_input = torch.cat([model_input, extra], dim=1)

        # 2. Predict the noise for the negative and positive prompt in one UNet call.
        embeds = torch.cat([negative.embeds, positive.embeds]) if use_cfg else positive.embeds
        added_cond = None
        if added_time_ids is not None:  # SDXL: pooled text embeddings and size/crop conditioning
            pooled = torch.cat([negative.pooled, positive.pooled]) if use_cfg else positive.pooled
            time_ids = torch.cat([added_time_ids] * 2) if use_cfg else added_time_ids
            added_cond = {"text_embeds": pooled, "time_ids": time_ids}
        noise_pred = unet(model_input, t, encoder_hidden_states=embeds, added_cond_kwargs=added_cond,
                          return_dict=False)[0]

        # 3. Guidance.
        if use_cfg:
            noise_uncond, noise_text = noise_pred.chunk(2)
            noise_pred = noise_uncond + cfg_scale * (noise_text - noise_uncond)

        # 4. One scheduler step.
        latents = scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]

        # 5. Hooks: previews, progress, extensions, interrupt and skip.
        state = StepState(index=index, step=step, steps=steps, timestep=t, latents=latents, noise_pred=noise_pred)
        for hook in hooks:
            hook(state)
        latents = state.latents
        if state.stop:
            break
    return latents
