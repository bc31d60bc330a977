"""AnimateDiff motion modules: the files in the motion module folders, what each one is (read from its keys and
shapes, no hub), and loading one into diffusers' ``MotionAdapter`` through the model manager.

Variants users have (all with 8 heads, which shapes cannot show; 2 modules per down block, 3 per up block):

=============  ================  =========  ============  =======================
variant        file              levels     mid block     ``pe`` length (frames)
=============  ================  =========  ============  =======================
v1             mm_sd_v15         4 (SD 1)   no            24
v2             mm_sd_v15_v2      4          yes           32
v3             v3_sd15_mm        4          no            32
sdxl           mm_sdxl_v10_beta  3 (SDXL)   no            32
animatelcm     AnimateLCM        4          yes           none stored (32)
=============  ================  =========  ============  =======================

The family is read from the number of levels: SD 1.x UNets have four (320/640/1280/1280), SDXL's three
(320/640/1280). The project's tiny test modules have two levels, like its tiny test checkpoints of both
families; only for such sizes, which no real UNet has, the file name decides (``xl`` in it: SDXL).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from accelerate import init_empty_weights
from diffusers import MotionAdapter

from paragoger.errors import ModelLoadError, NotFoundError
from paragoger.model_manager.safetensors_file import SafetensorsReadError, read_header
from paragoger.model_manager.scanner import files_with_suffixes
from paragoger.model_manager.state_dict import read_state_dict
from paragoger.video.motion_module_keys import MODULE_KEY, is_adapter_layout, is_original_layout, to_adapter_key

MOTION_MODULE_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors")
MOTION_MODULE_KIND = "motion_module"
HEADS = 8             # every known motion module; head count is not in the shapes
NORM_GROUPS = 32
DEFAULT_FRAMES = 32   # window length when the file stores no pe (AnimateLCM)
_FAMILY_BY_LEVELS = {4: "sd1", 3: "sdxl"}
_PE_TOLERANCE = 2e-3  # a sinusoid stored in fp16 differs from the exact one by at most ~5e-4


@dataclass(frozen=True)
class MotionModuleInfo:
    """One file in a motion module folder; ``name`` (with extension) is what the A1111 API sends as "model"."""

    name: str
    path: Path
    title: str


class MotionModuleLibrary:
    """The motion module files in ``folders`` (searched recursively; the first folder wins on equal names)."""

    def __init__(self, folders: Sequence[Path]):
        self.folders = tuple(Path(folder) for folder in folders)
        self._lock = threading.Lock()
        self._entries: list[MotionModuleInfo] = []
        self.refresh()

    def refresh(self) -> list[MotionModuleInfo]:
        found: dict[str, MotionModuleInfo] = {}
        for _folder, path in files_with_suffixes(self.folders, MOTION_MODULE_SUFFIXES):
            if path.name not in found and not _is_motion_lora_file(path):
                found[path.name] = MotionModuleInfo(name=path.name, path=path, title=path.name)
        with self._lock:
            self._entries = sorted(found.values(), key=lambda info: _sort_key(info.name))
        return self.entries()

    def entries(self) -> list[MotionModuleInfo]:
        with self._lock:
            return list(self._entries)

    def find(self, name: str) -> MotionModuleInfo:
        """The module ``name`` names: its file name, else its stem (``mm_sd_v15_v2`` finds ``mm_sd_v15_v2.ckpt``)."""
        entries = self.entries()
        found = next((info for info in entries if info.name == name or info.title == name), None) \
            or next((info for info in entries if info.path.stem == name), None)
        if found is None:
            raise NotFoundError("motion_module_not_found", name=name,
                                folders=", ".join(str(folder) for folder in self.folders))
        return found


def _sort_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def _is_motion_lora_file(path: Path) -> bool:
    """Motion LoRAs sometimes share the folder; a safetensors header tells them apart without reading tensors
    (a ``.ckpt`` cannot be looked into without loading it: such a file fails at load with motion_module_unknown)."""
    if path.suffix.lower() != ".safetensors":
        return False
    try:
        return any("_lora." in key for key in read_header(path).keys)
    except SafetensorsReadError:
        return False  # listed; loading it says what is wrong


# ------------------------------------------------------------------------------------------------ detection


@dataclass(frozen=True)
class MotionModuleSpec:
    variant: str          # "v1", "v2", "v3", "sdxl", "animatelcm"
    family: str           # "sd1" or "sdxl": the checkpoints it fits
    adapter_config: dict  # MotionAdapter(**adapter_config), every value read from keys and shapes
    max_frames: int       # the pe length: the most frames one window may have


def _unknown(name: str) -> ModelLoadError:
    return ModelLoadError("motion_module_unknown", name=name)


def adapter_state_dict(state_dict: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """``state_dict`` under ``MotionAdapter``'s key names (original or adapter layout accepted); the ``pe`` of
    the two attention blocks of a transformer block become one ``pos_embed.pe`` entry (they must be equal)."""
    keys = list(state_dict)
    if not keys or not (is_original_layout(keys) or is_adapter_layout(keys)) \
            or not all(MODULE_KEY.match(key) for key in keys):
        raise _unknown(name)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        renamed = to_adapter_key(key)
        if renamed.endswith(".pos_embed.pe") and renamed in out:
            if out[renamed].shape != tensor.shape or not (tensor.is_meta or torch.equal(out[renamed], tensor)):
                raise ModelLoadError("motion_module_corrupt", name=name,
                                     reason="the two attention blocks of a layer store different position codes")
            continue
        out[renamed] = tensor
    return out


def _levels(keys, prefix: str) -> dict[int, set[int]]:
    """``{block index: {motion module indices}}`` of the down or up blocks."""
    found: dict[int, set[int]] = {}
    for key in keys:
        match = MODULE_KEY.match(key)
        if match and match[1].startswith(prefix):
            found.setdefault(int(match[1].split(".")[1]), set()).add(int(match[2]))
    return found


def _one_or_all(values: list[int]) -> int | list[int]:
    return values[0] if len(set(values)) == 1 else values


def _transformer_layers(keys, module: str) -> int:
    indices = {int(k[len(module):].split(".")[0]) for k in keys if k.startswith(module)}
    return max(indices) + 1 if indices else 0


def detect_motion_module(state_dict: dict[str, torch.Tensor], name: str) -> MotionModuleSpec:
    """What motion module ``state_dict`` holds (original or diffusers layout) and the ``MotionAdapter`` config
    that fits it; ModelLoadError("motion_module_unknown") for anything else (a checkpoint, a LoRA).

    v1 and v3 differ in their ``pe`` length only (24 and 32; their weights were trained apart, nothing in the
    layout differs); AnimateLCM is the one with a mid block and no ``pe`` stored (otherwise laid out like v2:
    only its values, distilled for LCM sampling, tell it apart).
    """
    adapter = adapter_state_dict(state_dict, name)
    keys = list(adapter)
    down, up = _levels(keys, "down_blocks."), _levels(keys, "up_blocks.")
    count = len(down)
    if not count or sorted(down) != list(range(count)) or sorted(up) != list(range(count)):
        raise _unknown(name)
    try:
        widths = [adapter[f"down_blocks.{i}.motion_modules.0.proj_in.weight"].shape[1] for i in range(count)]
        up_widths = [adapter[f"up_blocks.{i}.motion_modules.0.proj_in.weight"].shape[1] for i in range(count)]
    except KeyError:
        raise _unknown(name) from None
    per_block = [len(down[i]) for i in range(count)]
    if up_widths != widths[::-1] or [len(up[i]) for i in range(count)] != [n + 1 for n in per_block[::-1]] \
            or any(down[i] != set(range(per_block[i])) for i in range(count)):
        raise _unknown(name)
    transformer_layers = [_transformer_layers(keys, f"down_blocks.{i}.motion_modules.0.transformer_blocks.")
                          for i in range(count)]
    mid_modules = {int(MODULE_KEY.match(k)[2]) for k in keys if k.startswith("mid_block.")}
    pe = next((adapter[k] for k in keys if k.endswith(".pos_embed.pe")), None)
    frames = int(pe.shape[1]) if pe is not None and pe.ndim == 3 else DEFAULT_FRAMES
    config = {
        "block_out_channels": widths,
        "motion_layers_per_block": _one_or_all(per_block),
        "motion_transformer_layers_per_block": _one_or_all(transformer_layers),
        "motion_num_attention_heads": HEADS,
        "motion_norm_num_groups": NORM_GROUPS,
        "motion_max_seq_length": frames,
        "use_motion_mid_block": bool(mid_modules),
    }
    if mid_modules:
        config["motion_mid_block_layers_per_block"] = len(mid_modules)
        config["motion_transformer_layers_per_mid_block"] = _transformer_layers(
            keys, "mid_block.motion_modules.0.transformer_blocks.")
    family = _FAMILY_BY_LEVELS.get(count) or ("sdxl" if "xl" in name.lower() else "sd1")
    if family == "sdxl":
        variant = "sdxl"
    elif mid_modules:
        variant = "v2" if pe is not None else "animatelcm"
    else:
        variant = "v1" if frames == 24 else "v3"
    return MotionModuleSpec(variant=variant, family=family, adapter_config=config, max_frames=frames)


# ------------------------------------------------------------------------------------------------ loading


@dataclass
class MotionModule:
    info: MotionModuleInfo
    spec: MotionModuleSpec
    adapter: MotionAdapter  # on the device, in the dtype asked for
    # Held while a motion LoRA is merged into the adapter (see motion_lora.apply_motion_loras).
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)


def _read(info: MotionModuleInfo) -> dict[str, torch.Tensor]:
    try:
        state_dict, _ = read_state_dict(info.path, display_name=info.name)
    except ModelLoadError as error:
        if error.key == "checkpoint_corrupt":
            raise ModelLoadError("motion_module_corrupt", name=info.name,
                                 reason=error.params.get("reason", str(error))) from None
        if error.key == "checkpoint_not_found":
            raise NotFoundError("motion_module_not_found", name=info.name, folders=str(info.path.parent)) from None
        if error.key == "checkpoint_unknown_architecture":
            raise _unknown(info.name) from None
        raise  # pickle_refused names what the pickle asked to run
    return state_dict


def _with_position_codes(adapter: MotionAdapter, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each ``pos_embed.pe``: diffusers' own sinusoid (computed exactly when the adapter is built) when the file
    stores that sinusoid or none (AnimateLCM), so fp16 files lose nothing and frames equal diffusers'; the stored
    values when they differ from it (the file means them)."""
    own = {key: buffer for key, buffer in adapter.named_buffers() if key.endswith(".pos_embed.pe")}
    out = {key: value for key, value in weights.items() if not key.endswith(".pos_embed.pe")}
    for key, exact in own.items():
        stored = weights.get(key)
        same = stored is not None and stored.shape == exact.shape and \
            torch.allclose(stored.float(), exact.float(), atol=_PE_TOLERANCE, rtol=0)
        out[key] = exact if stored is None or same else stored
    return out


