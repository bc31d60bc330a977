"""The samplers and schedule types this app knows, how names resolve to them, and fresh schedulers built from them.

One registry is created at start-up (``default_sampler_registry()`` in ``builtin``) and owned by the app context;
extensions add to it with ``register_sampler`` / ``register_schedule``.

"Automatic" means: leave the checkpoint's scheduler config as it is, so a sampler on Automatic gives exactly what
diffusers gives for ``SchedulerClass.from_config(checkpoint_config, **sampler.kwargs)``. (A1111 instead picks a
per-sampler default there, e.g. Karras for DPM++ 2M; that default is listed as ``options.scheduler`` and a UI
may preselect it, but it is not applied behind the user's back.)
"""
from __future__ import annotations

from typing import Any, Mapping

from paragoger.errors import UserError
from paragoger.samplers.specs import AUTOMATIC, SamplerSpec, ScheduleSpec

AUTOMATIC_SCHEDULE = ScheduleSpec(
    name=AUTOMATIC, label="Automatic",
    how="the checkpoint's own scheduler config, untouched (what diffusers' pipeline would use)",
)

# Old combined names ("DPM++ 2M Karras", "k_dpmpp_2m_ka") put the schedule after one of these.
_SEPARATORS = (" ", "_")


def _key(name: Any) -> str:
    """Case- and whitespace-insensitive form of a name, so "dpm++  2m karras" finds "DPM++ 2M Karras"."""
    return " ".join(str(name).split()).casefold()


