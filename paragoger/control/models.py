"""Loading a ControlNet or T2I-Adapter: read safely, recognised from its keys and shapes, converted offline,
built on the meta device and given the file's tensors (never random weights), accounted by the model manager.

Reading: ``.safetensors`` through ``safetensors_file`` (of a ControlNet 1.0 file holding a whole SD model too, only
the ``control_model.`` tensors are read); ``.pth``/``.ckpt``/``.pt``/``.bin`` only through ``safe_pickle`` (a
pickle that asks to run anything is refused and what it asks for named). Diffusers folders: the config from their
config.json, the weights from their ``diffusion_pytorch_model`` file (``.safetensors``, fp16 variant or sharded;
``.bin`` through the same safe unpickler) - read here rather than by diffusers' ``from_pretrained``, so every
file goes through the project's two safe readers and a model is never in memory twice.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate import init_empty_weights
from diffusers import ControlNetModel, T2IAdapter

from paragoger.control import convert, ip_adapter, t2i_adapter_keys
from paragoger.control.model_files import CONFIG_FILE, ControlModelInfo
from paragoger.errors import ModelLoadError, NotFoundError
from paragoger.model_manager.convert import assign_weights
from paragoger.model_manager.safe_pickle import load_ckpt
from paragoger.model_manager.safetensors_file import SafetensorsReadError, read_header, read_tensors

CONTROLNET, T2I_ADAPTER, IP_ADAPTER = "controlnet", "t2i_adapter", "ip_adapter"
MANAGER_KIND = "controlnet"  # the model manager's kind for all three
_CLASSES = {"ControlNetModel": CONTROLNET, "T2IAdapter": T2I_ADAPTER}


@dataclass
class ControlModel:
    info: ControlModelInfo
    kind: str                    # "controlnet", "t2i_adapter" or "ip_adapter"
    family: str                  # "sd1", "sd2", "sdxl": the checkpoints it fits
    module: torch.nn.Module      # ControlNetModel, T2IAdapter or ip_adapter.IPAdapterWeights, on the device in the
                                 # dtype asked for, eval, no grad
    conditioning_channels: int   # channels of the control picture it takes (3; 1 for some sketch adapters)


def _corrupt(name: str, reason: str) -> ModelLoadError:
    return ModelLoadError("control_model_corrupt", name=name, reason=reason)


# ------------------------------------------------------------------------------------------------ reading


def _flattened(obj, name: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded pickle: a Lightning ``state_dict`` unwrapped, nested dicts (IP-Adapter's
    ``{"image_proj": {...}, "ip_adapter": {...}}``) flattened to dotted keys, other values dropped."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelLoadError("control_model_unknown", name=name)
    flat: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            flat[str(key)] = value
        elif isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, torch.Tensor)})
    return flat


def _wanted(keys) -> Callable[[str], bool]:
    """Which keys to read: only ``control_model.*`` when there are any (ControlNet 1.0 files hold a whole SD model)."""
    if any(key.startswith(convert.ORIGINAL_PREFIX) for key in keys):
        return lambda key: key.startswith(convert.ORIGINAL_PREFIX)
    return lambda key: True


def read_weights(path: Path, name: str) -> dict[str, torch.Tensor]:
    """The tensors of one file, each in memory of its own (not a view of a mapped file)."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError("control_model_not_found", name=name, folders=str(path.parent))
    if path.suffix.lower() == ".safetensors":
        try:
            tensors, _ = read_tensors(path, keep=_wanted(read_header(path).keys))
        except SafetensorsReadError as error:
            raise _corrupt(name, str(error)) from None
        return tensors
    try:
        loaded = _flattened(load_ckpt(path, display_name=name), name)
    except ModelLoadError as error:
        if error.key == "checkpoint_corrupt":
            raise _corrupt(name, error.params.get("reason", str(error))) from None
        raise  # pickle_refused names what the pickle asked to run
    keep = _wanted(loaded)
    try:  # load_ckpt maps zip files: copy what is kept, let go of the rest
        return {key: value.clone() for key, value in loaded.items() if keep(key)}
    except RuntimeError as error:  # a truncated archive fails when its data is first touched
        raise _corrupt(name, str(error).splitlines()[0] if str(error) else "unreadable tensor data") from None


