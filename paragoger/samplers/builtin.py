"""The built-in samplers and schedule types: A1111's names mapped onto diffusers 0.42 schedulers.

Each entry's ``how`` says how close it is to A1111 (which runs k-diffusion's samplers): same-named samplers that
diffusers ported from k-diffusion (Euler, Euler a, LMS, Heun, DPM2, DPM2 a, DPM++ SDE) follow the same algorithm;
the DPM++ multistep/SDE family uses diffusers' own DPM-Solver++ implementation (same method, noise drawn per step
from the generator instead of A1111's Brownian tree); DPM++ 2S a is the closest diffusers has, not the same.
Not offered (no diffusers equivalent): DPM fast, DPM adaptive, Restart; schedule types Polyexponential,
KL Optimal and Align Your Steps (they need hand-made sigma lists, which diffusers cannot take from a config).
"""
from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSDEScheduler,  # a placeholder that raises on use when torchsde is missing; never fails at import
    DPMSolverSinglestepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

from paragoger.samplers.registry import SamplerRegistry
from paragoger.samplers.specs import SamplerSpec, ScheduleSpec

# Switched off by every explicit schedule type, because a checkpoint config may have one switched on and
# diffusers refuses two at once.
_SIGMA_SWITCHES_OFF = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False,
                       "use_lu_lambdas": False}
# Karras/Exponential/Beta span the model's whole sigma range in A1111; with "leading" spacing (SD 1.x configs)
# some diffusers schedulers would take the range from the spaced timesteps instead and start lower.
_FULL_RANGE = {**_SIGMA_SWITCHES_OFF, "timestep_spacing": "linspace"}


def _sigmas(switch: str) -> dict:
    return {k: v for k, v in _FULL_RANGE.items() if k != switch}


BUILTIN_SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("uniform", "Uniform", {"timestep_spacing": "linspace"}, _SIGMA_SWITCHES_OFF,
                 how="timestep_spacing='linspace': evenly spaced training timesteps as each diffusers scheduler "
                     "defines them (k-diffusion schedulers: t from 999 to 0, like A1111's Uniform)"),
    ScheduleSpec("karras", "Karras", {"use_karras_sigmas": True}, _sigmas("use_karras_sigmas"), default_rho=7.0,
                 aliases=("ka",),  # A1111's old aliases: k_dpmpp_2m_ka = DPM++ 2M Karras
                 how="use_karras_sigmas=True (rho 7 over the model's sigma range), spacing 'linspace'"),
    ScheduleSpec("exponential", "Exponential", {"use_exponential_sigmas": True}, _sigmas("use_exponential_sigmas"),
                 how="use_exponential_sigmas=True (log-sigma evenly spaced), spacing 'linspace'"),
    ScheduleSpec("sgm_uniform", "SGM Uniform", {"timestep_spacing": "trailing"}, _SIGMA_SWITCHES_OFF,
                 how="timestep_spacing='trailing': 999 down in equal strides, t=0 left out; A1111 spaces t "
                     "continuously (999, 949.05, ...) where diffusers rounds (999, 949, ...)"),
    ScheduleSpec("simple", "Simple", {"timestep_spacing": "trailing"}, _SIGMA_SWITCHES_OFF,
                 how="timestep_spacing='trailing' (ComfyUI/A1111 Simple takes every 1000/n-th sigma from the end; "
                     "equal when n divides 1000, else a timestep may differ by one)"),
    ScheduleSpec("normal", "Normal", {"timestep_spacing": "linspace"}, _SIGMA_SWITCHES_OFF,
                 how="timestep_spacing='linspace' (t evenly from 999 to 0: the same timesteps as Uniform here)"),
    ScheduleSpec("ddim", "DDIM", {"timestep_spacing": "leading", "steps_offset": 1}, _SIGMA_SWITCHES_OFF,
                 how="timestep_spacing='leading', steps_offset=1: t = 1, 1+1000//n, ... (the SD 1.x default)"),
    ScheduleSpec("beta", "Beta", {"use_beta_sigmas": True}, _sigmas("use_beta_sigmas"),
                 how="use_beta_sigmas=True (beta distribution alpha=beta=0.6, needs scipy), spacing 'linspace'"),
)

# Which schedule types each kind of scheduler can honour (diffusers 0.42, read from each scheduler's config keys
# and set_timesteps; a key a scheduler takes but ignores, like LCM's timestep_spacing, does not count).
_ALL = ("uniform", "karras", "exponential", "sgm_uniform", "simple", "normal", "ddim", "beta")
_SPACING_ONLY = ("uniform", "sgm_uniform", "simple", "normal", "ddim")   # no sigma switches in these schedulers
_SIGMAS_ONLY = ("karras", "exponential", "beta")                         # fixed spacing (singlestep DPM-Solver)

_DPMPP = {"algorithm_type": "dpmsolver++", "solver_order": 2}
_DPMPP_SDE = {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}

