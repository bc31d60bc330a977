"""Running the ffmpeg binary that imageio-ffmpeg's wheel bundles: always with a time limit, and with ffmpeg's own
complaint turned into a one-line reason a person can read.

imageio-ffmpeg's ``write_frames`` / ``read_frames`` generators are not used because they do not check ffmpeg's
exit status after writing and their frame reads can block without a limit; one ``subprocess.run`` per step, with
a ``timeout``, gives both.
"""
from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import imageio_ffmpeg

# Demuxers allowed to open a file we are given ("mov" also reads MP4/M4V/3GP, "matroska" also reads WebM/MKV).
# Without this list ffmpeg also accepts playlists (HLS, concat, ...) whose contents make it open other files or
# URLs named inside an upload.
VIDEO_DEMUXERS = "mov,matroska"
READABLE_CONTAINERS = "MP4, MOV, WebM, MKV; GIF and WebP are read by Pillow"
INPUT_PROTOCOLS = "file"
REASON_MAX_CHARS = 300
_LOG_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")
# Lines ffmpeg prints after the real complaint; they say that it failed, not why.
_GENERIC_LINES = ("Conversion failed!", "Error opening input files", "Nothing was written", "Task finished",
                  "Terminating thread", "Error while", "frame=", "size=", "Press [q]")
_OPENING_ERROR = re.compile(r"^Error opening input(?: files?)?: (.+)$")
_TRUNCATION_SIGNS = ("partial file", "File ended prematurely", "moov atom not found", "Truncating packet")


class FfmpegFailed(Exception):
    """ffmpeg exited with an error or ran out of time; ``reason`` is its complaint in one line."""

    def __init__(self, reason: str, *, timed_out: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


def run_ffmpeg(arguments: Sequence[str], *, timeout_s: float, stdin_bytes: bytes | None = None,
               ) -> tuple[bytes, str]:
    """Run ffmpeg with ``arguments``; returns (stdout, stderr text). Raises FfmpegFailed on a non-zero exit or
    when it runs longer than ``timeout_s`` (the process is killed then)."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", *arguments]
    try:
        completed = subprocess.run(command, input=stdin_bytes, capture_output=True, timeout=timeout_s,
                                   stdin=None if stdin_bytes is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise FfmpegFailed(f"ffmpeg took longer than {timeout_s:g} s and was stopped", timed_out=True) from None
    stderr = completed.stderr.decode("utf-8", errors="replace")
    if completed.returncode != 0:
        raise FfmpegFailed(failure_reason(stderr))
    return completed.stdout, stderr


def input_arguments(path: Path) -> list[str]:
    """``-i`` for a file we were given, limited to video containers and the file protocol. The ``file:`` prefix
    keeps a name that starts with "-" or holds a colon from being read as an option or a protocol."""
    return ["-format_whitelist", VIDEO_DEMUXERS, "-protocol_whitelist", INPUT_PROTOCOLS,
            "-i", f"file:{Path(path).resolve()}"]


def failure_reason(stderr: str) -> str:
    """The most telling line of ffmpeg's error output, without its ``[component @ 0x...]`` prefixes."""
    if "Format not on whitelist" in stderr:  # ffmpeg says only "Invalid argument" after it
        return f"its format is not one of those read here ({READABLE_CONTAINERS})"
    lines = [_LOG_PREFIX.sub("", line).strip() for line in re.split(r"[\r\n]+", stderr)]
    lines = [line for line in lines if line]
    # "Error opening input files: Invalid data found when processing input": the reason follows the colon.
    opening = [match.group(1) for line in lines if (match := _OPENING_ERROR.match(line))]
    telling = [line for line in lines if not line.startswith(_GENERIC_LINES)]
    chosen = (opening or telling or lines or ["ffmpeg failed without saying why"])[-1]
    return chosen[:REASON_MAX_CHARS].rstrip(".")


def reports_truncation(stderr: str) -> bool:
    """Whether ffmpeg met the end of the file inside a frame or before the container's index."""
    return any(sign in stderr for sign in _TRUNCATION_SIGNS)


def stream_section(stderr: str, heading: str) -> str | None:
    """The first ``Video:`` stream line in ffmpeg's report under ``heading`` ("Input #0" or "Output #0")."""
    start = stderr.find(heading)
    if start < 0:
        return None
    for line in stderr[start:].splitlines():
        if "Video:" in line:
            return line
    return None


def frame_size_in(stream_line: str) -> tuple[int, int] | None:
    # ", 64x48," or ", 64x48 [SAR ...": the comma keeps codec tags such as "0x31637661" out.
    match = re.search(r", (\d{1,5})x(\d{1,5})\b", stream_line)
    return (int(match.group(1)), int(match.group(2))) if match else None


def frame_rate_in(stream_line: str) -> float | None:
    """The stream's average frame rate ("8 fps", "29.97 fps"), else its base rate ("8 tbr")."""
    for unit in ("fps", "tbr"):
        match = re.search(rf"(\d+(?:\.\d+)?)(k?) {unit}\b", stream_line)
        if match:
            rate = float(match.group(1)) * (1000 if match.group(2) else 1)
            if rate > 0:
                return rate
    return None


def last_frame_count(stderr: str) -> int | None:
    """The frame number of ffmpeg's final progress line (``frame=   16 ...``)."""
    counts = re.findall(r"frame=\s*(\d+)", stderr)
    return int(counts[-1]) if counts else None
