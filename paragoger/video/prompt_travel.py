"""Prompt travel: a prompt that changes over the frames of a video, written as the A1111 AnimateDiff extension
users write it::

    masterpiece, a meadow          <- head (optional): part of every frame's prompt
    0: spring, green grass
    8: summer, tall grass
    16: autumn, brown leaves
    highly detailed                <- tail (optional): part of every frame's prompt

Each ``N: text`` line is a key frame; every frame's conditioning is interpolated linearly between the two key
frames around it (before the first key: the first; after the last: the last, or - with a closed loop - on towards
the first key again, so a looping video also loops its prompt). A prompt without key lines is not a travel.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from paragoger.core.conditioning import TextConditioning

_KEY_LINE = re.compile(r"^\s*(\d+)\s*:\s*(.*?)\s*$")


@dataclass(frozen=True)
class PromptTravel:
    keys: tuple[tuple[int, str], ...]   # (frame, the whole prompt of that key frame), by frame

    @property
    def prompts(self) -> list[str]:
        return [prompt for _, prompt in self.keys]


def parse_prompt_travel(prompt: str, frames: int) -> PromptTravel | None:
    """The key frames of a travel prompt (head and tail joined to each), or None for an ordinary prompt. Key frames
    at or beyond ``frames`` are left out (they would never be reached); when a frame is given twice the later
    line wins; a plain line between key lines goes on with the key line above it."""
    lines = prompt.splitlines()
    key_rows = [i for i, line in enumerate(lines) if _KEY_LINE.match(line)]
    if not key_rows:
        return None
    head = _joined(lines[:key_rows[0]])
    tail = _joined(lines[key_rows[-1] + 1:])
    texts: dict[int, str] = {}
    frame = None
    for line in lines[key_rows[0]:key_rows[-1] + 1]:
        match = _KEY_LINE.match(line)
        if match:
            frame = int(match.group(1))
            texts[frame] = _joined([match.group(2)])
        elif line.strip():  # a line under a key frame goes on with that key's prompt
            texts[frame] = _joined([texts[frame], line])
    keys = {frame: _joined([head, text, tail])
            for frame, text in texts.items() if frame < frames}
    if not keys:
        return None
    return PromptTravel(tuple(sorted(keys.items())))


def _joined(lines: list[str]) -> str:
    """Lines of one prompt part joined with commas (a line's own trailing comma is not doubled)."""
    return ", ".join(part for line in lines if (part := line.strip().strip(",").strip()))


def frame_weights(travel: PromptTravel, frames: int, *, closed_loop: bool = False) -> list[list[tuple[int, float]]]:
    """For each frame, ``[(key index, weight), ...]`` summing to 1."""
    key_frames = [frame for frame, _ in travel.keys]
    count = len(key_frames)
    result = []
    for frame in range(frames):
        after = next((i for i, key in enumerate(key_frames) if key >= frame), None)
        if after is not None and key_frames[after] == frame:
            result.append([(after, 1.0)])
            continue
        before = after - 1 if after is not None else count - 1
        if after is None or before < 0:
            if not closed_loop or count == 1:
                result.append([(0 if after is not None else count - 1, 1.0)])
                continue
            # across the loop's end: from the last key frame on to the first one, which comes again after `frames`
            start, end = key_frames[-1], key_frames[0] + frames
            position = frame if frame >= start else frame + frames
            before, after = count - 1, 0
        else:
            start, end, position = key_frames[before], key_frames[after], frame
        t = (position - start) / (end - start)
        result.append([(before, 1.0 - t), (after, t)])
    return result


def interpolate(conditionings: list[TextConditioning], weights: list[list[tuple[int, float]]]) -> TextConditioning:
    """Per-frame conditioning (frames first) from each key frame's (one row each, padded to the same length)."""
    def mix(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([sum(tensors[key][0] * weight for key, weight in frame) for frame in weights])

    pooled = None
    if conditionings[0].pooled is not None:
        pooled = mix([c.pooled for c in conditionings])
    return TextConditioning(embeds=mix([c.embeds for c in conditionings]), pooled=pooled)
