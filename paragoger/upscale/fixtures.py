"""Tiny upscaler model files with the real key layouts, from fixed seeds, for tests and trying the app out.

- ``write_esrgan``: an ESRGAN RRDBNet. ``style="old"`` writes the original ESRGAN keys (``model.0.weight``,
  ``model.1.sub.0.RDB1.conv1.0.weight``, ...; what most files in models/ESRGAN use), ``style="new"`` the
  BasicSR / Real-ESRGAN keys (``conv_first``, ``body.0.rdb1.conv1``, ``conv_up1``, ...) wrapped in
  ``params_ema`` as RealESRGAN_x4plus.pth is. Saved as a ``.pth`` holding only tensors and dicts.
- ``write_compact``: a Real-ESRGAN SRVGGNetCompact (realesr-general-x4v3's layout: ``body.N`` convolutions and
  PReLUs, a pixel shuffle) as ``.safetensors``. Its last convolution is small, so its output stays close to the
  nearest-neighbour enlargement it adds to (pictures stay recognisable).

Only the shapes are real; the weights are random, so the pictures they make are not improved, just enlarged.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file

RRDB_GROWTH = 32      # ESRGAN's growth channels (every RRDBNet file has 32; spandrel assumes it)


def _conv(generator: torch.Generator, out_ch: int, in_ch: int, *, gain: float = 1.0) -> tuple:
    std = gain / math.sqrt(in_ch * 9)
    weight = torch.randn(out_ch, in_ch, 3, 3, generator=generator) * std
    bias = torch.randn(out_ch, generator=generator) * 0.01
    return weight, bias


def _upsample_count(scale: int) -> int:
    if scale not in (1, 2, 4, 8):
        raise ValueError(f"an RRDBNet fixture enlarges 1, 2, 4 or 8 times, not {scale}")
    return int(math.log2(scale))


def esrgan_state_dict(*, scale: int = 4, features: int = 8, blocks: int = 1, style: str = "old",
                      seed: int = 0) -> dict[str, torch.Tensor]:
    """An RRDBNet state dict in the original (``old``) or BasicSR (``new``) key layout."""
    generator = torch.Generator().manual_seed(seed)
    nf, gc = features, RRDB_GROWTH
    ups = _upsample_count(scale)
    layers: list[tuple[str, tuple]] = [("first", _conv(generator, nf, 3))]
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for conv in range(1, 6):
                out_ch = gc if conv < 5 else nf
                layers.append((f"rdb.{block}.{rdb}.{conv}", _conv(generator, out_ch, nf + (conv - 1) * gc,
                                                                  gain=0.5)))
    layers.append(("trunk", _conv(generator, nf, nf)))
    layers += [(f"up.{i + 1}", _conv(generator, nf, nf)) for i in range(ups)]
    layers.append(("hr", _conv(generator, nf, nf)))
    layers.append(("last", _conv(generator, 3, nf)))
    names = _old_names(blocks, ups) if style == "old" else _new_names(blocks, ups)
    state: dict[str, torch.Tensor] = {}
    for key, (weight, bias) in layers:
        state[f"{names[key]}.weight"], state[f"{names[key]}.bias"] = weight, bias
    return state


def _old_names(blocks: int, ups: int) -> dict[str, str]:
    names = {"first": "model.0", "trunk": f"model.1.sub.{blocks}"}
    names |= {f"rdb.{b}.{r}.{c}": f"model.1.sub.{b}.RDB{r}.conv{c}.0"
              for b in range(blocks) for r in (1, 2, 3) for c in range(1, 6)}
    names |= {f"up.{i}": f"model.{3 * i}" for i in range(1, ups + 1)}
    names |= {"hr": f"model.{3 * ups + 2}", "last": f"model.{3 * ups + 4}"}
    return names


def _new_names(blocks: int, ups: int) -> dict[str, str]:
    names = {"first": "conv_first", "trunk": "conv_body", "hr": "conv_hr", "last": "conv_last"}
    names |= {f"rdb.{b}.{r}.{c}": f"body.{b}.rdb{r}.conv{c}"
              for b in range(blocks) for r in (1, 2, 3) for c in range(1, 6)}
    names |= {f"up.{i}": f"conv_up{i}" for i in range(1, ups + 1)}
    return names


def write_esrgan(path: Path, *, scale: int = 4, features: int = 8, blocks: int = 1, style: str = "old",
                 seed: int = 0) -> Path:
    """An ESRGAN ``.pth`` (a pickle of tensors only, as torch.save writes them)."""
    state = esrgan_state_dict(scale=scale, features=features, blocks=blocks, style=style, seed=seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": state} if style == "new" else state, path)
    return path


def compact_state_dict(*, scale: int = 4, features: int = 8, convs: int = 2, seed: int = 0) -> dict:
    """An SRVGGNetCompact state dict: conv, PReLU, ``convs`` x (conv, PReLU), conv to 3*scale*scale channels."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    index = 0

    def add_conv(out_ch: int, in_ch: int, gain: float = 1.0) -> None:
        nonlocal index
        state[f"body.{index}.weight"], state[f"body.{index}.bias"] = _conv(generator, out_ch, in_ch, gain=gain)
        index += 1

    def add_prelu() -> None:
        nonlocal index
        state[f"body.{index}.weight"] = 0.25 + 0.05 * torch.randn(features, generator=generator)
        index += 1

    add_conv(features, 3)
    add_prelu()
    for _ in range(convs):
        add_conv(features, features)
        add_prelu()
    add_conv(3 * scale * scale, features, gain=0.1)
    return state


def write_compact(path: Path, *, scale: int = 4, features: int = 8, convs: int = 2, seed: int = 0) -> Path:
    """A Real-ESRGAN Compact ``.safetensors`` (flat keys, as converted Real-ESRGAN files have)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = compact_state_dict(scale=scale, features=features, convs=convs, seed=seed)
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return path
