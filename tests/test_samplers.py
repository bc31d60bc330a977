"""Samplers: A1111 names resolve to diffusers schedulers, every built-in pair runs, schedulers are fresh."""
from __future__ import annotations

import warnings

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

from paragoger.errors import UserError
from paragoger.samplers import SamplerSpec, ScheduleSpec, default_sampler_registry
from paragoger.samplers.builtin import BUILTIN_SAMPLERS

# What an SD 1.5 checkpoint's scheduler_config looks like (PNDM, "leading" spacing, offset 1).
SD15_CONFIG = {
    "_class_name": "PNDMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "trained_betas": None, "skip_prk_steps": True, "set_alpha_to_one": False,
    "steps_offset": 1, "clip_sample": False, "prediction_type": "epsilon", "timestep_spacing": "leading",
}


@pytest.fixture(scope="module")
def registry():
    return default_sampler_registry()


def _pairs():
    registry = default_sampler_registry()
    for sampler in registry.sampler_specs():
        for schedule in registry.schedule_specs():
            if registry.supports(sampler, schedule):
                yield pytest.param(sampler.name, schedule.label, id=f"{sampler.name}|{schedule.label}")


def _run(scheduler, sampler: SamplerSpec, steps: int = 20, seed: int = 0) -> torch.Tensor:
    """A whole sampling loop on a tiny latent, with seeded random 'model outputs'."""
    scheduler.set_timesteps(steps)
    gen = torch.Generator("cpu").manual_seed(seed)
    latents = torch.randn((1, 4, 8, 8), generator=gen) * scheduler.init_noise_sigma
    step_gen = torch.Generator("cpu").manual_seed(seed + 1)
    for t in scheduler.timesteps:
        scheduler.scale_model_input(latents, t)
        model_output = 0.5 * torch.randn((1, 4, 8, 8), generator=gen)
        latents = scheduler.step(model_output, t, latents, **sampler.step_kwargs(step_gen)).prev_sample
    return latents


def test_combined_name_dpmpp_2m_karras_resolves_to_sampler_and_schedule(registry):
    sampler, schedule = registry.resolve("DPM++ 2M Karras")
    assert (sampler.name, schedule.label) == ("DPM++ 2M", "Karras")
    sampler, schedule = registry.resolve("dpm++ 2m  KARRAS", "Automatic")
    assert (sampler.name, schedule.label) == ("DPM++ 2M", "Karras")
    assert registry.resolve("k_dpmpp_2m_ka")[1].label == "Karras"
    sampler, schedule = registry.resolve("DPM++ 2M SDE Exponential")
    assert (sampler.name, schedule.label) == ("DPM++ 2M SDE", "Exponential")
    # An explicit schedule wins over the one inside an old name.
    assert registry.resolve("DPM++ 2M Karras", "Exponential")[1].label == "Exponential"
    assert registry.resolve("DPM++ 2M", "karras")[1].label == "Karras"   # A1111's internal schedule name
    assert registry.resolve("DPM++ 2M", "SGM Uniform")[1].name == "sgm_uniform"


def test_aliases_and_case_resolve(registry):
    for name in ("Euler a", "euler A", "k_euler_a", "k_euler_ancestral", "euler_ancestral"):
        sampler, schedule = registry.resolve(name)
        assert sampler.name == "Euler a" and schedule.is_automatic
    assert registry.resolve("DDIM")[0].name == "DDIM"   # a sampler named like a schedule type
    assert registry.resolve("PLMS", None)[1].is_automatic


def test_unknown_sampler_names_the_known_ones(registry):
    with pytest.raises(UserError) as err:
        registry.resolve("Eular b")
    assert err.value.key == "unknown_sampler"
    assert "Eular b" in str(err.value) and "DPM++ 2M" in str(err.value) and "Euler a" in str(err.value)
    with pytest.raises(UserError) as err:
        registry.resolve("Euler", "Wobbly")
    assert err.value.key == "unknown_schedule" and "Karras" in str(err.value)


def test_schedule_a_sampler_cannot_use_is_refused_clearly(registry):
    for sampler in ("DDIM", "Euler a", "PLMS"):
        with pytest.raises(UserError) as err:
            registry.resolve(sampler, "Karras")
        assert err.value.key == "schedule_not_supported"
        assert sampler in str(err.value) and "Karras" in str(err.value) and "Automatic" in str(err.value)
    with pytest.raises(UserError):
        registry.create_scheduler("LCM", "Uniform", SD15_CONFIG)


