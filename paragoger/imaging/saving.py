"""Saving generated images under A1111's folder and file names, atomically and without number collisions.

Layout (A1111 defaults: save to date subfolders, number every file)::

    outputs/txt2img-images/2024-05-01/00000-1234.png    5-digit number, then the filename pattern ([seed])
    outputs/txt2img-grids/2024-05-01/grid-0000.png      grids: "grid-" and a 4-digit number, as A1111 does

The number is one more than the largest leading number in the folder (A1111's rule; gaps are not reused).

Why a crash or a concurrent save cannot hurt: the image is encoded into a hidden reservation file
``.NNNNN.partial`` created with O_EXCL, fsynced, then renamed onto the final name with ``os.replace``. The
reservation name depends only on the number, so two savers (threads or processes) can never hold the same number,
and the final name only ever appears complete. A crash leaves at most a hidden ``.partial`` file, whose number is
then skipped.
"""
from __future__ import annotations

import datetime
import os
from pathlib import Path

from PIL import Image

from paragoger.imaging.metadata import image_format_for, write_image

RESERVATION_SUFFIX = ".partial"
GRID_BASENAME = "grid"
DATE_FOLDER_FORMAT = "%Y-%m-%d"
# A1111 gives up after 500 candidate names too; reaching it means something else keeps taking numbers.
MAX_NUMBER_ATTEMPTS = 500
# Characters that are invalid in file names on Windows or would create folders (A1111 replaces the same set).
INVALID_FILENAME_CHARS = '<>:"/\\|?*\n\r\t'
MAX_FILENAME_PART_LENGTH = 128


def save_image(image: Image.Image, infotext: str | None, *, outdir: Path, seed: int, extension: str = "png",
               jpeg_quality: int = 80, webp_lossless: bool = False, date: datetime.date | None = None,
               filename_pattern: str = "[seed]") -> Path:
    """Save one generated image as ``outdir/YYYY-MM-DD/NNNNN-<pattern>.<ext>`` with its infotext; returns the path.

    ``filename_pattern`` understands ``[seed]`` and ``[date]``; other ``[tags]`` stay as written (as in A1111).
    An empty pattern gives plain ``NNNNN.<ext>``.
    """
    date = date or datetime.date.today()
    decoration = expand_filename_pattern(filename_pattern, seed=seed, date=date)
    return save_numbered(image, infotext, folder=date_folder(outdir, date), basename="", decoration=decoration,
                         extension=extension, jpeg_quality=jpeg_quality, webp_lossless=webp_lossless)


def save_grid(grid: Image.Image, infotext: str | None, *, outdir: Path, extension: str = "png",
              jpeg_quality: int = 80, webp_lossless: bool = False, date: datetime.date | None = None) -> Path:
    """Save a grid as ``outdir/YYYY-MM-DD/grid-NNNN.<ext>`` (A1111's default grid name: 4 digits, no seed)."""
    folder = date_folder(outdir, date or datetime.date.today())
    return save_numbered(grid, infotext, folder=folder, basename=GRID_BASENAME, decoration="",
                         extension=extension, jpeg_quality=jpeg_quality, webp_lossless=webp_lossless)


def date_folder(outdir: Path, date: datetime.date) -> Path:
    return Path(outdir) / date.strftime(DATE_FOLDER_FORMAT)


def expand_filename_pattern(pattern: str, *, seed: int, date: datetime.date) -> str:
    replaced = pattern.replace("[seed]", str(seed)).replace("[date]", date.strftime(DATE_FOLDER_FORMAT))
    return sanitize_filename_part(replaced)


def sanitize_filename_part(text: str) -> str:
    """Make ``text`` safe inside a file name on every OS: no path separators or reserved characters, no leading
    spaces, no trailing spaces or dots (Windows drops those silently), at most 128 characters."""
    cleaned = text.translate({ord(char): "_" for char in INVALID_FILENAME_CHARS})
    return cleaned.lstrip(" ")[:MAX_FILENAME_PART_LENGTH].rstrip(" .")


