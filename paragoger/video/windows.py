"""Context windows: which frames the motion module sees together, so a video may be longer than the frames a
motion module was trained on (16 for most, at most its position table: 24 or 32).

A window is a list of frame indices. Windows of ``size`` frames start every ``size - overlap`` frames; with
``stride`` above 1, windows are also taken over every 2nd, 4th ... frame (up to ``2 ** (stride - 1)``), so far
apart frames share a window and the video keeps one motion across windows. Each frame's prediction is the average
of the predictions of every window that holds it (``WindowedMotionUNet`` averages). Without a closed loop the last
window ends on the last frame; with one, windows wrap around the end so the last frames are denoised together with
the first and the video loops without a jump.

These are the A1111 AnimateDiff extension's controls ("Context batch size", "Stride", "Overlap", "Closed loop")
with the meaning stated here; the windows themselves are this module's own rule, fixed for every step.
"""
from __future__ import annotations

CLOSED_LOOP_CHOICES = ("N", "R-P", "R+P", "A")  # the extension's values; anything but "N" closes the loop


def default_overlap(size: int) -> int:
    """The extension's "-1": a quarter of the window."""
    return size // 4


def context_windows(frames: int, size: int, *, stride: int = 1, overlap: int = -1,
                    closed_loop: bool = False) -> list[list[int]]:
    """The windows covering ``frames`` frames (every frame is in at least one window)."""
    if frames < 1 or size < 1:
        raise ValueError("frames and window size must be positive")
    if frames <= size:
        return [list(range(frames))]
    overlap = default_overlap(size) if overlap < 0 else min(overlap, size - 1)
    windows: list[list[int]] = []
    for level in range(max(1, stride)):
        step = 2 ** level
        if step * (size - 1) >= frames:  # a window this sparse would not fit in the video
            break
        for offset in range(step):  # every phase of a sparse stride, so each frame is covered at each level
            windows += _windows_at(offset, step, frames, size, overlap, closed_loop)
    return _unique(windows)


def _windows_at(offset: int, step: int, frames: int, size: int, overlap: int, closed_loop: bool) -> list[list[int]]:
    """Windows over the frames offset, offset + step, offset + 2 step, ... (a "strided" sub-video)."""
    positions = list(range(offset, frames, step))
    count = len(positions)
    if count <= size:
        return [positions]
    advance = size - overlap
    if closed_loop:  # a window starts every ``advance`` frames all the way round; the last ones wrap
        return [[positions[(start + i) % count] for i in range(size)] for start in range(0, count, advance)]
    windows, start = [], 0
    while start + size < count:
        windows.append(positions[start:start + size])
        start += advance
    windows.append(positions[count - size:])  # the last window ends on the last frame
    return windows


def _unique(windows: list[list[int]]) -> list[list[int]]:
    seen, kept = set(), []
    for window in windows:
        key = tuple(window)
        if key not in seen:
            seen.add(key)
            kept.append(window)
    return kept