def load_motion_module(info: MotionModuleInfo, *, device: torch.device | str, dtype: torch.dtype) -> MotionModule:
    """Read, detect and build the module's ``MotionAdapter`` on ``device`` in ``dtype``, every weight from the file
    (strict: a missing or extra tensor is an error, never a random weight)."""
    state_dict = _read(info)
    spec = detect_motion_module(state_dict, info.name)
    weights = adapter_state_dict(state_dict, info.name)
    del state_dict
    with init_empty_weights(include_buffers=False):  # no random weights drawn; the pe buffers are computed
        adapter = MotionAdapter(**spec.adapter_config)
    weights = _with_position_codes(adapter, weights)
    try:
        # assign: the parameters become the tensors read (cast below), not copies into random ones.
        adapter.load_state_dict({k: v.to(dtype) for k, v in weights.items()}, strict=True, assign=True)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()
        raise ModelLoadError("motion_module_corrupt", name=info.name,
                             reason=" ".join(reason[:3]) if reason else type(error).__name__) from None
    # Every tensor already has ``dtype`` (cast above): ``to`` moves only (diffusers warns on a dtype cast).
    adapter = adapter.to(device=device).eval().requires_grad_(False)
    return MotionModule(info=info, spec=spec, adapter=adapter)


def expected_bytes(info: MotionModuleInfo, dtype: torch.dtype) -> int:
    """About what the loaded module holds: values x ``dtype`` size (safetensors headers say how many values;
    a ``.ckpt``'s size is taken as is)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    if info.path.suffix.lower() == ".safetensors":
        try:
            shapes = read_header(info.path).shapes.values()
            return sum(int(torch.Size(shape).numel()) for shape in shapes) * itemsize
        except SafetensorsReadError:
            return 0
    try:
        return info.path.stat().st_size
    except OSError:
        return 0


class MotionModules:
    """The service the core uses: a motion module by name, loaded once and accounted by the model manager (kind
    "motion_module"), on the app's device in its UNet dtype."""

    def __init__(self, library: MotionModuleLibrary, manager, device_config):
        self.library = library
        self.manager = manager
        self.device_config = device_config

    def get(self, name: str) -> MotionModule:
        info = self.library.find(name)
        device, dtype = self.device_config.device, self.device_config.dtype
        return self.manager.load(MOTION_MODULE_KIND, str(info.path),
                                 lambda: load_motion_module(info, device=device, dtype=dtype),
                                 name=info.name, device=device, expected_bytes=expected_bytes(info, dtype))
