"""The public extension API: the one module an extension imports (``from paragoger.ext import api``).

Versioned by ``API_VERSION`` ("major.minor"). An extension names the version it was written for in its
``extension.json`` (``"api_version": "1.0"``); it loads when the major number is the same and its minor number
is not newer than this one. Within a major version, names here are only ever added, never changed or removed.

An extension's ``scripts/*.py`` modules may define:

* ``setup(ext)``: called once at start with an ``ExtensionHandle``; register samplers, schedule types and
  callbacks through it. Registrations go to the app that loads the extension (there are no module globals).
* subclasses of ``Script``: found and registered automatically (or pass them to ``ext.register_script``).

See docs/extensions.md for a walk-through and extensions/example for a working extension.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from paragoger import messages
from paragoger.control.units import CONTROL_MODES, RESIZE_MODES, ControlUnit, enabled_units  # noqa: F401
# (public re-exports: ControlNet units, for scripts that change them, such as the X/Y/Z plot's ControlNet axes)
from paragoger.errors import UserError
from paragoger.ext.services import AppServices  # noqa: F401  (public re-export: the type of ``ext.app``)
from paragoger.imaging.grid import annotate_grid, make_grid, load_label_font  # noqa: F401  (public re-exports)

API_VERSION = "1.0"

messages.ENGLISH.setdefault("script_error", "{text}")


class ScriptError(UserError):
    """A mistake the user can fix, found by a script (a bad axis value, an unreadable line): the generation ends
    and ``text`` is shown as the error (HTTP 400 from the API). Also catch ``UserError`` to see the app's own."""

    def __init__(self, text: str):
        super().__init__("script_error", text=str(text))

# Grids (re-exported from the app): ``make_grid(images, rows=None)`` puts images into one picture row by row;
# ``annotate_grid(grid, cell_width=, cell_height=, column_labels=, row_labels=)`` adds label bands on top and left,
# as X/Y/Z plot's legend; ``load_label_font(size)`` is the font those labels use.


def is_compatible(required: str | None, provided: str = API_VERSION) -> bool:
    """Whether an extension written for API ``required`` runs on ``provided`` (same major, minor not newer).
    No declared version counts as compatible (it is reported as unchecked)."""
    if required is None or str(required).strip() == "":
        return True
    try:
        want = [int(part) for part in str(required).strip().split(".")[:2]]
        have = [int(part) for part in provided.split(".")[:2]]
    except ValueError:
        return False
    want += [0] * (2 - len(want))
    return want[0] == have[0] and want[1] <= have[1]


# --- script controls ---------------------------------------------------------------------------------------------
# Plain descriptions of inputs, so scripts need no Gradio: the page turns them into widgets, the HTTP API reads
# their names and defaults. A script may also return real Gradio components from ``ui()``; their ``value`` is
# then the default.

@dataclass
class Control:
    label: str
    value: Any = None
    kind: str = "textbox"
    options: dict = field(default_factory=dict)


def Textbox(label: str, value: str = "", *, lines: int = 1) -> Control:
    return Control(label, value, "textbox", {"lines": lines})


def Number(label: str, value: float = 0, *, precision: int | None = None) -> Control:
    return Control(label, value, "number", {"precision": precision})


def Slider(label: str, minimum: float, maximum: float, value: float | None = None, *, step: float = 1) -> Control:
    return Control(label, minimum if value is None else value, "slider",
                   {"minimum": minimum, "maximum": maximum, "step": step})


def Checkbox(label: str, value: bool = False) -> Control:
    return Control(label, value, "checkbox")


def Dropdown(label: str, choices: list, value: Any = None, *, multiselect: bool = False) -> Control:
    default = value if value is not None else ([] if multiselect else (choices[0] if choices else None))
    return Control(label, default, "dropdown", {"choices": list(choices), "multiselect": multiselect})


# --- what scripts see during a generation --------------------------------------------------------------------------

@dataclass
class ImageResult:
    """One decoded image, given to ``Script.postprocess_image``: replace ``image`` to change it, put infotext
    fields into ``fields`` (``{"My field": "value"}``) to have them written into this image's parameters."""

    image: Any                      # PIL.Image
    seed: int
    subseed: int
    batch_index: int
    index: int                      # index within the batch
    fields: dict = field(default_factory=dict)


