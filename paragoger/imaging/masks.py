"""Inpainting masks, pixel side: reading a mask, mask blur, A1111's "only masked" crop region and the paste back,
the "fill" masked content, and the mask of an inpaint sketch.

Pure PIL in, PIL out, deterministic. A mask is an "L" image: 255 = regenerate, 0 = keep. The order of work for
one inpaint, as A1111 does it:

1. ``prepare_mask`` (read, invert if "Inpaint not masked", mask blur).
2. Whole picture: resize the picture and the blurred mask to width x height with the img2img resize mode (see
   ``resize``). Only masked: ``mask_bounding_box`` on the blurred mask, then ``crop_for_inpaint``.
3. ``fill_masked_area`` with the masked-content mode, using the blurred mask (cropped, in only-masked).
4. After generation: ``paste_back`` (only masked) or ``composite_whole`` (whole picture). A1111 always lays the
   original back over the unmasked part this way; it has no setting to skip it.

Masked content ``MASKED_CONTENT`` (the API's ``inpainting_fill``): 0 "fill" and 1 "original" are done here.
2 "latent noise" (the masked latent replaced by seeded noise) and 3 "latent nothing" (the masked latent zeroed)
are latent-space and belong to the engine; A1111 still runs the pixel "fill" before encoding for both, and
``fill_masked_area`` does the same for modes 2 and 3.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from paragoger.imaging.resize import CROP_AND_RESIZE, RESIZE_AND_FILL, flatten, resize_image

MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")
FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = range(len(MASKED_CONTENT))
INPAINT_AREAS = ("Whole picture", "Only masked")  # the API's inpaint_full_res: 0 / 1
MASK_MODES = ("Inpaint masked", "Inpaint not masked")  # the API's inpainting_mask_invert: 0 / 1

# A painted layer counts where it is more than half opaque: soft brush edges and stray faint alpha do not grow
# the mask (A1111's threshold for alpha masks).
ALPHA_THRESHOLD = 128
# Gaussian kernel half-width in standard deviations, as A1111 sizes its mask blur kernel: 2*int(2.5*blur+0.5)+1.
KERNEL_SIGMAS = 2.5
# "fill": (blur radius, times composited), coarse to fine. Far from the edge the colour comes from the wide blurs,
# near it from the narrow ones, and the last (radius 0) layer restores the known pixels. A1111's schedule.
FILL_LAYERS = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))
PILLOW_BLUR_FROM = 64  # fill blurs this wide or wider use Pillow's 8-bit blur (see _blur_plane)


def prepare_mask(mask_image: Image.Image, *, invert: bool = False,
                 blur: float | tuple[float, float] = 0) -> Image.Image:
    """The inpaint mask as "L", ready for cropping and compositing.

    Reading, as A1111's: a mask with transparency (a layer painted in an editor) is its alpha channel, counted as
    masked where alpha > 128, whatever the brush colour. An opaque mask (an uploaded black and white picture)
    is its grey level, not thresholded, so an uploaded soft mask stays soft. ``invert`` ("Inpaint not masked")
    flips it before the blur. ``blur`` is A1111's mask blur: a Gaussian with that standard deviation in pixels,
    run along x then y; a pair gives (x, y) separately like the API's mask_blur_x / mask_blur_y.
    """
    mask = _mask_levels(mask_image)
    if invert:
        mask = mask.point(lambda level: 255 - level)
    blur_x, blur_y = blur if isinstance(blur, tuple) else (blur, blur)
    return blur_mask(mask, blur_x, blur_y)


def _mask_levels(mask_image: Image.Image) -> Image.Image:
    has_alpha = "A" in mask_image.getbands() or "transparency" in mask_image.info
    if has_alpha:
        alpha = mask_image.convert("RGBA").getchannel("A")
        # A fully opaque alpha says nothing: that is an upload saved with an alpha channel, read by brightness.
        if alpha.getextrema() != (255, 255):
            return alpha.point(lambda a: 255 if a > ALPHA_THRESHOLD else 0)
    return mask_image.convert("L")


def blur_mask(mask: Image.Image, blur_x: float, blur_y: float | None = None) -> Image.Image:
    """``mask`` ("L") blurred like A1111's mask blur: a Gaussian of standard deviation ``blur_x`` along x, then
    ``blur_y`` along y, each kernel 2*int(2.5*sigma+0.5)+1 taps, mirrored at the borders without repeating the
    edge pixel (OpenCV's default border, which A1111's cv2.GaussianBlur uses), rounded to 8 bits after each pass
    as OpenCV's 8-bit output is. Most pixels equal OpenCV's; the rest differ by 1 level, 2 at worst for large or
    fractional blurs (OpenCV rounds its 8-bit kernels to fixed point)."""
    blur_y = blur_x if blur_y is None else blur_y
    levels = np.asarray(mask.convert("L"), dtype=np.float32)
    levels = _to_levels(_blur_rows(levels, blur_x))
    levels = _to_levels(_blur_rows(levels.T, blur_y).T)
    return Image.fromarray(levels.astype(np.uint8), "L")


def _to_levels(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.float32)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(KERNEL_SIGMAS * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-(offsets ** 2) / (2 * sigma * sigma))
    return (weights / weights.sum()).astype(np.float32)


def _blur_rows(levels: np.ndarray, sigma: float) -> np.ndarray:
    """Each row of ``levels`` convolved with the Gaussian kernel of ``sigma`` (no change for sigma <= 0)."""
    if sigma <= 0:
        return levels
    kernel = _gaussian_kernel(sigma)
    radius, length = len(kernel) // 2, levels.shape[1]
    padded = np.pad(levels, ((0, 0), (radius, radius)), mode="reflect")  # numpy's "reflect" = BORDER_REFLECT_101
    out = np.zeros_like(levels)
    for tap, weight in enumerate(kernel):  # one shifted view per tap: a few dozen taps for usual blurs
        out += weight * padded[:, tap:tap + length]
    return out


def mask_bounding_box(mask: Image.Image, padding: int, width: int, height: int,
                      image_size: tuple[int, int] | None = None) -> tuple[int, int, int, int] | None:
    """A1111's "only masked" region (x1, y1, x2, y2), x2/y2 exclusive, in the picture's pixels.

    The box around every pixel of ``mask`` above 0 (pass the blurred mask, as A1111 does, so the blur's soft
    edge is inside), grown by ``padding`` on each side and clamped to the picture, then grown along its short
    side to the aspect ratio of the generation size ``width`` x ``height``: evenly on both sides (the odd pixel
    on the right or bottom), shifted back inside where it overflows, and cut at the picture's edge when the
    picture is too small for that ratio. None for an empty mask: A1111 then inpaints the whole picture.
    ``image_size`` defaults to the mask's size.
    """
    image_w, image_h = image_size or mask.size
    bbox = mask.convert("L").getbbox()
    if bbox is None:
        return None
    x1, y1, x2, y2 = bbox
    x1, y1 = max(x1 - padding, 0), max(y1 - padding, 0)
    x2, y2 = min(x2 + padding, image_w), min(y2 + padding, image_h)
    target_ratio = width / height
    if (x2 - x1) / (y2 - y1) > target_ratio:
        y1, y2 = _grow_span(y1, y2, (x2 - x1) / target_ratio, image_h)
    else:
        x1, x2 = _grow_span(x1, x2, (y2 - y1) * target_ratio, image_w)
    return x1, y1, x2, y2


def _grow_span(low: int, high: int, wanted: float, limit: int) -> tuple[int, int]:
    extra = int(wanted - (high - low))  # truncated, as A1111 does: the box may fall a pixel short of the ratio
    low -= extra // 2
    high += extra - extra // 2
    if high > limit:
        low, high = low - (high - limit), limit
    if low < 0:
        low, high = 0, high - low
    return low, min(high, limit)


def crop_for_inpaint(image: Image.Image, mask: Image.Image, box: tuple[int, int, int, int],
                     width: int, height: int) -> tuple[Image.Image, Image.Image]:
    """The picture and the mask cut to ``box`` and brought to ``width`` x ``height`` with "Resize and fill" (A1111
    uses that mode for the only-masked crop; the box already has about the right ratio, so fill bands are at most
    a pixel or two)."""
    image_crop = resize_image(flatten(image).crop(box), width, height, RESIZE_AND_FILL)
    mask_crop = resize_image(mask.convert("L").crop(box), width, height, RESIZE_AND_FILL)
    return image_crop, mask_crop


def paste_back(original: Image.Image, generated_crop: Image.Image, mask_blurred: Image.Image,
               box: tuple[int, int, int, int]) -> Image.Image:
    """The only-masked result: ``generated_crop`` brought back to the box's size ("Crop and resize", as A1111)
    and blended into ``original`` inside ``box`` by ``mask_blurred`` (the full-size blurred mask, the one the box
    was measured on). Outside the box the original is copied untouched, pixel for pixel, whatever the mask
    holds there; inside it, the original stays exact wherever the mask is 0."""
    original = flatten(original)
    _require_same_size(original, mask_blurred)
    x1, y1, x2, y2 = box
    patch = resize_image(flatten(generated_crop), x2 - x1, y2 - y1, CROP_AND_RESIZE)
    region = Image.composite(patch, original.crop(box), mask_blurred.convert("L").crop(box))
    result = original.copy()
    result.paste(region, (x1, y1))
    return result


def composite_whole(original: Image.Image, generated: Image.Image, mask_blurred: Image.Image) -> Image.Image:
    """The whole-picture result: the original laid back over ``generated`` outside the mask. All three at the
    generation size (resize the original and the mask with the img2img resize mode first).

    As A1111, the blurred mask is doubled (clipped at 255) before use: the generated picture shows fully wherever
    the blurred mask is at least half, and the blur's outer half fades to the original.
    """
    original, generated = flatten(original), flatten(generated)
    _require_same_size(original, generated)
    _require_same_size(original, mask_blurred)
    doubled = mask_blurred.convert("L").point(lambda level: min(255, 2 * level))
    return Image.composite(generated, original, doubled)


def _require_same_size(first: Image.Image, second: Image.Image) -> None:
    if first.size != second.size:
        raise ValueError(f"sizes differ: {first.size[0]}x{first.size[1]} and {second.size[0]}x{second.size[1]}")


def fill_masked_area(image: Image.Image, mask: Image.Image, mode: int) -> Image.Image:
    """The picture to encode for masked content ``mode`` (index into ``MASKED_CONTENT``), as RGB.

    "original" (1) returns the picture. "fill" (0), and the latent modes 2 and 3 as in A1111, replace the masked
    part with colours spread in from the unmasked surroundings: the unmasked pixels are blurred at decreasing
    radii (``FILL_LAYERS``) and the layers laid one over another, each weighted by how much known picture its
    blur reached. Pixels where the mask is 0 come out unchanged; partly masked ones blend. Where no layer reaches
    (a tiny unmasked area), the mean unmasked colour is used; a fully masked picture comes out black, as in A1111.
    """
    if mode not in range(len(MASKED_CONTENT)):
        raise ValueError(f"unknown masked content {mode!r}; modes are 0-3: {MASKED_CONTENT}")
    image = flatten(image)
    if mode == ORIGINAL:
        return image
    _require_same_size(image, mask)
    return _spread_fill(image, mask.convert("L"))


def _spread_fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    colour = np.asarray(image, dtype=np.float32)
    known = 1.0 - np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    total = np.zeros_like(colour)  # premultiplied colour laid so far
    coverage = np.zeros_like(known)
    for radius, repeats in FILL_LAYERS:
        layer, alpha = _blurred_known(colour * known, known, radius)
        # Laying a layer of opacity a n times is one layer of opacity 1-(1-a)^n; its colour is layer/alpha.
        weight = 1.0 - (1.0 - alpha) ** repeats
        share = np.divide(weight, alpha, out=np.zeros_like(alpha), where=alpha > 0)
        total = layer * share + total * (1.0 - weight)
        coverage = weight + coverage * (1.0 - weight)
    filled = np.divide(total, coverage, out=np.zeros_like(total), where=coverage > 0)
    filled = np.where(coverage > 0, filled, _mean_known_colour(colour, known))
    return Image.fromarray(np.clip(np.rint(filled), 0, 255).astype(np.uint8), "RGB")


def _blurred_known(premultiplied: np.ndarray, known: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blur (standard deviation ``radius``) of the premultiplied known colour and of the known weight."""
    if radius == 0:
        return premultiplied, known
    planes = [premultiplied[..., index] for index in range(3)] + [known[..., 0] * 255.0]
    blurred = [_blur_plane(plane, radius) for plane in planes]
    return np.stack(blurred[:3], axis=-1), blurred[3][..., None] / 255.0


