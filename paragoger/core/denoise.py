"""The one denoising loop every mode runs, over a diffusers UNet and scheduler.

It reads like diffusers' StableDiffusionPipeline loop on purpose, and adds what that loop lacks: the
conditioning may change at any step (prompt editing), per-step hooks may read or change the latents, and the
job's interrupt/skip flags are honoured after each step.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager

import torch

from paragoger.core.conditioning import TextConditioning


@dataclass
class ScheduledConditioning:
    """Conditioning for a batch over the steps: ``entries`` are (end_step, TextConditioning) in step order.

    Each entry's tensors already have the batch dimension. A plain prompt has one entry; prompt editing
    (``[cat:dog:10]``) has one per change. An entry is used for the 0-based steps before its ``end_step``: after
    ``[cat:dog:2]`` has run two steps, "dog" takes over, and ``[cat|dog]`` alternates every step.
    """

    entries: list[tuple[int, TextConditioning]]

    def at(self, step: int) -> TextConditioning:
        for end_step, conditioning in self.entries:
            if step < end_step:
                return conditioning
        return self.entries[-1][1]


@dataclass
class Guidance:
    """Classifier-free guidance over a negative and one or more weighted positives (``a AND b:0.5``).

    The UNet sees ``[negative, positive_1, ..., positive_k]`` in one batch; the guided prediction is
    ``neg + cfg * sum(w_i * (pos_i - neg))``, which for one positive of weight 1 is diffusers' formula.

    instruct-pix2pix checkpoints (``image_cfg_scale`` set) also guide by their picture, as diffusers'
    StableDiffusionInstructPix2PixPipeline does: the UNet sees ``[positive_1..k + picture, negative + picture,
    negative + no picture]`` and the prediction is ``uncond + cfg * sum(w_i * (pos_i - image)) + image_cfg *
    (image - uncond)``. Unlike diffusers (which then turns all guidance off), an Image CFG scale below 1 still
    guides, as in AUTOMATIC1111.
    """

    negative: ScheduledConditioning
    positives: list[tuple[float, ScheduledConditioning]]
    cfg_scale: float
    image_cfg_scale: float | None = None  # None: the model takes no picture guidance
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def uses_negative(self) -> bool:
        return self.cfg_scale > 1.0 or len(self.positives) > 1

    @property
    def guides_by_picture(self) -> bool:
        return self.image_cfg_scale is not None and self.uses_negative

    @property
    def copies(self) -> int:
        """How many copies of the latents the UNet sees per step."""
        return len(self.positives) + (2 if self.guides_by_picture else 1 if self.uses_negative else 0)

    @property
    def negative_copies(self) -> tuple[int, ...]:
        """Which copies carry the negative prompt (the "uncond" side of CFG): the first, or pix2pix's last two."""
        if self.guides_by_picture:
            return (self.copies - 2, self.copies - 1)
        return (0,) if self.uses_negative else ()

    def image_conditioning(self, conditioning: torch.Tensor | None) -> torch.Tensor | None:
        """The extra input channels for every copy: the same for all, except pix2pix's "no picture" copy (zeros)."""
        if conditioning is None or self.copies == 1:
            return conditioning
        if self.guides_by_picture:
            return torch.cat([conditioning] * (self.copies - 1) + [torch.zeros_like(conditioning)])
        return torch.cat([conditioning] * self.copies)

    def at(self, step: int) -> TextConditioning:
        """The batched conditioning for ``step``, built once per distinct combination of active texts."""
        parts = [conditioning.at(step) for _, conditioning in self.positives]
        if self.guides_by_picture:
            parts += [self.negative.at(step)] * 2
        elif self.uses_negative:
            parts.insert(0, self.negative.at(step))
        key = tuple(id(part) for part in parts)
        if key not in self._cache:
            pooled = None if parts[0].pooled is None else torch.cat([part.pooled for part in parts])
            self._cache[key] = TextConditioning(embeds=torch.cat([part.embeds for part in parts]), pooled=pooled)
        return self._cache[key]

    def combine(self, noise_pred: torch.Tensor, cfg_scale: float | None = None) -> torch.Tensor:
        """The guided prediction from every copy's; ``cfg_scale`` (default: this guidance's) may differ per step
        when a hook changes it."""
        cfg = self.cfg_scale if cfg_scale is None else cfg_scale
        chunks = noise_pred.chunk(self.copies)
        if not self.uses_negative:
            return chunks[0]
        if self.guides_by_picture:
            return self._combine_with_picture(chunks, cfg)
        noise_uncond, positives = chunks[0], chunks[1:]
        if len(positives) == 1 and self.positives[0][0] == 1.0:
            return noise_uncond + cfg * (positives[0] - noise_uncond)
        delta = sum(weight * (noise - noise_uncond) for (weight, _), noise in zip(self.positives, positives))
        return noise_uncond + cfg * delta

    def _combine_with_picture(self, chunks, cfg: float) -> torch.Tensor:
        positives, noise_image, noise_uncond = chunks[:-2], chunks[-2], chunks[-1]
        if len(positives) == 1 and self.positives[0][0] == 1.0:
            # diffusers' expression, term for term, so the same seed gives the same pixels
            return (noise_uncond + cfg * (positives[0] - noise_image)
                    + self.image_cfg_scale * (noise_image - noise_uncond))
        delta = sum(weight * (noise - noise_image) for (weight, _), noise in zip(self.positives, positives))
        return noise_uncond + cfg * delta + self.image_cfg_scale * (noise_image - noise_uncond)


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


