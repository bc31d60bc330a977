"""Where captioning models live and how they are read: one Hugging-Face-layout folder per model, offline."""
from __future__ import annotations

from pathlib import Path

import torch

from paragoger.core.devices import DeviceConfig


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
