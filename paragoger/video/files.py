"""Video files: writing a generated video in the formats the A1111 AnimateDiff extension offers, and (re-exported
from ``video_reader``) reading a source video.

Layout: ``outdir/YYYY-MM-DD/NNNNN-<seed>.mp4`` (and .webm, .gif, .webp, .txt, and the folder ``NNNNN-<seed>/`` of
PNG frames), numbered in the same sequence as pictures saved by ``imaging.saving``, so a picture and a video in one
folder never share a number; all formats of one video share one number.

Why a crash or a failure cannot leave a broken video under a final name: the number is reserved first (the same
hidden ``.NNNNN.partial`` reservation file as pictures), every format is written to its own hidden temporary
``.<final name>.partial``, fsynced, and only when all of them are written are they renamed onto their final names;
a failure removes the temporaries (and any file already renamed) and raises. A crash leaves at most hidden
``.partial`` files, whose number is then skipped.
"""
from __future__ import annotations

import datetime
import os
import shutil
from types import MappingProxyType
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from paragoger.errors import UserError
from paragoger.imaging.metadata import exif_with_user_comment, write_image
from paragoger.imaging.saving import RESERVATION_SUFFIX, date_folder, fsync_folder, numbered_stem, reserve_number
from paragoger.video.ffmpeg_runner import FfmpegFailed, run_ffmpeg
from paragoger.video.video_reader import DEFAULT_FPS, SourceVideo, natural_key, read_video, video_info

__all__ = ["VIDEO_FORMATS", "SavedVideo", "save_video", "SourceVideo", "read_video", "video_info", "DEFAULT_FPS",
           "natural_key"]

# The A1111 AnimateDiff extension's format names; "TXT" is the infotext file alone.
VIDEO_FORMATS = ("MP4", "WEBM", "GIF", "WEBP", "PNG", "TXT")
# PNG frames go into a folder named by the stem, so PNG has no extension here.
EXTENSIONS = MappingProxyType({"MP4": "mp4", "WEBM": "webm", "GIF": "gif", "WEBP": "webp", "TXT": "txt"})
WEBP_QUALITY = 90
# x264 CRF 18 is visually lossless for most content; VP9's CRF scale differs (31 is its recommended middle for
# this size class). "good" deadline with cpu-used 4 keeps VP9 encoding within seconds for short clips on a CPU.
MP4_CODEC_ARGUMENTS = ("-c:v", "libx264", "-preset", "medium", "-crf", "18", "-movflags", "+faststart")
WEBM_CODEC_ARGUMENTS = ("-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "31", "-deadline", "good", "-cpu-used", "4",
                        "-row-mt", "1")
ENCODE_TIMEOUT_BASE_S = 60.0
ENCODE_TIMEOUT_PER_MEGAPIXEL_FRAME_S = 10.0
FPS_MAX_DENOMINATOR = 1001  # keeps NTSC rates such as 30000/1001 exact


@dataclass
class SavedVideo:
    files: dict[str, Path]  # format -> path written ("PNG" -> the folder of frames; "TXT" -> the .txt)
    stem: str  # "NNNNN-<seed>"
    frames: int
    fps: float


def save_video(frames: list[Image.Image], *, outdir: Path, seed: int, fps: float, formats: Sequence[str],
               infotext: str | None, date: datetime.date | None = None, loop: int = 0) -> SavedVideo:
    """Write ``frames`` in each of ``formats`` (names from VIDEO_FORMATS, any case) under one new number, plus a
    .txt with the infotext whenever there is one (as A1111 does). One frame is a valid video. ``loop``: how often
    a GIF or WebP plays (0 = forever, the A1111 extension's "loop number")."""
    chosen = _checked_formats(formats)
    rgb_frames = _checked_frames(frames)
    if not fps or fps <= 0:
        raise UserError("video_fps_invalid", fps=fps)
    to_write = [name for name in chosen if name != "TXT"] + (["TXT"] if infotext is not None else [])
    folder = date_folder(outdir, date or datetime.date.today())
    folder.mkdir(parents=True, exist_ok=True)
    reservation, number = reserve_number(folder)
    stem = f"{numbered_stem(number, '')}-{seed}"
    pending: list[tuple[str, Path, Path]] = []  # (format, temporary, final)
    committed: list[Path] = []
    try:
        for name in to_write:
            final = folder / (stem if name == "PNG" else f"{stem}.{EXTENSIONS[name]}")
            temporary = folder / f".{final.name}{RESERVATION_SUFFIX}"
            pending.append((name, temporary, final))
            WRITERS[name](rgb_frames, temporary, fps=fps, infotext=infotext, loop=int(loop))
        for _, temporary, final in pending:
            os.replace(temporary, final)
            committed.append(final)
    except BaseException:
        for _, temporary, _ in pending:
            _remove(temporary)
        for final in committed:
            _remove(final)
        raise
    finally:
        reservation.unlink(missing_ok=True)
    fsync_folder(folder)
    return SavedVideo(files={name: final for name, _, final in pending}, stem=stem, frames=len(rgb_frames),
                      fps=float(fps))


def _checked_formats(formats: Sequence[str]) -> list[str]:
    """Upper-cased, without repeats, in the given order; every name checked before anything touches the disk."""
    chosen: list[str] = []
    for name in formats:
        upper = str(name).strip().upper()
        if upper not in VIDEO_FORMATS:
            raise UserError("video_format_unknown", format=name, known=", ".join(VIDEO_FORMATS))
        if upper not in chosen:
            chosen.append(upper)
    if not chosen:
        raise UserError("video_no_formats", known=", ".join(VIDEO_FORMATS))
    return chosen


