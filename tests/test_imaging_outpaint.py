"""Outpainting canvas: sizes in multiples of 8, fills of the new area, and a mask with a soft seam."""
import numpy as np
import pytest
from PIL import Image

from paragoger.imaging.outpaint import SEAM, Padding, expand_canvas, outpaint_padding


def random_image(width, height, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def levels(image):
    return np.asarray(image).astype(int)


def original_area(padding, size):
    """Boolean (height, width) map of where the original lies on the canvas."""
    width, height = size
    area = np.zeros((height + padding.top + padding.bottom, width + padding.left + padding.right), dtype=bool)
    area[padding.top:padding.top + height, padding.left:padding.left + width] = True
    return area


def test_padding_is_rounded_so_the_sides_are_multiples_of_8():
    # 100 + 30 = 130 -> 136: the 6 extra go left, the only side that grows; 60 -> 64: 4 extra at the bottom.
    assert outpaint_padding((100, 60), left=30) == Padding(left=36, right=0, top=0, bottom=4)
    assert outpaint_padding((100, 60), left=30, right=27, top=10, bottom=7) == Padding(30, 30, 10, 10)
    assert outpaint_padding((512, 512), top=64) == Padding(0, 0, 64, 0)


def test_negative_padding_is_refused():
    with pytest.raises(ValueError):
        outpaint_padding((64, 64), left=-8)


@pytest.mark.parametrize("fill", ["edge", "noise", "blur"])
def test_outpaint_sizes_are_multiples_of_8_and_mask_covers_the_new_area(fill):
    image = random_image(100, 60)
    canvas, mask = expand_canvas(image, left=30, top=10, right=5, fill=fill, seed=1)
    padding = outpaint_padding(image.size, left=30, top=10, right=5)
    assert canvas.size == mask.size
    assert canvas.width % 8 == 0 and canvas.height % 8 == 0
    assert canvas.width >= 135 and canvas.height >= 70
    assert canvas.mode == "RGB" and mask.mode == "L"
    area = original_area(padding, image.size)
    assert np.all(levels(mask)[~area] == 255)  # every new pixel is regenerated
    # The original sits untouched at its place.
    assert np.array_equal(levels(canvas)[area].reshape(60, 100, 3), levels(image))


def test_mask_seam_fades_into_the_original_and_keeps_its_middle():
    image = random_image(160, 96)
    canvas, mask = expand_canvas(image, left=64)
    row = levels(mask)[48]
    edge = 64  # the original's first column
    assert row[edge] >= 240  # the border strip is nearly fully regenerated...
    assert 100 <= row[edge + SEAM] <= 160  # ...half at SEAM pixels in...
    assert row[edge + int(2.25 * SEAM)] == 0  # ...and nothing past the blur kernel
    assert np.all(np.diff(row[edge:edge + 3 * SEAM]) <= 0)
    assert np.all(levels(mask)[:, edge + 3 * SEAM:] == 0)  # right side did not grow: no seam there


def test_no_seam_gives_a_hard_mask():
    _, mask = expand_canvas(random_image(64, 64), bottom=32, seam=0)
    values = levels(mask)
    assert np.all(values[:64] == 0) and np.all(values[64:] == 255)


def test_edge_fill_stretches_the_border_pixels():
    image = random_image(40, 24)
    canvas, _ = expand_canvas(image, left=8, top=8, fill="edge")
    pixels, source = levels(canvas), levels(image)
    assert np.array_equal(pixels[8:32, 0], source[:, 0])  # left band repeats the first column
    assert np.array_equal(pixels[0, 8:48], source[0])  # top band repeats the first row
    assert np.all(pixels[:8, :8] == source[0, 0])  # the corner takes the corner pixel


def test_noise_fill_is_seeded_and_has_the_pictures_colours():
    image = Image.new("RGB", (64, 64), (200, 60, 30))
    image.paste((180, 80, 50), (0, 0, 32, 64))
    first, _ = expand_canvas(image, right=64, fill="noise", seed=7)
    again, _ = expand_canvas(image, right=64, fill="noise", seed=7)
    other, _ = expand_canvas(image, right=64, fill="noise", seed=8)
    assert np.array_equal(levels(first), levels(again))
    assert not np.array_equal(levels(first), levels(other))
    band = levels(first)[:, 64:].reshape(-1, 3)
    assert np.abs(band.mean(axis=0) - (190, 70, 40)).max() < 3
    assert band.std(axis=0).min() > 5  # noise, not a flat colour


def test_blur_fill_smooths_the_stretched_edge():
    image = random_image(64, 64, seed=3)
    edge, _ = expand_canvas(image, top=64, fill="edge")
    blurred, _ = expand_canvas(image, top=64, fill="blur")
    band_edge, band_blur = levels(edge)[:64], levels(blurred)[:64]
    # Along a band row the stretched edge is as rough as the picture; the blurred one is much smoother.
    roughness = lambda band: np.abs(np.diff(band, axis=1)).mean()  # noqa: E731
    assert roughness(band_blur) < roughness(band_edge) / 4
    assert np.array_equal(levels(blurred)[64:], levels(image))


def test_transparent_pictures_are_flattened_over_white():
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    canvas, _ = expand_canvas(image, right=8)
    assert canvas.getpixel((10, 10)) == (255, 255, 255)


def test_unknown_fill_is_refused():
    with pytest.raises(ValueError):
        expand_canvas(random_image(8, 8), left=8, fill="mirror")
