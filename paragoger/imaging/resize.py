"""The img2img input picture brought to the generation size, with A1111's four resize modes.

Pure PIL in, PIL out, deterministic. Resampling is Lanczos, as A1111 uses when no img2img upscaler is set (an
upscaler model for big enlargements is the engine's business, not this module's).

Mode numbers are the API's ``resize_mode`` and index ``RESIZE_MODES``:

0 "Just resize": stretch to width x height; the aspect ratio is not kept.
1 "Crop and resize": scale to cover width x height keeping the aspect ratio, then cut the centre.
2 "Resize and fill": scale to fit inside width x height keeping the aspect ratio, centre it, and fill the empty
  bands with the picture's edge line stretched outwards.
3 "Just resize (latent upscale)": the resize happens in latent space. A1111 does not resize the init picture at all
  in this mode: it encodes the picture at its own size and bilinearly interpolates the latent to height/8 x width/8.
  The engine does that part. Here mode 3 stretches like mode 0, which is what the pixel-side pieces that must be
  width x height (the mask, the overlay for pasting back) need.
"""
from __future__ import annotations

from PIL import Image

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
JUST_RESIZE, CROP_AND_RESIZE, RESIZE_AND_FILL, LATENT_UPSCALE = range(len(RESIZE_MODES))

RESAMPLE = Image.Resampling.LANCZOS
SIZE_MULTIPLE = 8  # the VAE downsamples by 8, so generation sizes are multiples of 8
IMG2IMG_BACKGROUND = "#ffffff"  # A1111's default img2img background colour for transparent pictures

# Modes Lanczos can resample as they are; anything else is converted first (palette, 1-bit, CMYK...).
_RESAMPLABLE_MODES = frozenset({"RGB", "RGBA", "L", "LA", "I", "F"})


def round_to_multiple(value: float, multiple: int = SIZE_MULTIPLE) -> int:
    """``value`` rounded to the nearest multiple of ``multiple`` (halves round up), never below one multiple:
    a side of 0 pixels is not a size."""
    if multiple <= 0:
        raise ValueError("the multiple must be positive")
    return max(multiple, int(value / multiple + 0.5) * multiple)


def default_size_for(image: Image.Image) -> tuple[int, int]:
    """The img2img width and height to offer for ``image``: its own size, each side rounded to a multiple of 8."""
    return round_to_multiple(image.width), round_to_multiple(image.height)


def flatten(image: Image.Image, background: str = IMG2IMG_BACKGROUND) -> Image.Image:
    """``image`` as RGB; transparent parts are laid over ``background`` (A1111 flattens init pictures the same
    way, white by default), so a transparent PNG does not turn black."""
    if image.mode == "RGB":
        return image.copy()
    if "A" not in image.getbands() and "transparency" not in image.info:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    base = Image.new("RGBA", rgba.size, background)
    return Image.alpha_composite(base, rgba).convert("RGB")


def resize_image(image: Image.Image, width: int, height: int, mode: int = JUST_RESIZE) -> Image.Image:
    """``image`` at exactly ``width`` x ``height`` by resize mode ``mode`` (see the module text). The picture keeps
    its mode (a mask stays "L"), except modes Lanczos cannot resample, which become RGB or RGBA."""
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, not {width}x{height}")
    if mode not in range(len(RESIZE_MODES)):
        raise ValueError(f"unknown resize mode {mode!r}; modes are 0-{len(RESIZE_MODES) - 1}: {RESIZE_MODES}")
    image = _resamplable(image)
    if mode == CROP_AND_RESIZE:
        return _crop_and_resize(image, width, height)
    if mode == RESIZE_AND_FILL:
        return _resize_and_fill(image, width, height)
    return _stretch(image, width, height)  # modes 0 and 3


def _resamplable(image: Image.Image) -> Image.Image:
    if image.mode in _RESAMPLABLE_MODES:
        return image
    if image.mode == "1":
        return image.convert("L")
    keeps_alpha = "A" in image.getbands() or "transparency" in image.info
    return image.convert("RGBA" if keeps_alpha else "RGB")


def _stretch(image: Image.Image, width: int, height: int) -> Image.Image:
    if image.size == (width, height):
        return image.copy()  # resampling to the same size would still soften the picture
    return image.resize((width, height), RESAMPLE)


def _scaled_size(image: Image.Image, width: int, height: int, *, cover: bool) -> tuple[int, int]:
    """The picture's size scaled to cover (or fit inside) width x height. Integer arithmetic with floor division,
    as A1111 computes it, so sizes agree to the pixel; ratios are compared exactly by cross-multiplying."""
    target_is_wider = width * image.height > image.width * height
    match_width = target_is_wider if cover else not target_is_wider
    if match_width:
        return width, max(1, image.height * width // image.width)
    return max(1, image.width * height // image.height), height


def _crop_and_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    scaled_w, scaled_h = _scaled_size(image, width, height, cover=True)
    scaled = _stretch(image, scaled_w, scaled_h)
    # The same centring arithmetic as A1111's paste at (width//2 - w//2, height//2 - h//2), seen from the crop side.
    left, top = scaled_w // 2 - width // 2, scaled_h // 2 - height // 2
    return scaled.crop((left, top, left + width, top + height))


def _resize_and_fill(image: Image.Image, width: int, height: int) -> Image.Image:
    scaled_w, scaled_h = _scaled_size(image, width, height, cover=False)
    scaled = _stretch(image, scaled_w, scaled_h)
    canvas = Image.new(scaled.mode, (width, height))
    left, top = width // 2 - scaled_w // 2, height // 2 - scaled_h // 2
    canvas.paste(scaled, (left, top))
    if scaled_h < height:
        _paste_band(canvas, scaled, "top", top, (0, 0))
        _paste_band(canvas, scaled, "bottom", height - top - scaled_h, (0, top + scaled_h))
    elif scaled_w < width:
        _paste_band(canvas, scaled, "left", left, (0, 0))
        _paste_band(canvas, scaled, "right", width - left - scaled_w, (left + scaled_w, 0))
    return canvas


def _paste_band(canvas: Image.Image, scaled: Image.Image, side: str, length: int, at: tuple[int, int]) -> None:
    """Fill one empty band with the picture's edge line stretched to ``length``.

    Like A1111, the band is a resize of a zero-thickness box lying on that edge: Lanczos then samples the last
    rows (or columns) around the edge, so every line of the band is the same lightly smoothed copy of the edge.
    Unlike A1111, which gives both bands the top band's length, the far band gets its own length, so an odd
    leftover does not stay black.
    """
    if length <= 0:
        return
    w, h = scaled.size
    boxes = {"top": (0, 0, w, 0), "bottom": (0, h, w, h), "left": (0, 0, 0, h), "right": (w, 0, w, h)}
    size = (w, length) if side in ("top", "bottom") else (length, h)
    canvas.paste(scaled.resize(size, RESAMPLE, box=boxes[side]), at)
