"""What a video generation asks for beyond a picture's request: ``GenerationRequest.animatediff``.

The field names are the A1111 AnimateDiff extension's (its API takes one dict of them in
``alwayson_scripts["AnimateDiff"]["args"][0]``), so a client script written for it works unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from paragoger.errors import UserError
from paragoger.video.windows import CLOSED_LOOP_CHOICES

DEFAULT_FORMATS = ("MP4",)
SCRIPT_TITLE = "AnimateDiff"  # the always-on script name clients send


@dataclass
class AnimateDiffOptions:
    enable: bool = True
    model: str = ""                       # motion module file name (models/AnimateDiff); "" = the first found
    video_length: int = 16                # frames; 0 = the source video's, or without one the context batch size
    fps: float = 8.0                      # of the written video; 0 = the source video's (video to video)
    loop_number: int = 0                  # GIF / WebP loops (0 = forever)
    closed_loop: str = "N"                # N / R-P / R+P / A: anything but N makes the video loop
    batch_size: int = 16                  # context window: frames the motion module sees at once
    stride: int = 1
    overlap: int = -1                     # -1 = a quarter of the window
    format: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
    # image to video: how much the picture shapes each later frame (A1111 extension's meaning: frame f starts
    # from the picture with weight 1 - f ** latent_power / latent_scale, the rest from noise)
    latent_power: float = 1.0
    latent_scale: float = 32.0
    # FreeInit (re-noise the result's low frequencies and sample again): better temporal consistency, N times the work
    freeinit_enable: bool = False
    freeinit_iters: int = 3
    freeinit_filter: str = "butterworth"   # butterworth / gaussian / ideal / box
    freeinit_ds: float = 0.25              # spatial stop frequency
    freeinit_dt: float = 0.25              # temporal stop frequency
    # video to video: the source (already read into frames by the caller) and an optional mask video
    video_source: Any = None               # list of PIL images
    video_source_fps: float | None = None
    mask_frames: Any = None                # list of PIL images (white = regenerate)

    @property
    def is_closed_loop(self) -> bool:
        return self.closed_loop != "N"

    @property
    def frames_asked(self) -> int:
        """Frames to make: the length asked for; 0 (the extension's default) = the source video's length, or
        without a source the context batch size, as the extension documents it."""
        if self.video_source:
            source = len(self.video_source)
            return source if self.video_length == 0 else min(self.video_length, source)
        return self.batch_size if self.video_length == 0 else self.video_length

    @property
    def output_fps(self) -> float:
        if self.fps and self.fps > 0:
            return float(self.fps)
        return float(self.video_source_fps or 8.0)

    def validate(self, *, max_frames: int) -> "AnimateDiffOptions":
        frames = self.frames_asked
        if not 1 <= frames <= max_frames:
            raise UserError("video_frames_out_of_range", frames=frames, high=max_frames)
        if self.closed_loop not in CLOSED_LOOP_CHOICES:
            raise UserError("video_option_invalid", name="closed_loop", value=self.closed_loop,
                            allowed=", ".join(CLOSED_LOOP_CHOICES))
        if not 1 <= self.batch_size <= 64:
            raise UserError("video_option_invalid", name="batch_size", value=self.batch_size, allowed="1 to 64")
        if not 1 <= self.stride <= 8:
            raise UserError("video_option_invalid", name="stride", value=self.stride, allowed="1 to 8")
        if self.overlap >= self.batch_size:
            raise UserError("video_option_invalid", name="overlap", value=self.overlap,
                            allowed=f"-1 to {self.batch_size - 1}")
        if not 0 < self.output_fps <= 120:
            raise UserError("video_option_invalid", name="fps", value=self.fps, allowed="1 to 120")
        if not 1 <= self.freeinit_iters <= 10:
            raise UserError("video_option_invalid", name="freeinit_iters", value=self.freeinit_iters,
                            allowed="1 to 10")
        if self.mask_frames and self.video_source and len(self.mask_frames) < frames:
            raise UserError("video_mask_too_short", mask=len(self.mask_frames), frames=frames)
        return self

    def infotext_value(self) -> str:
        """The ``AnimateDiff`` infotext field: the settings that change the frames."""
        parts = {"model": self.model, "video_length": self.frames_asked, "fps": _number(self.output_fps),
                 "closed_loop": self.closed_loop, "batch_size": self.batch_size, "stride": self.stride,
                 "overlap": self.overlap}
        if self.freeinit_enable:
            parts |= {"freeinit": self.freeinit_iters, "freeinit_filter": self.freeinit_filter}
        return ", ".join(f"{key}: {value}" for key, value in parts.items())

    @classmethod
    def from_api(cls, args: Any) -> "AnimateDiffOptions":
        """``alwayson_scripts["AnimateDiff"]["args"]``: a list holding one dict (or the dict itself). Unknown
        keys (the extension's UI-only ones: interp, request_id, ...) are ignored, as the extension ignores them."""
        if isinstance(args, list):
            args = args[0] if args else {}
        if isinstance(args, bool):  # webuiapi sends {"args": [False]} to say "not this time"
            return cls(enable=args)
        if not isinstance(args, dict):
            raise UserError("video_option_invalid", name="args", value=type(args).__name__,
                            allowed="a list holding one object of AnimateDiff settings")
        known = {f.name for f in fields(cls)} - {"video_source", "video_source_fps", "mask_frames"}
        values = {key: value for key, value in args.items() if key in known}
        if isinstance(values.get("format"), str):
            values["format"] = [values["format"]]
        if isinstance(values.get("format"), list):  # the extension's "Frame" is PNG frames
            values["format"] = ["PNG" if str(f).strip().upper() == "FRAME" else f for f in values["format"]]
        if str(args.get("interp", "Off")).strip().lower() not in ("off", "", "none"):
            raise UserError("video_option_invalid", name="interp", value=args.get("interp"),
                            allowed="Off (frame interpolation is not in this version)")
        defaults = cls()
        for key, value in values.items():
            kind = type(getattr(defaults, key))
            if kind in (int, float, bool, str):
                values[key] = _coerced(key, value, kind)
        return cls(**values)


def _coerced(name: str, value: Any, kind: type) -> Any:
    """A JSON value as the field's type: 16 and "16" are frames, 16.5 is not; true and "true" both enable."""
    try:
        if kind is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is float:
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            return number
        return str(value)
    except (TypeError, ValueError):
        raise UserError("video_option_invalid", name=name, value=value, allowed=kind.__name__) from None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
