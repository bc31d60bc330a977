"""Settings: a table of option specs (A1111's keys) and a Settings object holding their values.

Requests never change the shared Settings: ``with_overrides`` gives a copy for one request
(A1111's ``override_settings``), so nothing leaks into the next one.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paragoger.errors import UserError


@dataclass(frozen=True)
class OptionSpec:
    key: str
    default: Any
    label: str
    section: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None

    def coerce(self, value: Any) -> Any:
        """The value converted to the default's type, or UserError with the reason."""
        kind = type(self.default)
        try:
            if kind is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError("expected true or false")
                value = value.lower() in ("true", "1")
            elif kind in (int, float) and not isinstance(value, bool):
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError("expected a finite number")
                value = kind(value)
            elif kind is str:
                value = "" if value is None else str(value)
            elif not isinstance(value, kind):
                raise ValueError(f"expected {kind.__name__}")
        except (TypeError, ValueError, OverflowError) as err:
            raise UserError("bad_option_value", key=self.key, value=value, reason=str(err)) from None
        if self.choices is not None and value not in self.choices:
            raise UserError("bad_option_value", key=self.key, value=value,
                            reason="choose one of " + ", ".join(map(str, self.choices)))
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise UserError("bad_option_value", key=self.key, value=value,
                            reason=f"must be between {self.minimum} and {self.maximum}")
        return value


OPTION_SPECS: tuple[OptionSpec, ...] = (
    # Stable Diffusion
    OptionSpec("sd_model_checkpoint", "", "Stable Diffusion checkpoint", "sd"),
    OptionSpec("sd_vae", "Automatic", "SD VAE", "sd"),
    OptionSpec("sd_checkpoints_limit", 1, "Checkpoints to keep in memory", "sd", minimum=1, maximum=10),
    # Memory (paragoger/model_manager/memory.py): what loaded models may hold; 0 = free memory less a margin
    OptionSpec("memory_ram_budget_mb", 0.0, "RAM loaded models may use, in MB (0: automatic, free RAM less a margin)",
               "memory", minimum=0.0),
    OptionSpec("memory_vram_budget_mb", 0.0,
               "GPU memory loaded models may use, in MB (0: automatic, free GPU memory less a margin)", "memory",
               minimum=0.0),
    OptionSpec("CLIP_stop_at_last_layers", 1, "Clip skip", "sd", minimum=1, maximum=12),
    OptionSpec("enable_prompt_comments", True, "Enable # comments in prompts", "sd"),
    OptionSpec("emphasis", "Original", "Emphasis mode for (word:1.2)", "sd", choices=("Original", "No norm", "Ignore")),
    OptionSpec("randn_source", "GPU", "Random number generator source", "sd", choices=("GPU", "CPU")),
    OptionSpec("eta_ddim", 0.0, "Eta for DDIM", "sampler", minimum=0.0, maximum=1.0),
    OptionSpec("eta_ancestral", 1.0, "Eta for ancestral samplers", "sampler", minimum=0.0, maximum=1.0),
    # Saving
    OptionSpec("samples_save", True, "Always save all generated images", "saving"),
    OptionSpec("samples_format", "png", "File format for images", "saving", choices=("png", "jpg", "jpeg", "webp")),
    OptionSpec("grid_save", True, "Always save all generated image grids", "saving"),
    OptionSpec("grid_format", "png", "File format for grids", "saving", choices=("png", "jpg", "jpeg", "webp")),
    OptionSpec("jpeg_quality", 80, "Quality for saved jpeg and webp images", "saving", minimum=1, maximum=100),
    OptionSpec("save_images_before_highres_fix", False, "Save a copy of image before applying highres fix", "saving"),
    OptionSpec("outdir_samples", "", "Output folder for images (empty: per-mode folders)", "saving"),
    OptionSpec("outdir_txt2img_samples", "txt2img-images", "Output folder for txt2img images", "saving"),
    OptionSpec("outdir_txt2img_grids", "txt2img-grids", "Output folder for txt2img grids", "saving"),
    OptionSpec("outdir_img2img_samples", "img2img-images", "Output folder for img2img images", "saving"),
    OptionSpec("outdir_img2img_grids", "img2img-grids", "Output folder for img2img grids", "saving"),
    OptionSpec("outdir_extras_samples", "extras-images", "Output folder for images from extras tab", "saving"),
    # Live previews
    OptionSpec("live_previews_enable", True, "Show live previews while generating", "previews"),
    OptionSpec("show_progress_every_n_steps", 2, "Live preview every N steps", "previews", minimum=1, maximum=50),
    OptionSpec("show_progress_type", "Approx cheap", "Live preview method", "previews",
               choices=("Approx cheap", "Full")),
    # Defaults in the txt2img tab
    OptionSpec("localization", "None", "Localization (applies when the page is reloaded after a restart)", "ui"),
    OptionSpec("default_sampler", "DPM++ 2M", "Default sampler", "ui"),
    OptionSpec("default_scheduler", "Automatic", "Default schedule type", "ui"),
    OptionSpec("default_steps", 20, "Default steps", "ui", minimum=1, maximum=150),
    OptionSpec("default_cfg_scale", 7.0, "Default CFG scale", "ui", minimum=1.0, maximum=30.0),
    # Image to text (paragoger/caption): A1111's interrogate settings
    OptionSpec("interrogate_keep_models_in_memory", False, "Keep captioning models in memory after use",
               "interrogate"),
    OptionSpec("interrogate_return_ranks", False, "Show the score of each flavour and tag, as (text:score)",
               "interrogate"),
    OptionSpec("interrogate_clip_num_beams", 1, "BLIP: number of beams", "interrogate", minimum=1, maximum=16),
    OptionSpec("interrogate_clip_min_length", 24, "BLIP: minimum description length, tokens", "interrogate",
               minimum=1, maximum=128),
    OptionSpec("interrogate_clip_max_length", 48, "BLIP: maximum description length, tokens", "interrogate",
               minimum=2, maximum=256),
    OptionSpec("interrogate_deepbooru_score_threshold", 0.5, "DeepBooru: score threshold", "interrogate",
               minimum=0.0, maximum=1.0),
    OptionSpec("deepbooru_sort_alpha", True, "DeepBooru: sort tags alphabetically (else best first)",
               "interrogate"),
    OptionSpec("deepbooru_use_spaces", True, "DeepBooru: spaces instead of underscores", "interrogate"),
    OptionSpec("deepbooru_escape", True, "DeepBooru: escape brackets with \\ so they stay literal", "interrogate"),
    OptionSpec("deepbooru_filter_tags", "", "DeepBooru: tags to leave out, comma-separated", "interrogate"),
    # Upscaling (model upscalers run in tiles of this many input pixels; 0 = the whole picture at once)
    OptionSpec("ESRGAN_tile", 192, "Tile size for ESRGAN upscalers (0 = no tiling)", "upscaling",
               minimum=0, maximum=512),
    OptionSpec("ESRGAN_tile_overlap", 8, "Tile overlap for ESRGAN upscalers, pixels", "upscaling",
               minimum=0, maximum=48),
    # ControlNet (paragoger/control): sd-webui-controlnet's setting names
    OptionSpec("control_net_unit_count", 3, "ControlNet units shown in txt2img and img2img (after a restart)",
               "controlnet", minimum=1, maximum=10),
    # Limits: what one request may ask for, so that none holds the machine for hours (checked before queueing,
    # core/checks.py; a request's override_settings cannot change them)
    OptionSpec("limit_prompt_tokens", 1500, "Most tokens in one prompt",
               "limits", minimum=75, maximum=100000),
    OptionSpec("limit_image_pixels", 4096 * 4096,
               "Most pixels in one picture (also after Hires. fix and upscaling)", "limits",
               minimum=64 * 64, maximum=64 * 1024 * 1024),  # 8192 x 8192: also the most one upscale pass makes
    OptionSpec("limit_steps", 500, "Most sampling steps", "limits", minimum=1, maximum=10000),
    OptionSpec("limit_images", 1000, "Most pictures per request (batch size x batch count)", "limits",
               minimum=1, maximum=100000),
    OptionSpec("limit_video_frames", 256, "Most video frames (a video to make, or a source video to read)",
               "limits", minimum=1, maximum=100000),
)

