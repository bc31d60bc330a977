"""Image grids: the batch grid A1111 saves after a generation, and labelled grids for X/Y/Z plots."""
from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

GRID_BACKGROUND = "#ffffff"  # A1111's default grid background
LABEL_TEXT_COLOR = "#000000"
LABEL_FONT_FILE = "DejaVuSans.ttf"  # found by name in the system font folders on most Linux installs
LINE_SPACING = 1.2


def grid_shape(count: int, rows: int | None = None, *, prevent_empty_spots: bool = False) -> tuple[int, int]:
    """(rows, columns) for ``count`` images, as A1111 lays them out with its default "rows: auto" setting.

    Auto rows = ``round(sqrt(count))`` (Python rounding), so 4 images give 2x2, 6 give 2x3, 2 give 1x2 and 3 give
    2x2 with one empty cell. ``prevent_empty_spots`` instead takes the largest divisor of ``count`` not above
    ``floor(sqrt(count))`` (A1111's "prevent empty spots" option). Rows never exceed ``count``; columns are
    whatever is needed to fit the rest.
    """
    if count <= 0:
        raise ValueError("a grid needs at least one image")
    if rows is None:
        if prevent_empty_spots:
            rows = math.isqrt(count)
            while count % rows:
                rows -= 1
        else:
            rows = round(math.sqrt(count))
    rows = max(1, min(rows, count))
    return rows, math.ceil(count / rows)


def make_grid(images: Sequence[Image.Image], rows: int | None = None, *, prevent_empty_spots: bool = False,
              background: str = GRID_BACKGROUND) -> Image.Image:
    """All ``images`` in one RGB image, row by row. Cells take the largest width and height among the images;
    a smaller image is centred in its cell, as in A1111."""
    rows, columns = grid_shape(len(images), rows, prevent_empty_spots=prevent_empty_spots)
    cell_width = max(image.width for image in images)
    cell_height = max(image.height for image in images)
    grid = Image.new("RGB", (columns * cell_width, rows * cell_height), background)
    for index, image in enumerate(images):
        left = index % columns * cell_width + (cell_width - image.width) // 2
        top = index // columns * cell_height + (cell_height - image.height) // 2
        grid.paste(image.convert("RGB") if image.mode != "RGB" else image, (left, top))
    return grid


def load_label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans when the system has it (covers most scripts people type), else Pillow's bundled default."""
    try:
        return ImageFont.truetype(LABEL_FONT_FILE, size)
    except OSError:
        return ImageFont.load_default(size=size)


def default_label_font_size(cell_width: int, cell_height: int) -> int:
    # About 1/12 of the cell's mean side: 40 px on a 512 px cell, readable in a zoomed-out plot, not covering.
    return max(10, (cell_width + cell_height) // 25)


def annotate_grid(grid: Image.Image, *, cell_width: int, cell_height: int, column_labels: Sequence[str] = (),
                  row_labels: Sequence[str] = (), font_size: int | None = None, background: str = GRID_BACKGROUND,
                  text_color: str = LABEL_TEXT_COLOR) -> Image.Image:
    """A new image: ``grid`` with column labels in a band on top and row labels in a band on the left.

    Labels are wrapped at word boundaries to their cell's width (row labels to the left band, which is as wide as
    the longest label needs, at most one cell unless a single word is wider) and centred. Empty label lists leave that band out.
    """
    font = load_label_font(font_size or default_label_font_size(cell_width, cell_height))
    padding = max(2, getattr(font, "size", 10) // 2)
    line_height = _line_height(font)

    column_lines = [_wrap(label, font, cell_width - 2 * padding) for label in column_labels]
    left_width = 0
    if row_labels:
        widest = max(_text_width(label, font) for label in row_labels)
        # Never narrower than the longest single word, which cannot be wrapped (small cells would cut it).
        longest_word = max(_text_width(word, font) for label in row_labels for word in (label.split() or [""]))
        left_width = max(min(widest, cell_width), longest_word) + 2 * padding
    row_lines = [_wrap(label, font, left_width - 2 * padding) for label in row_labels]
    top_height = max((len(lines) for lines in column_lines), default=0) * line_height
    top_height += 2 * padding if column_labels else 0

    annotated = Image.new("RGB", (grid.width + left_width, grid.height + top_height), background)
    annotated.paste(grid.convert("RGB"), (left_width, top_height))
    draw = ImageDraw.Draw(annotated)
    for index, lines in enumerate(column_lines):
        box = (left_width + index * cell_width, 0, cell_width, top_height)
        _draw_centred(draw, lines, box, font, line_height, text_color)
    for index, lines in enumerate(row_lines):
        box = (0, top_height + index * cell_height, left_width, cell_height)
        _draw_centred(draw, lines, box, font, line_height, text_color)
    return annotated


def _text_width(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    return math.ceil(font.getlength(text))


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    left, top, right, bottom = font.getbbox("Ag")
    return math.ceil((bottom - min(top, 0)) * LINE_SPACING)


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap; a single word wider than ``width`` keeps its own line rather than being cut."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            candidate = f"{current} {word}" if current else word
            if current and _text_width(candidate, font) > width:
                lines.append(current)
                current = word
            else:
                current = candidate
        lines.append(current)
    return lines


def _draw_centred(draw: ImageDraw.ImageDraw, lines: list[str], box: tuple[int, int, int, int],
                  font: ImageFont.FreeTypeFont | ImageFont.ImageFont, line_height: int, color: str) -> None:
    left, top, width, height = box
    y = top + (height - len(lines) * line_height) // 2
    for line in lines:
        x = left + (width - _text_width(line, font)) // 2
        draw.text((x, y), line, font=font, fill=color)
        y += line_height
