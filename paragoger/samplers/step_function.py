"""Samplers written as a step function over the model's denoiser (the k-diffusion way), run by the one loop.

An extension that has a sampler as maths rather than as a diffusers scheduler class registers a function

    step(x, denoised, sigma, sigma_next, info) -> x_next

``x`` is the current latents at noise level ``sigma`` (float32), ``denoised`` the model's estimate of the clean
latents (worked out from its prediction whatever the checkpoint predicts: noise, v or the sample), ``sigma_next``
the next noise level (0 at the end). ``info`` carries the step index, every sigma, a place to keep history
between steps (``info.memory``, e.g. the previous ``denoised`` for a second-order multistep method) and
``info.noise_like(x)`` for ancestral/SDE samplers, drawn from the image seeds.

The function is wrapped in a scheduler built on diffusers' Euler scheduler: its sigmas, timesteps, input scaling
and schedule types (Karras, Exponential, ...) are reused, only ``step`` is the extension's. One model evaluation
per step: methods that call the model twice per step (Heun) need a scheduler class instead.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from diffusers import EulerDiscreteScheduler
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

StepFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, "SamplerStep"], torch.Tensor]


@dataclass
class SamplerStep:
    """What a step function gets besides the latents: where it is and how to draw noise."""

    index: int
    sigmas: torch.Tensor
    memory: dict = field(default_factory=dict)   # kept for the whole sampling run
    generator: Any = None                         # per-image generators (a list) for samplers that add noise

    def noise_like(self, x: torch.Tensor) -> torch.Tensor:
        return randn_tensor(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)


class StepFunctionScheduler(EulerDiscreteScheduler):
    """Euler's schedule with an extension's step. Subclassed once per registered function (``step_function``)."""

    step_function: StepFunction | None = None

    def set_timesteps(self, *args, **kwargs):
        self._memory: dict = {}
        return super().set_timesteps(*args, **kwargs)

    def denoised(self, model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        prediction = self.config.prediction_type
        if prediction == "epsilon":
            return sample - sigma * model_output
        if prediction == "v_prediction":
            return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
        return model_output  # "sample": the model predicts the clean latents itself

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             return_dict: bool = True, **_unused):
        if self.step_index is None:
            self._init_step_index(timestep)
        sigma, sigma_next = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
        x = sample.to(torch.float32)
        denoised = self.denoised(model_output.to(torch.float32), x, sigma)
        info = SamplerStep(index=self.step_index, sigmas=self.sigmas, memory=self._memory, generator=generator)
        x_next = type(self).step_function(x, denoised, sigma, sigma_next, info).to(model_output.dtype)
        self._step_index += 1
        if not return_dict:
            return x_next, denoised
        return EulerDiscreteSchedulerOutput(prev_sample=x_next, pred_original_sample=denoised)


def scheduler_for_step_function(name: str, function: StepFunction) -> type[StepFunctionScheduler]:
    """A scheduler class that runs ``function`` (named after the sampler, for tracebacks)."""
    class_name = re.sub(r"\W", "", name.title()) + "StepScheduler"
    return type(class_name, (StepFunctionScheduler,), {"step_function": staticmethod(function)})