@pytest.mark.parametrize("sampler_name, schedule_label", list(_pairs()))
def test_every_builtin_pair_constructs_and_steps(registry, sampler_name, schedule_label):
    sampler, schedule = registry.resolve(sampler_name, schedule_label)
    if sampler.missing_packages():
        pytest.skip(f"needs {sampler.missing_packages()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torchsde warns about float round-off at interval ends
        scheduler = registry.create_scheduler(sampler_name, schedule_label, SD15_CONFIG, noise_seeds=[7])
        assert type(scheduler) is sampler.scheduler_class
        for key, value in {**sampler.kwargs, **schedule.config}.items():
            assert scheduler.config[key] == value, key   # the setting was taken, not silently dropped
        assert scheduler.config.prediction_type == "epsilon"
        assert scheduler.config.beta_schedule == "scaled_linear"
        first = _run(scheduler, sampler)
        assert torch.isfinite(first).all()
        if sampler.needs_generator or sampler.noise_seed_key:
            # Seeded step generators (or DPM++ SDE's seeded Brownian tree) make stochastic samplers repeatable.
            again = registry.create_scheduler(sampler_name, schedule_label, SD15_CONFIG, noise_seeds=[7])
            assert torch.equal(first, _run(again, sampler))


def test_every_sampler_lists_a1111_name_and_supports_automatic(registry):
    names = [item["name"] for item in registry.samplers()]
    for expected in ("DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE",
                     "Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DDIM", "PLMS", "UniPC", "LCM"):
        assert expected in names
    item = next(i for i in registry.samplers() if i["name"] == "DPM++ 2M")
    assert item == {"name": "DPM++ 2M", "aliases": ["k_dpmpp_2m", "dpmpp_2m"], "options": {"scheduler": "karras"}}
    labels = [s["label"] for s in registry.schedules()]
    assert labels[:4] == ["Automatic", "Uniform", "Karras", "Exponential"]
    assert {"SGM Uniform", "Simple", "Normal", "DDIM", "Beta"} <= set(labels)
    karras = next(s for s in registry.schedules() if s["label"] == "Karras")
    assert karras == {"name": "karras", "label": "Karras", "aliases": ["ka"], "default_rho": 7.0,
                      "need_inner_model": False}
    assert [s["label"] for s in registry.schedules("DDIM")][0] == "Automatic"
    assert "Karras" not in [s["label"] for s in registry.schedules("DDIM")]


def test_builtin_schedule_lists_only_claim_what_the_scheduler_takes():
    registry = default_sampler_registry()
    for sampler in BUILTIN_SAMPLERS:
        if sampler.missing_packages():
            continue   # diffusers' stand-in class for a missing package takes no settings at all
        for schedule in registry.schedule_specs():
            if registry.supports(sampler, schedule):
                assert schedule.fits(sampler.scheduler_class), (sampler.name, schedule.name)


def test_scheduler_is_fresh_each_time(registry):
    a = registry.create_scheduler("Euler a", "Automatic", SD15_CONFIG)
    b = registry.create_scheduler("Euler a", "Automatic", SD15_CONFIG)
    assert a is not b
    a.set_timesteps(5)
    assert len(b.timesteps) == 1000   # b's state is its own
    multistep = registry.create_scheduler("DPM++ 2M", "Karras", SD15_CONFIG)
    multistep.set_timesteps(10)
    multistep.step(torch.zeros(1, 4, 8, 8), multistep.timesteps[0], torch.zeros(1, 4, 8, 8))
    fresh = registry.create_scheduler("DPM++ 2M", "Karras", SD15_CONFIG)
    assert fresh.step_index is None and fresh.model_outputs[-1] is None


def test_automatic_schedule_keeps_checkpoint_config(registry):
    config = {**SD15_CONFIG, "prediction_type": "v_prediction", "timestep_spacing": "trailing",
              "rescale_betas_zero_snr": True, "use_karras_sigmas": True}
    original = dict(config)
    ours = registry.create_scheduler("Euler", "Automatic", config)
    theirs = EulerDiscreteScheduler.from_config(config)
    assert config == original                       # the checkpoint's dict is not touched
    assert dict(ours.config) == dict(theirs.config)
    assert ours.config.prediction_type == "v_prediction" and ours.config.use_karras_sigmas
    ours.set_timesteps(20)
    theirs.set_timesteps(20)
    assert torch.equal(ours.timesteps, theirs.timesteps) and torch.equal(ours.sigmas, theirs.sigmas)
    # Same for a sampler with fixed settings: equal to diffusers' from_config with those settings.
    dpm = registry.create_scheduler("DPM++ 2M", None, config)
    assert dict(dpm.config) == dict(DPMSolverMultistepScheduler.from_config(
        config, algorithm_type="dpmsolver++", solver_order=2).config)
    # An explicit schedule switches off a rival one the checkpoint had on.
    exp = registry.create_scheduler("Euler", "Exponential", config)
    assert exp.config.use_exponential_sigmas and not exp.config.use_karras_sigmas
    assert exp.config.prediction_type == "v_prediction"


def test_karras_spans_the_models_whole_sigma_range(registry):
    # With SD 1.x's "leading" spacing diffusers would start Karras below sigma_max; A1111 starts at sigma_max.
    scheduler = registry.create_scheduler("Euler", "Karras", SD15_CONFIG)
    scheduler.set_timesteps(20)
    alphas = EulerDiscreteScheduler.from_config(SD15_CONFIG).alphas_cumprod
    sigma_max = float(((1 - alphas[-1]) / alphas[-1]) ** 0.5)
    assert float(scheduler.sigmas[0]) == pytest.approx(sigma_max, rel=1e-5)


def test_sampler_needing_a_missing_package_says_which(registry):
    spec = SamplerSpec("Needs Foo", EulerDiscreteScheduler, requires=("paragoger_no_such_package",))
    registry = default_sampler_registry()
    registry.register_sampler(spec)
    with pytest.raises(UserError) as err:
        registry.create_scheduler("Needs Foo", "Automatic", SD15_CONFIG)
    assert err.value.key == "sampler_needs_package" and "paragoger_no_such_package" in str(err.value)


def test_extension_can_register_a_sampler_and_it_is_listed():
    registry = default_sampler_registry()
    registry.register_sampler(SamplerSpec("Euler Trailing", EulerDiscreteScheduler,
                                          {"timestep_spacing": "trailing"}, aliases=("ext_euler_trailing",),
                                          options={"origin": "my-extension"}))
    registry.register_schedule(ScheduleSpec("log_linear", "Log Linear", {"interpolation_type": "log_linear"}))
    assert registry.samplers()[-1] == {"name": "Euler Trailing", "aliases": ["ext_euler_trailing"],
                                       "options": {"origin": "my-extension"}}
    assert registry.schedules()[-1]["label"] == "Log Linear"
    # Without an explicit list, a sampler supports the schedules whose settings its scheduler takes.
    scheduler = registry.create_scheduler("ext_euler_trailing", "Karras", SD15_CONFIG)
    assert scheduler.config.use_karras_sigmas
    assert registry.create_scheduler("Euler Trailing", "Log Linear", SD15_CONFIG).config.interpolation_type \
        == "log_linear"
    with pytest.raises(UserError):
        registry.create_scheduler("DDIM", "Log Linear", SD15_CONFIG)
    # The built-in table is untouched: another registry does not see the extension.
    assert "Euler Trailing" not in [s["name"] for s in default_sampler_registry().samplers()]
    with pytest.raises(ValueError):
        registry.register_sampler(SamplerSpec("Euler Again", EulerDiscreteScheduler, aliases=("k_euler",)))
    with pytest.raises(ValueError):
        registry.register_sampler(SamplerSpec("Euler", EulerDiscreteScheduler))
    position = [s["name"] for s in registry.samplers()].index("Euler")
    replacement = SamplerSpec("Euler", EulerDiscreteScheduler, {"interpolation_type": "log_linear"},
                              aliases=("k_euler",))
    registry.register_sampler(replacement, replace=True)
    assert registry.sampler("k_euler") is replacement
    assert [s["name"] for s in registry.samplers()].index("Euler") == position
