"""Extensions: find them, install, parse their flags, import their scripts, and keep one broken extension from
breaking the app or another extension.

Each folder in an extensions folder (``<data dir>/extensions`` and every ``--extensions-dir``) is an extension:

    extension.json        {"name", "version", "api_version"}   (optional; the folder name is the default name)
    install.py            run (output captured) when it or requirements.txt changed since its last success
    preload.py            ``preload(parser)`` adds command-line flags (parsed from the flags cli.py did not know)
    scripts/*.py          imported; ``setup(ext)`` is called, Script subclasses are registered
    javascript/*.js, style.css    put into the page
    localizations/*.json  collected (language name -> files)

Which extensions are switched off lives in ``<data dir>/extensions.json``; changes apply at the next start.
Installing from a git URL and updating live in ``ext/install.py``; an extension installed while the app runs is
listed at once (status "restart needed") and loads at the next start.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paragoger.errors import UserError
from paragoger.ext import api, git
from paragoger.ext.callbacks import CallbackRegistry
from paragoger.ext.registrar import Clash, Pending, Registrar
from paragoger.ext.scripts import BUILTIN, GenerationRun, ScriptRegistry, resolve_script_request

MANIFEST = "extension.json"
INSTALL_TIMEOUT_S = 900

LOADED, DISABLED, FAILED, INCOMPATIBLE, INSTALL_FAILED = "loaded", "disabled", "failed", "incompatible", \
    "install failed"
RESTART_NEEDED = "restart needed"


@dataclass
class Extension:
    name: str
    path: Path
    manifest: dict = field(default_factory=dict)
    enabled: bool = True
    status: str = "pending"
    error: str = ""                 # the reason or traceback when not loaded / disabled while running
    install_output: str = ""
    note: str = ""                  # what changed while running (installed, updated): applies at the next start
    scripts: list[str] = field(default_factory=list)
    samplers: list[str] = field(default_factory=list)
    javascript: list[Path] = field(default_factory=list)
    css: list[Path] = field(default_factory=list)
    localizations: dict[str, Path] = field(default_factory=dict)
    flags: argparse.Namespace = field(default_factory=argparse.Namespace)

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", ""))

    @property
    def api_version(self) -> str | None:
        value = self.manifest.get("api_version")
        return None if value is None else str(value)

    @property
    def active(self) -> bool:
        return self.status == LOADED

    def as_api(self) -> dict[str, Any]:
        """One item of GET /sdapi/v1/extensions (A1111's fields plus status and error); remote, branch, commit
        when the folder is a git checkout."""
        checkout = git.info(self.path)
        return {"name": self.name, "remote": checkout and checkout.remote, "branch": checkout and checkout.branch,
                "commit_hash": checkout and checkout.commit, "version": self.version,
                "commit_date": checkout and checkout.commit_date, "enabled": self.enabled, "status": self.status,
                "error": self.error, "note": self.note, "api_version": self.api_version, "path": str(self.path),
                "scripts": list(self.scripts), "samplers": list(self.samplers)}


def _safe_name(name: str) -> str:
    return re.sub(r"\W", "_", name) or "extension"


def _content_hash(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()


class ExtensionManager:
    """Owned by the AppContext: the extensions, their callbacks and the scripts (built-in and theirs)."""

    def __init__(self, dirs, *, state_file: Path, samplers, args: list[str] = (), library=None,
                 builtin_scripts: bool = True, switched_off: str = "", upscalers=None, captioners=None,
                 settings=None, services=None):
        self.dirs = tuple(Path(d) for d in dirs)
        self.switched_off = switched_off  # why no extension loads this run (--disable-all-extensions), or ""
        self.state_file = Path(state_file)
        self.samplers = samplers
        self.services = services       # AppServices handed to extensions as ``ext.app``
        self.library = library
        self.args = list(args)
        self.engine = None
        self.callbacks = CallbackRegistry(self.report_error)
        self.scripts = ScriptRegistry()
        self.registrar = Registrar(samplers=samplers, scripts=self.scripts, callbacks=self.callbacks,
                                   upscalers=upscalers, captioners=captioners, settings=settings)
        self.extensions: list[Extension] = []
        self.unused_args: list[str] = []
        self._last_model = None
        if builtin_scripts:
            from paragoger.scripts import builtin_scripts as builtins

            for script in builtins():
                self.scripts.register(script, BUILTIN)

    # --- state file ---------------------------------------------------------------------------------------------
    def _read_state(self) -> dict:
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_state(self, state: dict) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.state_file)

    def set_enabled(self, changes: dict[str, bool]) -> None:
        """Switch extensions on or off from the next start on (persisted)."""
        state = self._read_state()
        disabled = set(state.get("disabled", []))
        for name, enabled in changes.items():
            (disabled.discard if enabled else disabled.add)(name)
        state["disabled"] = sorted(disabled)
        self._write_state(state)

    def disabled_names(self) -> set[str]:
        return set(self._read_state().get("disabled", []))

    # --- discovery and loading ----------------------------------------------------------------------------------
    def discover(self) -> list[Extension]:
        found, seen = [], set()
        disabled = self.disabled_names()
        for folder in self.dirs:
            if not folder.is_dir():
                continue
            for path in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
                if path.name in seen:
                    continue  # the same name in an earlier folder wins
                seen.add(path.name)
                found.append(Extension(name=path.name, path=path, enabled=path.name not in disabled))
        return found

    def load_all(self) -> None:
        self.extensions = self.discover()
        used_args: set[str] = set()
        for ext in self.extensions:
            if not ext.enabled or self.switched_off:
                ext.status, ext.error = DISABLED, self.switched_off
                continue
            try:
                self._load(ext, used_args)
            except _NotLoaded as reason:
                ext.status, ext.error = reason.status, reason.message
            except BaseException as err:  # SystemExit or KeyboardInterrupt from an extension's code too
                if isinstance(err, KeyboardInterrupt):
                    raise
                ext.status, ext.error = FAILED, "".join(traceback.format_exception(err))
            if ext.status != LOADED:
                print(f"Extension {ext.name}: {ext.status}\n{ext.error}".rstrip(), file=sys.stderr, flush=True)
        self.unused_args = [a for a in self.args if a.startswith("-") and a.split("=")[0] not in used_args]

    def _load(self, ext: Extension, used_args: set[str]) -> None:
        ext.manifest = self._manifest(ext)
        if not api.is_compatible(ext.api_version):
            raise _NotLoaded(INCOMPATIBLE, f"needs extension API {ext.api_version}; this app has {api.API_VERSION}")
        self._install(ext)
        ext.flags = self._preload(ext, used_args)
        pending = Pending()
        handle = api.ExtensionHandle(ext.name, ext.path, ext.flags, pending, app=self.services)
        for path in sorted((ext.path / "scripts").glob("*.py")):
            module = self._import(ext, path)
            setup = getattr(module, "setup", None)
            if callable(setup):
                setup(handle)
            registered = {type(script) for script in pending.scripts}
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, api.Script) and cls is not api.Script and cls.__module__ == module.__name__ \
                        and cls not in registered and not inspect.isabstract(cls):
                    pending.scripts.append(cls())
        self._commit(ext, pending)
        ext.javascript = sorted((ext.path / "javascript").glob("*.js"))
        ext.css = [p for p in [ext.path / "style.css"] if p.is_file()]
        ext.localizations = {p.stem: p for p in sorted((ext.path / "localizations").glob("*.json"))}
        ext.status = LOADED

    @staticmethod
    def _manifest(ext: Extension) -> dict:
        path = ext.path / MANIFEST
        if not path.is_file():
            return {}
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise _NotLoaded(FAILED, f"{MANIFEST} is not valid JSON: {err}") from None
        if not isinstance(manifest, dict):
            raise _NotLoaded(FAILED, f"{MANIFEST} must hold a JSON object")
        return manifest

    def _install(self, ext: Extension) -> None:
        script = ext.path / "install.py"
        if not script.is_file():
            return
        digest = _content_hash(script, ext.path / "requirements.txt")
        state = self._read_state()
        if state.get("installed", {}).get(ext.name) == digest:
            return
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(api.__file__).parents[2]),
                                                                           os.environ.get("PYTHONPATH")]))}
        try:
            done = subprocess.run([sys.executable, str(script)], cwd=ext.path, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT_S, env=env)
            ext.install_output = (done.stdout or "") + (done.stderr or "")
            failed = done.returncode != 0
            reason = f"install.py exited with {done.returncode}"
        except subprocess.TimeoutExpired as err:
            ext.install_output = str(err.stdout or "") + str(err.stderr or "")
            failed, reason = True, f"install.py took longer than {INSTALL_TIMEOUT_S} s"
        if failed:
            raise _NotLoaded(INSTALL_FAILED, f"{reason}:\n{ext.install_output[-4000:]}")
        state = self._read_state()  # read again: another extension may have been installed meanwhile
        state.setdefault("installed", {})[ext.name] = digest
        self._write_state(state)

    def _preload(self, ext: Extension, used_args: set[str]) -> argparse.Namespace:
        """Two-phase flags: cli.py keeps the flags it does not know; each extension's ``preload(parser)`` adds its
        own to a parser of its own, which reads them from those."""
        path = ext.path / "preload.py"
        if not path.is_file():
            return argparse.Namespace()
        module = self._import(ext, path, stem="preload")
        parser = argparse.ArgumentParser(prog=ext.name, add_help=False, allow_abbrev=False)
        module.preload(parser)
        flags, _ = parser.parse_known_args(self.args)
        for action in parser._actions:
            used_args.update(action.option_strings)
        return flags

    @staticmethod
    def _import(ext: Extension, path: Path, stem: str | None = None):
        name = f"paragoger_extensions.{_safe_name(ext.name)}.{stem or path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module

    def _commit(self, ext: Extension, pending: Pending) -> None:
        """Everything the extension registered, or nothing of it when one name is taken."""
        try:
            self.registrar.check(pending)
        except Clash as clash:
            raise _NotLoaded(FAILED, str(clash)) from None
        ext.samplers, ext.scripts = self.registrar.add(ext.name, pending)

    @property
    def upscalers(self):
        """The app's UpscalerRegistry (scripts check and list upscaler names through it)."""
        return self.registrar.upscalers

    @property
    def tabs(self) -> list:
        return self.registrar.tabs

    @property
    def routes(self) -> list:
        return self.registrar.routes

    # --- while running ------------------------------------------------------------------------------------------
    def add_installed(self, path: Path) -> Extension:
        """An extension just put into ``path`` (ext/install.py): switched on, its install.py run as at start,
        listed with status "restart needed" (or "install failed" with the output; retried at the next start)."""
        path = Path(path)
        self.set_enabled({path.name: True})
        ext = Extension(name=path.name, path=path, status=RESTART_NEEDED)
        try:
            ext.manifest = self._manifest(ext)
            self._install(ext)
        except _NotLoaded as reason:
            ext.status, ext.error = reason.status, reason.message
        self.extensions = [e for e in self.extensions if e.name != ext.name] + [ext]
        return ext

    def get(self, name: str) -> Extension | None:
        return next((ext for ext in self.extensions if ext.name == name), None)

    def is_active(self, owner: str) -> bool:
        if owner == BUILTIN:
            return True
        ext = self.get(owner)
        return ext is not None and ext.active

    def report_error(self, owner: str, err: BaseException) -> None:
        """An extension's callback or script hook raised: switch it off for this run and say why. (Its samplers
        stay listed: a running generation may be using one.)"""
        text = "".join(traceback.format_exception(err))
        print(f"Extension {owner} raised and was disabled:\n{text}", file=sys.stderr, flush=True)
        ext = self.get(owner)
        if ext is not None:
            ext.status, ext.error = FAILED, text
        self.callbacks.remove_owner(owner)
        self.scripts.remove_owner(owner)

    def notify_model(self, components) -> None:
        # Only the description is remembered: holding the modules would keep a switched-away model in memory.
        if components is not None and components.info != self._last_model:
            self._last_model = components.info
            self.callbacks.call("model_loaded", components.info)

    def app_started(self) -> None:
        self.callbacks.call("app_started")

    def infotext_pasted(self, text: str, fields: dict) -> dict:
        self.callbacks.call("infotext_pasted", text, fields)
        return fields

    # --- generations --------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def generation(self, request, job):
        """The engine's ``extension_runner``: script hooks and callbacks for one generation; callbacks added for
        it are removed when it ends, however it ends."""
        selection = resolve_script_request(self.scripts, request)
        with self.callbacks.scope() as scope:
            run = GenerationRun(self, request, job, scope, selection)
            run.before_process()
            yield run

    def run_generation(self, request, job):
        """A queued generation: a picked script that makes its own generations (X/Y/Z plot) runs them; any
        other request goes to the engine with its script hooks."""
        selection = resolve_script_request(self.scripts, request)
        if selection.selected and selection.selected[0].takes_over:
            entry, args = selection.selected
            with self.callbacks.scope() as scope:
                p = api.Processing(request, job, self, scope)
                p._owner = entry.owner
                try:
                    result = entry.script.run(p, args)
                except UserError:
                    raise
                except Exception as err:
                    if entry.owner != BUILTIN:
                        self.report_error(entry.owner, err)
                    raise
            if result is not None:
                return result
            request = request.copy(script_name=None, script_args=None)
        return self.engine.generate(request, job)

    def generate_inner(self, request, job, **changes):
        """``p.generate``: one generation inside a script's ``run`` (the picked script itself does not apply)."""
        inner = request.copy(script_name=None, script_args=None, **changes)
        inner.extra_params = dict(inner.extra_params)
        return self.engine.generate(inner, job)

    def sampler_names(self) -> list[str]:
        return [spec["name"] for spec in self.samplers.samplers()]

    def schedule_names(self) -> list[str]:
        return [spec["label"] for spec in self.samplers.schedules()]

    def checkpoint_names(self) -> list[str]:
        return [info.title for info in self.library.checkpoints()] if self.library is not None else []

    # --- the page -----------------------------------------------------------------------------------------------
    def page_head(self) -> str:
        """Script and style tags for every loaded extension's javascript/*.js and style.css."""
        parts = []
        for ext in self.extensions:
            if not ext.active:
                continue
            for path in ext.javascript:
                parts.append(f"<script data-extension=\"{ext.name}\">{_read(path)}</script>")
            for path in ext.css:
                parts.append(f"<style data-extension=\"{ext.name}\">{_read(path)}</style>")
        return "".join(parts)

    def localizations(self) -> dict[str, list[Path]]:
        found: dict[str, list[Path]] = {}
        for ext in self.extensions:
            if ext.active:
                for language, path in ext.localizations.items():
                    found.setdefault(language, []).append(path)
        return found

    def api_list(self) -> list[dict[str, Any]]:
        return [ext.as_api() for ext in self.extensions]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").replace("</script", "<\\/script")
    except OSError:
        return ""


class _NotLoaded(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message
