"""Full-size checkpoints with random weights, for ``python -m paragoger.bench --full-size`` and the tests: real
layouts and sizes, random values, made fast and without much memory.

``sdxl_full_size_state_dict_on_meta()``: every key and shape of a real SDXL base file as meta tensors (no memory).
``write_full_size_sd15(path)``: a ~2 GB SD 1.5 single file with random fp16 weights, written in about the time
the disk needs. Generating a billion normal samples would take minutes on two cores, so values are drawn once
into a pool of about a million numbers and each tensor reads the pool cyclically from where the previous one
stopped, scaled like the tiny models (``tiny_model``: matrices ~ N(0, 1/fan_in), norm scales ~ 1, biases ~ 0).
The file is streamed: memory stays at a few pool copies.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from paragoger.model_manager import configs, to_ldm

_SAFETENSORS_DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}
_POOL_SIZE = 1_048_573  # a prime, so the pool's period never lines up with a tensor's rows


def modules_on_meta(folder: Path) -> dict:
    """A family's real-size modules from its config folder, parameters on the meta device."""
    folder = Path(folder)
    with init_empty_weights():
        modules = {
            "unet": UNet2DConditionModel.from_config(configs.model_config(folder, "unet")),
            "vae": AutoencoderKL.from_config(configs.model_config(folder, "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_dict(configs.model_config(folder, "text_encoder"))),
        }
        if (folder / "text_encoder_2").is_dir():
            config = CLIPTextConfig.from_dict(configs.model_config(folder, "text_encoder_2"))
            modules["text_encoder_2"] = CLIPTextModelWithProjection(config)
    return modules


def full_size_state_dict_on_meta(config_name: str) -> dict[str, torch.Tensor]:
    """The single-file layout (keys, shapes) of a real checkpoint of ``configs/diffusers/<config_name>``."""
    folder = configs.DIFFUSERS_CONFIGS / config_name
    family = {"sd15": "sd1", "sd15-inpainting": "sd1", "sd2": "sd2", "sd2-base": "sd2", "sdxl-base": "sdxl"}
    modules = modules_on_meta(folder)
    state = to_ldm.checkpoint_to_ldm(family[config_name], modules["unet"], modules["vae"],
                                     modules["text_encoder"], modules.get("text_encoder_2"))
    # Non-persistent CLIP buffers were created on the CPU; a layout is shapes only.
    return {k: v if v.is_meta else torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in state.items()}


def sdxl_full_size_state_dict_on_meta() -> dict[str, torch.Tensor]:
    return full_size_state_dict_on_meta(configs.SDXL_BASE)


def _scale_for(key: str, shape: torch.Size) -> tuple[float, float]:
    """(mean, std) of a tensor's values, by what kind of weight the key names."""
    if len(shape) >= 2:
        return 0.0, 1.0 / math.sqrt(math.prod(shape[1:]))
    if key.endswith("bias") or len(shape) == 0:
        return 0.0, 0.02
    return 1.0, 0.02


def write_safetensors_streaming(path: Path, layout: dict[str, torch.Tensor], chunks, *, dtype: torch.dtype,
                                metadata: dict[str, str] | None = None) -> Path:
    """Write a safetensors file piece by piece: ``chunks(key, shape)`` yields each tensor's values in order, as
    flat tensors of ``dtype`` whose lengths add up to the tensor's size.

    Format: 8-byte little-endian header length, a JSON header with each tensor's dtype, shape and byte range
    (padded with spaces to a multiple of 8), then the tensors' bytes in that order.
    """
    keys = sorted(layout)
    itemsize = torch.empty((), dtype=dtype).element_size()
    header, offset = {"__metadata__": {"format": "pt", **(metadata or {})}}, 0
    for key in keys:
        size = math.prod(layout[key].shape) * itemsize
        header[key] = {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": list(layout[key].shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for key in keys:
            written = 0
            for chunk in chunks(key, layout[key].shape):
                out.write(chunk.to(dtype).contiguous().view(torch.uint8).numpy())
                written += chunk.numel()
            if written != math.prod(layout[key].shape):
                raise ValueError(f"{key}: {written} values for shape {tuple(layout[key].shape)}")
    return path


def write_full_size_sd15(path: Path, dtype: torch.dtype = torch.float16, seed: int = 0) -> Path:
    """A real-size SD 1.5 single file (about 2.1 GB in fp16) with random weights; deterministic per seed.

    Each distinct (mean, std) gets its own scaled copy of the pool, so writing is copying pool slices to disk.
    """
    pool = torch.randn(_POOL_SIZE, generator=torch.Generator().manual_seed(seed))
    scaled: dict[tuple[float, float], torch.Tensor] = {}
    cursor = [0]  # where the next tensor starts reading the pool

    def chunks(key: str, shape: torch.Size):
        scale = _scale_for(key, shape)
        if scale not in scaled:
            scaled[scale] = (pool * scale[1] + scale[0]).to(dtype)
        values, remaining, start = scaled[scale], math.prod(shape), cursor[0] % _POOL_SIZE
        cursor[0] += remaining
        while remaining:
            take = min(_POOL_SIZE - start, remaining)
            yield values[start:start + take]
            remaining, start = remaining - take, 0

    layout = full_size_state_dict_on_meta(configs.SD15)
    return write_safetensors_streaming(path, layout, chunks, dtype=dtype, metadata={"paragoger": "random weights"})
