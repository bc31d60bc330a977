"""Running out of memory during a job (CUDA, or a failed RAM allocation): free what no job holds, try once more
(a decode tries again in tiles), and otherwise say which size failed and what to try. The app keeps running and
the loaded checkpoint stays usable."""
from __future__ import annotations

from typing import Callable, TypeVar

import torch

from paragoger.devices import is_out_of_memory
from paragoger.errors import UserError

T = TypeVar("T")


def _attempt(run: Callable[[], T]) -> tuple[T | None, bool]:
    """``(result, False)``, or ``(None, True)`` when ``run`` ran out of memory. The error, its traceback and the
    tensors its frames hold are gone once this returns (other errors pass through)."""
    try:
        return run(), False
    except Exception as err:  # noqa: BLE001 - only out-of-memory is handled; the rest is raised again
        if not is_out_of_memory(err):
            raise
    return None, True


def retry_once(first: Callable[[], T], retry: Callable[[], T], *, manager, device: torch.device, message: str,
               width: int, height: int, batch: int) -> T:
    """``first()``; when it runs out of memory, ``manager.free_unused(device)`` and ``retry()``; when that runs out
    too, UserError(``message``) naming the size and the device."""
    result, failed = _attempt(first)
    if not failed:
        return result
    manager.free_unused(device)
    result, failed = _attempt(retry)
    if not failed:
        return result
    manager.free_unused(device)
    raise UserError(message, width=width, height=height, batch=batch, device=str(device))


def tiled_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """diffusers' tiled decode with tiles of at most half the latent's larger side (the VAE's own tile is often
    the whole picture), so each tile needs about a quarter of the memory."""
    saved = vae.tile_latent_min_size, vae.tile_sample_min_size
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    tile = max(8, min(saved[0], (max(latents.shape[-2:]) + 1) // 2))
    vae.tile_latent_min_size, vae.tile_sample_min_size = tile, tile * factor
    try:
        return vae.tiled_decode(latents, return_dict=False)[0]
    finally:
        vae.tile_latent_min_size, vae.tile_sample_min_size = saved
