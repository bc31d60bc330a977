"""Depth and normal maps for ControlNet from the project's depth estimators (``model_manager.depth``).

Where the estimator comes from (``DepthSources``):

* ``depth_midas``: sd-webui-controlnet's own MiDaS file, ``dpt_hybrid-midas-501f0c75.pt``, anywhere under the
  annotator folder (read through the safe loaders and mapped onto transformers' DPT-Hybrid by
  ``model_manager.midas``, as the MiDaS inside SD 2.x depth checkpoints is); else the first estimator in
  ``models/depth`` (the app's ``DepthEstimators``).
* ``depth_anything``: a transformers Depth Anything folder (what ``save_pretrained`` writes: ``config.json``, the
  weights, ``preprocessor_config.json``, e.g. ``depth-anything-large-hf``) at ``<annotators>/depth_anything``.
  The extension's original ``depth_anything_vitl14.pth`` is not read (it would need a converter).

Every estimator is loaded through the model manager (kind "depth"), so it is counted and can be unloaded.

The map: the network runs at its own input size (its image processor's: 384 for DPT-Hybrid, 518 for Depth
Anything); the depth is resized (bicubic) to the picture brought to the preprocessor resolution, then stretched
to 0 (far) .. 255 (near). The extension runs MiDaS at the preprocessor resolution itself; the difference is in
fine detail only. The normal map follows the extension's description: Sobel gradients (3 x 3) of the raw depth
as x and y, ``2 pi`` as z, x and y zeroed where the stretched depth is below the background threshold, the vector
normalised and drawn as ``n * 127.5 + 127.5``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from paragoger.control.image_ops import as_three_channels, resize_short_side
from paragoger.errors import UserError
from paragoger.model_manager.depth import DepthEstimator, DepthEstimators
from paragoger.model_manager.memory import ModelManager

MIDAS_FILE = "dpt_hybrid-midas-501f0c75.pt"
DEPTH_ANYTHING_FOLDER = "depth_anything"
DEPTH_ANYTHING_FILES = "a transformers Depth Anything folder (config.json, model.safetensors, preprocessor_config.json)"
NORMAL_Z = 2.0 * math.pi  # the extension's fixed z component: how steep a gradient must be to tilt the normal


def find_file(folder: Path, name: str) -> Path | None:
    """``folder/name``, or the first ``name`` in a subfolder (sd-webui-controlnet keeps each annotator's files in
    a folder of their own under ``annotator/downloads``; either layout works)."""
    folder = Path(folder)
    if (folder / name).is_file():
        return folder / name
    if not folder.is_dir():
        return None
    return next((path for path in sorted(folder.rglob(name)) if path.is_file()), None)


class DepthSources:
    """Finds and loads the estimators the depth preprocessors use."""

    def __init__(self, annotator_dir: Path, *, depth_estimators: DepthEstimators | None = None,
                 manager: ModelManager | None = None, device: torch.device | str | None = None):
        self.annotator_dir = Path(annotator_dir)
        self.depth_estimators = depth_estimators
        self.device = torch.device(device if device is not None else
                                   (depth_estimators.device if depth_estimators is not None else "cpu"))
        self.manager = manager or (depth_estimators.manager if depth_estimators is not None else
                                   ModelManager(self.device))

    def midas(self, module: str) -> DepthEstimator:
        path = find_file(self.annotator_dir, MIDAS_FILE)
        if path is not None:
            return self.manager.load("depth", str(path), lambda: self._load_midas_file(path), name=path.name,
                                     device=self.device, expected_bytes=path.stat().st_size)
        estimator = self.depth_estimators.get() if self.depth_estimators is not None else None
        if estimator is None:
            depth_folder = self.depth_estimators.folder if self.depth_estimators is not None else "models/depth"
            raise UserError("control_depth_missing", module=module, file=MIDAS_FILE, folder=self.annotator_dir,
                            depth_folder=depth_folder)
        return estimator

    def depth_anything(self, module: str) -> DepthEstimator:
        folder = self.annotator_dir / DEPTH_ANYTHING_FOLDER
        estimator = DepthEstimators(folder, self.device, self.manager).get()
        if estimator is None:
            raise UserError("control_annotator_missing", module=module, file=DEPTH_ANYTHING_FILES, folder=folder)
        return estimator

    def _load_midas_file(self, path: Path) -> DepthEstimator:
        from paragoger.model_manager.midas import MIDAS_PREFIX, build_depth_estimator
        from paragoger.model_manager.state_dict import read_state_dict

        state_dict, _ = read_state_dict(path)
        return build_depth_estimator({MIDAS_PREFIX + key: value for key, value in state_dict.items()},
                                     name=path.name, device=self.device)


def estimate_depth(estimator: DepthEstimator, picture: np.ndarray, resolution: int) -> np.ndarray:
    """Raw relative depth (larger = nearer), float32 (h, w), for the picture at the preprocessor resolution."""
    resized = resize_short_side(picture, resolution)
    height, width = resized.shape[:2]
    with torch.inference_mode():
        depth = estimator.predict([Image.fromarray(resized, "RGB")]).float()
        depth = torch.nn.functional.interpolate(depth[:, None], size=(height, width), mode="bicubic",
                                                align_corners=False)
    return depth[0, 0].cpu().numpy().astype(np.float32)


def stretched(depth: np.ndarray) -> np.ndarray:
    """``depth`` moved and scaled to 0..1 (a flat depth, which has no range, is 0 everywhere)."""
    low, high = float(depth.min()), float(depth.max())
    if high <= low:
        return np.zeros_like(depth)
    return (depth - low) / (high - low)


def depth_map(depth: np.ndarray) -> np.ndarray:
    """Grey levels, white = near, as depth ControlNets were trained on."""
    return as_three_channels((stretched(depth) * 255.0).clip(0, 255).astype(np.uint8))


def normal_map(depth: np.ndarray, background_threshold: float) -> np.ndarray:
    """A normal map from the depth's gradients; where the stretched depth is below ``background_threshold`` the
    surface is taken to face the viewer (flat blue-violet, (127, 127, 255))."""
    import cv2

    x = cv2.Sobel(depth, cv2.CV_32F, 1, 0, ksize=3)
    y = cv2.Sobel(depth, cv2.CV_32F, 0, 1, ksize=3)
    background = stretched(depth) < background_threshold
    x[background] = 0
    y[background] = 0
    normal = np.stack([x, y, np.full_like(x, NORMAL_Z)], axis=2)
    normal /= np.sqrt(np.sum(normal ** 2, axis=2, keepdims=True))
    return (normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)
