"""The depth channel of SD 2.x depth checkpoints (512-depth-ema: a 5-channel UNet, latents + depth).

The depth comes from, in order: an uploaded depth map (grey levels, white = near, as MiDaS and ControlNet-style
depth maps are drawn); the checkpoint's own MiDaS model (512-depth-ema carries one, see ``model_manager.midas``);
a depth estimator folder in ``models/depth``. Either way it is made exactly as diffusers'
``StableDiffusionDepth2ImgPipeline.prepare_depth_map`` makes it: resized to the latent size with bicubic
interpolation, then stretched per picture to -1 (farthest) .. 1 (nearest).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from paragoger.errors import UserError
from paragoger.imaging.resize import resize_image


def depth_conditioning(images: list[Image.Image], *, depth_map: Image.Image | None, estimators, resize_mode: int,
                       latent_size: tuple[int, int], device, dtype, checkpoint: str,
                       own_estimator=None) -> torch.Tensor:
    """(N, 1, h, w) depth for the N pictures of a batch, at latent size ``(h, w)``.

    An uploaded ``depth_map`` serves every picture and needs no estimator; otherwise the checkpoint's
    ``own_estimator`` (a ``DepthEstimator``, or None) runs, else one from ``estimators`` (a ``DepthEstimators``, or
    None), else the user is told where to put one.
    """
    if depth_map is not None:
        width, height = images[0].size
        depth = uploaded_depth(depth_map, width, height, resize_mode).expand(len(images), -1, -1)
    else:
        estimator = own_estimator
        if estimator is None and estimators is not None:
            estimator = estimators.get()
        if estimator is None:
            folder = getattr(estimators, "folder", "models/depth")
            raise UserError("depth_estimator_missing", name=checkpoint, folder=folder)
        depth = estimator.predict([image.convert("RGB") for image in images])
    return normalise(depth.to(device=device, dtype=dtype), latent_size).to(dtype)


def uploaded_depth(depth_map: Image.Image, width: int, height: int, resize_mode: int) -> torch.Tensor:
    """A depth picture as (1, H, W) float32 grey levels, fitted to the generation size like the init picture."""
    if depth_map.mode.startswith("I;16"):
        depth_map = depth_map.convert("I")  # 16-bit depth PNGs keep their precision
    elif depth_map.mode not in ("L", "I", "F"):
        depth_map = depth_map.convert("L")
    if depth_map.size != (width, height):
        depth_map = resize_image(depth_map, width, height, resize_mode)
    return torch.from_numpy(np.asarray(depth_map, dtype=np.float32).copy())[None]


def normalise(depth: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) relative depth -> (N, 1, h, w) in -1..1, each picture on its own range (diffusers' formula)."""
    depth = torch.nn.functional.interpolate(depth.unsqueeze(1), size=latent_size, mode="bicubic",
                                            align_corners=False)
    low = torch.amin(depth, dim=[1, 2, 3], keepdim=True)
    high = torch.amax(depth, dim=[1, 2, 3], keepdim=True)
    scaled = 2.0 * (depth - low) / (high - low) - 1.0
    # A flat map (one grey everywhere) has no range: diffusers would divide by zero; say "all at middle depth".
    return torch.where(high > low, scaled, torch.zeros_like(scaled))