@dataclass
class ModelCallState:
    """What guidance hooks see around one UNet call (A1111's CFG denoiser callbacks): ControlNet-style and
    dynamic-CFG extensions change these.

    Before the call: ``model_input`` (every copy of the latents, scaled, with any extra channels), ``embeds``
    (the text conditioning of every copy, in ``Guidance`` order), ``cfg_scale`` and ``unet_kwargs`` (extra
    keyword arguments for this call, e.g. ``down_block_additional_residuals``; SDXL's ``added_cond_kwargs`` is
    there too) may be replaced. After the call ``noise_pred`` holds the raw prediction of every copy before they
    are combined; it may be replaced too. ``cfg_scale`` is then used for combining.

    ``negative_copies`` says which copies carry the negative prompt (ControlNet's "ControlNet is more important"
    leaves them out); ``count`` is how many UNet calls this pass makes (``index`` runs from 0 to ``count - 1``),
    which is what diffusers' ControlNet start/end fractions are measured against.
    """

    index: int
    step: int
    steps: int
    timestep: torch.Tensor
    copies: int
    model_input: torch.Tensor
    embeds: torch.Tensor
    cfg_scale: float
    unet_kwargs: dict
    noise_pred: torch.Tensor | None = None
    negative_copies: tuple[int, ...] = ()
    count: int = 0


ModelHook = Callable[[ModelCallState], None]


@dataclass(frozen=True)
class ModelHooks:
    """Hooks run just before each UNet call and just after it (before guidance combines the copies). ``around``:
    ``unet -> context manager`` entered before the pass's first call and left after its last, whatever ends the
    pass (IP-Adapter's attention processors are set on the shared UNet for one pass and always taken out)."""

    before: tuple[ModelHook, ...] = ()
    after: tuple[ModelHook, ...] = ()
    around: tuple[Callable[[Any], ContextManager], ...] = ()

    def merged(self, other: "ModelHooks | None") -> "ModelHooks":
        """These hooks, then ``other``'s, at each stage."""
        if other is None:
            return self
        return ModelHooks(before=(*self.before, *other.before), after=(*self.after, *other.after),
                          around=(*self.around, *other.around))


def sampling_step(index: int, order: int, steps: int) -> int:
    """Second-order samplers (Heun, DPM2) visit most timesteps twice: map a timestep index to the step."""
    return min(steps - 1, math.ceil(index / order)) if order > 1 else min(index, steps - 1)


def denoise(*, unet, scheduler, latents: torch.Tensor, guidance: Guidance, steps: int, step_kwargs: dict,
            timesteps: torch.Tensor | None = None, added_time_ids: torch.Tensor | None = None,
            image_conditioning: torch.Tensor | None = None, hooks: tuple[StepHook, ...] = (),
            model_hooks: ModelHooks = ModelHooks()) -> torch.Tensor:
    """Run ``timesteps`` (default: all of ``scheduler.timesteps``, already set) from ``latents``; returns the final
    (or interrupted) latents. img2img passes the tail of the schedule that its denoising strength leaves.

    ``image_conditioning`` is concatenated to the UNet input's channels for models that take more than the
    latents (inpainting: mask + masked-image latents; depth; pix2pix: picture latents), after the scheduler has
    scaled the latents; ``guidance`` says what each copy of the batch gets. ``model_hooks`` may change the UNet's
    inputs and raw outputs at every step (see ``ModelCallState``).
    """
    with contextlib.ExitStack() as stack:
        for context in model_hooks.around:
            stack.enter_context(context(unet))
        return _denoise(unet=unet, scheduler=scheduler, latents=latents, guidance=guidance, steps=steps,
                        step_kwargs=step_kwargs, timesteps=timesteps, added_time_ids=added_time_ids,
                        image_conditioning=image_conditioning, hooks=hooks, model_hooks=model_hooks)


def _denoise(*, unet, scheduler, latents, guidance: Guidance, steps: int, step_kwargs: dict, timesteps,
             added_time_ids, image_conditioning, hooks, model_hooks: ModelHooks) -> torch.Tensor:
    copies = guidance.copies
    timesteps = scheduler.timesteps if timesteps is None else timesteps
    extra = guidance.image_conditioning(image_conditioning)  # the same at every step
    negative_copies, count = guidance.negative_copies, len(timesteps)
    for index, t in enumerate(timesteps):
        step = sampling_step(index, scheduler.order, steps)
        conditioning = guidance.at(step)

        # 1. One copy of the latents per prompt (in ``guidance``'s order), scaled by the scheduler.
        model_input = torch.cat([latents] * copies) if copies > 1 else latents
        model_input = scheduler.scale_model_input(model_input, t)
        if extra is not None:
            model_input = torch.cat([model_input, extra], dim=1)

        # 2. Predict the noise for every prompt in one UNet call.
        unet_kwargs = {"added_cond_kwargs": None}
        if added_time_ids is not None:  # SDXL: pooled text embeddings and size/crop conditioning
            time_ids = torch.cat([added_time_ids] * copies) if copies > 1 else added_time_ids
            unet_kwargs["added_cond_kwargs"] = {"text_embeds": conditioning.pooled, "time_ids": time_ids}
        call = ModelCallState(index=index, step=step, steps=steps, timestep=t, copies=copies, model_input=model_input,
                              embeds=conditioning.embeds, cfg_scale=guidance.cfg_scale, unet_kwargs=unet_kwargs,
                              negative_copies=negative_copies, count=count)
        for hook in model_hooks.before:
            hook(call)
        call.noise_pred = unet(call.model_input, t, encoder_hidden_states=call.embeds, **call.unet_kwargs,
                               return_dict=False)[0]
        for hook in model_hooks.after:
            hook(call)

        # 3. Guidance.
        noise_pred = guidance.combine(call.noise_pred, cfg_scale=call.cfg_scale)

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
