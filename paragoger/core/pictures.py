"""The pictures an img2img request starts from, at the generation size, and how each result is finished.

Resize modes, mask blur and inversion, "only masked" cropping with paste-back, and the masked-content fill are
A1111's; the pixel work itself lives in ``imaging``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PIL import Image

from paragoger.core.img2img import ORIGINAL
from paragoger.imaging.masks import (composite_whole, crop_for_inpaint, fill_masked_area, mask_bounding_box,
                                     paste_back, prepare_mask)
from paragoger.imaging.resize import resize_image


@dataclass
class PreparedPictures:
    images: list[Image.Image]                 # one per init image, at width x height, ready to encode
    masks: list[Image.Image] | None           # blurred "L" masks at width x height, or None for plain img2img
    finishers: list[Callable[[Image.Image], Image.Image]]

    def for_image(self, index: int) -> tuple[Image.Image, Image.Image | None]:
        """Init image i of a batch uses the request's init images in turn, as A1111 does."""
        k = index % len(self.images)
        return self.images[k], (self.masks[k] if self.masks else None)

    def finish(self, index: int, generated: Image.Image) -> Image.Image:
        return self.finishers[index % len(self.finishers)](generated)


def prepare_pictures(request, *, keep_size: bool = False) -> PreparedPictures:
    """``keep_size``: "Just resize (latent upscale)" — the picture is encoded at its own size and its latents are
    resized instead (see ``img2img.prepare_start``)."""
    width, height = request.width, request.height
    images, masks, finishers = [], [], []
    for original in request.init_images:
        original = original.convert("RGB")
        if request.mask is None:
            images.append(original if keep_size else resize_image(original, width, height, request.resize_mode))
            finishers.append(lambda generated: generated)
            continue
        full_mask = prepare_mask(request.mask, invert=bool(request.inpainting_mask_invert),
                                 blur=request.mask_blur)
        box = (mask_bounding_box(full_mask, request.inpaint_full_res_padding, width, height, original.size)
               if request.inpaint_full_res else None)
        if box is not None:
            image, mask = crop_for_inpaint(original, full_mask, box, width, height)
            finishers.append(lambda generated, o=original, m=full_mask, b=box: paste_back(o, generated, m, b))
        else:
            image = resize_image(original, width, height, request.resize_mode)
            mask = resize_image(full_mask, width, height, request.resize_mode)
            finishers.append(lambda generated, o=image, m=mask: composite_whole(o, generated, m))
        if request.inpainting_fill != ORIGINAL:
            # A1111 fills the masked pixels for "fill" and also under the latent fills (noise / nothing).
            image = fill_masked_area(image, mask, request.inpainting_fill)
        images.append(image)
        masks.append(mask)
    return PreparedPictures(images=images, masks=masks or None, finishers=finishers)