BUILTIN_SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("DPM++ 2M", DPMSolverMultistepScheduler, _DPMPP,
                aliases=("k_dpmpp_2m", "dpmpp_2m"), default_schedule="karras", schedules=_ALL,
                how="DPMSolverMultistep dpmsolver++ order 2 (midpoint): the same method as A1111's"),
    SamplerSpec("DPM++ SDE", DPMSolverSDEScheduler, {},
                aliases=("k_dpmpp_sde", "dpmpp_sde", "dpmpp_sde_gpu"), default_schedule="karras", schedules=_ALL,
                is_sde=True, noise_seed_key="noise_sampler_seed", requires=("torchsde",),
                how="DPMSolverSDE (k-diffusion's DPM++ SDE port, Brownian-tree noise seeded with the image seeds)"),
    SamplerSpec("DPM++ 2M SDE", DPMSolverMultistepScheduler, _DPMPP_SDE,
                aliases=("k_dpmpp_2m_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu"), default_schedule="exponential",
                schedules=_ALL, is_sde=True, needs_generator=True,
                how="DPMSolverMultistep sde-dpmsolver++ order 2 (midpoint); noise from the step generator, not "
                    "A1111's Brownian tree"),
    SamplerSpec("DPM++ 2M SDE Heun", DPMSolverMultistepScheduler, {**_DPMPP_SDE, "solver_type": "heun"},
                aliases=("k_dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun"), default_schedule="exponential",
                schedules=_ALL, is_sde=True, needs_generator=True,
                how="DPMSolverMultistep sde-dpmsolver++ order 2 with solver_type='heun'"),
    # lower_order_final=True: diffusers switches it on anyway for a final sigma of zero, with a warning each time.
    SamplerSpec("DPM++ 2S a", DPMSolverSinglestepScheduler, {**_DPMPP_SDE, "lower_order_final": True},
                aliases=("k_dpmpp_2s_a", "dpmpp_2s_ancestral"), default_schedule="karras", schedules=_SIGMAS_ONLY,
                is_sde=True, needs_generator=True,
                how="closest available, not the same: DPMSolverSinglestep sde-dpmsolver++ order 2 (singlestep "
                    "second order with fresh noise each step); A1111's is DPM-Solver++(2S) with ancestral steps "
                    "and two model calls per step"),
    SamplerSpec("DPM++ 3M SDE", DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 3},
                aliases=("k_dpmpp_3m_sde", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu"), default_schedule="exponential",
                schedules=_ALL, is_sde=True, needs_generator=True,
                how="DPMSolverMultistep sde-dpmsolver++ order 3; noise from the step generator"),
    SamplerSpec("Euler a", EulerAncestralDiscreteScheduler, {},
                aliases=("k_euler_a", "k_euler_ancestral", "euler_ancestral"), schedules=_SPACING_ONLY,
                needs_generator=True,
                how="EulerAncestralDiscrete (k-diffusion port); diffusers has no Karras/Exponential/Beta for it"),
    SamplerSpec("Euler", EulerDiscreteScheduler, {}, aliases=("k_euler", "euler"), schedules=_ALL,
                how="EulerDiscrete (k-diffusion port)"),
    SamplerSpec("LMS", LMSDiscreteScheduler, {}, aliases=("k_lms", "lms"), schedules=_ALL,
                how="LMSDiscrete order 4 (k-diffusion port)"),
    SamplerSpec("Heun", HeunDiscreteScheduler, {}, aliases=("k_heun", "heun"), schedules=_ALL,
                how="HeunDiscrete (k-diffusion port, two model calls per step)"),
    SamplerSpec("DPM2", KDPM2DiscreteScheduler, {}, aliases=("k_dpm_2", "dpm_2"), schedules=_ALL,
                how="KDPM2Discrete (k-diffusion port); A1111 also drops the next-to-last sigma, diffusers does not"),
    SamplerSpec("DPM2 a", KDPM2AncestralDiscreteScheduler, {}, aliases=("k_dpm_2_a", "dpm_2_ancestral"),
                schedules=_ALL, needs_generator=True,
                how="KDPM2AncestralDiscrete (k-diffusion port); A1111 also drops the next-to-last sigma"),
    SamplerSpec("DDIM", DDIMScheduler, {}, aliases=("ddim",), schedules=_SPACING_ONLY,
                how="DDIMScheduler, eta 0 (A1111's default); diffusers' DDIM has no sigma schedules"),
    SamplerSpec("PLMS", PNDMScheduler, {"skip_prk_steps": True}, aliases=("plms",), schedules=_SPACING_ONLY,
                how="PNDMScheduler with skip_prk_steps=True (pseudo linear multistep only)"),
    # A1111 defaults to variant bh1, order 3; diffusers' bh1 divides by the final zero sigma (NaN on the last
    # step), so this keeps diffusers' bh2 with A1111's order.
    SamplerSpec("UniPC", UniPCMultistepScheduler, {"solver_order": 3},
                aliases=("unipc", "uni_pc"), schedules=_ALL,
                how="UniPCMultistep bh2, order 3 (A1111: bh1, order 3; bh1 gives NaN at sigma 0 in diffusers)"),
    SamplerSpec("LCM", LCMScheduler, {}, aliases=("k_lcm", "lcm"), schedules=(), needs_generator=True,
                how="LCMScheduler (its own timesteps from original_inference_steps; at most that many steps)"),
)


def default_sampler_registry() -> SamplerRegistry:
    """A new registry holding the built-in schedule types and samplers, in A1111's dropdown order."""
    registry = SamplerRegistry()
    for schedule in BUILTIN_SCHEDULES:
        registry.register_schedule(schedule)
    for sampler in BUILTIN_SAMPLERS:
        registry.register_sampler(sampler)
    return registry
