"""Scripts: the registry, arguments by name, and the runner that calls script hooks during a generation.

The HTTP API and the UI hand script choices over in the request itself (``script_name``, ``script_args``,
``alwayson_scripts``, as A1111's API takes them); ``resolve_script_request`` turns them into arguments by name
and raises ``UserError`` (HTTP 400/422) for unknown scripts or arguments. The runner calls it again when the
generation starts, so a caller only has to put the raw values into the GenerationRequest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paragoger.core.denoise import ModelHooks
from paragoger.core.engine import GenerationHooks
from paragoger.errors import UserError
from paragoger.ext.api import Control, ImageResult, Processing, Script

BUILTIN = "builtin"



def control_default(control: Any) -> Any:
    """A control's default value: an api.Control's ``value`` or a Gradio component's ``value``."""
    return getattr(control, "value", None)


def control_label(name: str, control: Any) -> str:
    return getattr(control, "label", None) or name


@dataclass
class ScriptEntry:
    script: Script
    owner: str
    _controls: dict = field(default_factory=dict, repr=False)

    @property
    def title(self) -> str:
        return self.script.title

    @property
    def always_on(self) -> bool:
        return bool(self.script.always_on)

    @property
    def takes_over(self) -> bool:
        """Whether the script makes its own generations (overrides ``run``)."""
        return type(self.script).run is not Script.run

    def controls(self, is_img2img: bool) -> dict[str, Any]:
        """``ui()``'s controls by name (built once per tab kind)."""
        if is_img2img not in self._controls:
            self._controls[is_img2img] = dict(self.script.ui(is_img2img) or {})
        return self._controls[is_img2img]

    def defaults(self, is_img2img: bool) -> dict[str, Any]:
        return {name: control_default(c) for name, c in self.controls(is_img2img).items()}


def script_args(entry: ScriptEntry, raw: Any, is_img2img: bool) -> dict[str, Any]:
    """Arguments by name from ``raw``: None (defaults), a list in ``ui()`` order, or a dict by name. Missing ones
    take their defaults."""
    args = entry.defaults(is_img2img)
    names = list(args)
    known = ", ".join(names) or "none"
    if raw is None:
        return args
    if isinstance(raw, dict):
        for name, value in raw.items():
            if name not in args:
                raise UserError("script_arg_unknown", name=entry.title, arg=name, known=known)
            args[name] = value
        return args
    if isinstance(raw, (list, tuple)):
        if len(raw) > len(names):
            raise UserError("script_args_too_many", name=entry.title, count=len(names), known=known, got=len(raw))
        args.update(zip(names, raw))
        return args
    raise UserError("script_args_invalid", name=entry.title)


class ScriptRegistry:
    """Scripts in registration order (built-ins first), found by title (case-insensitive, as A1111's API)."""

    def __init__(self):
        self._entries: list[ScriptEntry] = []

    def register(self, script: Script, owner: str = BUILTIN) -> ScriptEntry:
        if self.find(script.title) is not None:
            raise ValueError(f"a script titled '{script.title}' is already registered")
        entry = ScriptEntry(script, owner)
        self._entries.append(entry)
        return entry

    def remove_owner(self, owner: str) -> None:
        self._entries = [entry for entry in self._entries if entry.owner != owner]

    def entries(self) -> list[ScriptEntry]:
        return list(self._entries)

    def find(self, title: str | None) -> ScriptEntry | None:
        key = str(title or "").strip().casefold()
        return next((entry for entry in self._entries if entry.title.casefold() == key), None)

    def always_on(self, is_img2img: bool) -> list[ScriptEntry]:
        return [e for e in self._entries if e.always_on and e.script.show(is_img2img)]

    def selectable(self, is_img2img: bool) -> list[ScriptEntry]:
        return [e for e in self._entries if not e.always_on and e.script.show(is_img2img)]

    # For GET /sdapi/v1/scripts and /sdapi/v1/script-info (A1111's shapes).
    def api_list(self) -> dict[str, list[str]]:
        return {"txt2img": [e.title.lower() for e in self.selectable(False)],
                "img2img": [e.title.lower() for e in self.selectable(True)]}

    def api_info(self) -> list[dict[str, Any]]:
        info = []
        for is_img2img in (False, True):
            for entry in self._entries:
                if not entry.script.show(is_img2img):
                    continue
                args = []
                for name, control in entry.controls(is_img2img).items():
                    options = control.options if isinstance(control, Control) else {}
                    args.append({"name": name, "label": control_label(name, control),
                                 "value": control_default(control), "minimum": options.get("minimum"),
                                 "maximum": options.get("maximum"), "step": options.get("step"),
                                 "choices": options.get("choices")})
                info.append({"name": entry.title.lower(), "is_alwayson": entry.always_on,
                             "is_img2img": is_img2img, "args": args})
        return info


