"""What a sampler and a schedule type are: plain, frozen descriptions that the registry turns into schedulers.

A *sampler* (what A1111 shows as "Sampler") is a diffusers scheduler class plus the fixed settings that make it
that algorithm (DPM++ 2M = ``DPMSolverMultistepScheduler`` with ``algorithm_type="dpmsolver++", solver_order=2``).
A *schedule type* ("Karras", "Exponential", ...) is a set of scheduler-config settings that choose the noise levels
(sigmas) or timesteps, applied over the checkpoint's own scheduler config.
"""
from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

AUTOMATIC = "automatic"


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    # Specs are shared by every generation; a read-only view stops one job from changing another's settings.
    return MappingProxyType(dict(mapping or {}))


def _importable(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):   # a broken install, or a module entry set to None
        return False


def config_keys(scheduler_class: type) -> frozenset[str]:
    """The config keys a scheduler class takes: what ``from_config`` would honour rather than silently drop."""
    return frozenset(inspect.signature(scheduler_class.__init__).parameters) - {"self", "args", "kwargs"}


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule type.

    ``name`` is A1111's internal name (``"karras"``, the ``name`` of /sdapi/v1/schedulers), ``label`` what users
    see and what the infotext's ``Schedule type:`` holds (``"Karras"``).
    ``config``: settings the scheduler must take for this schedule to mean anything; a scheduler whose
    ``__init__`` lacks one of these keys does not support the schedule.
    ``config_if_supported``: settings applied only where the scheduler has the key, to switch off rival options
    a checkpoint config may carry (``use_karras_sigmas`` when asking for Exponential, ...).
    ``how``: one line saying how the schedule maps onto diffusers, for documentation and tooltips.
    """

    name: str
    label: str
    config: Mapping[str, Any] = field(default_factory=dict)
    config_if_supported: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    default_rho: float = -1.0
    how: str = ""

    def __post_init__(self):
        object.__setattr__(self, "config", _frozen(self.config))
        object.__setattr__(self, "config_if_supported", _frozen(self.config_if_supported))
        object.__setattr__(self, "aliases", tuple(self.aliases))

    @property
    def is_automatic(self) -> bool:
        return self.name == AUTOMATIC

    def fits(self, scheduler_class: type) -> bool:
        """Whether every required key is a setting of ``scheduler_class``."""
        return set(self.config) <= config_keys(scheduler_class)

    def kwargs_for(self, scheduler_class: type) -> dict[str, Any]:
        """The config overrides for ``scheduler_class``: the required ones plus the rivals it knows about."""
        keys = config_keys(scheduler_class)
        kwargs = {k: v for k, v in self.config_if_supported.items() if k in keys}
        kwargs.update(self.config)
        return kwargs

    def as_api(self) -> dict[str, Any]:
        """One item of /sdapi/v1/schedulers, in A1111's shape."""
        return {"name": self.name, "label": self.label, "aliases": list(self.aliases) or None,
                "default_rho": self.default_rho, "need_inner_model": False}


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler.

    ``scheduler_class``: the diffusers scheduler class; ``kwargs``: fixed settings that make it this algorithm.
    ``aliases``: other names people and scripts use (A1111's ``k_euler_a``, ComfyUI's ``euler_ancestral``).
    ``default_schedule``: the schedule type A1111 picks for this sampler when left on Automatic (listed as
    ``options.scheduler`` like A1111 does); see the registry for what Automatic means here.
    ``schedules``: names of the schedule types this sampler supports (Automatic always is); None means "every
    schedule whose required settings the scheduler class takes".
    ``needs_generator``: ``step()`` draws fresh noise (ancestral / SDE samplers): pass ``step_kwargs(generator)``.
    ``noise_seed_key``: for samplers whose noise source is seeded through the config instead (DPM++ SDE's
    Brownian tree), the config key that ``create_scheduler(noise_seeds=...)`` fills.
    ``requires``: Python packages the scheduler needs beyond diffusers (``torchsde``).
    ``how``: one line on how close this is to A1111's sampler of the same name.
    """

    name: str
    scheduler_class: type
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    default_schedule: str | None = None
    schedules: tuple[str, ...] | None = None
    is_sde: bool = False
    needs_generator: bool = False
    noise_seed_key: str | None = None
    requires: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)
    how: str = ""

    def __post_init__(self):
        object.__setattr__(self, "kwargs", _frozen(self.kwargs))
        object.__setattr__(self, "options", _frozen(self.options))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        if self.schedules is not None:
            object.__setattr__(self, "schedules", tuple(self.schedules))

    def missing_packages(self) -> list[str]:
        """Packages in ``requires`` that cannot be imported here (checked without importing them)."""
        return [name for name in self.requires if not _importable(name)]

    def step_kwargs(self, generator=None) -> dict[str, Any]:
        """Extra keyword arguments for ``scheduler.step``: the per-image generator(s) where noise is drawn there.

        ``generator`` may be one ``torch.Generator`` or a list with one per image (diffusers' ``randn_tensor``
        then draws image i's noise from generator i, which keeps each image reproducible on its own).
        """
        return {"generator": generator} if self.needs_generator and generator is not None else {}

    def as_api(self) -> dict[str, Any]:
        """One item of /sdapi/v1/samplers, in A1111's shape."""
        options = dict(self.options)
        if self.default_schedule:
            options.setdefault("scheduler", self.default_schedule)
        return {"name": self.name, "aliases": list(self.aliases), "options": options}
