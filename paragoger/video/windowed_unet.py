"""The motion UNet called once per context window, with the predictions of overlapping windows averaged.

``core.denoise`` calls this exactly as it calls a picture's UNet: ``unet(sample, t, encoder_hidden_states=...,
added_cond_kwargs=..., return_dict=False)``. Here ``sample`` is ``[copies, channels, frames, h, w]`` (one copy
per prompt of the guidance) and ``encoder_hidden_states`` holds one row per copy and frame, copy-major (diffusers'
AnimateDiffPipeline order); each window takes its frames out of both, and out of ControlNet's residuals (one row
per copy and frame, in the same order) when the loop's hooks give them.
"""
from __future__ import annotations

from typing import Callable

import torch


class WindowedMotionUNet:
    def __init__(self, unet, windows: list[list[int]], frames: int,
                 on_window: Callable[[int, int], None] | None = None):
        self.unet = unet
        self.windows = windows
        self.frames = frames
        self.on_window = on_window   # (window number from 1, windows) before each window: progress text
        self.config = unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def __call__(self, sample: torch.Tensor, timestep, *, encoder_hidden_states: torch.Tensor,
                 added_cond_kwargs: dict | None = None, return_dict: bool = False, **kwargs):
        copies, frames = sample.shape[0], self.frames
        embeds = encoder_hidden_states.reshape(copies, frames, *encoder_hidden_states.shape[1:])
        added = _per_copy(added_cond_kwargs, copies, frames)
        if len(self.windows) == 1 and len(self.windows[0]) == frames and self.windows[0] == list(range(frames)):
            if self.on_window:
                self.on_window(1, 1)
            return (self._call(sample, timestep, encoder_hidden_states, added, kwargs),)
        total = None
        counts = torch.zeros(frames, device=sample.device, dtype=sample.dtype)
        for number, window in enumerate(self.windows, start=1):
            if self.on_window:
                self.on_window(number, len(self.windows))
            index = torch.tensor(window, device=sample.device)
            window_embeds = embeds[:, index].reshape(copies * len(window), *embeds.shape[2:])
            prediction = self._call(sample[:, :, index], timestep, window_embeds, added,
                                    _window_kwargs(kwargs, copies, frames, index))
            if total is None:
                total = torch.zeros(copies, prediction.shape[1], frames, *prediction.shape[3:],
                                    device=prediction.device, dtype=prediction.dtype)
            total.index_add_(2, index, prediction)
            counts.index_add_(0, index, torch.ones(len(window), device=counts.device, dtype=counts.dtype))
        return (total / counts.to(total.dtype).view(1, 1, frames, 1, 1),)

    def _call(self, sample, timestep, embeds, added, kwargs) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states=embeds, added_cond_kwargs=added,
                         return_dict=False, **kwargs)[0]


# UNet keyword arguments holding one row per copy and frame (ControlNet residuals), sliced like the text per window
PER_FRAME_KWARGS = ("down_block_additional_residuals", "mid_block_additional_residual")


def _window_kwargs(kwargs: dict, copies: int, frames: int, index: torch.Tensor) -> dict:
    def window(tensor: torch.Tensor) -> torch.Tensor:
        rows = tensor.reshape(copies, frames, *tensor.shape[1:])[:, index]
        return rows.reshape(copies * len(index), *tensor.shape[1:])

    sliced = dict(kwargs)
    for key in PER_FRAME_KWARGS:
        value = kwargs.get(key)
        if value is not None:
            sliced[key] = [window(item) for item in value] if isinstance(value, (list, tuple)) else window(value)
    return sliced


def _per_copy(added_cond_kwargs: dict | None, copies: int, frames: int) -> dict | None:
    """SDXL's pooled text and size ids are per video copy in the motion UNet (it repeats them for every frame),
    while the denoising loop batches them per frame like the text: take each copy's first frame. (So with prompt
    travel SDXL's pooled embedding follows the first frame's prompt; the per-frame text embeddings still travel.)"""
    if not added_cond_kwargs:
        return added_cond_kwargs
    return {key: value.reshape(copies, frames, *value.shape[1:])[:, 0] if torch.is_tensor(value) else value
            for key, value in added_cond_kwargs.items()}