class Processing:
    """``p``: the generation a script takes part in.

    ``request`` is the generation's request (a GenerationRequest: prompt, steps, sampler_name, seed, width, ...);
    change it in ``before_process``. ``extra_params`` are infotext fields written into every image.
    """

    def __init__(self, request, job, runtime, scope):
        self.request = request
        self._job = job
        self._runtime = runtime
        self._scope = scope
        self._owner = "builtin"      # the extension whose hook is running (set by the runner)

    @property
    def extra_params(self) -> dict:
        return self.request.extra_params

    @property
    def interrupted(self) -> bool:
        return bool(getattr(self._job, "interrupted", False))

    def on_denoising_step(self, fn: Callable[[Any], None]) -> None:
        """A per-step callback for this generation only (removed when it ends, also on error or interrupt)."""
        self._runtime.callbacks.add("denoising_step", fn, owner=self._owner, scope=self._scope)

    def on_cfg_denoiser(self, fn: Callable[[Any], None]) -> None:
        """Like ``ExtensionHandle.on_cfg_denoiser``, for this generation only."""
        self._runtime.callbacks.add("cfg_denoiser", fn, owner=self._owner, scope=self._scope)

    def on_cfg_denoised(self, fn: Callable[[Any], None]) -> None:
        """Like ``ExtensionHandle.on_cfg_denoised``, for this generation only."""
        self._runtime.callbacks.add("cfg_denoised", fn, owner=self._owner, scope=self._scope)

    # For scripts picked from the Script dropdown whose ``run`` makes several generations (X/Y/Z plot).
    def generate(self, request=None, **changes):
        """Run one generation (always-on scripts apply) and return its GenerationResult."""
        return self._runtime.generate_inner(request or self.request, self._job, **changes)

    def sampler_names(self) -> list[str]:
        return self._runtime.sampler_names()

    def setting(self, key: str) -> Any:
        """A setting's value for this generation (the request's ``override_settings`` first)."""
        engine = getattr(self._runtime, "engine", None)
        return engine.settings.with_overrides(self.request.override_settings)[key]

    def schedule_names(self) -> list[str]:
        return self._runtime.schedule_names()

    def checkpoint_names(self) -> list[str]:
        return self._runtime.checkpoint_names()

    def vae_names(self) -> list[str]:
        """"Automatic", "None" and the VAE files, as the VAE setting takes them."""
        library = getattr(self._runtime, "library", None)
        return ["Automatic", "None"] + (list(library.vaes()) if library is not None else [])

    def controlnet_model_names(self) -> list[str]:
        """The ControlNet / T2I-Adapter models' titles, as a unit's model takes them."""
        control = getattr(getattr(self._runtime, "engine", None), "control", None)
        return control.model_names() if control is not None else []

    def controlnet_module_names(self) -> list[str]:
        """The ControlNet preprocessors' names, as a unit's module takes them."""
        control = getattr(getattr(self._runtime, "engine", None), "control", None)
        registry = getattr(control, "registry", None)
        return registry.names() if hasattr(registry, "names") else []

    def upscaler_names(self) -> list[str]:
        """What the Hires. fix takes as its upscaler: the latent modes, then the picture upscalers."""
        from paragoger.core.hires import upscaler_names

        return upscaler_names(getattr(self._runtime, "upscalers", None))

    def check(self, request=None, **changes) -> None:
        """Raise UserError when ``request`` (default: this one) with ``changes`` could not run: size, steps and
        the other limits, an unknown sampler or schedule type, checkpoint or VAE. Generates nothing; for scripts
        that check every planned generation before starting the first."""
        request = (request or self.request).copy(**changes)
        engine = getattr(self._runtime, "engine", None)
        if engine is not None:
            engine.checks.check(request)  # the app's one check (the page's, the API's, the engine's)
        else:
            request.validate()

    def check_plan(self, what: str, pictures: int) -> None:
        """Raise UserError when a script's whole plan, ``pictures`` in all (every generation's batch size x batch
        count), is more than one request may make (setting limit_images); ``what`` names the script. Call it
        before the first generation."""
        engine = getattr(self._runtime, "engine", None)
        if engine is not None:
            engine.checks.check_image_count(pictures, plan=what)

    def save_grid(self, image, infotext: str | None = None) -> str | None:
        """Save a grid made by a script like the engine saves its batch grids (grids folder, the "grid_save"
        and format settings, and not when the request says ``save_images=False`` or ``do_not_save_grid``);
        returns the path, or None when it was not saved."""
        engine = getattr(self._runtime, "engine", None)
        if engine is None or not self.request.save_images or self.request.do_not_save_grid:
            return None
        from paragoger.imaging import saving

        settings = engine.settings.with_overrides(self.request.override_settings)
        if not settings["grid_save"]:
            return None
        outdir = engine._output_dir(settings, f"outdir_{self.request.mode}_grids")
        return str(saving.save_grid(image, infotext, outdir=outdir, extension=settings["grid_format"],
                                    jpeg_quality=settings["jpeg_quality"]))

    def set_progress_text(self, text: str) -> None:
        progress = getattr(self._job, "progress", None)
        if progress is not None:
            progress.textinfo = text


