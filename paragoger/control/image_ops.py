"""The model-free ControlNet preprocessors, on numpy pictures (H, W, 3) uint8 RGB, with OpenCV.

Each follows what sd-webui-controlnet's preprocessor of the same name does (facts of its behaviour; the code is
this project's own):

* Most preprocessors first bring the picture to the preprocessor resolution: the short side becomes
  ``resolution`` (scale ``k = resolution / min(H, W)``, each side ``round(side * k)``, half to even), bicubic when
  enlarging, area averaging when shrinking. The extension then pads the picture on the right and bottom to a
  multiple of 64 pixels by repeating the edge, runs the detector, and cuts the padding off again; detectors that
  look at neighbours (Canny's gradients and hysteresis, XDoG's blurs) see that padding, so it is done here too.
* ``invert``, ``tile_resample`` and the inpaint preprocessors keep the picture's own size.

OpenCV is imported inside the functions: ``import cv2`` costs about 0.3-0.8 s, which app start-up need not pay.
"""
from __future__ import annotations

import numpy as np

PAD_MULTIPLE = 64  # the extension pads detector inputs to a multiple of 64 pixels


def short_side_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(height, width) with the short side made ``resolution`` (each side rounded half to even, as numpy does)."""
    scale = float(resolution) / float(min(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_short_side(picture: np.ndarray, resolution: int) -> np.ndarray:
    """``picture`` with its short side ``resolution`` pixels: bicubic when enlarging, area when shrinking."""
    import cv2

    height, width = picture.shape[:2]
    new_height, new_width = short_side_size(height, width, resolution)
    if (new_height, new_width) == (height, width):
        return picture.copy()
    enlarging = resolution > min(height, width)
    return cv2.resize(picture, (new_width, new_height), interpolation=cv2.INTER_CUBIC if enlarging else cv2.INTER_AREA)


def pad_to_multiple(picture: np.ndarray, multiple: int = PAD_MULTIPLE) -> np.ndarray:
    """``picture`` grown on the right and bottom to a multiple of ``multiple`` pixels by repeating its edge."""
    height, width = picture.shape[:2]
    extra = [(0, -height % multiple), (0, -width % multiple)] + [(0, 0)] * (picture.ndim - 2)
    return np.pad(picture, extra, mode="edge")


def _on_padded(picture: np.ndarray, resolution: int, detector) -> np.ndarray:
    """``detector`` run on the resized, padded picture; its result cut back to the resized size."""
    resized = resize_short_side(picture, resolution)
    height, width = resized.shape[:2]
    return np.ascontiguousarray(detector(pad_to_multiple(resized))[:height, :width])


def as_three_channels(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, None], 3, axis=2) if grey.ndim == 2 else grey


def canny(picture: np.ndarray, resolution: int, low: float, high: float) -> np.ndarray:
    """OpenCV's Canny edges (white on black) with hysteresis thresholds ``low`` and ``high`` on the RGB picture
    (OpenCV takes, per pixel, the channel with the strongest gradient)."""
    import cv2

    return as_three_channels(_on_padded(picture, resolution, lambda padded: cv2.Canny(padded, low, high)))


def threshold(picture: np.ndarray, resolution: int, level: float) -> np.ndarray:
    """White where every channel is above ``level``, black elsewhere."""
    def binarize(padded):
        return np.where(padded.min(axis=2) > level, 255, 0).astype(np.uint8)

    return as_three_channels(_on_padded(picture, resolution, binarize))


def invert(picture: np.ndarray) -> np.ndarray:
    """White lines on black from black lines on white (the size is kept)."""
    return 255 - picture


def tile_resample(picture: np.ndarray, rate: float) -> np.ndarray:
    """The picture shrunk by ``rate`` (area averaging) for the tile model; rates below 1.1 keep it as it is (the
    extension's cut-off), and the preprocessor resolution is not used."""
    import cv2

    if rate < 1.1:
        return picture.copy()
    height, width = picture.shape[:2]
    size = (max(1, int(width / rate)), max(1, int(height / rate)))
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)


def blur_gaussian(picture: np.ndarray, resolution: int, sigma: float) -> np.ndarray:
    """The resized picture blurred with a Gaussian of standard deviation ``sigma`` (OpenCV's kernel size for it,
    mirrored borders); the extension blurs after removing its padding, so no padding here."""
    import cv2

    return cv2.GaussianBlur(resize_short_side(picture, resolution), (0, 0), float(sigma))


def scribble_xdog(picture: np.ndarray, resolution: int, level: float) -> np.ndarray:
    """A scribble from a difference of Gaussians (sigmas 0.5 and 5): white where some channel is darker than its
    wide surroundings by more than ``level / 2``.

    The extension computes ``2 * (255 - dog)`` in 8 bits, which wraps around for very strong lines (a darkness of
    128 or more counts as 0); here it is computed in integers, so the strongest lines stay lines.
    """
    import cv2

    def detect(padded):
        values = padded.astype(np.float32)
        fine = cv2.GaussianBlur(values, (0, 0), 0.5)
        wide = cv2.GaussianBlur(values, (0, 0), 5.0)
        # 8-bit "dog" as the extension keeps it (255 - darkness, truncated), then the darkness back from it
        dog = (255.0 - np.min(wide - fine, axis=2)).clip(0, 255).astype(np.uint8)
        darkness = 255 - dog.astype(np.int32)
        return np.where(2 * darkness > level, 255, 0).astype(np.uint8)

    return as_three_channels(_on_padded(picture, resolution, detect))
