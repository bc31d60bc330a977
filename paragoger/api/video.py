"""Video over HTTP: the A1111 AnimateDiff extension's contract on /sdapi/v1/txt2img and /img2img.

A request carries ``"alwayson_scripts": {"AnimateDiff": {"args": [{...}]}}``: one dict of the extension's
settings (``video.options.AnimateDiffOptions``), with the source video for video to video as base64
(``video_source``) or as a path inside the data folder (``video_path``, a file or a folder of frames; ``mask_path``
likewise). The answer is the extension's: ``images`` holds each video file asked for (GIF, MP4, WEBM, WEBP: base64
of the file's bytes, in the order asked), then the frames as PNGs when "PNG" is among the formats.
"""
from __future__ import annotations

import base64
import binascii
import shutil
from pathlib import Path

from paragoger.core.request import GenerationRequest, GenerationResult
from paragoger.errors import UserError
from paragoger.imaging.transport import encode_png_base64
from paragoger.video.options import SCRIPT_TITLE, AnimateDiffOptions

VIDEO_FILE_FORMATS = ("GIF", "MP4", "WEBM", "WEBP")


def take_animatediff(request: GenerationRequest, context) -> GenerationRequest:
    """The request with the AnimateDiff script's arguments moved from ``alwayson_scripts`` into
    ``request.animatediff`` (its title matched without regard to case, as A1111 matches script titles)."""
    scripts = dict(request.alwayson_scripts or {})
    key = next((name for name in scripts if str(name).lower() == SCRIPT_TITLE.lower()), None)
    if key is None:
        return request
    entry = scripts.pop(key)
    args = entry.get("args", []) if isinstance(entry, dict) else entry
    options = AnimateDiffOptions.from_api(args)
    raw = args[0] if isinstance(args, list) and args else args if isinstance(args, dict) else {}
    if options.enable:
        limit = context.settings["limit_video_frames"]
        source = _source(raw.get("video_source"), raw.get("video_path"), context, limit, "video_source")
        if source is not None:
            options.video_source, options.video_source_fps = source.frames, source.fps
        mask = _source(None, raw.get("mask_path"), context, limit, "mask_path")
        if mask is not None:
            options.mask_frames = mask.frames
    return request.copy(alwayson_scripts=scripts, animatediff=options)


def _source(data, path, context, limit: int, field: str):
    from paragoger.video.files import read_video

    if data:
        if isinstance(data, str) and data.startswith("data:"):
            data = data.split(",", 1)[-1]
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError, TypeError):
            raise UserError("video_not_base64", field=field) from None
        return read_video(raw, max_frames=limit, name=field)
    if path:
        folder = context.paths.inside_data_dir({field: Path(str(path))})[field]
        if not folder.exists():
            raise UserError("video_path_missing", field=field, path=str(path))
        return read_video(folder, max_frames=limit, name=Path(str(path)).name)
    return None


def video_images(result: GenerationResult) -> list[str]:
    """``images`` of a video answer: each video file, then the frames when PNG frames were asked for."""
    options = result.request.animatediff
    formats = [fmt.upper() for fmt in options.format]
    images = []
    for saved in result.videos:
        if saved is None:
            continue
        for fmt in formats:
            if fmt in VIDEO_FILE_FORMATS and fmt in saved.files:
                images.append(base64.b64encode(Path(saved.files[fmt]).read_bytes()).decode("ascii"))
    if "PNG" in formats:
        images += [encode_png_base64(item.image, item.infotext) for item in result.images]
    return images


def forget_scratch(result: GenerationResult) -> None:
    """Videos written only to answer (the request did not ask to save): removed once encoded."""
    for folder in result.scratch_dirs:
        shutil.rmtree(folder, ignore_errors=True)
