"""Reading a checkpoint file into one flat ``{key: tensor}`` dict, the way real files need it.

Handles: ``.safetensors`` and ``.ckpt``/``.pt`` (through ``safe_pickle``), the ``state_dict`` wrapper of Lightning
checkpoints, EMA copies (``model_ema.*``: dropped, A1111 uses the regular weights too), non-tensor entries, and
SD 1.x files saved with old transformers versions whose CLIP keys lack ``text_model.``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from paragoger.errors import ModelLoadError
from paragoger.model_manager.safe_pickle import load_ckpt

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_OLD_CLIP_PREFIX = "cond_stage_model.transformer."
_OLD_CLIP_PARTS = ("embeddings.", "encoder.", "final_layer_norm.")


def read_safetensors(path: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the ``__metadata__`` header of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            return {key: handle.get_tensor(key) for key in handle.keys()}, metadata
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
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
        if key.startswith("model_ema."):
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
    else:
        state_dict, metadata = unwrap(load_ckpt(path, display_name=name), name), {}
    return normalize_keys(state_dict), metadata