class SamplerRegistry:
    """Samplers and schedule types in dropdown order, with name lookup (names, labels and aliases)."""

    def __init__(self):
        self._samplers: dict[str, SamplerSpec] = {}
        self._schedules: dict[str, ScheduleSpec] = {}
        self._sampler_keys: dict[str, str] = {}     # normalised name or alias -> sampler name
        self._schedule_keys: dict[str, str] = {}    # normalised name, label or alias -> schedule name
        self.register_schedule(AUTOMATIC_SCHEDULE)

    # --- registration -------------------------------------------------------------------------------------------

    def register_sampler(self, spec: SamplerSpec, *, replace: bool = False) -> None:
        """Add a sampler (listed after the ones already there). ``replace=True`` swaps one of the same name."""
        self._add(spec, spec.name, (spec.name, *spec.aliases), self._samplers, self._sampler_keys, replace)

    def register_schedule(self, spec: ScheduleSpec, *, replace: bool = False) -> None:
        """Add a schedule type (listed after the ones already there)."""
        if spec.is_automatic and AUTOMATIC in self._schedules:
            raise ValueError("'Automatic' is built into the registry and cannot be replaced")
        self._add(spec, spec.name, (spec.name, spec.label, *spec.aliases), self._schedules, self._schedule_keys,
                  replace)

    @staticmethod
    def _add(spec, name: str, names, table: dict, keys: dict, replace: bool) -> None:
        if name in table and not replace:
            raise ValueError(f"'{name}' is already registered; pass replace=True to swap it")
        wanted = {_key(n) for n in names}
        clash = sorted(k for k in wanted if keys.get(k, name) != name)
        if clash:
            raise ValueError(f"'{name}' would take names already used by others: {', '.join(clash)}")
        for k in [k for k, owner in keys.items() if owner == name]:
            del keys[k]
        table[name] = spec
        keys.update(dict.fromkeys(wanted, name))

    # --- listing ------------------------------------------------------------------------------------------------

    def sampler_specs(self) -> list[SamplerSpec]:
        return list(self._samplers.values())

    def schedule_specs(self) -> list[ScheduleSpec]:
        return list(self._schedules.values())

    def samplers(self) -> list[dict[str, Any]]:
        """For dropdowns and /sdapi/v1/samplers: ``[{"name", "aliases", "options"}, ...]`` in order."""
        return [spec.as_api() for spec in self._samplers.values()]

    def schedules(self, sampler_name: str | None = None) -> list[dict[str, Any]]:
        """For /sdapi/v1/schedulers (``name``, ``label``, ``aliases``, ``default_rho``, ``need_inner_model``).

        With ``sampler_name``, only the schedule types that sampler supports (for a dependent dropdown).
        """
        specs = self._schedules.values()
        if sampler_name is not None:
            sampler = self.sampler(sampler_name)
            specs = [s for s in specs if self.supports(sampler, s)]
        return [spec.as_api() for spec in specs]

    # --- lookup -------------------------------------------------------------------------------------------------

    def sampler(self, name: str) -> SamplerSpec:
        """The sampler called ``name`` (or one of its aliases); combined names are left to ``resolve``."""
        owner = self._sampler_keys.get(_key(name))
        if owner is None:
            raise UserError("unknown_sampler", name=name, known=", ".join(self._samplers))
        return self._samplers[owner]

    def schedule(self, name: str | None) -> ScheduleSpec:
        """The schedule type called ``name`` (name, label or alias); empty or None means Automatic."""
        if name is None or not str(name).strip():
            return self._schedules[AUTOMATIC]
        owner = self._schedule_keys.get(_key(name))
        if owner is None:
            known = ", ".join(spec.label for spec in self._schedules.values())
            raise UserError("unknown_schedule", name=name, known=known)
        return self._schedules[owner]

    def supports(self, sampler: SamplerSpec, schedule: ScheduleSpec) -> bool:
        if schedule.is_automatic:
            return True
        if sampler.schedules is not None:
            return schedule.name in sampler.schedules
        return schedule.fits(sampler.scheduler_class)

    def resolve(self, sampler_name: str, schedule_name: str | None = "Automatic") -> tuple[SamplerSpec, ScheduleSpec]:
        """The sampler and schedule type a request means.

        Understands the old combined names that carry the schedule ("DPM++ 2M Karras" = DPM++ 2M + Karras,
        "k_dpmpp_2m_ka"); the schedule inside such a name is used when ``schedule_name`` is Automatic, and an
        explicit other schedule wins. Raises ``UserError`` for unknown names and for a schedule type the sampler
        cannot use (e.g. Karras with DDIM).
        """
        sampler, embedded = self._split_combined(sampler_name)
        schedule = self.schedule(schedule_name)
        if schedule.is_automatic and embedded is not None:
            schedule = embedded
        if not self.supports(sampler, schedule):
            supported = [s.label for s in self._schedules.values() if self.supports(sampler, s)]
            raise UserError("schedule_not_supported", sampler=sampler.name, schedule=schedule.label,
                            supported=", ".join(supported))
        return sampler, schedule

    def _split_combined(self, name: str) -> tuple[SamplerSpec, ScheduleSpec | None]:
        key = _key(name)
        if key in self._sampler_keys:
            return self._samplers[self._sampler_keys[key]], None
        # Longest schedule names first, so "sgm uniform" is tried before "uniform".
        for schedule_key in sorted(self._schedule_keys, key=len, reverse=True):
            for sep in _SEPARATORS:
                suffix = sep + schedule_key
                if key.endswith(suffix) and key[: -len(suffix)].strip() in self._sampler_keys:
                    owner = self._sampler_keys[key[: -len(suffix)].strip()]
                    schedule = self._schedules[self._schedule_keys[schedule_key]]
                    return self._samplers[owner], (None if schedule.is_automatic else schedule)
        return self.sampler(name), None  # raises unknown_sampler, naming the known ones

    # --- schedulers ---------------------------------------------------------------------------------------------

    def create_scheduler(self, sampler_name: str, schedule_name: str | None, scheduler_config: Mapping[str, Any],
                         *, noise_seeds: int | list[int] | None = None):
        """A new diffusers scheduler for one generation (schedulers keep per-run state: never share one).

        Built as ``SchedulerClass.from_config(scheduler_config, **sampler.kwargs, **schedule settings)``, so the
        checkpoint's prediction type, beta schedule, timestep settings etc. carry over; ``scheduler_config`` itself
        is not modified. ``noise_seeds`` (the image seeds) seed samplers that draw their noise from a source set
        up at construction (DPM++ SDE's Brownian tree) so their images are reproducible; other samplers take
        their noise from the generator passed to ``step`` (see ``SamplerSpec.step_kwargs``).
        """
        sampler, schedule = self.resolve(sampler_name, schedule_name)
        missing = sampler.missing_packages()
        if missing:
            raise UserError("sampler_needs_package", name=sampler.name, package=", ".join(missing))
        cls = sampler.scheduler_class
        kwargs = dict(sampler.kwargs)
        kwargs.update(schedule.kwargs_for(cls))
        if sampler.noise_seed_key and noise_seeds is not None:
            kwargs[sampler.noise_seed_key] = noise_seeds
        try:
            return cls.from_config(dict(scheduler_config), **kwargs)
        except (ValueError, ImportError, NotImplementedError) as err:
            raise UserError("sampler_config_invalid", sampler=sampler.name, schedule=schedule.label,
                            reason=str(err)) from err
