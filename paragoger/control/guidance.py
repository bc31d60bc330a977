"""ControlNet and T2I-Adapter units inside the one denoising loop, as a ``core.denoise.ModelHooks`` "before" hook.

At each UNet call, every unit whose start/end covers the call adds to the UNet's extra inputs:

- a ControlNet runs on the call's latents (every copy, each with its own text) and the unit's map, and its
  residuals, times the weight, go to ``down_block_additional_residuals`` / ``mid_block_additional_residual``;
- a T2I-Adapter runs once per pass on the map; its features, times the weight, go to
  ``down_intrablock_additional_residuals`` for every copy.

An IP-Adapter unit (``control.ip_adapter``) instead gives the UNet its picture's CLIP embeddings through attention
processors set for the pass.

Several units add up. Start/end are diffusers' ``controlnet_keep`` rule: call ``i`` of ``n`` is controlled unless
``i / n < start`` or ``(i + 1) / n > end``.

Control modes are sd-webui-controlnet's: "Balanced" is the plain path; "My prompt is more important" is its "soft
injection" (residual i of SD 1.5's 13, shallowest first, times ``0.825 ** (12 - i)``; an adapter's four features
times 0.25, 0.62, 0.825, 1); "ControlNet is more important" is soft injection and "CFG injection" (the copies with
the negative prompt get no control, so the CFG scale multiplies the control). That is diffusers' ``guess_mode``
but for the scale curve: diffusers spans 0.1..1 (``logspace(-1, 0)``), the extension 0.825**12 = 0.0994..1. In
the Hires. fix's second pass the extension also forces soft injection for canny and mlsd maps; so does this.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch
from PIL import Image

from paragoger.control.ip_adapter import AdapterUnit, IPAdapterPass, UNetLocks
from paragoger.control.units import RESIZE_MODES, ControlUnit, enabled_units
from paragoger.core.denoise import ModelCallState, ModelHooks
from paragoger.errors import UserError
from paragoger.imaging.resize import resize_image
from paragoger.model_manager.lora import FAMILY_NAMES

SOFT_BASE, SOFT_DEPTH = 0.825, 12           # SD 1.5: residuals 0..12, the middle block's last
ADAPTER_SOFT_SCALES = (0.25, 0.62, 0.825, 1.0)
HIRES_SOFT_MODULES = ("canny", "mlsd")       # maps the extension softens in the Hires. fix's second pass
STAGES = ("only", "first", "hires")          # no Hires. fix / its first pass / its second pass


class ControlModel(Protocol):
    kind: str        # "controlnet" | "t2i_adapter"
    module: Any      # diffusers ControlNetModel or T2IAdapter
    family: str      # "sd1", "sd2", "sdxl"


def soft_scales(count: int) -> list[float]:
    """The extension's soft-injection scales for ``count`` ControlNet residuals (shallowest first, middle last):
    ``0.825 ** (12 - i)`` for SD 1.5's 13; other counts (SDXL's 10) span the same 0.0994..1 geometrically."""
    if count == 1:
        return [1.0]
    return [SOFT_BASE ** (SOFT_DEPTH * (count - 1 - i) / (count - 1)) for i in range(count)]


def adapter_soft_scales(count: int) -> list[float]:
    """The extension's soft scales for an adapter's features (deepest last)."""
    return [ADAPTER_SOFT_SCALES[0]] * max(0, count - 4) + list(ADAPTER_SOFT_SCALES[-count:])


def covers(index: int, count: int, start: float, end: float) -> bool:
    """diffusers' ``controlnet_keep``: call ``index`` of ``count`` lies inside [start, end]."""
    return not (index / count < start or (index + 1) / count > end)


def map_to_tensor(image: Image.Image, channels: int = 3) -> torch.Tensor:
    """[1, channels, H, W] in 0..1, as diffusers' control image processor makes it."""
    array = np.asarray(image.convert("L" if channels == 1 else "RGB")).astype(np.float32) / 255.0
    array = array[None, ..., None] if array.ndim == 2 else array[None]
    return torch.from_numpy(array.transpose(0, 3, 1, 2).copy())


