"""Motion LoRAs (AnimateDiff's ``v2_lora_ZoomIn.ckpt``, ``v2_lora_PanLeft.ckpt``...): named with ``<lora:name:w>``
in the prompt like other LoRAs and kept in the LoRA folders, but merged into the motion module's attention
projections, not into the checkpoint.

Their keys: ``<module>.temporal_transformer.transformer_blocks.0.attention_blocks.{0,1}.processor.
{to_q,to_k,to_v,to_out}_lora.{down,up}.weight``, no alpha: each projection gets ``W += multiplier * up @ down``.
As with image LoRAs (``model_manager.lora``), the difference is merged in place for one generation, the exact
original tensors are copied away first and copied back when the block ends, however it ends; a lock on the
module keeps two generations from merging into it at once.
"""
from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import torch

from paragoger.errors import UserError
from paragoger.model_manager.lora import LoraCall, LoraLibrary, is_motion_lora  # noqa: F401  (is_motion_lora: API)
from paragoger.video.motion_module_keys import to_adapter_key
from paragoger.video.motion_modules import MotionModule

log = logging.getLogger(__name__)

_KEY = re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")


class MotionLora(NamedTuple):
    """One motion LoRA to merge: its tensors (original key names), the multiplier, and its name for messages."""

    state_dict: dict[str, torch.Tensor]
    multiplier: float
    name: str = "motion LoRA"


@dataclass
class AppliedMotionLoras:
    """What ``apply_motion_loras`` merged: ``layers`` projections changed, ``skipped`` keys that name no layer of
    this module (a v2 LoRA's mid block on a module without one)."""

    layers: int = 0
    skipped: list[str] = field(default_factory=list)


def split_motion_loras(library: LoraLibrary, calls: list[LoraCall]) -> tuple[list[LoraCall], list[MotionLora]]:
    """``(image LoRA calls, motion LoRAs)`` from the calls ``LoraLibrary.resolve`` gave: what the video core merges
    into the checkpoint (``library.apply``) and into the motion module (``apply_motion_loras``). A motion LoRA's
    multiplier is the tag's UNet weight (``<lora:v2_lora_ZoomIn:0.8>``). Files are read through the library's
    cache (a ``.ckpt`` must be read to be told apart)."""
    image, motion = [], []
    for call in calls:
        if call.info.kind == "image" and call.info.is_safetensors:
            image.append(call)  # the header already said so
            continue
        lora = library.load(call.info)
        if lora.kind == "motion":
            motion.append(MotionLora(lora.tensors, call.unet, call.mentioned_name or call.info.name))
        else:
            image.append(call)
    return image, motion


def _layers(lora: MotionLora) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """``({adapter module path: {"down": ..., "up": ...}}, keys that are not motion LoRA keys)``."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, tensor in lora.state_dict.items():
        match = _KEY.match(key)
        if match is None:
            unknown.append(key)
            continue
        projection = "to_out.0" if match[2] == "to_out" else match[2]
        path = to_adapter_key(f"{match[1]}.{projection}.weight").removesuffix(".weight")
        layers.setdefault(path, {})[match[3]] = tensor
    return layers, unknown


def _plan(module: MotionModule, loras: list[MotionLora], report: AppliedMotionLoras) -> dict:
    """``{module path: (linear, float32 difference)}``: every LoRA checked before any weight changes."""
    linears = dict(module.adapter.named_modules())
    plan: dict[str, tuple[torch.nn.Module, torch.Tensor]] = {}
    for lora in loras:
        layers, unknown = _layers(lora)
        report.skipped.extend(unknown)
        matched = 0
        for path, parts in layers.items():
            linear = linears.get(path)
            if linear is None or not isinstance(linear, torch.nn.Linear) or set(parts) != {"down", "up"}:
                report.skipped.append(path)
                continue
            weight = linear.weight
            down, up = (parts[p].to(device=weight.device, dtype=torch.float32) for p in ("down", "up"))
            if down.shape[1] != weight.shape[1] or up.shape[0] != weight.shape[0] or up.shape[1] != down.shape[0]:
                raise UserError("motion_lora_does_not_fit", name=lora.name, module=module.info.name,
                                reason=f"{path} is {tuple(weight.shape)} in the module, "
                                       f"{tuple(up.shape)} x {tuple(down.shape)} in the LoRA")
            delta = (up @ down) * float(lora.multiplier)
            previous = plan.get(path)
            plan[path] = (linear, delta if previous is None else previous[1] + delta)
            matched += 1
        if layers and not matched:
            raise UserError("motion_lora_does_not_fit", name=lora.name, module=module.info.name,
                            reason="none of its layers is a layer of this motion module")
        if not layers:
            raise UserError("motion_lora_does_not_fit", name=lora.name, module=module.info.name,
                            reason="it has no motion LoRA layers")
    report.layers = len(plan)
    return plan


@contextlib.contextmanager
def apply_motion_loras(module: MotionModule, loras) -> Iterator[AppliedMotionLoras]:
    """Merge ``loras`` (``MotionLora`` items or ``(state_dict, multiplier)`` tuples) into ``module``'s adapter for
    the ``with`` block; the original tensors are back, bit for bit, when it ends."""
    loras = [lora if isinstance(lora, MotionLora) else MotionLora(*lora) for lora in loras]
    report = AppliedMotionLoras()
    if not loras:
        yield report
        return
    with module.lock:
        plan = _plan(module, loras, report)
        if report.skipped:
            log.warning("Motion LoRAs on %s: %d keys name no layer of this module", module.info.name,
                        len(report.skipped))
        backups: list[tuple[torch.Tensor, torch.Tensor]] = []
        try:
            with torch.no_grad():
                for linear, delta in plan.values():
                    weight = linear.weight
                    # Registered before the weight changes, so a failure halfway is restored too.
                    backups.append((weight, weight.detach().to("cpu", copy=True)))
                    weight.copy_(weight.float() + delta)
            yield report
        finally:
            with torch.no_grad():
                for tensor, saved in reversed(backups):
                    tensor.copy_(saved)
