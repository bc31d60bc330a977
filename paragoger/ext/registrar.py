"""What an extension registers, put into the app's registries: every name is checked first and only then is all
of it added, so an extension with one clashing name leaves nothing of itself behind."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from paragoger.errors import UserError
from paragoger.ext import api
from paragoger.ext.scripts import BUILTIN

XYZ_PLOT = "X/Y/Z plot"


@dataclass
class Pending:
    """What an extension registers while it loads (through its ExtensionHandle)."""

    samplers: list = field(default_factory=list)
    schedules: list = field(default_factory=list)
    scripts: list = field(default_factory=list)
    callbacks: list = field(default_factory=list)
    upscalers: list = field(default_factory=list)
    captioners: list = field(default_factory=list)
    settings: list = field(default_factory=list)
    tabs: list = field(default_factory=list)
    routes: list = field(default_factory=list)
    xyz_axes: list = field(default_factory=list)


class Clash(Exception):
    """A name an extension wants is taken (or a registration cannot be used): the extension does not load."""


def _taken(name: str, names) -> bool:
    return name.casefold() in {existing.casefold() for existing in names}


class Registrar:
    """The registries extensions add to, owned by the ExtensionManager. A registry that is None (a manager built
    without it) refuses registrations of that kind."""

    def __init__(self, *, samplers, scripts, callbacks, upscalers=None, captioners=None, settings=None):
        self.samplers = samplers
        self.scripts = scripts
        self.callbacks = callbacks
        self.upscalers = upscalers
        self.captioners = captioners
        self.settings = settings
        self.tabs: list[api.ExtensionTab] = []
        self.routes: list[api.ExtensionRoute] = []

    def xyz_plot(self):
        entry = self.scripts.find(XYZ_PLOT)
        return entry.script if entry is not None and entry.owner == BUILTIN else None

    def check(self, pending: Pending) -> None:
        """Raise Clash for the first registration that cannot be added."""
        for spec in pending.samplers:
            for name in (spec.name, *spec.aliases):
                with contextlib.suppress(UserError):
                    self.samplers.sampler(name)
                    raise Clash(f"sampler name '{name}' is already taken")
        schedule_names = [n for s in self.samplers.schedules() for n in (s["name"], s["label"])]
        for spec in pending.schedules:
            for name in (spec.name, spec.label, *spec.aliases):
                if name and _taken(name, schedule_names):
                    raise Clash(f"schedule type name '{name}' is already taken")
        for script in pending.scripts:
            if not isinstance(script, api.Script):
                raise Clash(f"{script!r} is not an api.Script")
            if self.scripts.find(script.title) is not None:
                raise Clash(f"script title '{script.title}' is already taken")
        for upscaler in pending.upscalers:
            if self.upscalers is None or _taken(upscaler.name, self.upscalers.names()):
                raise Clash(f"upscaler name '{upscaler.name}' is already taken")
        for captioner in pending.captioners:
            if self.captioners is None or _taken(captioner.name, self.captioners.names()):
                raise Clash(f"captioner name '{captioner.name}' is already taken")
        for spec in pending.settings:
            if self.settings is None or spec.key in {s.key for s in self.settings.specs()}:
                raise Clash(f"setting '{spec.key}' is already taken")
            try:
                spec.coerce(spec.default)
            except UserError as err:
                raise Clash(f"setting '{spec.key}': {err}") from None
        for route in pending.routes:
            if any(r.owner == route.owner and r.path == route.path for r in self.routes):
                raise Clash(f"route '{route.path}' is registered twice")
        plot = self.xyz_plot()
        axis_names = [n for axis in (plot.axes if plot else []) for n in (axis.label, *axis.aliases)]
        for axis in pending.xyz_axes:
            if plot is None or _taken(axis.label, axis_names):
                raise Clash(f"X/Y/Z axis '{axis.label}' is already taken")

    def add(self, owner: str, pending: Pending) -> tuple[list[str], list[str]]:
        """Register everything (after ``check``); returns the sampler names and script titles added."""
        for spec in pending.schedules:
            self.samplers.register_schedule(spec)
        for spec in pending.samplers:
            self.samplers.register_sampler(spec)
        for script in pending.scripts:
            self.scripts.register(script, owner)
        for upscaler in pending.upscalers:
            self.upscalers.register(upscaler)
        for captioner in pending.captioners:
            self.captioners.register(captioner)
        for spec in pending.settings:
            self.settings.add_spec(spec)
        self.tabs += pending.tabs
        self.routes += pending.routes
        for axis in pending.xyz_axes:
            self.xyz_plot().add_axis(axis)
        for kind, fn in pending.callbacks:
            self.callbacks.add(kind, fn, owner=owner)
        return [spec.name for spec in pending.samplers], [script.title for script in pending.scripts]
