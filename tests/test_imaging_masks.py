"""Inpaint masks as A1111 reads, blurs, crops and pastes them; masked-content fill; inpaint sketch masks."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from paragoger.imaging.masks import (FILL, INPAINT_AREAS, LATENT_NOISE, LATENT_NOTHING, MASK_MODES, MASKED_CONTENT,
                                     ORIGINAL, blur_mask, composite_whole, crop_for_inpaint, fill_masked_area,
                                     inpaint_sketch_mask, mask_bounding_box, paste_back, prepare_mask)

MAGENTA = (255, 0, 255)


def random_image(width, height, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def rectangle_mask(size, box, level=255):
    mask = Image.new("L", size, 0)
    mask.paste(level, box)
    return mask


def levels(image):
    return np.asarray(image).astype(int)


def test_labels_are_a1111_in_api_order():
    assert MASKED_CONTENT == ("fill", "original", "latent noise", "latent nothing")
    assert (FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING) == (0, 1, 2, 3)
    assert INPAINT_AREAS == ("Whole picture", "Only masked")
    assert MASK_MODES == ("Inpaint masked", "Inpaint not masked")


# ---- reading ----------------------------------------------------------------------------------------------------

def test_editor_layer_is_read_by_its_alpha_whatever_the_brush_colour():
    layer = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    layer.paste((255, 0, 0, 255), (0, 0, 10, 20))   # red stroke, opaque
    layer.paste((0, 0, 0, 200), (10, 0, 20, 20))    # black stroke, mostly opaque
    layer.paste((255, 255, 255, 100), (20, 0, 30, 20))  # faint white: under half opaque
    mask = prepare_mask(layer)
    assert mask.mode == "L"
    assert [mask.getpixel((x, 10)) for x in (5, 15, 25, 35)] == [255, 255, 0, 0]


def test_uploaded_black_and_white_mask_keeps_its_grey_levels():
    upload = Image.new("RGB", (30, 10), (0, 0, 0))
    upload.paste((255, 255, 255), (0, 0, 10, 10))
    upload.paste((100, 100, 100), (10, 0, 20, 10))
    mask = prepare_mask(upload)
    assert [mask.getpixel((x, 5)) for x in (5, 15, 25)] == [255, 100, 0]


def test_opaque_rgba_upload_is_read_by_brightness_not_alpha():
    upload = Image.new("RGBA", (20, 10), (0, 0, 0, 255))
    upload.paste((255, 255, 255, 255), (0, 0, 10, 10))
    mask = prepare_mask(upload)
    assert mask.getpixel((5, 5)) == 255 and mask.getpixel((15, 5)) == 0


def test_inverted_mask():
    mask = prepare_mask(rectangle_mask((20, 20), (5, 5, 15, 15)), invert=True)
    assert mask.getpixel((10, 10)) == 0 and mask.getpixel((1, 1)) == 255


def test_inverting_comes_before_the_blur():
    mask = prepare_mask(rectangle_mask((80, 80), (20, 20, 60, 60)), invert=True, blur=4)
    assert mask.getpixel((0, 0)) == 255 and mask.getpixel((40, 40)) == 0
    assert 0 < mask.getpixel((20, 30)) < 255


# ---- blur -------------------------------------------------------------------------------------------------------

def test_mask_blur_softens_the_edge():
    hard = rectangle_mask((100, 100), (30, 30, 70, 70))
    soft = levels(prepare_mask(hard, blur=4))
    row = soft[50]
    assert row[50] == 255 and row[0] == 0
    assert 0 < row[30] < 255 and 0 < row[29] < 255  # both sides of the old edge are now in between
    assert np.all(np.diff(row[15:50]) >= 0)  # a ramp up to the inside
    radius = int(2.5 * 4 + 0.5)  # A1111's kernel half-width for blur 4
    assert row[30 - radius - 1] == 0 and row[30 - radius + 2] > 0


def test_mask_blur_matches_opencv_as_a1111_calls_it():
    cv2 = pytest.importorskip("cv2")
    mask = Image.new("L", (120, 90), 0)
    draw = ImageDraw.Draw(mask)
    draw.ellipse((20, 15, 90, 70), fill=255)
    draw.rectangle((0, 0, 6, 89), fill=180)
    for blur in (1, 4, 8):
        kernel = 2 * int(2.5 * blur + 0.5) + 1
        expected = cv2.GaussianBlur(np.asarray(mask), (kernel, 1), blur)
        expected = cv2.GaussianBlur(expected, (1, kernel), blur)
        difference = np.abs(levels(blur_mask(mask, blur)) - expected.astype(int))
        assert difference.max() <= 2 and difference.mean() < 0.25


def test_mask_blur_can_differ_along_x_and_y():
    soft = levels(prepare_mask(rectangle_mask((80, 60), (20, 20, 60, 40)), blur=(4, 0)))
    assert 0 < soft[30, 20] < 255  # the left edge is soft
    assert soft[19, 40] == 0 and soft[20, 40] == 255  # the top edge is still hard


def test_no_blur_leaves_the_mask_as_read():
    hard = rectangle_mask((30, 30), (5, 5, 25, 25))
    assert np.array_equal(levels(prepare_mask(hard)), levels(hard))


# ---- only masked: box, crop, paste back -------------------------------------------------------------------------

def test_only_masked_box_has_padding_and_target_aspect():
    # A1111's own example: a 128x32 mask region processed at 512x512 becomes 128x128.
    mask = rectangle_mask((512, 512), (200, 300, 328, 332))
    assert mask_bounding_box(mask, 0, 512, 512) == (200, 252, 328, 380)
    # 16 px of padding: 160x64, grown evenly to 160x160.
    assert mask_bounding_box(mask, 16, 512, 512) == (184, 236, 344, 396)
    # A 3:2 generation size: the box takes 3:2 too.
    x1, y1, x2, y2 = mask_bounding_box(mask, 16, 768, 512)
    assert (x2 - x1, y2 - y1) == (160, 106) and (x1, x2) == (184, 344)  # 160/1.5 = 106.67, truncated as A1111


def test_only_masked_box_of_a_tall_mask_grows_sideways():
    mask = rectangle_mask((512, 512), (250, 100, 260, 300))
    assert mask_bounding_box(mask, 0, 512, 512) == (155, 100, 355, 300)


def test_only_masked_box_is_shifted_back_inside_the_picture():
    mask = rectangle_mask((512, 512), (100, 0, 300, 20))
    assert mask_bounding_box(mask, 8, 512, 512) == (92, 0, 308, 216)
    mask = rectangle_mask((512, 512), (0, 490, 40, 512))
    assert mask_bounding_box(mask, 0, 512, 512) == (0, 472, 40, 512)


def test_only_masked_box_is_cut_at_the_picture_when_the_ratio_cannot_fit():
    mask = rectangle_mask((100, 40), (0, 0, 100, 40))
    assert mask_bounding_box(mask, 0, 512, 512) == (0, 0, 100, 40)


def test_only_masked_box_uses_the_blurred_mask():
    blurred = prepare_mask(rectangle_mask((200, 200), (90, 90, 110, 110)), blur=4)
    x1, y1, x2, y2 = mask_bounding_box(blurred, 0, 512, 512)
    assert x1 < 90 and x2 > 110 and (x2 - x1) == (y2 - y1)


def test_empty_mask_has_no_box():
    assert mask_bounding_box(Image.new("L", (64, 64), 0), 32, 512, 512) is None


def test_crop_for_inpaint_brings_the_box_to_the_generation_size():
    image = random_image(256, 256)
    mask = rectangle_mask((256, 256), (100, 100, 140, 120))
    box = mask_bounding_box(mask, 8, 512, 512)
    image_crop, mask_crop = crop_for_inpaint(image, mask, box, 512, 512)
    assert image_crop.size == (512, 512) and image_crop.mode == "RGB"
    assert mask_crop.size == (512, 512) and mask_crop.mode == "L"
    assert mask_crop.getpixel((256, 256)) == 255 and mask_crop.getpixel((2, 2)) == 0
    expected = image.crop(box).resize((512, 512), Image.Resampling.LANCZOS)
    assert np.abs(levels(image_crop) - levels(expected)).max() <= 1


def test_paste_back_leaves_pixels_outside_the_padded_box_unchanged():
    original = random_image(256, 192, seed=1)
    hard = Image.new("L", original.size, 0)
    ImageDraw.Draw(hard).ellipse((100, 70, 150, 110), fill=255)
    blurred = prepare_mask(hard, blur=4)
    box = mask_bounding_box(blurred, 32, 512, 512)
    generated = Image.new("RGB", (512, 512), MAGENTA)

    result = levels(paste_back(original, generated, blurred, box))
    before, mask = levels(original), levels(blurred)

    x1, y1, x2, y2 = box
    inside = np.zeros(mask.shape, dtype=bool)
    inside[y1:y2, x1:x2] = True
    assert inside.sum() < inside.size / 2  # the box really leaves most of the picture outside
    assert np.array_equal(result[~inside], before[~inside])  # every pixel outside the box, exactly
    assert np.array_equal(result[mask == 0], before[mask == 0])  # unmasked pixels inside the box, exactly
    assert np.all(result[mask == 255] == MAGENTA)  # fully masked pixels are the generated ones
    partly = (mask > 0) & (mask < 255)
    assert partly.any() and not np.array_equal(result[partly], before[partly])


def test_paste_back_ignores_mask_outside_the_box():
    original = random_image(100, 100, seed=2)
    everywhere = Image.new("L", original.size, 255)
    box = (40, 40, 60, 60)
    result = levels(paste_back(original, Image.new("RGB", (64, 64), MAGENTA), everywhere, box))
    assert np.all(result[40:60, 40:60] == MAGENTA)
    outside = np.ones((100, 100), dtype=bool)
    outside[40:60, 40:60] = False
    assert np.array_equal(result[outside], levels(original)[outside])


def test_composite_whole_lays_the_original_back_with_the_doubled_mask():
    original = Image.new("RGB", (40, 10), (0, 0, 0))
    generated = Image.new("RGB", (40, 10), (200, 200, 200))
    mask = Image.new("L", (40, 10), 0)
    for index, level in enumerate((0, 64, 128, 255)):
        mask.paste(level, (index * 10, 0, index * 10 + 10, 10))
    result = composite_whole(original, generated, mask)
    assert [result.getpixel((x, 5))[0] for x in (5, 15, 25, 35)] == [0, 100, 200, 200]


def test_composite_whole_needs_one_size():
    with pytest.raises(ValueError):
        composite_whole(random_image(16, 16), random_image(32, 32), Image.new("L", (16, 16)))


# ---- masked content ---------------------------------------------------------------------------------------------

def test_fill_paints_the_hole_with_surrounding_colours():
    image = Image.new("RGB", (128, 64), (220, 30, 30))
    image.paste((30, 30, 220), (64, 0, 128, 64))  # red left half, blue right half
    image.paste((0, 255, 0), (16, 16, 48, 48))  # green content inside the red half, to be masked away
    mask = rectangle_mask(image.size, (12, 12, 52, 52))
    filled = levels(fill_masked_area(image, mask, FILL))
    hole = filled[12:52, 12:52]
    assert np.all(hole[..., 0] > 150) and np.all(hole[..., 1] < 60)  # reddish, no green left
    assert hole[20, 20, 2] < 120  # the centre is mostly red, with at most a hint of the far blue
    outside = levels(mask) == 0
    assert np.array_equal(filled[outside], levels(image)[outside])


def test_fill_of_a_hole_in_a_flat_colour_is_that_colour():
    image = Image.new("RGB", (64, 64), (90, 160, 40))
    image.paste((0, 0, 0), (20, 20, 40, 40))
    filled = levels(fill_masked_area(image, rectangle_mask(image.size, (20, 20, 40, 40)), FILL))
    assert np.abs(filled - (90, 160, 40)).max() <= 2


def test_fill_blends_where_the_mask_is_partial():
    image = random_image(64, 64, seed=4)
    mask = prepare_mask(rectangle_mask(image.size, (20, 20, 44, 44)), blur=4)
    filled = levels(fill_masked_area(image, mask, FILL))
    partly = (levels(mask) > 0) & (levels(mask) < 255)
    assert not np.array_equal(filled[partly], levels(image)[partly])


def test_latent_masked_content_also_gets_the_pixel_fill_and_original_does_not():
    image = random_image(48, 48, seed=5)
    mask = rectangle_mask(image.size, (10, 10, 30, 30))
    fill = levels(fill_masked_area(image, mask, FILL))
    for mode in (LATENT_NOISE, LATENT_NOTHING):
        assert np.array_equal(levels(fill_masked_area(image, mask, mode)), fill)
    assert np.array_equal(levels(fill_masked_area(image, mask, ORIGINAL)), levels(image))


def test_fully_masked_fill_is_black_as_in_a1111():
    image = random_image(32, 32)
    filled = fill_masked_area(image, Image.new("L", image.size, 255), FILL)
    assert np.all(levels(filled) == 0)


def test_unknown_masked_content_is_refused():
    with pytest.raises(ValueError):
        fill_masked_area(random_image(8, 8), Image.new("L", (8, 8)), 4)


# ---- inpaint sketch ---------------------------------------------------------------------------------------------

def test_inpaint_sketch_mask_is_where_colour_was_painted():
    original = random_image(80, 60, seed=6)
    sketched = original.copy()
    ImageDraw.Draw(sketched).line((10, 10, 70, 50), fill=(255, 255, 0), width=5)
    mask = inpaint_sketch_mask(original, sketched, 0)
    painted = np.any(levels(sketched) != levels(original), axis=-1)
    assert mask.mode == "L" and painted.sum() > 100
    assert np.array_equal(levels(mask) == 255, painted)
    assert set(np.unique(levels(mask))) == {0, 255}


def test_inpaint_sketch_threshold_ignores_small_changes():
    original = Image.new("RGB", (10, 10), (100, 100, 100))
    sketched = original.copy()
    sketched.putpixel((2, 2), (103, 100, 100))  # a faint touch
    sketched.putpixel((7, 7), (100, 180, 100))  # a real stroke
    assert inpaint_sketch_mask(original, sketched, 0).getpixel((2, 2)) == 255
    strict = inpaint_sketch_mask(original, sketched, 5)
    assert strict.getpixel((2, 2)) == 0 and strict.getpixel((7, 7)) == 255


def test_inpaint_sketch_needs_one_size():
    with pytest.raises(ValueError):
        inpaint_sketch_mask(random_image(8, 8), random_image(9, 8), 0)
