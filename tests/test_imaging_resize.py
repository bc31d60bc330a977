"""img2img resize modes as A1111's, and the default img2img size."""
import numpy as np
import pytest
from PIL import Image

from paragoger.imaging.resize import (CROP_AND_RESIZE, JUST_RESIZE, LATENT_UPSCALE, RESAMPLE, RESIZE_AND_FILL,
                                      RESIZE_MODES, default_size_for, flatten, resize_image, round_to_multiple)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def stripes(colors, stripe_width, height, *, vertical=True):
    """Side-by-side stripes (or stacked ones with vertical=False) of ``stripe_width`` pixels each."""
    image = Image.new("RGB", (stripe_width * len(colors), height))
    for index, color in enumerate(colors):
        image.paste(color, (index * stripe_width, 0, (index + 1) * stripe_width, height))
    return image if vertical else image.transpose(Image.Transpose.TRANSPOSE)


def random_image(width, height, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def test_modes_are_a1111_labels_in_api_order():
    assert RESIZE_MODES == ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
    assert (JUST_RESIZE, CROP_AND_RESIZE, RESIZE_AND_FILL, LATENT_UPSCALE) == (0, 1, 2, 3)


def test_just_resize_stretches_to_the_exact_size():
    image = stripes([RED, BLUE], 100, 50)
    result = resize_image(image, 64, 64, JUST_RESIZE)
    assert result.size == (64, 64)
    assert result.getpixel((5, 32)) == RED and result.getpixel((58, 32)) == BLUE
    assert np.array_equal(np.asarray(result), np.asarray(image.resize((64, 64), RESAMPLE)))


def test_same_size_just_resize_is_an_exact_copy():
    image = random_image(40, 24)
    result = resize_image(image, 40, 24, JUST_RESIZE)
    assert result is not image and np.array_equal(np.asarray(result), np.asarray(image))


def test_latent_upscale_mode_stretches_like_just_resize_on_the_pixel_side():
    image = random_image(90, 50)
    assert np.array_equal(np.asarray(resize_image(image, 64, 48, LATENT_UPSCALE)),
                          np.asarray(resize_image(image, 64, 48, JUST_RESIZE)))


def test_crop_and_resize_covers_and_centres():
    # 300x100 to 64x64: scaled to cover (192x64), then the centre 64 columns: exactly the green stripe.
    image = stripes([RED, GREEN, BLUE], 100, 100)
    result = resize_image(image, 64, 64, CROP_AND_RESIZE)
    assert result.size == (64, 64)
    expected = image.resize((192, 64), RESAMPLE).crop((64, 0, 128, 64))
    assert np.array_equal(np.asarray(result), np.asarray(expected))
    pixels = np.asarray(result).reshape(-1, 3)
    assert not np.any(np.all(pixels == RED, axis=1)) and not np.any(np.all(pixels == BLUE, axis=1))
    assert result.getpixel((32, 32)) == GREEN


def test_crop_and_resize_cuts_a_tall_picture_top_and_bottom():
    image = stripes([RED, GREEN, BLUE], 100, 100, vertical=False)  # 100 wide, 300 high
    result = resize_image(image, 64, 64, CROP_AND_RESIZE)
    expected = image.resize((64, 192), RESAMPLE).crop((0, 64, 64, 128))
    assert np.array_equal(np.asarray(result), np.asarray(expected))


def test_crop_and_resize_uses_a1111_integer_sizes():
    # A1111: a 512x768 picture for 512x512 keeps 512x768 and cuts rows 128..640.
    image = random_image(512, 768)
    result = resize_image(image, 512, 512, CROP_AND_RESIZE)
    assert np.array_equal(np.asarray(result), np.asarray(image.crop((0, 128, 512, 640))))


def test_resize_and_fill_stretches_edges_into_the_bands():
    # Rows all alike (colour changes only along x): the bands must repeat the edge row exactly.
    row = np.linspace(0, 255, 100).astype(np.uint8)
    pixels = np.stack([np.tile(row, (50, 1))] * 3, axis=-1)
    image = Image.fromarray(pixels, "RGB")  # 100x50, 2:1
    result = np.asarray(resize_image(image, 64, 64, RESIZE_AND_FILL))
    scaled = np.asarray(image.resize((64, 32), RESAMPLE))
    assert np.array_equal(result[16:48], scaled)  # the picture, centred
    assert np.array_equal(result[:16], np.repeat(scaled[:1], 16, axis=0))
    assert np.array_equal(result[48:], np.repeat(scaled[-1:], 16, axis=0))


def test_resize_and_fill_bands_repeat_one_line_taken_at_the_edge():
    image = random_image(50, 100, seed=3)  # tall: bands on the left and right
    result = np.asarray(resize_image(image, 64, 64, RESIZE_AND_FILL)).astype(int)
    scaled = np.asarray(image.resize((32, 64), RESAMPLE)).astype(int)
    assert np.array_equal(result[:, 16:48], scaled)
    left, right = result[:, :16], result[:, 48:]
    assert np.all(left == left[:, :1]) and np.all(right == right[:, :1])  # every band column alike
    # That line is the edge, lightly smoothed by Lanczos: much closer to the edge column than to the middle.
    assert np.abs(left[:, 0] - scaled[:, 0]).mean() < np.abs(left[:, 0] - scaled[:, 16]).mean()
    assert np.abs(right[:, 0] - scaled[:, -1]).mean() < np.abs(right[:, 0] - scaled[:, 16]).mean()


def test_resize_and_fill_leaves_no_black_line_on_an_odd_leftover():
    image = Image.new("RGB", (100, 50), (200, 120, 40))
    result = np.asarray(resize_image(image, 64, 63, RESIZE_AND_FILL))
    assert np.all(result == (200, 120, 40))


def test_resize_keeps_a_mask_as_a_mask():
    mask = Image.new("L", (100, 40), 255)
    for mode in range(4):
        assert resize_image(mask, 64, 64, mode).mode == "L"


def test_palette_pictures_are_resampled_as_rgb():
    image = stripes([RED, BLUE], 20, 20).convert("P")
    assert resize_image(image, 16, 16, CROP_AND_RESIZE).mode == "RGB"


def test_unknown_mode_and_empty_size_are_refused():
    image = random_image(8, 8)
    with pytest.raises(ValueError):
        resize_image(image, 64, 64, 4)
    with pytest.raises(ValueError):
        resize_image(image, 0, 64, JUST_RESIZE)


@pytest.mark.parametrize(("value", "rounded"), [(512, 512), (511, 512), (515, 512), (516, 520), (3, 8), (0, 8),
                                                (12, 16), (1023.9, 1024)])
def test_round_to_multiple_of_8(value, rounded):
    assert round_to_multiple(value, 8) == rounded


def test_default_size_is_the_image_size_rounded_to_8():
    assert default_size_for(Image.new("RGB", (512, 768))) == (512, 768)
    assert default_size_for(Image.new("RGB", (510, 333))) == (512, 336)
    assert default_size_for(Image.new("RGB", (1023, 3))) == (1024, 8)


def test_flatten_lays_transparency_over_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    flat = flatten(image)
    assert flat.mode == "RGB"
    assert flat.getpixel((0, 0)) == BLUE and flat.getpixel((3, 3)) == (255, 255, 255)