SPECS_BY_KEY = {spec.key: spec for spec in OPTION_SPECS}

# How the Settings tab titles the sections above (an extension's section is titled with its own name).
SECTION_TITLES = {"sd": "Stable Diffusion", "sampler": "Sampler parameters", "saving": "Saving images",
                  "previews": "Live previews", "ui": "User interface", "upscaling": "Upscaling",
                  "interrogate": "Interrogate", "memory": "Memory", "limits": "Limits",
                  "controlnet": "ControlNet"}


class Settings:
    """Current option values. Thread-safe reads and writes; ``save`` writes config.json atomically."""

    def __init__(self, values: dict[str, Any] | None = None, path: Path | None = None):
        self._specs: dict[str, OptionSpec] = dict(SPECS_BY_KEY)  # the app's own, then any extensions add
        self._values = {spec.key: spec.default for spec in OPTION_SPECS}
        self._unknown: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.path = path
        for key, value in (values or {}).items():
            if key in self._specs:
                try:
                    self._values[key] = self._specs[key].coerce(value)
                except UserError:
                    pass  # a hand-edited config.json with a bad value keeps the default
            else:
                self._unknown[key] = value  # kept so that saving never drops other tools' keys

    def add_spec(self, spec: OptionSpec) -> None:
        """An option an extension brings: listed, validated and saved like the app's own. A value already in
        config.json (saved by an earlier run) is taken up."""
        if spec.key in self._specs:
            raise ValueError(f"setting '{spec.key}' already exists")
        spec.coerce(spec.default)
        with self._lock:
            self._specs[spec.key] = spec
            self._values[spec.key] = spec.default
            stored = self._unknown.pop(spec.key, None)
            if stored is not None:
                try:
                    self._values[spec.key] = spec.coerce(stored)
                except UserError:
                    pass

    def specs(self) -> list[OptionSpec]:
        """Every option in display order: the app's table, then extensions' in registration order."""
        return list(self._specs.values())

    @classmethod
    def load(cls, path: Path) -> "Settings":
        values = {}
        if path.exists():
            try:
                values = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                values = {}
        return cls(values, path)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def validated(self, changes: dict[str, Any], *, allow_unknown: bool = False) -> dict[str, Any]:
        out = {}
        for key, value in changes.items():
            spec = self._specs.get(key)
            if spec is None:
                if allow_unknown:
                    continue
                raise UserError("unknown_option", key=key)
            out[key] = spec.coerce(value)
        return out

    def with_overrides(self, overrides: dict[str, Any] | None) -> "Settings":
        """A copy with ``overrides`` applied (unknown keys ignored, as A1111 does); self is unchanged."""
        copy = Settings(path=None)
        copy._specs = dict(self._specs)
        copy._values = {**self.as_dict(), **self.validated(overrides or {}, allow_unknown=True)}
        return copy

    def update(self, changes: dict[str, Any]) -> None:
        """Change values for good (the settings page, POST /options) and save when a file is attached."""
        valid = self.validated(changes)
        with self._lock:
            self._values.update(valid)
        if self.path is not None:
            self.save()

    def save(self) -> None:
        data = {**self._unknown, **self.as_dict()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=4, ensure_ascii=False)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
