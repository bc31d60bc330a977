"""Turning tensors into pictures: cheap live previews from latents, and the final VAE output as PIL images."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from PIL import Image

from paragoger.imaging.grid import make_grid

# Least-squares fits of latent channel -> RGB (in -1..1) for each VAE's latent space, as measured by the community
# (the ComfyUI project publishes them): 4x3 matrix (rows = latent channels, columns = R, G, B) and an RGB bias.
# SD 2.x uses the same VAE as SD 1.x, so it shares the factors. They apply to latents as the sampler sees them
# (already multiplied by the VAE scaling factor).
SD1_RGB_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SD1_RGB_BIAS = (0.0, 0.0, 0.0)
SDXL_RGB_FACTORS = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_RGB_BIAS = (0.1084, -0.0175, -0.0011)

LATENT_RGB: Mapping[str, tuple[tuple[tuple[float, float, float], ...], tuple[float, float, float]]] = {
    "sd1": (SD1_RGB_FACTORS, SD1_RGB_BIAS),
    "sd2": (SD1_RGB_FACTORS, SD1_RGB_BIAS),
    "sdxl": (SDXL_RGB_FACTORS, SDXL_RGB_BIAS),
}
VAE_SCALE = 8  # one latent pixel covers 8x8 image pixels in SD 1.x, 2.x and SDXL


def latent_rgb(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(factors 4x3, bias 3) for a model family ("sd1", "sd2", "sdxl")."""
    try:
        factors, bias = LATENT_RGB[family.lower()]
    except KeyError:
        raise ValueError(f"no latent preview factors for model family {family!r}; known: {sorted(LATENT_RGB)}") from None
    return torch.tensor(factors, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32)


def latents_to_preview(latents: torch.Tensor, family: str, *, scale: int = VAE_SCALE) -> Image.Image:
    """A rough RGB picture of latents (C,H,W or N,C,H,W) without running the VAE: one matrix product per pixel.

    Enlarged ``scale`` times (bilinear) so it has the final image's size; a batch becomes a grid like the final
    one. Costs microseconds, so it can run at every sampling step.
    """
    batch = latents.detach()
    if batch.dim() == 3:
        batch = batch.unsqueeze(0)
    factors, bias = latent_rgb(family)
    batch = batch.to(dtype=torch.float32)
    rgb = torch.einsum("nchw,cr->nrhw", batch, factors.to(batch.device)) + bias.to(batch.device)[:, None, None]
    pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8)
    arrays = pixels.permute(0, 2, 3, 1).cpu().numpy()
    previews = [Image.fromarray(array) for array in arrays]
    if scale != 1:
        previews = [image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR)
                    for image in previews]
    return previews[0] if len(previews) == 1 else make_grid(previews)


def tensor_to_pil(decoded: torch.Tensor) -> list[Image.Image]:
    """VAE output (N,C,H,W in -1..1) as PIL images, bit-for-bit what diffusers' pipelines return.

    Same operations in the same order and dtypes as ``VaeImageProcessor.postprocess(output_type="pil")``:
    ``x * 0.5 + 0.5`` clamped to 0..1 in the tensor's own dtype and device, then float32 on the CPU, ``* 255``,
    round half to even, uint8. Changing any step (e.g. converting to float32 first) shifts some pixels by one.
    """
    unit = (decoded * 0.5 + 0.5).clamp(0, 1)
    arrays = unit.cpu().permute(0, 2, 3, 1).float().numpy()
    arrays = (arrays * 255).round().astype(np.uint8)
    if arrays.shape[-1] == 1:
        return [Image.fromarray(array.squeeze(-1)) for array in arrays]
    return [Image.fromarray(array) for array in arrays]
