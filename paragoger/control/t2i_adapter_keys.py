"""T2I-Adapter files in the layouts users have, read into diffusers' ``T2IAdapter``: kind from the keys, the config
from the shapes, TencentARC's original names renamed to diffusers'.

Original files (``t2iadapter_canny_sd15v2.pth``, ``t2iadapter_depth_sd14v1.pth``, ``..._sketch_...``), bare keys:

* full (TencentARC's ``Adapter`` with ``sk=True, use_conv=False, ksize=1``, which every shared full adapter
  uses): ``conv_in``, then a flat ``body.{n}`` of resnet blocks, ``n = level * blocks_per_level + j``, each with
  ``block1`` (3x3) and ``block2`` (1x1), and on a level's first block an ``in_conv`` where the width changes. In
  diffusers: ``adapter.conv_in``, ``adapter.body.{level}.resnets.{j}.block1``, ``adapter.body.{level}.in_conv``.
  Down-sampling is average pooling: no weights. Files of the other ``Adapter`` settings (``skep`` shortcuts,
  ``down_opt.op`` convolutions) have no diffusers counterpart and are not taken for adapters.
* light (``Adapter_light``, the color adapter): ``body.{level}.in_conv``, ``body.{level}.body.{j}.block1/2``,
  ``body.{level}.out_conv``; in diffusers ``adapter.body.{level}.resnets.{j}...``, same ``in_conv``/``out_conv``.

Diffusers layout: ``adapter.``-prefixed ``T2IAdapter`` names (a diffusers folder's weights, or such a file
renamed). SDXL adapters exist in that layout only; they unshuffle the picture by 16 instead of 8, so their
``conv_in`` takes 256 (not 64) values per picture channel.
"""
from __future__ import annotations

import re

import torch

DIFFUSERS_PREFIX = "adapter."
PIXELS_PER_CHANNEL = {"full_adapter": 8 * 8, "light_adapter": 8 * 8, "full_adapter_xl": 16 * 16}
FAMILY_BY_TYPE = {"full_adapter": "sd1", "light_adapter": "sd1", "full_adapter_xl": "sdxl"}
_FULL_KEY = re.compile(r"body\.(\d+)\.(block1|block2|in_conv)\.(weight|bias)$")
_LIGHT_KEY = re.compile(r"body\.(\d+)\.(?:(in_conv|out_conv)|body\.(\d+)\.(block1|block2))\.(weight|bias)$")


def _indices(keys, pattern: str) -> list[int]:
    return sorted({int(m[1]) for k in keys if (m := re.match(pattern, k))})


def original_kind(state_dict) -> str | None:
    """"full_adapter" or "light_adapter" for an original T2I-Adapter file, else None."""
    keys = [k for k in state_dict if k != "conv_in.weight" and k != "conv_in.bias"]
    if "conv_in.weight" in state_dict and "body.0.block1.weight" in state_dict \
            and all(_FULL_KEY.fullmatch(k) for k in keys):
        return "full_adapter"
    if "body.0.in_conv.weight" in state_dict and "body.0.out_conv.weight" in state_dict \
            and all(_LIGHT_KEY.fullmatch(k) for k in state_dict):
        return "light_adapter"
    return None


def diffusers_kind(state_dict) -> str | None:
    """The ``adapter_type`` of an adapter in diffusers names (XL told from its wider ``conv_in``), else None."""
    if not state_dict or not all(k.startswith(DIFFUSERS_PREFIX + "body.") or k.startswith(DIFFUSERS_PREFIX + "conv_in.")
                                 for k in state_dict):
        return None
    if "adapter.body.0.out_conv.weight" in state_dict:
        return "light_adapter"
    conv_in = state_dict.get("adapter.conv_in.weight")
    if conv_in is None:
        return None
    return "full_adapter_xl" if conv_in.shape[1] % PIXELS_PER_CHANNEL["full_adapter_xl"] == 0 else "full_adapter"


def _blocks_per_level(state_dict) -> int:
    """Level 0 is the run of blocks as wide as the first (the next level always widens, through an ``in_conv``)."""
    widths = [int(state_dict[f"body.{n}.block1.weight"].shape[0]) for n in _indices(state_dict, r"body\.(\d+)\.")]
    run = 1
    while run < len(widths) and widths[run] == widths[0]:
        run += 1
    return run


def original_to_diffusers(state_dict: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """An original adapter's tensors under ``T2IAdapter``'s names."""
    out: dict[str, torch.Tensor] = {}
    if kind == "full_adapter":
        per_level = _blocks_per_level(state_dict)
        for key, value in state_dict.items():
            match = _FULL_KEY.fullmatch(key)
            if match is None:  # conv_in
                out[DIFFUSERS_PREFIX + key] = value
                continue
            level, j = divmod(int(match[1]), per_level)
            part = "in_conv" if match[2] == "in_conv" else f"resnets.{j}.{match[2]}"
            out[f"{DIFFUSERS_PREFIX}body.{level}.{part}.{match[3]}"] = value
        return out
    for key, value in state_dict.items():
        match = _LIGHT_KEY.fullmatch(key)
        part = match[2] if match[2] else f"resnets.{match[3]}.{match[4]}"
        out[f"{DIFFUSERS_PREFIX}body.{match[1]}.{part}.{match[5]}"] = value
    return out


def adapter_config(state_dict: dict[str, torch.Tensor], kind: str) -> dict:
    """``T2IAdapter`` config for an adapter in diffusers names."""
    keys = list(state_dict)
    levels = _indices(keys, r"adapter\.body\.(\d+)\.")
    blocks = len(_indices(keys, r"adapter\.body\.0\.resnets\.(\d+)\."))
    if kind == "light_adapter":
        first_in = state_dict["adapter.body.0.in_conv.weight"].shape[1]
        # diffusers' LightAdapter has one block more than widths: the last keeps the width and halves the size.
        channels = [int(state_dict[f"adapter.body.{level}.out_conv.weight"].shape[0]) for level in levels[:-1]]
    else:
        first_in = state_dict["adapter.conv_in.weight"].shape[1]
        channels = [int(state_dict[f"adapter.body.{level}.resnets.0.block1.weight"].shape[0]) for level in levels]
    factor = PIXELS_PER_CHANNEL[kind]
    return {"in_channels": int(first_in) // factor, "channels": channels, "num_res_blocks": blocks,
            "downscale_factor": int(round(factor ** 0.5)), "adapter_type": kind}