def _shards(index_file: Path, name: str) -> list[Path]:
    try:
        weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _corrupt(name, f"{index_file.name}: {error}") from None
    return [index_file.parent / shard for shard in dict.fromkeys(weight_map.values())]


def read_folder(info: ControlModelInfo) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config, tensors)`` of a diffusers folder."""
    try:
        config = json.loads((info.path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _corrupt(info.name, f"{CONFIG_FILE}: {error}") from None
    weights = info.weights_path
    if weights is None:
        raise _corrupt(info.name, "the folder holds no diffusion_pytorch_model weights file")
    files = _shards(weights, info.name) if weights.name.endswith(".index.json") else [weights]
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(read_weights(file, info.name))
    return config, tensors


# ------------------------------------------------------------------------------------------------ detection


def _layout(state_dict) -> tuple[str, str]:
    """``(kind, layout)``: layout "original", "diffusers", or for adapters their ``adapter_type``."""
    stripped = convert.strip_original_prefix(state_dict)
    if convert.is_original_controlnet(stripped):
        return CONTROLNET, "original"
    if convert.is_diffusers_controlnet(state_dict):
        return CONTROLNET, "diffusers"
    if kind := t2i_adapter_keys.original_kind(state_dict):
        return T2I_ADAPTER, "original-" + kind
    if kind := t2i_adapter_keys.diffusers_kind(state_dict):
        return T2I_ADAPTER, kind
    return "", ""


def _with_reading(model_name: str, function, /, *args, **kwargs):
    """Run a conversion step; a tensor the layout promised but the file lacks means a damaged file."""
    try:
        return function(*args, **kwargs)
    except (KeyError, IndexError, ValueError, AttributeError) as error:
        raise _corrupt(model_name, f"{type(error).__name__}: {str(error)[:200]}") from None


def to_diffusers(state_dict: dict[str, torch.Tensor], name: str) -> tuple[str, str, dict[str, torch.Tensor], str]:
    """``(kind, family, weights, layout)``: what the state dict holds, its tensors under diffusers' names (no
    copies), and the layout it came in ("original"/"diffusers" for ControlNets, the ``adapter_type`` for
    adapters, prefixed "original-" for TencentARC's names)."""
    kind, layout = _layout(state_dict)
    if kind == CONTROLNET:
        weights = state_dict if layout == "diffusers" else _with_reading(
            name, convert.original_to_diffusers, convert.strip_original_prefix(state_dict))
        return kind, _with_reading(name, convert.controlnet_family, weights), weights, layout
    if kind == T2I_ADAPTER:
        adapter_type = layout.removeprefix("original-")
        weights = state_dict if layout == adapter_type else _with_reading(
            name, t2i_adapter_keys.original_to_diffusers, state_dict, adapter_type)
        return kind, t2i_adapter_keys.FAMILY_BY_TYPE[adapter_type], weights, layout
    if ip_adapter.is_ip_adapter(state_dict):
        return IP_ADAPTER, _with_reading(name, ip_adapter.family_of, state_dict), state_dict, "ip-adapter"
    raise ModelLoadError("control_model_unknown", name=name)


def detect_control_model(state_dict: dict[str, torch.Tensor], name: str) -> tuple[str, str]:
    """``(kind, family)`` of a ControlNet, T2I-Adapter or IP-Adapter state dict in any layout above;
    ModelLoadError("control_model_unknown") for anything else (a checkpoint, a LoRA, an annotator's weights)."""
    return to_diffusers(state_dict, name)[:2]


def config_for(kind: str, family: str, weights: dict[str, torch.Tensor], layout: str, name: str) -> dict:
    """The diffusers config that fits ``weights`` (in diffusers' names), read from their shapes."""
    if kind == CONTROLNET:
        return _with_reading(name, convert.controlnet_config, weights, family, name=name)
    return _with_reading(name, t2i_adapter_keys.adapter_config, weights, layout.removeprefix("original-"))


# ------------------------------------------------------------------------------------------------ loading


def build_module(kind: str, config: dict, weights: dict[str, torch.Tensor], *, device, dtype, name: str):
    """The diffusers module for ``config`` on the meta device, given ``weights`` (strictly: all, nothing else)."""
    model_class = ControlNetModel if kind == CONTROLNET else T2IAdapter
    try:
        with init_empty_weights():
            module = model_class.from_config(config)
    except (TypeError, ValueError) as error:
        raise _corrupt(name, f"unusable config: {error}") from None
    try:
        return assign_weights(module, dict(weights), device=device, dtype=dtype, name=name, part=kind)
    except ModelLoadError as error:
        raise _corrupt(name, error.params.get("detail") or str(error)) from None
    except RuntimeError as error:  # a tensor of the wrong shape
        raise _corrupt(name, " ".join(str(error).strip().splitlines()[:2])) from None


def _conditioning_channels(kind: str, module) -> int:
    if kind == CONTROLNET:
        return int(module.config.conditioning_channels)
    return int(module.config.in_channels)


def load_control_model(info: ControlModelInfo, *, device: torch.device | str, dtype: torch.dtype) -> ControlModel:
    """Read, recognise, convert and build ``info``'s model on ``device`` in ``dtype``, eval, without gradients."""
    if info.format == "diffusers":
        config, tensors = read_folder(info)
        kind = _CLASSES.get(config.get("_class_name"))
        if kind is None:
            raise ModelLoadError("control_model_unknown", name=info.name)
        found_kind, family, weights, _ = to_diffusers(tensors, info.name)
        if found_kind != kind:
            raise _corrupt(info.name, f"config.json says {config.get('_class_name')}, the weights are not one")
        if kind == T2I_ADAPTER:  # the config knows; shapes could mistake a 4-channel adapter for an SDXL one
            family = t2i_adapter_keys.FAMILY_BY_TYPE.get(config.get("adapter_type"), family)
    else:
        state_dict = read_weights(info.path, info.name)
        kind, family, weights, layout = to_diffusers(state_dict, info.name)
        if kind == IP_ADAPTER:
            return ControlModel(info=info, kind=kind, family=family, conditioning_channels=3,
                                module=ip_adapter.build_ip_adapter(weights, device=device, dtype=dtype, name=info.name))
        config = config_for(kind, family, weights, layout, info.name)
        del state_dict
    module = build_module(kind, config, weights, device=device, dtype=dtype, name=info.name)
    return ControlModel(info=info, kind=kind, family=family, module=module,
                        conditioning_channels=_conditioning_channels(kind, module))


def expected_bytes(info: ControlModelInfo, dtype: torch.dtype) -> int:
    """About what the loaded model holds: values x ``dtype`` size from a safetensors header (only the
    ``control_model.`` part when there is one), else the weights file's size."""
    weights = info.weights_path
    if weights is None:
        return 0
    if weights.name.endswith(".index.json"):  # sharded: the index says how many bytes the shards hold
        try:
            return int(json.loads(weights.read_text(encoding="utf-8"))["metadata"]["total_size"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0
    if weights.suffix.lower() == ".safetensors":
        try:
            shapes = read_header(weights).shapes
        except SafetensorsReadError:
            return 0
        keep = _wanted(shapes)
        itemsize = torch.empty((), dtype=dtype).element_size()
        return sum(int(torch.Size(shape).numel()) for key, shape in shapes.items() if keep(key)) * itemsize
    try:
        return weights.stat().st_size
    except OSError:
        return 0


class ControlModels:
    """The service the core uses: a ControlNet, T2I-Adapter or IP-Adapter by name (title, name or file name), loaded
    once and accounted by the model manager (kind "controlnet"), on the app's device in its UNet dtype."""

    def __init__(self, library, manager, device_config):
        self.library = library
        self.manager = manager
        self.device_config = device_config

    def get(self, name: str) -> ControlModel:
        info = self.library.find(name)
        device, dtype = self.device_config.device, self.device_config.dtype
        return self.manager.load(MANAGER_KIND, str(info.path),
                                 lambda: load_control_model(info, device=device, dtype=dtype),
                                 name=info.name, device=device, expected_bytes=expected_bytes(info, dtype))