def numbered_stem(number: int, basename: str) -> str:
    """``00012`` for images, ``grid-0012`` for a named series: A1111 uses 5 digits without a basename, 4 with."""
    return f"{number:05}" if basename == "" else f"{basename}-{number:04}"


def sequence_number_of(filename: str, basename: str = "") -> int | None:
    """The leading number of a file in a ``basename`` series (A1111's rule), counting our reservations too."""
    if filename.startswith(".") and filename.endswith(RESERVATION_SUFFIX):
        stem = filename[1:-len(RESERVATION_SUFFIX)]
    else:
        stem = os.path.splitext(filename)[0]
    prefix = f"{basename}-" if basename else ""
    if not stem.startswith(prefix):
        return None
    first_part = stem[len(prefix):].split("-")[0]
    try:
        return int(first_part)
    except ValueError:
        return None


def next_sequence_number(folder: Path, basename: str = "") -> int:
    """One more than the largest number used in ``folder`` for the series (0 for an empty or missing folder)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    numbers = [number for name in names if (number := sequence_number_of(name, basename)) is not None]
    return max(numbers, default=-1) + 1


def save_numbered(image: Image.Image, infotext: str | None, *, folder: Path, basename: str, decoration: str,
                  extension: str, jpeg_quality: int = 80, webp_lossless: bool = False) -> Path:
    """Save under the next free number of the series; see the module docstring for the atomicity argument."""
    image_format = image_format_for(extension)  # fail before touching the disk
    extension = extension.lower().lstrip(".")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    reservation, number = reserve_number(folder, basename)
    stem = numbered_stem(number, basename)
    final = folder / (f"{stem}-{decoration}.{extension}" if decoration else f"{stem}.{extension}")
    _write_then_rename(image, infotext, reservation, final, image_format=image_format, quality=jpeg_quality,
                       lossless=webp_lossless)
    return final


def save_as(image: Image.Image, infotext: str | None, path: Path, *, jpeg_quality: int = 80,
            webp_lossless: bool = False) -> Path:
    """Save under exactly ``path`` (batch img2img keeps the input's name), atomically like numbered saves."""
    path = Path(path)
    image_format = image_format_for(path.suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}{RESERVATION_SUFFIX}")
    _write_then_rename(image, infotext, temporary, path, image_format=image_format, quality=jpeg_quality,
                       lossless=webp_lossless)
    return path


def _write_then_rename(image, infotext, temporary: Path, final: Path, *, image_format: str, quality: int,
                       lossless: bool) -> None:
    """Write into ``temporary`` (fsynced), then rename onto ``final``: a crash never leaves a half-written image
    under the final name; on failure the temporary file is removed."""
    try:
        with open(temporary, "wb") as file:
            write_image(image, file, image_format=image_format, infotext=infotext, quality=quality,
                        lossless=lossless)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(final.parent)


def reserve_number(folder: Path, basename: str = "") -> tuple[Path, int]:
    """Create the empty reservation file of a number nobody else holds; returns it and the number. The caller
    renames it onto its final file, or deletes it once its files are in place (videos write several)."""
    number = next_sequence_number(folder, basename)
    for _ in range(MAX_NUMBER_ATTEMPTS):
        reservation = folder / f".{numbered_stem(number, basename)}{RESERVATION_SUFFIX}"
        try:
            os.close(os.open(reservation, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            number += 1
            continue
        # A saver that finished between our scan and our O_EXCL has already renamed its reservation to a final
        # file with this number; check again now that we hold the reservation.
        if not _number_taken(folder, basename, number, ignore=reservation.name):
            return reservation, number
        reservation.unlink(missing_ok=True)
        number = max(number + 1, next_sequence_number(folder, basename))
    raise FileExistsError(f"no free file number in {folder} after {MAX_NUMBER_ATTEMPTS} attempts")


def _number_taken(folder: Path, basename: str, number: int, *, ignore: str) -> bool:
    return any(sequence_number_of(name, basename) == number for name in os.listdir(folder) if name != ignore)


def fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; Windows cannot open folders, and NTFS journals renames anyway.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
