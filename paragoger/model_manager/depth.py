"""Depth estimators for SD 2.x depth checkpoints: transformers folders under ``models/depth``, loaded once.

A folder is what ``save_pretrained`` writes for a depth model and its image processor (``config.json``, weights,
``preprocessor_config.json``), e.g. ``models/depth/dpt-hybrid-midas``, the MiDaS model Stability trained
512-depth-ema with. ``models/depth`` may also be such a folder itself. Everything loads with
``local_files_only=True``: nothing is ever fetched.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from paragoger.errors import ModelLoadError
from paragoger.model_manager.memory import ModelManager

KIND = "depth"


@dataclass
class DepthEstimator:
    name: str
    model: Any       # a transformers *ForDepthEstimation model
    processor: Any   # its image processor (resize to the network's size, normalise)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, images: list) -> torch.Tensor:
        """Relative depth (larger = nearer, as MiDaS predicts it) for RGB PIL pictures: (N, h, w) float32 at the
        network's output size."""
        pixel_values = self.processor(images=images, return_tensors="pt").pixel_values
        return self.model(pixel_values.to(self.device, torch.float32)).predicted_depth


class DepthEstimators:
    """The depth estimators in one folder, each loaded on first use through the model manager (kind "depth") and
    kept while memory allows (they are small next to a checkpoint, and a depth checkpoint asks for one on every
    generation)."""

    def __init__(self, folder: Path, device: torch.device | str = "cpu", manager: ModelManager | None = None):
        self.folder = Path(folder)
        self.device = torch.device(device)
        self.manager = manager if manager is not None else ModelManager(self.device)

    def _folders(self) -> dict[str, Path]:
        if (self.folder / "config.json").is_file():
            return {self.folder.name: self.folder}
        if not self.folder.is_dir():
            return {}
        return {sub.name: sub for sub in sorted(self.folder.iterdir()) if (sub / "config.json").is_file()}

    def names(self) -> list[str]:
        return list(self._folders())

    def get(self, name: str | None = None) -> DepthEstimator | None:
        """The estimator called ``name`` (default: the first one found), or None when there is none."""
        folders = self._folders()
        if name is None:
            name = next(iter(folders), None)
        if name is None or name not in folders:
            return None
        folder = folders[name]
        return self.manager.load(KIND, str(folder), lambda: self._load(name, folder), name=name, device=self.device)

    def _load(self, name: str, folder: Path) -> DepthEstimator:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation  # only when a depth model runs

        try:
            # float32 always: the MiDaS hybrid's batch norms misbehave in half precision, and the model is small.
            model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
            processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            reason = str(error).splitlines()[0].rstrip(".") if str(error) else type(error).__name__
            raise ModelLoadError("depth_estimator_unreadable", name=name, reason=reason) from None
        return DepthEstimator(name=name, model=model.to(self.device).eval().requires_grad_(False),
                              processor=processor)