def _checked_frames(frames: Sequence[Image.Image]) -> list[Image.Image]:
    if not frames:
        raise UserError("video_no_frames")
    first = frames[0].size
    for index, frame in enumerate(frames):
        if frame.size != first:
            raise UserError("video_frame_sizes_differ", index=index, size=f"{frame.size[0]}x{frame.size[1]}",
                            first=f"{first[0]}x{first[1]}")
    return [frame if frame.mode == "RGB" else frame.convert("RGB") for frame in frames]


def _frame_duration_ms(fps: float) -> int:
    return max(1, round(1000 / fps))


def _write_with_ffmpeg(frames: list[Image.Image], temporary: Path, *, fps: float, infotext: str | None,
                       codec_arguments: Sequence[str], muxer: str, even_size: bool) -> None:
    arrays = [np.asarray(frame) for frame in frames]
    if even_size:
        # H.264 in yuv420p needs an even width and height (its crop field counts in 2-pixel steps, so a crop cannot
        # hide the extra line). An odd size is padded by repeating the last column/row, never rescaled: a 65x47
        # video is stored as 66x48 whose extra column and row copy their neighbours. VP9 takes odd sizes as they are.
        height, width = arrays[0].shape[:2]
        padding = ((0, height % 2), (0, width % 2), (0, 0))
        if any(after for _, after in padding):
            arrays = [np.pad(array, padding, mode="edge") for array in arrays]
    height, width = arrays[0].shape[:2]
    raw = b"".join(np.ascontiguousarray(array).tobytes() for array in arrays)
    rate = Fraction(fps).limit_denominator(FPS_MAX_DENOMINATOR)
    arguments = ["-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                 "-framerate", str(rate), "-i", "pipe:0", "-an", *codec_arguments, "-pix_fmt", "yuv420p"]
    if infotext:
        arguments += ["-metadata", f"comment={infotext}"]
    arguments += ["-f", muxer, f"file:{temporary.resolve()}"]
    megapixel_frames = len(arrays) * width * height / 1e6
    timeout = ENCODE_TIMEOUT_BASE_S + ENCODE_TIMEOUT_PER_MEGAPIXEL_FRAME_S * megapixel_frames
    try:
        run_ffmpeg(arguments, timeout_s=timeout, stdin_bytes=raw)
    except FfmpegFailed as failure:
        raise UserError("video_write_failed", format=muxer.upper(), reason=failure.reason) from None
    _fsync_file(temporary)


def _write_mp4(frames, temporary: Path, *, fps: float, infotext: str | None, loop: int = 0) -> None:
    _write_with_ffmpeg(frames, temporary, fps=fps, infotext=infotext, codec_arguments=MP4_CODEC_ARGUMENTS,
                       muxer="mp4", even_size=True)


def _write_webm(frames, temporary: Path, *, fps: float, infotext: str | None, loop: int = 0) -> None:
    _write_with_ffmpeg(frames, temporary, fps=fps, infotext=infotext, codec_arguments=WEBM_CODEC_ARGUMENTS,
                       muxer="webm", even_size=False)


def _write_gif(frames, temporary: Path, *, fps: float, infotext: str | None, loop: int = 0) -> None:
    # GIF stores durations in hundredths of a second, so 125 ms reads back as 120 ms. Pillow merges a frame
    # identical to the one before into it (adding the durations): the video looks and lasts the same.
    options = {"comment": infotext.encode("utf-8")} if infotext else {}
    with open(temporary, "wb") as file:
        frames[0].save(file, format="GIF", save_all=True, append_images=frames[1:],
                       duration=_frame_duration_ms(fps), loop=loop, **options)
        _flush_to_disk(file)


def _write_webp(frames, temporary: Path, *, fps: float, infotext: str | None, loop: int = 0) -> None:
    # Pillow passes ``exif`` to libwebp's muxer for animations too; the EXIF UserComment is where A1111 reads an
    # infotext in WebP pictures (imaging/metadata.py).
    options = {"exif": exif_with_user_comment(infotext)} if infotext else {}
    with open(temporary, "wb") as file:
        frames[0].save(file, format="WEBP", save_all=True, append_images=frames[1:],
                       duration=_frame_duration_ms(fps), loop=loop, lossless=False, quality=WEBP_QUALITY,
                       **options)
        _flush_to_disk(file)


def _write_png_frames(frames, temporary: Path, *, fps: float, infotext: str | None, loop: int = 0) -> None:
    temporary.mkdir()
    for index, frame in enumerate(frames):
        with open(temporary / f"{index:05}.png", "wb") as file:
            write_image(frame, file, image_format="PNG", infotext=infotext)
            _flush_to_disk(file)
    fsync_folder(temporary)


def _write_txt(frames, temporary: Path, *, fps: float, infotext: str | None, loop: int = 0) -> None:
    with open(temporary, "w", encoding="utf-8", newline="\n") as file:
        file.write(infotext or "")
        _flush_to_disk(file)


WRITERS: MappingProxyType[str, Callable[..., None]] = MappingProxyType({
    "MP4": _write_mp4, "WEBM": _write_webm, "GIF": _write_gif, "WEBP": _write_webp, "PNG": _write_png_frames,
    "TXT": _write_txt,
})


def _flush_to_disk(file) -> None:
    file.flush()
    os.fsync(file.fileno())


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as file:  # Windows refuses fsync on a file opened read-only
        os.fsync(file.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
