"""Where captioning models live and how they are read: one Hugging-Face-layout folder per model, offline."""
from __future__ import annotations

from pathlib import Path

import torch

from paragoger.devices import DeviceConfig
from paragoger.errors import ModelLoadError


def model_folders(root: Path) -> list[Path]:
    """The model folders under ``root`` (models/BLIP, models/CLIP, models/deepbooru): each subfolder holding a
    config.json, by name; or ``root`` itself when it holds one."""
    root = Path(root)
    if (root / "config.json").is_file():
        return [root]
    if not root.is_dir():
        return []
    return [sub for sub in sorted(root.iterdir(), key=lambda p: p.name.lower()) if (sub / "config.json").is_file()]


def first_model_folder(root: Path) -> Path | None:
    folders = model_folders(root)
    return folders[0] if folders else None


def compute_dtype(device: DeviceConfig) -> torch.dtype:
    """float32 on the CPU (half precision is slow or missing there), the app's precision on a GPU."""
    return torch.float32 if device.device.type == "cpu" else device.dtype


def first_line(error: BaseException) -> str:
    """A short reason for a message: the first line of the error, or its type."""
    text = str(error).strip()
    return text.splitlines()[0].rstrip(".") if text else type(error).__name__


def load_pretrained(model_class, processor_class, folder: Path, device: DeviceConfig, *, kind: str):
    """``(model, processor, dtype)`` from a transformers folder, offline, on the app's device and ready to run;
    a broken folder is a ModelLoadError naming ``kind`` ("BLIP", "CLIP") and the folder."""
    dtype = compute_dtype(device)
    try:
        model = model_class.from_pretrained(folder, local_files_only=True, dtype=dtype)
        processor = processor_class.from_pretrained(folder, local_files_only=True)
    except Exception as error:  # transformers and safetensors raise many kinds for a broken folder
        raise ModelLoadError("caption_model_unreadable", kind=kind, folder=folder, reason=first_line(error)) from None
    return model.to(device.device).eval().requires_grad_(False), processor, dtype