@dataclass
class PreparedUnit:
    """One unit ready for the loop: its model and its map(s) at the pass's size ([n, C, H, W], n = 1 or one per
    frame), with the scales of its control mode."""

    index: int
    unit: ControlUnit
    model: ControlModel
    hint: torch.Tensor
    soft: bool
    cfg_injection: bool
    _features: list[torch.Tensor] | None = field(default=None, repr=False)

    @property
    def is_adapter(self) -> bool:
        return self.model.kind == "t2i_adapter"

    def covers(self, call: ModelCallState) -> bool:
        return covers(call.index, call.count, self.unit.guidance_start, self.unit.guidance_end)

    def adapter_features(self) -> list[torch.Tensor]:
        """The adapter's features for the map, times the weight: computed once per pass."""
        if self._features is None:
            adapter = self.model.module
            parameter = next(adapter.parameters())
            features = adapter(self.hint.to(device=parameter.device, dtype=adapter.dtype))
            scales = adapter_soft_scales(len(features)) if self.soft else [1.0] * len(features)
            self._features = [feature * (self.unit.weight * scale) for feature, scale in zip(features, scales)]
        return self._features


class ControlGuidance:
    """The units of one generation pass; ``hooks()`` gives what ``core.denoise`` runs before each UNet call (and,
    for IP-Adapters, around the pass)."""

    def __init__(self, units: list[PreparedUnit], adapters: IPAdapterPass | None = None):
        self.units = units
        self.adapters = adapters

    def __bool__(self) -> bool:
        return bool(self.units) or self.adapters is not None

    def hooks(self) -> ModelHooks:
        hooks = ModelHooks(before=(self.before_call,)) if self.units else ModelHooks()
        if self.adapters is not None:   # after the ControlNets: they take the text embeddings alone
            hooks = hooks.merged(ModelHooks(before=(self.adapters.before_call,), around=(self.adapters.applied,)))
        return hooks

    def before_call(self, call: ModelCallState) -> None:
        active = [unit for unit in self.units if unit.covers(call)]
        if not active:
            return
        batch = _CallBatch(call)
        down = mid = intrablock = None
        for unit in active:
            if unit.is_adapter:
                intrablock = _add(intrablock, [batch.spread(f, unit.cfg_injection) for f in unit.adapter_features()])
            else:
                unit_down, unit_mid = _controlnet_residuals(unit, call, batch)
                down, mid = _add(down, unit_down), _add(mid, [unit_mid])
        kwargs = call.unet_kwargs
        if down is not None:
            kwargs["down_block_additional_residuals"] = _add(kwargs.get("down_block_additional_residuals"), down)
            previous_mid = kwargs.get("mid_block_additional_residual")
            kwargs["mid_block_additional_residual"] = _add(None if previous_mid is None else [previous_mid], mid)[0]
        if intrablock is not None:
            kwargs["down_intrablock_additional_residuals"] = _add(
                kwargs.get("down_intrablock_additional_residuals"), intrablock)


