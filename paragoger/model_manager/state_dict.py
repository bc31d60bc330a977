"""Reading a checkpoint file into one flat ``{key: tensor}`` dict, the way real files need it.

Handles: ``.safetensors`` (through ``safetensors_file``) and ``.ckpt``/``.pt`` (through ``safe_pickle``), the
``state_dict`` wrapper of Lightning checkpoints, EMA copies (``model_ema.*``: dropped, A1111 uses the regular
weights too), non-tensor entries, and SD 1.x files saved with old transformers versions whose CLIP keys lack
``text_model.``.

The tensors returned are the process's own memory, read once, not views of a memory-mapped file: a loaded model
then neither changes nor crashes when its file is overwritten, and memory holds each weight once (a mapped file
plus a copy of it would count twice). Skipped tensors (EMA) are never read.
"""
from __future__ import annotations

from pathlib import Path

import torch

from paragoger.errors import ModelLoadError
from paragoger.model_manager.safe_pickle import load_ckpt
from paragoger.model_manager.safetensors_file import SafetensorsReadError, read_tensors

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_OLD_CLIP_PREFIX = "cond_stage_model.transformer."
_OLD_CLIP_PARTS = ("embeddings.", "encoder.", "final_layer_norm.")


def _skipped(key: str) -> bool:
    return key.startswith("model_ema.")


def _kept(key: str) -> bool:
    return not _skipped(key)


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
        try:
            state_dict, metadata = read_tensors(path, keep=_kept)  # EMA copies are never read
        except SafetensorsReadError as error:
            raise ModelLoadError("checkpoint_corrupt", name=name, reason=str(error)) from None
        return normalize_keys(state_dict), metadata
    mapped = normalize_keys(unwrap(load_ckpt(path, display_name=name), name))
    # load_ckpt maps the file into memory: copy what is kept (EMA copies are never even touched), let go of the rest.
    return {key: value.clone() for key, value in mapped.items()}, {}
