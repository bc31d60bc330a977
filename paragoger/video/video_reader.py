"""Reading a source video (video to video, mask videos): MP4 / WebM / MOV / MKV through the bundled ffmpeg, GIF and
animated WebP through Pillow, or a folder of frames. Frames are counted before they are decoded, so a video over
the limit is refused without decoding it; every failure is a UserError with the reason, never an ffmpeg trace.
"""
from __future__ import annotations

import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from paragoger.errors import UserError
from paragoger.video.ffmpeg_runner import (FfmpegFailed, frame_rate_in, frame_size_in, input_arguments,
                                           last_frame_count, reports_truncation, run_ffmpeg,
                                           stream_section)

# A folder of frames has no frame rate; the A1111 AnimateDiff extension's default fps is 8.
DEFAULT_FPS = 8.0
FRAME_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp"})
PROBE_TIMEOUT_S = 30.0
# Decoding time grows with the frame count; the base covers ffmpeg's start and slow disks.
DECODE_TIMEOUT_BASE_S = 60.0
DECODE_TIMEOUT_PER_FRAME_S = 0.5
RGB_BYTES = 3


@dataclass
class SourceVideo:
    frames: list[Image.Image]  # RGB, all the same size
    fps: float


def read_video(source: Path | bytes, *, max_frames: int, name: str = "video") -> SourceVideo:
    """The frames and frame rate of a video file, its bytes (an upload), or a folder of frames."""
    if isinstance(source, (bytes, bytearray)):
        return _read_bytes(bytes(source), max_frames=max_frames, name=name)
    path = Path(source)
    if path.is_dir():
        return _read_frame_folder(path, max_frames=max_frames, name=name)
    if not path.is_file():
        raise UserError("video_unreadable", name=name, reason="there is no such file or folder")
    with open(path, "rb") as file:
        head = file.read(16)
    if not head:
        raise UserError("video_unreadable", name=name, reason="the file is empty")
    if _is_pillow_animation(head):
        return _read_animation(path, max_frames=max_frames, name=name)
    return _read_with_ffmpeg(path, max_frames=max_frames, name=name)


def video_info(path: Path) -> tuple[int, float]:
    """(frame count, fps) of a video file or folder of frames, without decoding a container's frames."""
    path = Path(path)
    if path.is_dir():
        return len(_frame_files(path)), DEFAULT_FPS
    with open(path, "rb") as file:
        head = file.read(16)
    if _is_pillow_animation(head):
        with Image.open(path) as image:
            durations = []
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                image.load()  # WebP sets a frame's duration only when the frame is loaded
                durations.append(image.info.get("duration", 0))
        return len(durations), _fps_from_durations(durations)
    return _probe(path, name=path.name)


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders "2.png" before "10.png": runs of digits compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def _is_pillow_animation(head: bytes) -> bool:
    return head[:6] in (b"GIF87a", b"GIF89a") or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _read_bytes(data: bytes, *, max_frames: int, name: str) -> SourceVideo:
    if not data:
        raise UserError("video_unreadable", name=name, reason="the file is empty")
    if _is_pillow_animation(data[:16]):
        return _read_animation(io.BytesIO(data), max_frames=max_frames, name=name)
    # ffmpeg seeks in MP4 files (the index may sit at the end), so the bytes go to a file rather than a pipe.
    descriptor, temporary = tempfile.mkstemp(prefix="paragoger-video-", suffix=".video")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        return _read_with_ffmpeg(Path(temporary), max_frames=max_frames, name=name)
    finally:
        os.unlink(temporary)


def _read_animation(source: Path | BinaryIO, *, max_frames: int, name: str) -> SourceVideo:
    try:
        with Image.open(source) as image:
            count = getattr(image, "n_frames", 1)
            _check_count(count, max_frames, name)
            frames, durations = [], []
            for index in range(count):
                image.seek(index)
                frames.append(image.convert("RGB"))
                durations.append(image.info.get("duration", 0))
    except (UnidentifiedImageError, OSError, EOFError, SyntaxError, ValueError) as error:
        raise UserError("video_unreadable", name=name, reason=_pillow_reason(error)) from None
    return SourceVideo(frames=frames, fps=_fps_from_durations(durations))


