"""Running an image model over a picture in tiles, so memory stays bounded whatever the picture's size.

Windows of at most ``tile`` x ``tile`` input pixels step across the picture so that neighbours share at least
``2 * overlap`` pixels. Where two windows meet, each output pixel comes from the window in which it lies furthest
from an edge: the seam sits in the middle of the shared strip, softened by a linear blend ``overlap`` pixels
wide. So every pixel the result keeps saw at least ``overlap / 2`` pixels of real picture around it in its
window; a model whose reach is no larger than that gives exactly the pixels of one untiled pass.
"""
from __future__ import annotations

from typing import Callable

import torch

# tensor (1, C, h, w) in [0, 1] -> tensor (1, C, h * scale, w * scale)
TileModel = Callable[[torch.Tensor], torch.Tensor]


def window_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of the windows along one axis: each window is ``min(tile, length)`` long, neighbours share at least
    ``2 * overlap`` pixels, the last one ends at ``length``."""
    if tile <= 0 or length <= tile:
        return [0]
    step = max(1, tile - 2 * overlap)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return sorted(set(starts))


def axis_weights(starts: list[int], size: int, scale: int, band: float) -> list[torch.Tensor]:
    """For each window, the weight of each of its output pixels along one axis: 1 inside, 0 beyond the seam,
    a linear ramp ``band`` input pixels wide across each seam. Neighbouring ramps add up to 1 (``run_tiled``
    still divides by the sum, for windows so close that ramps meet)."""
    cuts = [(starts[i] + size + starts[i + 1]) / 2 for i in range(len(starts) - 1)]  # middle of each shared strip
    half = band / 2
    weights = []
    for index, start in enumerate(starts):
        centres = start + (torch.arange(size * scale, dtype=torch.float32) + 0.5) / scale  # in input pixels
        weight = torch.ones_like(centres)
        if index > 0:
            weight *= _ramp(centres - cuts[index - 1], half)
        if index < len(starts) - 1:
            weight *= _ramp(cuts[index] - centres, half)
        weights.append(weight)
    return weights


def _ramp(distance: torch.Tensor, half: float) -> torch.Tensor:
    """0 at ``-half`` and before, 1 at ``+half`` and after (a hard step at 0 when ``half`` is 0)."""
    if half <= 0:
        return (distance >= 0).float()
    return ((distance + half) / (2 * half)).clamp(0, 1)


def run_tiled(model: TileModel, picture: torch.Tensor, *, scale: int, tile: int, overlap: int) -> torch.Tensor:
    """``model`` applied to ``picture`` (1, C, H, W) window by window; the result (1, C, H*scale, W*scale) is
    assembled on the CPU in float32. ``tile`` 0 runs the whole picture at once."""
    _, channels, height, width = picture.shape
    if tile <= 0 or (height <= tile and width <= tile):
        return model(picture).float().cpu()
    overlap = max(0, min(overlap, (tile - 1) // 2))
    size_y, size_x = min(tile, height), min(tile, width)
    starts_y, starts_x = window_starts(height, tile, overlap), window_starts(width, tile, overlap)
    weights_y = axis_weights(starts_y, size_y, scale, overlap)
    weights_x = axis_weights(starts_x, size_x, scale, overlap)
    result = torch.zeros(1, channels, height * scale, width * scale, dtype=torch.float32)
    total = torch.zeros(height * scale, width * scale, dtype=torch.float32)
    for y, weight_y in zip(starts_y, weights_y):
        for x, weight_x in zip(starts_x, weights_x):
            window = picture[:, :, y:y + size_y, x:x + size_x]
            out = model(window).float().cpu()
            weight = weight_y[:, None] * weight_x[None, :]
            area = (slice(y * scale, (y + size_y) * scale), slice(x * scale, (x + size_x) * scale))
            result[(..., *area)] += out * weight
            total[area] += weight
    return result / total.clamp_min(1e-6)
