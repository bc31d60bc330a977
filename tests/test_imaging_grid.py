"""Batch grids laid out like A1111's, and labelled grids for plots."""
import pytest
from PIL import Image

from paragoger.imaging.grid import annotate_grid, grid_shape, load_label_font, make_grid

WHITE = (255, 255, 255)


@pytest.mark.parametrize(("count", "shape"), [
    (1, (1, 1)), (2, (1, 2)), (3, (2, 2)), (4, (2, 2)), (5, (2, 3)), (6, (2, 3)), (7, (3, 3)), (9, (3, 3)),
    (10, (3, 4)), (16, (4, 4)),
])
def test_auto_layout_matches_a1111(count, shape):
    assert grid_shape(count) == shape


@pytest.mark.parametrize(("count", "shape"), [(6, (2, 3)), (7, (1, 7)), (8, (2, 4)), (9, (3, 3)), (12, (3, 4))])
def test_prevent_empty_spots_uses_a_divisor(count, shape):
    assert grid_shape(count, prevent_empty_spots=True) == shape


def test_explicit_rows_are_kept_but_never_exceed_the_image_count():
    assert grid_shape(6, rows=3) == (3, 2)
    assert grid_shape(2, rows=5) == (2, 1)


def test_empty_grid_is_refused():
    with pytest.raises(ValueError):
        grid_shape(0)


def test_grid_places_images_row_by_row_and_leaves_empty_cells_white():
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    grid = make_grid([Image.new("RGB", (10, 20), color) for color in colors])
    assert grid.size == (20, 40) and grid.mode == "RGB"
    assert grid.getpixel((5, 10)) == colors[0]
    assert grid.getpixel((15, 10)) == colors[1]
    assert grid.getpixel((5, 30)) == colors[2]
    assert grid.getpixel((15, 30)) == WHITE


def test_smaller_images_are_centred_in_their_cell():
    grid = make_grid([Image.new("RGB", (10, 10), "black"), Image.new("RGBA", (4, 4), (255, 0, 0, 255))])
    assert grid.size == (20, 10)
    assert grid.getpixel((15, 5)) == (255, 0, 0)
    assert grid.getpixel((11, 1)) == WHITE


def test_annotated_grid_has_label_bands_with_text():
    grid = make_grid([Image.new("RGB", (128, 128), "gray") for _ in range(4)], rows=2)
    annotated = annotate_grid(grid, cell_width=128, cell_height=128, column_labels=["CFG 5", "CFG 7"],
                              row_labels=["Euler", "a much longer sampler name that wraps"])
    top = annotated.height - grid.height
    left = annotated.width - grid.width
    assert top > 0 and 0 < left <= 128 + 20
    assert annotated.crop((left, top, annotated.width, annotated.height)).tobytes() == grid.tobytes()
    for column in range(2):
        band = annotated.crop((left + column * 128, 0, left + (column + 1) * 128, top))
        assert band.getextrema() != ((255, 255),) * 3, "a column label was drawn"
    for row in range(2):
        band = annotated.crop((0, top + row * 128, left, top + (row + 1) * 128))
        assert band.getextrema() != ((255, 255),) * 3, "a row label was drawn"


def test_annotation_without_labels_changes_nothing():
    grid = Image.new("RGB", (64, 64), "gray")
    assert annotate_grid(grid, cell_width=64, cell_height=64).tobytes() == grid.tobytes()


def test_label_font_handles_non_latin_text():
    font = load_label_font(20)
    assert font.getlength("Ünïcødé 日本") > 0


def test_row_labels_of_small_cells_keep_their_longest_word_whole():
    from PIL import Image

    from paragoger.imaging.grid import _text_width, annotate_grid, default_label_font_size, load_label_font

    grid = Image.new("RGB", (64, 128), "gray")
    annotated = annotate_grid(grid, cell_width=64, cell_height=64, row_labels=["CFG Scale: 3", "CFG Scale: 9"])
    font = load_label_font(default_label_font_size(64, 64))
    assert annotated.width - 64 >= _text_width("Scale:", font)
