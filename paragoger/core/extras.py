"""The Extras tab's work (A1111's "postprocessing"): enlarge pictures with one upscaler, optionally blended with
a second, and save them with the picture's own parameters plus the postprocess fields.

It runs as a job on the one worker (``context.queue``, kind ``extras``), so it never races a generation for the
device. The same ``ExtrasRequest`` comes from the Extras tab and from /sdapi/v1/extra-single-image and
/extra-batch-images, with A1111's field names.

Fields written (A1111's names): ``Postprocess upscale by: 2`` or ``Postprocess upscale to: 1024x768`` (with
``Postprocess crop to fit``), ``Postprocess upscaler``, ``Postprocess upscaler 2``. When the picture carried an
infotext they are added to the end of its parameters line, so the original prompt and settings stay readable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image, UnidentifiedImageError

from paragoger.core.batch import pictures_in
from paragoger.errors import UserError
from paragoger.imaging.infotext import MIN_PAIRS_FOR_PARAMETERS_LINE, PARAM_PAIR, format_parameters_line
from paragoger.imaging.metadata import read_infotext
from paragoger.imaging.saving import sanitize_filename_part, save_numbered

RESIZE_BY, RESIZE_TO = 0, 1
MAX_SCALE = 8.0                        # A1111's "Resize" slider goes to 8
MAX_TARGET_SIDE = 8192                 # A1111's "Width"/"Height" boxes in "Scale to"
MAX_OUTPUT_PIXELS = 64 * 1024 * 1024   # as large as an input picture may be
MAX_INPUT_PIXELS = 64 * 1024 * 1024


@dataclass
class ExtrasRequest:
    """A1111's postprocessing fields. ``images`` (with optional ``names``, the files they came from) or
    ``input_dir`` (batch from directory: read on the worker, one at a time) supply the pictures."""

    images: list[Image.Image] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    input_dir: Path | None = None
    output_dir: Path | None = None          # None: outputs/extras-images (setting outdir_extras_samples)
    resize_mode: int = RESIZE_BY            # 0 scale by, 1 scale to
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
    show_extras_results: bool = True
    save: bool = True
    gfpgan_visibility: float = 0.0          # face restoration: not available here (must stay 0)
    codeformer_visibility: float = 0.0
    codeformer_weight: float = 0.0
    upscale_first: bool = False             # only matters with face restoration
    # (width, height, in_width=, in_height=, message_id=) -> None or UserError: the app's pixel limit (setting
    # limit_image_pixels, core.checks.RequestCheck.check_pixels), for the pictures given and those read later
    check_pixels: Callable | None = None

    def validate(self, upscalers, check_pixels: Callable | None = None) -> "ExtrasRequest":
        """Everything that can be refused before queueing: unknown upscaler, absurd scale or size, no picture, an
        upscaled picture over the pixel limit (``check_pixels``, kept for pictures read from a folder later)."""
        if check_pixels is not None:
            self.check_pixels = check_pixels
        if not self.images and self.input_dir is None:
            raise UserError("extras_no_image")
        if self.resize_mode not in (RESIZE_BY, RESIZE_TO):
            raise UserError("extras_resize_mode_unknown", value=self.resize_mode)
        if self.resize_mode == RESIZE_BY and not 0 < self.upscaling_resize <= MAX_SCALE:
            raise UserError("extras_scale_out_of_range", high=f"{MAX_SCALE:g}", value=self.upscaling_resize)
        if self.resize_mode == RESIZE_TO and not (0 < self.upscaling_resize_w <= MAX_TARGET_SIDE
                                                  and 0 < self.upscaling_resize_h <= MAX_TARGET_SIDE):
            raise UserError("extras_size_out_of_range", high=MAX_TARGET_SIDE, width=self.upscaling_resize_w,
                            height=self.upscaling_resize_h)
        if not 0 <= self.extras_upscaler_2_visibility <= 1:
            raise UserError("extras_visibility_out_of_range", value=self.extras_upscaler_2_visibility)
        if self.gfpgan_visibility > 0 or self.codeformer_visibility > 0:
            raise UserError("extras_face_restoration_unavailable")
        upscalers.get(self.upscaler_1)
        upscalers.get(self.upscaler_2)
        for image in self.images:
            plan_size(self, image.size, upscalers.get(self.upscaler_1).name)
        return self


@dataclass
class ExtrasResult:
    images: list[Image.Image] = field(default_factory=list)      # each with its infotext in ``info``
    infotexts: list[str] = field(default_factory=list)           # what each saved file carries
    postprocess_texts: list[str] = field(default_factory=list)   # the postprocess fields alone (A1111 html_info)
    paths: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason), batch from directory
    interrupted: bool = False
    output_dir: Path | None = None


def plan_size(request: ExtrasRequest, size: tuple[int, int], upscaler_name: str):
    """(scale, enlarged size, final size) for a picture of ``size``; UserError when the result is too large."""
    width, height = size
    if request.resize_mode == RESIZE_TO:
        final = (int(request.upscaling_resize_w), int(request.upscaling_resize_h))
        scale = max(final[0] / width, final[1] / height)
    else:
        scale = float(request.upscaling_resize)
        final = None
    enlarged = (max(1, round(width * scale)), max(1, round(height * scale)))
    if request.check_pixels is not None:
        request.check_pixels(*enlarged, message_id="limit_pixels_upscale", in_width=width, in_height=height)
    if enlarged[0] * enlarged[1] > MAX_OUTPUT_PIXELS:
        raise UserError("upscale_too_large", name=upscaler_name, width=width, height=height,
                        out_width=enlarged[0], out_height=enlarged[1], limit=MAX_OUTPUT_PIXELS)
    if final is None or not request.upscaling_crop:
        final = enlarged  # A1111: "scale to" without cropping keeps the aspect ratio (one side may be larger)
    return scale, enlarged, final


def postprocess_picture(picture: Image.Image, request: ExtrasRequest, upscalers) -> tuple[Image.Image, dict]:
    """One picture through upscaler 1 (and 2, blended by its visibility); returns it with the postprocess fields.
    Upscaler 1 "None" leaves the picture as it is, as in A1111."""
    rgb = picture.convert("RGB")
    first = upscalers.get(request.upscaler_1)
    if first.name == "None":
        return rgb, {}
    scale, enlarged, final = plan_size(request, rgb.size, first.name)
    fields: dict[str, object] = {}
    if request.resize_mode == RESIZE_TO:
        fields["Postprocess upscale to"] = f"{request.upscaling_resize_w}x{request.upscaling_resize_h}"
        if request.upscaling_crop:
            fields["Postprocess crop to fit"] = True
    else:
        fields["Postprocess upscale by"] = f"{scale:g}"
    result = _exactly(first.upscale(rgb, scale), enlarged)
    fields["Postprocess upscaler"] = first.name
    second = upscalers.get(request.upscaler_2)
    if second.name != "None" and request.extras_upscaler_2_visibility > 0:
        other = _exactly(second.upscale(rgb, scale), enlarged)
        result = Image.blend(result, other, float(request.extras_upscaler_2_visibility))
        fields["Postprocess upscaler 2"] = second.name
    if final != enlarged:
        left, top = (enlarged[0] - final[0]) // 2, (enlarged[1] - final[1]) // 2
        result = result.crop((left, top, left + final[0], top + final[1]))
    return result, fields


def _exactly(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    picture = picture.convert("RGB")
    return picture if picture.size == size else picture.resize(size, resample=Image.Resampling.LANCZOS)


def with_postprocess_fields(original: str | None, fields: dict) -> str:
    """The infotext a postprocessed picture carries: its own, with the fields added to its parameters line."""
    line = format_parameters_line(fields)
    original = (original or "").strip()
    if not original or not line:
        return original or line
    last = original.split("\n")[-1]
    if len(PARAM_PAIR.findall(last)) >= MIN_PAIRS_FOR_PARAMETERS_LINE:
        return f"{original}, {line}"
    return f"{original}\n{line}"


def run_extras(request: ExtrasRequest, upscalers, *, output_dir: Path, extension: str = "png",
               jpeg_quality: int = 80, job=None) -> ExtrasResult:
    """Every picture of ``request`` through ``postprocess_picture``; saved under ``output_dir`` (or the request's
    own) as NNNNN.png, or NNNNN-<original name>.png for pictures that came from files."""
    result = ExtrasResult(output_dir=Path(request.output_dir or output_dir))
    sources = list(_sources(request))
    keep_images = request.input_dir is None or request.show_extras_results
    for index, (name, load) in enumerate(sources):
        if job is not None:
            if job.interrupted:
                result.interrupted = True
                break
            job.set_steps(index, len(sources), 1)
            job.progress.textinfo = f"{index + 1}/{len(sources)}" + (f": {name}" if name else "")
        try:
            picture = load()
            original = read_infotext(picture)
            image, fields = postprocess_picture(picture, request, upscalers)
        except UserError as err:
            if request.input_dir is None:
                raise
            result.skipped.append((name, str(err)))
            continue
        except (OSError, UnidentifiedImageError, ValueError) as err:
            result.skipped.append((name, f"not a readable picture ({type(err).__name__})"))
            continue
        infotext = with_postprocess_fields(original, fields)
        if infotext:
            image.info["parameters"] = infotext
        if request.save:
            decoration = sanitize_filename_part(Path(name).stem) if name else ""
            result.paths.append(save_numbered(image, infotext or None, folder=result.output_dir, basename="",
                                              decoration=decoration, extension=extension,
                                              jpeg_quality=jpeg_quality))
        result.infotexts.append(infotext)
        result.postprocess_texts.append(format_parameters_line(fields))
        if keep_images:
            result.images.append(image)
        if job is not None:
            job.set_step(1)
    return result


def _sources(request: ExtrasRequest):
    """(name, loader) per picture: uploaded pictures as they are, folder files opened when their turn comes."""
    if request.input_dir is not None:
        folder = Path(request.input_dir)
        if not folder.is_dir():
            raise UserError("batch_folder_missing", folder=str(folder))
        for path in pictures_in(folder):
            yield path.name, (lambda p=path: _open(p))
        return
    names = list(request.names) + [""] * (len(request.images) - len(request.names))
    for image, name in zip(request.images, names):
        yield name, (lambda i=image: i)


def _open(path: Path) -> Image.Image:
    with Image.open(path) as picture:
        if picture.width * picture.height > MAX_INPUT_PIXELS:
            raise UserError("image_too_large", field=path.name, limit=f"{MAX_INPUT_PIXELS} pixels")
        picture.load()
        return picture.copy()


def extras_output_dir(paths, settings) -> Path:
    """outputs/extras-images, or the folder the settings name (A1111's outdir_samples wins when set)."""
    return paths.outputs_dir / (settings["outdir_samples"] or settings["outdir_extras_samples"])