def _blur_plane(plane: np.ndarray, radius: float) -> np.ndarray:
    # Narrow blurs reach only a little known picture, so their weights are small and 8-bit rounding would show in
    # colour = blurred colour / weight: they run in float. Wide blurs have large weights, and a float kernel that
    # wide would be slow, so Pillow's fast 8-bit blur does them.
    if radius < PILLOW_BLUR_FROM:
        return _blur_rows(_blur_rows(plane, radius).T, radius).T
    as_image = Image.fromarray(np.clip(np.rint(plane), 0, 255).astype(np.uint8), "L")
    return np.asarray(as_image.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)


def _mean_known_colour(colour: np.ndarray, known: np.ndarray) -> np.ndarray:
    weight = known.sum()
    if weight == 0:
        return np.zeros(3, dtype=np.float32)
    return (colour * known).sum(axis=(0, 1)) / weight


def inpaint_sketch_mask(original: Image.Image, sketched: Image.Image, threshold: int = 0) -> Image.Image:
    """"Inpaint sketch": the mask ("L", 255 or 0) of the pixels the user painted over, those where any colour
    channel of ``sketched`` differs from ``original`` by more than ``threshold`` levels (0: any change at all,
    A1111's rule). The sketched picture itself is the content to inpaint from; both pictures are compared as RGB
    over white, the same size."""
    before, after = flatten(original), flatten(sketched)
    _require_same_size(before, after)
    difference = np.abs(np.asarray(before, dtype=np.int16) - np.asarray(after, dtype=np.int16)).max(axis=-1)
    return Image.fromarray(np.where(difference > threshold, 255, 0).astype(np.uint8), "L")
