"""Outpainting, pixel side: a bigger canvas around the picture, its new area pre-filled, and the inpaint mask that
makes the model paint that area and blend it into the picture.

Pure PIL in, PIL out, deterministic (the noise fill is seeded). The canvas and mask then go through ordinary
inpainting (whole picture, masked content "original" since the new area is already filled).

Seam: the mask is white on the whole new area and also ``seam`` pixels (default 8) into the original along each
expanded side, then blurred with a Gaussian of standard deviation seam/2, and set back to full white on the new
area. So the new area is always fully regenerated, the original's strip along the edge is regenerated at
strength fading from nearly full at the edge, through half at ``seam`` pixels in, to almost nothing at 2 x ``seam``
pixels in; the rest of the original is kept. A1111's outpainting scripts overlap the original the same way (by
their mask blur).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image, ImageFilter

from paragoger.imaging.masks import blur_mask
from paragoger.imaging.resize import SIZE_MULTIPLE, flatten

OUTPAINT_FILLS = ("edge", "noise", "blur")
SEAM = 8
# "blur" fill: the stretched edge is blurred by a quarter of the widest new band, within these bounds: enough to
# melt the streaks an edge stretch draws, not so much that a thin band loses the edge's colours.
BLUR_FILL_FRACTION = 0.25
BLUR_FILL_RADIUS_RANGE = (2.0, 64.0)


class Padding(NamedTuple):
    """Pixels added on each side of the picture."""
    left: int
    right: int
    top: int
    bottom: int


def outpaint_padding(size: tuple[int, int], *, left: int = 0, right: int = 0, top: int = 0,
                     bottom: int = 0) -> Padding:
    """The padding ``expand_canvas`` really adds to a picture of ``size``: what was asked, plus the few pixels that
    make each side of the result a multiple of 8. The extra pixels go to the right (bottom) when that side grows,
    else to the left (top), else to the right (bottom) of a side that was not asked to grow."""
    if min(left, right, top, bottom) < 0:
        raise ValueError("outpainting adds pixels; the amounts cannot be negative")
    left, right = _round_axis(size[0], left, right)
    top, bottom = _round_axis(size[1], top, bottom)
    return Padding(left, right, top, bottom)


def _round_axis(length: int, before: int, after: int) -> tuple[int, int]:
    total = length + before + after
    extra = -total % SIZE_MULTIPLE
    if after > 0 or before == 0:
        return before, after + extra
    return before + extra, after


def expand_canvas(image: Image.Image, *, left: int = 0, right: int = 0, top: int = 0, bottom: int = 0,
                  fill: str = "edge", seed: int = 0, seam: int = SEAM) -> tuple[Image.Image, Image.Image]:
    """``(canvas, mask)``: ``image`` (as RGB) on a canvas grown by the given pixels per side, rounded by
    ``outpaint_padding`` so both sides are multiples of 8, and the "L" inpaint mask (see the module text for the
    seam). The new area is filled by ``fill``:

    "edge": the picture's border pixels stretched outwards (corners take the corner pixel).
    "noise": seeded Gaussian noise with the picture's own mean and spread per channel, so it has its colours
      but no shapes, which lets the model invent content (``seed`` picks the noise).
    "blur": the edge stretch blurred (see ``BLUR_FILL_FRACTION``), a smooth continuation of the border colours.
    """
    if fill not in OUTPAINT_FILLS:
        raise ValueError(f"unknown outpaint fill {fill!r}; choose one of {OUTPAINT_FILLS}")
    picture = flatten(image)
    padding = outpaint_padding(picture.size, left=left, right=right, top=top, bottom=bottom)
    if fill == "noise":
        canvas = _noise_canvas(picture, padding, seed)
    else:
        canvas = _edge_canvas(picture, padding)
        if fill == "blur":
            canvas = canvas.filter(ImageFilter.GaussianBlur(_blur_fill_radius(padding)))
    canvas.paste(picture, (padding.left, padding.top))
    return canvas, _outpaint_mask(picture.size, padding, seam)


def _edge_canvas(picture: Image.Image, padding: Padding) -> Image.Image:
    pixels = np.asarray(picture)
    widths = ((padding.top, padding.bottom), (padding.left, padding.right), (0, 0))
    return Image.fromarray(np.pad(pixels, widths, mode="edge"), "RGB")


def _noise_canvas(picture: Image.Image, padding: Padding, seed: int) -> Image.Image:
    pixels = np.asarray(picture, dtype=np.float32).reshape(-1, 3)
    width = picture.width + padding.left + padding.right
    height = picture.height + padding.top + padding.bottom
    rng = np.random.default_rng(seed)  # a private generator: the same seed gives the same canvas, always
    noise = rng.normal(pixels.mean(axis=0), pixels.std(axis=0), size=(height, width, 3))
    return Image.fromarray(np.clip(np.rint(noise), 0, 255).astype(np.uint8), "RGB")


def _blur_fill_radius(padding: Padding) -> float:
    low, high = BLUR_FILL_RADIUS_RANGE
    return min(high, max(low, max(padding) * BLUR_FILL_FRACTION))


def _outpaint_mask(size: tuple[int, int], padding: Padding, seam: int) -> Image.Image:
    width, height = size
    canvas_size = (width + padding.left + padding.right, height + padding.top + padding.bottom)
    original_box = (padding.left, padding.top, padding.left + width, padding.top + height)
    new_area = _white_outside(canvas_size, original_box)
    if seam <= 0:
        return new_area
    # Only the sides that grew get a seam; capped at half the picture so the kept part never turns inside out.
    seam_x, seam_y = min(seam, width // 2), min(seam, height // 2)
    kept_box = (original_box[0] + (seam_x if padding.left else 0), original_box[1] + (seam_y if padding.top else 0),
                original_box[2] - (seam_x if padding.right else 0), original_box[3] - (seam_y if padding.bottom else 0))
    soft = blur_mask(_white_outside(canvas_size, kept_box), seam / 2)
    # The blur also dims the white just outside the kept box; the new area must stay fully white.
    return Image.fromarray(np.maximum(np.asarray(soft), np.asarray(new_area)), "L")


def _white_outside(canvas_size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", canvas_size, 255)
    mask.paste(0, box)
    return mask