class _CallBatch:
    """The rows of one UNet call: ``copies`` copies (Guidance order) of ``per_copy`` rows (images, or a video's
    frames), copy-major; a video's 5-D input [copies, C, frames, h, w] seen as 2-D rows [copies * frames, C, h, w]."""

    def __init__(self, call: ModelCallState):
        sample = call.model_input
        if sample.ndim == 5:
            sample = sample.transpose(1, 2).reshape(-1, sample.shape[1], *sample.shape[3:])
        self.sample, self.rows, self.copies = sample, sample.shape[0], call.copies
        self.per_copy = self.rows // call.copies
        positive = [copy for copy in range(call.copies) if copy not in call.negative_copies]
        self.positive_rows = None
        if len(positive) < call.copies:
            self.positive_rows = torch.cat([torch.arange(copy * self.per_copy, (copy + 1) * self.per_copy)
                                            for copy in positive]).to(sample.device)

    def repeat(self, tensor: torch.Tensor) -> torch.Tensor:
        """A per-image (or per-frame) tensor [1 or per_copy, ...] for every row."""
        return tensor.repeat(self.rows // tensor.shape[0], *([1] * (tensor.ndim - 1)))

    def spread(self, tensor: torch.Tensor, positive_only: bool) -> torch.Tensor:
        """``tensor`` for every row; with ``positive_only`` the negative copies' rows are zeros."""
        full = self.repeat(tensor.to(device=self.sample.device, dtype=self.sample.dtype))
        if positive_only and self.positive_rows is not None:
            kept = full[self.positive_rows]
            full = torch.zeros_like(full)
            full[self.positive_rows] = kept
        return full

    def expand(self, residual: torch.Tensor) -> torch.Tensor:
        """A residual computed for the positive rows only, with zeros for the negative copies' rows."""
        full = residual.new_zeros((self.rows, *residual.shape[1:]))
        full[self.positive_rows] = residual
        return full


def _controlnet_residuals(unit: PreparedUnit, call: ModelCallState, batch: _CallBatch):
    net = unit.model.module
    sample = batch.sample[:, :net.config.in_channels]   # an inpainting UNet's extra channels are not its input
    embeds, added = call.embeds, call.unet_kwargs.get("added_cond_kwargs")
    device = net.device   # the ControlNet may live elsewhere than the UNet (the model manager decides)
    hint = batch.repeat(unit.hint.to(device=device, dtype=net.dtype))
    positive_only = unit.cfg_injection and batch.positive_rows is not None
    if positive_only:   # the copies with the negative prompt get zeros: run the ControlNet on the others only
        rows = batch.positive_rows
        sample, embeds, hint = sample[rows], embeds[rows], hint[rows.to(hint.device)]
        if added:
            added = {key: value[rows.to(value.device)] if torch.is_tensor(value) else value
                     for key, value in added.items()}
    if added:
        added = {key: value.to(device=device, dtype=net.dtype) if torch.is_tensor(value) else value
                 for key, value in added.items()}
    down, mid = net(sample.to(device=device, dtype=net.dtype), call.timestep,
                    encoder_hidden_states=embeds.to(device=device, dtype=net.dtype),
                    controlnet_cond=hint, conditioning_scale=1.0 if unit.soft else unit.unit.weight,
                    added_cond_kwargs=added, return_dict=False)
    if unit.soft:
        scales = soft_scales(len(down) + 1)
        down = [residual * (unit.unit.weight * scale) for residual, scale in zip(down, scales)]
        mid = mid * (unit.unit.weight * scales[-1])
    target = dict(device=call.model_input.device, dtype=call.model_input.dtype)
    down, mid = [residual.to(**target) for residual in down], mid.to(**target)
    if positive_only:
        down, mid = [batch.expand(residual) for residual in down], batch.expand(mid)
    return down, mid


def _add(total: list | None, more: list | None) -> list | None:
    if total is None:
        return None if more is None else list(more)
    if more is None:
        return list(total)
    return [a + b for a, b in zip(total, more)]


# --- preparing a pass ---------------------------------------------------------------------------------------------

def pixel_perfect_resolution(image: Image.Image, width: int, height: int, resize_mode: str) -> int:
    """The extension's "Pixel Perfect" detection resolution: the short side the picture has once resized to the
    target (covering it, or fitting inside it for "Resize and Fill")."""
    k_h, k_w = height / image.height, width / image.width
    k = min(k_h, k_w) if resize_mode == "Resize and Fill" else max(k_h, k_w)
    return int(round(k * min(image.width, image.height)))


def control_map(unit: ControlUnit, image: Image.Image, *, width: int, height: int, mask: Image.Image | None = None,
                preprocessors=None) -> Image.Image:
    """The unit's map at ``width`` x ``height``: the preprocessor's output (the picture itself for "none" or when
    no preprocessors are given), resized by the unit's resize mode. With a mask, the preprocessor gets the picture
    as RGBA whose alpha is the mask (white: the part to regenerate), the way the extension hands it to "inpaint"."""
    detected = image
    if preprocessors is not None and unit.module.strip().lower() not in ("none", ""):
        source = image.convert("RGB")
        if mask is not None:
            source = source.convert("RGBA")
            source.putalpha(mask.convert("L").resize(source.size))
        resolution = (pixel_perfect_resolution(image, width, height, unit.resize_mode) if unit.pixel_perfect
                      else unit.resolution)
        detected = preprocessors.detect(unit.module, source, resolution=resolution, threshold_a=unit.threshold_a,
                                        threshold_b=unit.threshold_b)
        if not isinstance(detected, Image.Image):
            detected = Image.fromarray(np.asarray(detected))
    return resize_image(detected, width, height, RESIZE_MODES.index(unit.resize_mode))


def prepare_control(units, *, width: int, height: int, get_model: Callable[[str], ControlModel], picture=None,
                    mask=None, preprocessors=None, family: str | None = None, stage: str = "only",
                    video: bool = False, image_encoders=None, unet_locks: UNetLocks | None = None) -> ControlGuidance:
    """The enabled units of a pass at ``width`` x ``height``. ``picture``: the generation's own picture (img2img),
    or a list of frames (video to video: one map per frame), for units without their own; ``mask``: its inpaint
    mask. ``family``: the checkpoint's ("sd1", "sdxl"...), checked against each model's. ``stage``: "first" or
    "hires" in a Hires. fix (units' hr_option), else "only". Weight 0 units are left out (the plain picture).
    ``image_encoders``: ``control.image_encoders.ImageEncoders`` for IP-Adapter units (their picture goes to the
    adapter's CLIP image encoder, not a preprocessor); ``unet_locks``: the app's ``ip_adapter.UNetLocks``."""
    prepared, adapters = [], []
    for index, unit in enabled_units(units):
        if unit.weight == 0 or (stage == "first" and unit.hr_option == "High res only") or (
                stage == "hires" and unit.hr_option == "Low res only"):
            continue
        if unit.model.strip() in ("", "None"):
            raise UserError("controlnet_no_model", unit=index)
        model = get_model(unit.model)
        if family and model.family and model.family != family:
            raise UserError("controlnet_wrong_family", unit=index, model=unit.model,
                            model_family=FAMILY_NAMES.get(model.family, model.family),
                            checkpoint_family=FAMILY_NAMES.get(family, family))
        if video and model.kind == "t2i_adapter":
            raise UserError("controlnet_adapter_in_video", unit=index, model=unit.model)
        if video and model.kind == "ip_adapter":
            raise UserError("ip_adapter_in_video", unit=index, model=unit.model)
        sources = [unit.image] if unit.image is not None else (
            list(picture) if isinstance(picture, (list, tuple)) else [picture] if picture is not None else [])
        if not sources:
            raise UserError("controlnet_no_image", unit=index)
        if model.kind == "ip_adapter":
            adapters.append(_adapter_unit(unit, model, sources[0], image_encoders))
            continue
        unit_mask = unit.mask if unit.mask is not None else (mask if unit.image is None else None)
        channels = model.module.config.in_channels if model.kind == "t2i_adapter" else 3
        hint = torch.cat([map_to_tensor(control_map(unit, source, width=width, height=height, mask=unit_mask,
                                                    preprocessors=preprocessors), channels) for source in sources])
        pooled = model.kind == "controlnet" and bool(model.module.config.get("global_pool_conditions", False))
        prepared.append(PreparedUnit(
            index=index, unit=unit, model=model, hint=hint,
            soft=unit.soft_injection or (stage == "hires" and any(name in unit.module for name in HIRES_SOFT_MODULES)),
            cfg_injection=unit.cfg_injection or pooled))   # pooled maps (shuffle) reach the positive copies only
    return ControlGuidance(prepared, IPAdapterPass(adapters, unet_locks or UNetLocks()) if adapters else None)


def _adapter_unit(unit: ControlUnit, model: ControlModel, source: Image.Image, image_encoders) -> AdapterUnit:
    if image_encoders is None:
        raise UserError("controlnet_unavailable")
    adapter = model.module
    encoder = image_encoders.for_adapter(model.info.path, width=adapter.encoder_width, hidden_states=adapter.plus)
    positive, negative = encoder.embeddings(source, hidden_states=adapter.plus)
    return AdapterUnit(adapter=model.module, positive=positive, negative=negative, weight=unit.weight,
                       start=unit.guidance_start, end=unit.guidance_end)
