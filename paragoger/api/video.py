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

from fastapi import Body, Request
from fastapi.concurrency import run_in_threadpool

from paragoger.core.request import GenerationRequest, GenerationResult
from paragoger.errors import UserError
from paragoger.imaging.transport import encode_png_base64
from paragoger.video.options import SCRIPT_TITLE, AnimateDiffOptions

VIDEO_FILE_FORMATS = ("GIF", "MP4", "WEBM", "WEBP")
BUILT_IN_SCRIPTS = ("animatediff",)  # what GET /sdapi/v1/scripts adds to each tab's list


def _script_args(scripts) -> tuple[str | None, object, dict]:
    """(the key the AnimateDiff script is under, its args, its one dict of settings) of ``alwayson_scripts``."""
    key = next((name for name in (scripts or {}) if str(name).lower() == SCRIPT_TITLE.lower()), None)
    if key is None:
        return None, None, {}
    entry = scripts[key]
    args = entry.get("args", []) if isinstance(entry, dict) else entry
    raw = args[0] if isinstance(args, list) and args else args if isinstance(args, dict) else {}
    return key, args, raw if isinstance(raw, dict) else {}


def has_video_source(scripts) -> bool:
    """Whether an img2img body's AnimateDiff settings name a source video (which then gives the picture)."""
    _, _, raw = _script_args(scripts)
    return bool(raw.get("enable", True)) and bool(raw.get("video_source") or raw.get("video_path"))


def take_animatediff(request: GenerationRequest, context) -> GenerationRequest:
    """The request with the AnimateDiff script's arguments moved from ``alwayson_scripts`` into
    ``request.animatediff`` (its title matched without regard to case, as A1111 matches script titles)."""
    scripts = dict(request.alwayson_scripts or {})
    key, args, raw = _script_args(scripts)
    if key is None:
        return request
    scripts.pop(key)
    options = AnimateDiffOptions.from_api(args)
    changes = {}
    if options.enable:
        limit = context.settings["limit_video_frames"]
        source = _source(raw.get("video_source"), raw.get("video_path"), context, limit, "video_source")
        if source is not None:
            options.video_source, options.video_source_fps = source.frames, source.fps
            if request.mode == "img2img" and not request.init_images:
                changes["init_images"] = [source.frames[0].convert("RGB")]
        mask = _source(None, raw.get("mask_path"), context, limit, "mask_path")
        if mask is not None:
            options.mask_frames = mask.frames
    return request.copy(alwayson_scripts=scripts, animatediff=options, **changes)


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


# ------------------------------------------------------------------------------------------ routes beyond A1111
SVD_FIELDS = ("model", "width", "height", "frames", "steps", "min_guidance_scale", "max_guidance_scale", "fps",
              "motion_bucket_id", "noise_aug_strength", "decode_chunk_size", "seed")
# Forge's SVD tab names a few of these differently; its names are accepted too.
SVD_ALIASES = {"video_frames": "frames", "sampling_steps": "steps", "min_cfg": "min_guidance_scale",
               "cfg": "max_guidance_scale", "motion_bucket": "motion_bucket_id",
               "augmentation_level": "noise_aug_strength",
               "sampling_seed": "seed", "svd_model": "model"}


def svd_payload(body: dict, context):
    """POST /sdapi/v1/svd's body -> SvdJob: ``image`` (base64), the SvdRequest fields (or Forge's names),
    ``format`` (list of video formats), ``video_fps`` (of the written file; default: fps), ``save_images``."""
    from paragoger.core.payloads import SvdJob
    from paragoger.imaging.transport import decode_image_base64
    from paragoger.video.files import VIDEO_FORMATS
    from paragoger.video.svd import SvdRequest

    if not isinstance(body, dict):
        raise UserError("video_option_invalid", name="body", value=type(body).__name__, allowed="a JSON object")
    image_data = body.get("image") or body.get("init_image")
    if not image_data:
        raise UserError("svd_no_picture")
    values = {}
    for key, value in body.items():
        name = SVD_ALIASES.get(key, key)
        if name in SVD_FIELDS and value is not None:
            values[name] = value
    for name in SVD_FIELDS:
        if name in values and name != "model":
            kind = float if name in ("min_guidance_scale", "max_guidance_scale", "noise_aug_strength") else int
            from paragoger.video.options import _coerced
            values[name] = _coerced(name, values[name], kind)
    request = SvdRequest(image=decode_image_base64(image_data, field="image").convert("RGB"), **values).validate()
    limit = context.settings["limit_video_frames"]
    if request.frames is not None and request.frames > limit:
        raise UserError("video_frames_out_of_range", frames=request.frames, high=limit)
    formats = body.get("format") or ["MP4"]
    formats = [formats] if isinstance(formats, str) else list(formats)
    unknown = [f for f in formats if str(f).upper() not in VIDEO_FORMATS]
    if unknown:
        raise UserError("video_format_unknown", format=unknown[0], known=", ".join(VIDEO_FORMATS))
    fps = body.get("video_fps") or request.fps
    return SvdJob(request=request, formats=tuple(str(f).upper() for f in formats),
                  fps=float(_coerced_fps(fps)), save=bool(body.get("save_images", True)))


def _coerced_fps(value):
    from paragoger.video.options import _coerced

    fps = _coerced("video_fps", value, float)
    if not 0 < fps <= 120:
        raise UserError("video_option_invalid", name="video_fps", value=value, allowed="1 to 120")
    return fps


def svd_response(output, formats) -> dict:
    """The answer to /svd: each video file (base64) in ``videos`` and in ``images`` (as the AnimateDiff answer
    puts them), the frames when "PNG" was asked, and the infotext."""
    videos = []
    if output.video is not None:
        videos = [base64.b64encode(Path(output.video.files[fmt]).read_bytes()).decode("ascii")
                  for fmt in formats if fmt in VIDEO_FILE_FORMATS and fmt in output.video.files]
    frames = [encode_png_base64(frame, output.infotext) for frame in output.frames] if "PNG" in formats else []
    files = {fmt: str(path) for fmt, path in output.video.files.items()} if output.video and not output.scratch_dirs \
        else {}
    answer = {"videos": videos, "images": videos + frames, "info": output.infotext, "seed": output.seed,
              "interrupted": output.interrupted, "files": files}
    for folder in output.scratch_dirs:
        shutil.rmtree(folder, ignore_errors=True)
    return answer


def add_routes(router, context, wait_for) -> None:
    """GET /motion-modules, /svd-models; POST /svd (``"async": true`` answers a job id, as txt2img does)."""
    @router.get("/motion-modules")
    def motion_modules():
        library = context.motion_modules.library
        library.refresh()
        return [{"name": info.name, "title": info.title, "path": str(info.path)} for info in library.entries()]

    @router.get("/svd-models")
    def svd_models():
        return [{"name": entry.name, "path": str(entry.path), "format": entry.format}
                for entry in context.svd.library.entries()]

    @router.post("/svd")
    async def svd(http_request: Request, body: dict = Body(...)):
        payload = await run_in_threadpool(lambda: svd_payload(body, context))
        return await wait_for(http_request, payload, lambda output: svd_response(output, payload.formats),
                              bool(body.get("async")))