class Script:
    """A script: a title, inputs (``ui``), and hooks around a generation.

    ``always_on = True``: runs in every generation (its inputs sit in a collapsible section under the controls);
    otherwise it is picked from the Script dropdown. ``args`` is a dict from the names ``ui`` gave to values.
    A script that overrides ``run`` takes over the generation (call ``p.generate(...)`` as often as needed and
    return a result); otherwise the generation runs normally with the hooks below.
    """

    title: str = "Untitled script"
    always_on: bool = False

    def show(self, is_img2img: bool) -> bool:
        return True

    def ui(self, is_img2img: bool) -> dict[str, Any]:
        return {}

    def before_process(self, p: Processing, args: dict) -> None:
        pass

    def process_batch(self, p: Processing, args: dict, *, batch_index: int, seeds: list[int]) -> None:
        pass

    def postprocess_image(self, p: Processing, image: ImageResult, args: dict) -> None:
        pass

    def postprocess(self, p: Processing, result, args: dict) -> None:
        pass

    def run(self, p: Processing, args: dict):
        return None


# --- what extensions add besides samplers and scripts -------------------------------------------------------------

@dataclass
class XYZAxis:
    """An X/Y/Z plot axis (see ``ExtensionHandle.register_xyz_axis``)."""

    label: str
    kind: str = "text"                     # "int", "float" or "text": how the values box is parsed
    choices: tuple | None = None           # fixed choices instead (offered as a dropdown)
    field: str | None = None               # a GenerationRequest field to set ...
    setting: str | None = None             # ... or a setting for that cell ...
    script: str | None = None              # ... or an always-on script's argument (with ``arg``)
    arg: str | None = None
    labelled: bool = True                  # "Label: value" in the grid legend, or just the value
    aliases: tuple = ()


@dataclass
class ExtensionTab:
    title: str
    build: Callable[[], None]
    owner: str
    elem_id: str


@dataclass
class ExtensionRoute:
    path: str                              # served at /ext/<extension>/<path>
    endpoint: Callable
    methods: tuple
    owner: str


@dataclass
class _FunctionCaptioner:
    name: str
    fn: Callable[[Any, dict], str]

    def caption(self, image, options) -> str:
        return str(self.fn(image, dict(options)))


# --- the handle an extension gets ---------------------------------------------------------------------------------

CALLBACK_KINDS = ("app_started", "model_loaded", "before_image_saved", "image_saved", "denoising_step",
                  "infotext_pasted", "cfg_denoiser", "cfg_denoised")