def _pillow_reason(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):  # its message names a file object, not the video
        return "the image data is not in a known format"
    if isinstance(error, EOFError):
        return "the file ends before its last frame (truncated)"
    return (str(error) or type(error).__name__).rstrip(".")


def _fps_from_durations(durations: list[float]) -> float:
    """Frames per second from per-frame durations in ms; frames without a duration don't count."""
    timed = [duration for duration in durations if duration and duration > 0]
    return 1000.0 / (sum(timed) / len(timed)) if timed else DEFAULT_FPS


def _frame_files(folder: Path) -> list[Path]:
    files = [entry for entry in folder.iterdir()
             if entry.is_file() and entry.suffix.lower() in FRAME_EXTENSIONS and not entry.name.startswith(".")]
    return sorted(files, key=lambda entry: natural_key(entry.name))


def _read_frame_folder(folder: Path, *, max_frames: int, name: str) -> SourceVideo:
    files = _frame_files(folder)
    if not files:
        raise UserError("video_folder_empty", name=name)
    _check_count(len(files), max_frames, name)
    frames = []
    for file in files:
        try:
            with Image.open(file) as image:
                frames.append(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise UserError("video_unreadable", name=f"{name}/{file.name}", reason=_pillow_reason(error)) from None
        if frames[-1].size != frames[0].size:
            raise UserError("video_frame_sizes_differ", index=len(frames) - 1, size=_size_text(frames[-1].size),
                            first=_size_text(frames[0].size))
    return SourceVideo(frames=frames, fps=DEFAULT_FPS)


def _probe(path: Path, *, name: str) -> tuple[int, float]:
    """Frame count and fps by copying the video stream to nowhere: packets are counted, nothing is decoded."""
    try:
        _, report = run_ffmpeg([*input_arguments(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"],
                               timeout_s=PROBE_TIMEOUT_S)
    except FfmpegFailed as failure:
        raise UserError("video_unreadable", name=name, reason=_reason(failure, path, name)) from None
    if reports_truncation(report):
        raise UserError("video_unreadable", name=name, reason="the file is cut short (truncated)")
    count = last_frame_count(report) or 0
    stream = stream_section(report, "Input #0")
    if count == 0 or stream is None:
        raise UserError("video_unreadable", name=name, reason="it holds no video frames")
    return count, frame_rate_in(stream) or DEFAULT_FPS


def _read_with_ffmpeg(path: Path, *, max_frames: int, name: str) -> SourceVideo:
    count, fps = _probe(path, name=name)
    _check_count(count, max_frames, name)
    # passthrough: each decoded frame once, as counted; the default would duplicate or drop frames of a video
    # with a variable frame rate to make it constant.
    arguments = [*input_arguments(path), "-map", "0:v:0", "-frames:v", str(count), "-fps_mode", "passthrough",
                 "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    try:
        raw, report = run_ffmpeg(arguments, timeout_s=DECODE_TIMEOUT_BASE_S + DECODE_TIMEOUT_PER_FRAME_S * count)
    except FfmpegFailed as failure:
        raise UserError("video_unreadable", name=name, reason=_reason(failure, path, name)) from None
    # The decoded size, not the stored one: ffmpeg turns phone videos upright, swapping width and height.
    size = frame_size_in(stream_section(report, "Output #0") or "")
    frame_bytes = size[0] * size[1] * RGB_BYTES if size else 0
    if not frame_bytes or len(raw) < frame_bytes:
        raise UserError("video_unreadable", name=name, reason="no frame could be decoded")
    frames = [Image.frombytes("RGB", size, raw[start:start + frame_bytes])
              for start in range(0, len(raw) - frame_bytes + 1, frame_bytes)]
    return SourceVideo(frames=frames, fps=fps)


def _reason(failure: FfmpegFailed, path: Path, name: str) -> str:
    """ffmpeg's complaint, naming the video as the person knows it rather than by our (temporary) path."""
    location = str(path.resolve())
    return failure.reason.replace(f"file:{location}", name).replace(location, name)


def _check_count(count: int, max_frames: int, name: str) -> None:
    if count > max_frames:
        raise UserError("video_too_many_frames", name=name, count=count, limit=max_frames)


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
