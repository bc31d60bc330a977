"""Batch img2img: every picture in an input folder (with an optional mask folder) through the same request, each
result saved under the input's own name in an output folder. A file that cannot be read or processed is
reported and skipped; the others go on.

ControlNet: a unit without a picture of its own takes each input picture (as in img2img). With a ControlNet input
folder, the picture there with the input's file stem becomes the first enabled unit's picture for that input
(sd-webui-controlnet's batch mode, simplified: one folder, for the first enabled unit only); an input with no such
picture keeps what the unit would take otherwise."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from paragoger.errors import UserError
from paragoger.imaging.saving import save_as

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class BatchReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (file name, reason)
    interrupted: bool = False


@dataclass
class BatchRequest:
    """A batch job: the img2img request every picture goes through, and the folders."""

    template: object
    input_dir: Path
    output_dir: Path
    mask_dir: Path | None = None
    control_dir: Path | None = None


def pictures_in(folder: Path) -> list[Path]:
    return sorted(path for path in Path(folder).iterdir() if path.suffix.lower() in PICTURE_SUFFIXES)


def _open(path: Path) -> Image.Image:
    with Image.open(path) as picture:
        picture.load()
        return picture.copy()


def _same_stem(picture: Path, folder: Path | None) -> Path | None:
    """A1111 pairs a picture with the mask of the same name (any picture extension) in the mask folder; the
    ControlNet input folder is paired the same way."""
    if folder is None:
        return None
    for suffix in PICTURE_SUFFIXES:
        candidate = Path(folder) / (picture.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def _with_control_picture(template, picture: Image.Image | None):
    """``template`` with ``picture`` as its first enabled ControlNet unit's picture (a copy of the unit list)."""
    if picture is None:
        return template
    units = list(template.controlnet_units)
    index = next(index for index, unit in enumerate(units) if unit.enabled)
    units[index] = units[index].copy(image=picture)
    return template.copy(controlnet_units=units)


def run_batch(engine, template, job, *, input_dir: Path, output_dir: Path, mask_dir: Path | None = None,
              control_dir: Path | None = None, extension: str = "png") -> BatchReport:
    """``template`` is an img2img request without pictures; each file becomes one request from it.
    ``control_dir``: the first enabled ControlNet unit's pictures, by the input's file stem."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    for folder in (input_dir, control_dir):
        if folder is not None and not Path(folder).is_dir():
            raise UserError("batch_folder_missing", folder=str(folder))
    if control_dir is not None and not any(unit.enabled for unit in template.controlnet_units):
        raise UserError("batch_control_folder_no_unit")
    report = BatchReport()
    files = pictures_in(input_dir)
    for index, path in enumerate(files):
        if job.interrupted:
            report.interrupted = True
            break
        job.progress.textinfo = f"{index + 1}/{len(files)}: {path.name}"
        try:
            picture = _open(path).convert("RGB")
            mask_path = _same_stem(path, mask_dir)
            mask = _open(mask_path) if mask_path else None
            control_path = _same_stem(path, control_dir)
            request = _with_control_picture(template, _open(control_path).convert("RGB") if control_path else None)
            result = engine.generate(request.copy(init_images=[picture], mask=mask, save_images=False), job)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            report.skipped.append((path.name, f"not a readable picture ({type(err).__name__})"))
            continue
        except UserError as err:
            report.skipped.append((path.name, str(err)))
            continue
        for number, item in enumerate(result.images):
            suffix = f"-{number}" if len(result.images) > 1 else ""
            report.written.append(save_as(item.image, item.infotext, output_dir / f"{path.stem}{suffix}.{extension}"))
    return report
