"""Samplers (diffusers schedulers under A1111's names) and schedule types; see ``registry`` and ``builtin``."""
from paragoger.samplers.builtin import default_sampler_registry
from paragoger.samplers.registry import SamplerRegistry
from paragoger.samplers.specs import SamplerSpec, ScheduleSpec

__all__ = ["SamplerRegistry", "SamplerSpec", "ScheduleSpec", "default_sampler_registry"]
