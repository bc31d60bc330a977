"""Reading a checkpoint file into one flat ``{key: tensor}`` dict, the way real files need it.

Handles: ``.safetensors`` and ``.ckpt``/``.pt`` (through ``safe_pickle``), the ``state_dict`` wrapper of Lightning
checkpoints, EMA copies (``model_ema.*``: dropped, A1111 uses the regular weights too), non-tensor entries, and
SD 1.x files saved with old transformers versions whose CLIP keys lack ``text_model.``.

The tensors returned are the process's own memory, read once, not views of a memory-mapped file: a loaded model
then neither changes nor crashes when its file is overwritten, and memory holds each weight once (a mapped file
plus a copy of it would count twice). Skipped tensors (EMA) are never read.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from paragoger.errors import ModelLoadError
from paragoger.model_manager.safe_pickle import load_ckpt

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_OLD_CLIP_PREFIX = "cond_stage_model.transformer."
_OLD_CLIP_PARTS = ("embeddings.", "encoder.", "final_layer_norm.")


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def _skipped(key: str) -> bool:
    return key.startswith("model_ema.")


def read_safetensors(path: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (EMA copies skipped) and the ``__metadata__`` header of a safetensors file.

    The safetensors library validates the header (a truncated or foreign file fails there); the data is then
    read tensor by tensor straight into freshly allocated tensors, in file order.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
        with open(path, "rb") as stream:
            header_size = struct.unpack("<Q", stream.read(8))[0]
            header = json.loads(stream.read(header_size))
            header.pop("__metadata__", None)
            tensors = {}
            for key, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
                if _skipped(key):
                    continue
                begin, end = entry["data_offsets"]
                tensor = torch.empty(entry["shape"], dtype=_SAFETENSORS_DTYPES[entry["dtype"]])
                stream.seek(8 + header_size + begin)
                if stream.readinto(tensor.reshape(-1).view(torch.uint8).numpy()) != end - begin:
                    raise ValueError(f"the file ends inside tensor {key}")
                tensors[key] = tensor
            return tensors, metadata
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError, struct.error) as error:
        raise ModelLoadError("checkpoint_corrupt", name=name, reason=_first_line(error)) from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def unwrap(obj, name: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded pickle: Lightning's ``state_dict`` (or a bare dict), non-tensors dropped."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelLoadError("checkpoint_unknown_architecture", name=name)
    return {key: value for key, value in obj.items() if isinstance(key, str) and isinstance(value, torch.Tensor)}


def normalize_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop EMA copies; give SD 1.x CLIP keys from old transformers versions their ``text_model.`` part."""
    out = {}
    for key, value in state_dict.items():
        if _skipped(key):
            continue
        if key.startswith(_OLD_CLIP_PREFIX) and key[len(_OLD_CLIP_PREFIX):].startswith(_OLD_CLIP_PARTS):
            key = _OLD_CLIP_PREFIX + "text_model." + key[len(_OLD_CLIP_PREFIX):]
        out[key] = value
    return out


def read_state_dict(path: Path, *, display_name: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, metadata)`` of a checkpoint or VAE file; metadata is the safetensors header (or empty)."""
    path = Path(path)
    name = display_name or path.name
    if not path.is_file():
        raise ModelLoadError("checkpoint_not_found", name=name)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        state_dict, metadata = read_safetensors(path, name)
        return normalize_keys(state_dict), metadata
    mapped = normalize_keys(unwrap(load_ckpt(path, display_name=name), name))
    # load_ckpt maps the file into memory: copy what is kept (EMA copies are never even touched), let go of the rest.
    return {key: value.clone() for key, value in mapped.items()}, {}
