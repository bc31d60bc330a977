"""Control pictures in and out: any input picture as RGB, the inpaint map (picture + mask), the map as a tensor.

How the inpaint mask travels: the inpaint ControlNet wants the picture with its masked pixels set to -1 (values
are 0..1 elsewhere), which no picture can hold. So the inpaint preprocessors return an RGBA map: RGB is the
picture, alpha the mask (255 = repaint, 0 = keep; binarized at 128, the extension's ``mask > 0.5``).
``control_tensor`` turns any map into what a ControlNet takes, the masked pixels becoming -1; ``preview`` shows the
masked part half transparent, as the extension's preview does. Resizing such a map to the generation size resizes
the alpha with it; ``control_tensor`` binarizes it again.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from paragoger.errors import UserError
from paragoger.imaging.resize import flatten

MASK_LEVEL = 128  # alpha at or above it is "masked" (the extension: mask / 255 > 0.5)


def readable(image) -> Image.Image:
    """``image`` decoded, or UserError("control_image_unreadable") with the reason."""
    if not isinstance(image, Image.Image):
        raise UserError("control_image_unreadable", reason=f"expected a picture, got {type(image).__name__}")
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UserError("control_image_unreadable", reason=str(error) or type(error).__name__) from None
    if image.width < 1 or image.height < 1:
        raise UserError("control_image_unreadable", reason=f"it is {image.width}x{image.height} pixels")
    return image


def rgb_pixels(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any picture; transparent parts laid over white, as the extension does."""
    return np.asarray(flatten(readable(image)), dtype=np.uint8)


def with_mask(image: Image.Image, mask: Image.Image | None) -> Image.Image:
    """The RGBA input of the inpaint preprocessors: ``image`` (flattened) with ``mask`` (its grey levels, as A1111
    reads inpaint masks: white = repaint; resized to the picture if its size differs) as alpha. No mask: nothing
    is masked."""
    rgb = flatten(readable(image))
    if mask is None:
        alpha = Image.new("L", rgb.size, 0)
    else:
        alpha = readable(mask).convert("L")
        if alpha.size != rgb.size:
            alpha = alpha.resize(rgb.size, Image.Resampling.BILINEAR)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(alpha)
    return rgba


def inpaint_map(image: Image.Image) -> Image.Image:
    """RGBA: the picture, its alpha (the mask) binarized. An input without alpha has nothing masked."""
    readable(image)
    if image.mode != "RGBA":
        image = with_mask(image, None)
    alpha = np.asarray(image.getchannel("A"))
    result = image.copy()
    result.putalpha(Image.fromarray(np.where(alpha >= MASK_LEVEL, 255, 0).astype(np.uint8), "L"))
    return result


def control_tensor(control_map: Image.Image) -> torch.Tensor:
    """(1, 3, H, W) float32 in 0..1, what a ControlNet takes; the pixels an RGBA map masks (alpha >= 128) are -1."""
    pixels = np.asarray(control_map.convert("RGBA" if control_map.mode == "RGBA" else "RGB"), dtype=np.float32)
    tensor = torch.from_numpy(pixels[:, :, :3] / 255.0).permute(2, 0, 1).unsqueeze(0).contiguous()
    if control_map.mode == "RGBA":
        masked = torch.from_numpy(pixels[:, :, 3] >= MASK_LEVEL)
        tensor[:, :, masked] = -1.0
    return tensor


def preview(control_map: Image.Image) -> Image.Image:
    """The map to show: RGB maps as they are; an inpaint map with its masked part half transparent."""
    if control_map.mode != "RGBA":
        return control_map
    alpha = np.asarray(control_map.getchannel("A")).astype(np.uint16)
    shown = control_map.copy()
    shown.putalpha(Image.fromarray((255 - alpha // 2).astype(np.uint8), "L"))
    return shown
