"""Outpainting as its own choice: a request that extends the picture is turned into an inpaint request on a
larger canvas, whose new area is pre-filled and masked with a soft seam. It then runs like any inpaint, with
ordinary and inpainting checkpoints alike."""
from __future__ import annotations

from dataclasses import dataclass

from paragoger.core.img2img import ORIGINAL
from paragoger.errors import UserError
from paragoger.imaging.outpaint import OUTPAINT_FILLS, expand_canvas

MAX_OUTPAINT = 1024


@dataclass(frozen=True)
class OutpaintOptions:
    left: int = 0
    right: int = 0
    top: int = 0
    bottom: int = 0
    fill: str = "edge"

    @property
    def any(self) -> bool:
        return any((self.left, self.right, self.top, self.bottom))


def outpaint_request(request, options: OutpaintOptions):
    """The inpaint request that extends ``request.init_images[0]`` by ``options`` (size = the new canvas)."""
    sides = (options.left, options.right, options.top, options.bottom)
    if any(not 0 <= side <= MAX_OUTPAINT for side in sides) or options.fill not in OUTPAINT_FILLS:
        raise UserError("outpaint_out_of_range", high=MAX_OUTPAINT, fills=", ".join(OUTPAINT_FILLS))
    if not request.init_images:
        raise UserError("init_image_missing")
    seed = request.seed if request.seed >= 0 else 0
    canvas, mask = expand_canvas(request.init_images[0], left=options.left, right=options.right,
                                 top=options.top, bottom=options.bottom, fill=options.fill, seed=seed)
    extra = {**request.extra_params,
             "Outpaint": f"{options.left} {options.right} {options.top} {options.bottom} {options.fill}"}
    return request.copy(mode="img2img", init_images=[canvas], mask=mask, width=canvas.width, height=canvas.height,
                        mask_blur=0, inpainting_fill=ORIGINAL, inpaint_full_res=False, inpainting_mask_invert=0,
                        extra_params=extra)