@dataclass
class ScriptSelection:
    """What one request asks of the scripts: the picked script (or None) and every always-on script, each with
    its arguments by name."""

    selected: tuple[ScriptEntry, dict] | None
    always_on: list[tuple[ScriptEntry, dict]]

    def active(self) -> list[tuple[ScriptEntry, dict]]:
        return ([self.selected] if self.selected else []) + self.always_on


def resolve_script_request(scripts: ScriptRegistry, request) -> ScriptSelection:
    """The conversion for the HTTP API and the UI: ``request.script_name``/``script_args``/``alwayson_scripts``
    -> arguments by name. Raises UserError for unknown scripts or arguments."""
    is_img2img = request.mode == "img2img"
    selected = None
    if request.script_name:
        entry = scripts.find(request.script_name)
        if entry is None or not entry.script.show(is_img2img):
            raise UserError("script_not_found", name=request.script_name,
                            known=", ".join(e.title for e in scripts.selectable(is_img2img)) or "none")
        if entry.always_on:
            raise UserError("script_not_selectable", name=entry.title)
        selected = (entry, script_args(entry, request.script_args, is_img2img))
    given = {}
    for title, value in (request.alwayson_scripts or {}).items():
        entry = scripts.find(title)
        if entry is None or not entry.always_on:
            raise UserError("alwayson_script_not_found", name=title,
                            known=", ".join(e.title for e in scripts.always_on(is_img2img)) or "none")
        raw = value.get("args") if isinstance(value, dict) and "args" in value else value
        given[entry.title] = raw
    always_on = [(entry, script_args(entry, given.get(entry.title), is_img2img))
                 for entry in scripts.always_on(is_img2img)]
    return ScriptSelection(selected, always_on)


class GenerationRun(GenerationHooks):
    """One generation's script hooks and extension callbacks, called by the engine (see GenerationHooks).

    Scripts work on a copy of the request. An extension whose hook raises is disabled and reported; the
    generation goes on without it. A UserError from a hook is the user's to fix and ends the generation.
    """

    def __init__(self, runtime, request, job, scope: int, selection: ScriptSelection):
        self.runtime = runtime
        self.scope = scope
        self.p = Processing(request.copy(extra_params=dict(request.extra_params)), job, runtime, scope)
        self.selection = selection

    @property
    def request(self):
        return self.p.request

    def _each(self, method: str, *args, **kwargs) -> None:
        for entry, script_args_ in self.selection.active():
            if not self.runtime.is_active(entry.owner):
                continue
            self.p._owner = entry.owner
            try:
                getattr(entry.script, method)(self.p, *args, script_args_, **kwargs)
            except UserError:
                raise
            except Exception as err:
                if entry.owner == BUILTIN:
                    raise
                self.runtime.report_error(entry.owner, err)
            finally:
                self.p._owner = BUILTIN

    def before_process(self) -> None:
        self._each("before_process")

    def step_hooks(self) -> list:
        if not self.runtime.callbacks.registered("denoising_step"):
            return []

        def extension_step(state) -> None:
            self.runtime.callbacks.call("denoising_step", state, scope=self.scope)

        return [extension_step]

    def model_hooks(self) -> ModelHooks:
        def stage(kind: str) -> tuple:
            if not self.runtime.callbacks.registered(kind):
                return ()
            return (lambda state: self.runtime.callbacks.call(kind, state, scope=self.scope),)

        return ModelHooks(before=stage("cfg_denoiser"), after=stage("cfg_denoised"))

    def model_ready(self, components) -> None:
        self.runtime.notify_model(components)

    def process_batch(self, batch_index: int, seeds: list[int]) -> None:
        self._each("process_batch", batch_index=batch_index, seeds=list(seeds))

    def postprocess_image(self, image, *, seed: int, subseed: int, batch_index: int, index: int):
        result = ImageResult(image=image, seed=seed, subseed=subseed, batch_index=batch_index, index=index)
        self._each("postprocess_image", result)
        return result.image, dict(result.fields)

    def before_image_saved(self, item) -> None:
        self.runtime.callbacks.call("before_image_saved", item, scope=self.scope)

    def image_saved(self, item) -> None:
        self.runtime.callbacks.call("image_saved", item, scope=self.scope)

    def postprocess(self, result) -> None:
        self._each("postprocess", result)