class ExtensionHandle:
    """What ``setup(ext)`` receives: this extension's name, folder and flags, and the ways to register things.

    Registrations are collected and applied when the whole extension has loaded; an extension that fails to
    load leaves nothing behind.
    """

    def __init__(self, name: str, path: Path, flags: argparse.Namespace, pending, app=None):
        self.name = name
        self.path = Path(path)
        self.flags = flags           # values of the command-line flags this extension's preload.py added
        self.app = app               # AppServices: generate, upscale, settings... (for tabs, routes, callbacks)
        self._pending = pending

    def register_upscaler(self, name: str, upscale: Callable[[Any, float], Any], *, scale: float = 4.0) -> None:
        """An upscaler: ``upscale(image, scale) -> image`` on PIL RGB pictures (about ``scale`` times larger;
        the app resizes the result exactly). Listed in every upscaler dropdown and /sdapi/v1/upscalers."""
        from paragoger.upscale import Upscaler

        self._pending.upscalers.append(Upscaler(name, upscale, scale=float(scale), source=self.name))

    def register_captioner(self, name: str, caption: Callable[[Any, dict], str]) -> None:
        """A captioner for image to text: ``caption(image, options) -> str`` (PIL RGB picture; ``options`` the
        app's settings by key). Offered in the Image to text tab and POST /sdapi/v1/interrogate (``model``)."""
        self._pending.captioners.append(_FunctionCaptioner(name, caption))

    def register_setting(self, key: str, default: Any, label: str, *, section: str | None = None,
                         choices: tuple | None = None, minimum: float | None = None,
                         maximum: float | None = None) -> None:
        """A setting in the Settings tab (in ``section``, by default a section named after the extension), in
        /sdapi/v1/options and config.json, usable in ``override_settings``. Read it with ``ext.app.setting(key)``
        or, honouring a request's overrides, ``p.setting(key)``."""
        from paragoger.settings import OptionSpec

        self._pending.settings.append(OptionSpec(key, default, label, section or self.name,
                                                 tuple(choices) if choices is not None else None, minimum, maximum))

    def register_tab(self, title: str, build: Callable[[], None]) -> None:
        """A tab on the page: ``build()`` is called inside it and creates Gradio components (import gradio in
        the extension). If ``build`` raises, the tab shows the error and the extension is disabled."""
        elem_id = "tab_ext_" + "".join(c if c.isalnum() else "_" for c in f"{self.name}_{title}").lower()
        self._pending.tabs.append(ExtensionTab(title, build, self.name, elem_id))

    def register_route(self, path: str, endpoint: Callable, *, methods: tuple = ("GET",)) -> None:
        """An HTTP route at ``/ext/<extension name>/<path>`` (FastAPI endpoint function; the API's
        ``--api-auth`` applies to it)."""
        self._pending.routes.append(ExtensionRoute("/" + path.lstrip("/"), endpoint, tuple(methods), self.name))

    def register_xyz_axis(self, label: str, *, field: str | None = None, setting: str | None = None,
                          script: str | None = None, arg: str | None = None, kind: str = "text",
                          choices: tuple | None = None, labelled: bool = True, aliases: tuple = ()) -> None:
        """An X/Y/Z plot axis that sets, per cell, one of: a GenerationRequest ``field``, a ``setting`` (as
        override_settings), or an always-on ``script``'s argument ``arg``. ``kind`` "int"/"float" accepts
        ranges like ``1-5`` and ``10-30 (+5)``."""
        if sum(x is not None for x in (field, setting, script)) != 1 or (script is None) != (arg is None):
            raise ValueError("give exactly one of field=, setting= or script= with arg=")
        if kind not in ("int", "float", "text"):
            raise ValueError("kind is 'int', 'float' or 'text'")
        self._pending.xyz_axes.append(XYZAxis(label, kind, tuple(choices) if choices is not None else None,
                                              field, setting, script, arg, labelled, tuple(aliases)))

    def register_sampler(self, name: str, scheduler_class: type, kwargs: dict | None = None, *,
                         aliases: tuple[str, ...] = (), default_schedule: str | None = None,
                         schedules: tuple[str, ...] | None = None, needs_generator: bool = False,
                         how: str = "") -> None:
        """A sampler: a diffusers scheduler class (or a subclass the extension defines) and the fixed settings
        that make it this algorithm. It appears in every sampler dropdown and in /sdapi/v1/samplers."""
        from paragoger.samplers.specs import SamplerSpec

        self._pending.samplers.append(SamplerSpec(
            name, scheduler_class, kwargs or {}, aliases=tuple(aliases), default_schedule=default_schedule,
            schedules=schedules, needs_generator=needs_generator, how=how or f"from extension {self.name}"))

    def register_step_sampler(self, name: str, step_function: Callable, *, aliases: tuple[str, ...] = (),
                              adds_noise: bool = False, default_schedule: str | None = None,
                              schedules: tuple[str, ...] | None = None, how: str = "") -> None:
        """A sampler written as ``step_function(x, denoised, sigma, sigma_next, info) -> x_next`` over the
        model's denoiser (see ``paragoger.samplers.step_function``). ``adds_noise``: it calls
        ``info.noise_like(x)`` (ancestral/SDE samplers), so it is handed generators seeded from the image seeds."""
        from paragoger.samplers.step_function import scheduler_for_step_function

        self.register_sampler(name, scheduler_for_step_function(name, step_function), aliases=aliases,
                              default_schedule=default_schedule, schedules=schedules, needs_generator=adds_noise,
                              how=how or f"step function from extension {self.name}")

    def register_schedule(self, name: str, label: str, config: dict, *, config_if_supported: dict | None = None,
                          aliases: tuple[str, ...] = (), how: str = "") -> None:
        """A schedule type: scheduler-config settings that choose the noise levels or timesteps."""
        from paragoger.samplers.specs import ScheduleSpec

        self._pending.schedules.append(ScheduleSpec(name, label, config, config_if_supported or {},
                                                    aliases=tuple(aliases), how=how))

    def register_script(self, script: Script | type) -> None:
        self._pending.scripts.append(script() if isinstance(script, type) else script)

    # Callbacks for the life of the app. An exception in one disables this extension (and is reported).
    def on_app_started(self, fn: Callable[[], None]) -> None:
        """``fn()`` once the app has started and loaded its model."""
        self._pending.callbacks.append(("app_started", fn))

    def on_model_loaded(self, fn: Callable[[Any], None]) -> None:
        """``fn(checkpoint_info)`` whenever another checkpoint is loaded (``.title``, ``.model_name``)."""
        self._pending.callbacks.append(("model_loaded", fn))

    def on_before_image_saved(self, fn: Callable[[Any], None]) -> None:
        """``fn(item)`` before an image is written: may change ``item.image`` and ``item.infotext``."""
        self._pending.callbacks.append(("before_image_saved", fn))

    def on_image_saved(self, fn: Callable[[Any], None]) -> None:
        """``fn(item)`` after an image is written (``item.path``)."""
        self._pending.callbacks.append(("image_saved", fn))

    def on_denoising_step(self, fn: Callable[[Any], None]) -> None:
        """``fn(state)`` after every denoising step of every generation: ``state.step``, ``state.steps``,
        ``state.timestep``, ``state.noise_pred``, ``state.latents`` (assign a new tensor to change them),
        ``state.stop = True`` ends sampling."""
        self._pending.callbacks.append(("denoising_step", fn))

    def on_cfg_denoiser(self, fn: Callable[[Any], None]) -> None:
        """``fn(state)`` just before every UNet call of every generation: ``state.model_input`` (all copies of the
        latents, scaled), ``state.embeds`` (text conditioning of every copy: the negative first, then the
        positives), ``state.cfg_scale`` and ``state.unet_kwargs`` (extra UNet arguments, e.g. ControlNet
        residuals) may be replaced; ``state.step``/``state.steps``/``state.timestep`` say where sampling is."""
        self._pending.callbacks.append(("cfg_denoiser", fn))

    def on_cfg_denoised(self, fn: Callable[[Any], None]) -> None:
        """``fn(state)`` just after every UNet call, before the copies are combined by CFG: ``state.noise_pred``
        (every copy's raw prediction) and ``state.cfg_scale`` may be replaced."""
        self._pending.callbacks.append(("cfg_denoised", fn))

    def on_infotext_pasted(self, fn: Callable[[str, dict], None]) -> None:
        """``fn(infotext, fields)`` when parameters are pasted: may add to or change ``fields`` in place."""
        self._pending.callbacks.append(("infotext_pasted", fn))
