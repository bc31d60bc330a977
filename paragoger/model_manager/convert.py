"""Build diffusers/transformers modules from an original (LDM) state dict.

Key renaming is diffusers' own (``diffusers.loaders.single_file_utils``); configs come from ``ldm_config``. Modules
are created on the meta device (no memory, no random init) and the converted tensors are assigned in place,
already cast to the target device and dtype, so a model never exists twice in memory.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from paragoger.errors import ModelLoadError
from paragoger.model_manager import ldm_config
from paragoger.model_manager.detect import (
    SD1_CLIP_PREFIX,
    SD2_OPENCLIP_PREFIX,
    SDXL_CLIP_PREFIX,
    SDXL_OPENCLIP_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
)

# Buffers some files carry that transformers recomputes (non-persistent), never weights.
_IGNORED_TEXT_KEYS = ("embeddings.position_ids",)


@contextmanager
def reading(part: str, name: str):
    """Turn "this key or shape is not there" while reading ``part`` into a message a user can act on."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise  # not the file's fault; the app reports it as such
    except (KeyError, StopIteration, IndexError, ValueError, RuntimeError) as error:
        detail = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        raise ModelLoadError("checkpoint_incomplete", name=name, part=part, detail=detail[:200]) from None


def with_prefix(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def assign_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], *, device, dtype,
                   name: str, part: str) -> torch.nn.Module:
    """Put ``weights`` into a meta-device ``module`` (strictly: every parameter, nothing else).

    Floating tensors are cast to ``dtype`` on ``device`` one by one (no copy when they already match: the state
    dict's tensors are our own memory, see ``state_dict``); integer buffers keep their dtype.
    """
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ModelLoadError("checkpoint_incomplete", name=name, part=part, detail=detail)
    # One tensor at a time, each source dropped as soon as its copy exists: with the file's own entries released
    # (``release``), a fp16 file loading as fp32 never holds both precisions of a whole model.
    cast = {}
    for key in list(weights):
        tensor = weights.pop(key)
        cast[key] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)
        del tensor
    module.load_state_dict(cast, strict=True, assign=True)
    # Buffers that are not saved (CLIP's position_ids) were created on the CPU; bring them along.
    return module.to(device).eval().requires_grad_(False)


def release(state_dict: dict[str, torch.Tensor], prefix: str) -> None:
    """Replace the entries under ``prefix`` with shape-only (meta) placeholders once a module has taken them:
    their memory goes with the module's copy, and shape questions (configs) still get answers."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        tensor = state_dict[key]
        state_dict[key] = torch.empty(tensor.shape, dtype=tensor.dtype, device="meta")


def build_unet(state_dict, config: dict, *, device, dtype, name: str) -> UNet2DConditionModel:
    with reading("UNet", name):
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(config)
        weights = convert_ldm_unet_checkpoint(state_dict, config)
        release(state_dict, UNET_PREFIX)
        return assign_weights(unet, weights, device=device, dtype=dtype, name=name, part="UNet")


def unet_config_for(state_dict, base: dict, *, name: str, yaml_config=None) -> dict:
    """The UNet config for a full LDM state dict (SDXL needs the second text encoder's projection width)."""
    pooled = state_dict.get(SDXL_OPENCLIP_PREFIX + "text_projection")
    with reading("UNet", name):
        return ldm_config.unet_config(with_prefix(state_dict, UNET_PREFIX), base, yaml_config=yaml_config,
                                      pooled_text_width=None if pooled is None else pooled.shape[1])


def build_vae(state_dict, base: dict, *, device, dtype, name: str, yaml_config=None,
              prefix: str = VAE_PREFIX) -> AutoencoderKL:
    """The VAE of a checkpoint (``first_stage_model.*``), or of a standalone VAE file with ``prefix=""``."""
    vae_sd = with_prefix(state_dict, prefix) if prefix else state_dict
    with reading("VAE", name):
        config = ldm_config.vae_config(vae_sd, base, yaml_config=yaml_config)
        with init_empty_weights():
            vae = AutoencoderKL.from_config(config)
        weights = convert_ldm_vae_checkpoint(vae_sd, config)
        del vae_sd
        if prefix:
            release(state_dict, prefix)
        return assign_weights(vae, weights, device=device, dtype=dtype, name=name, part="VAE")


def _text_model(config: dict, with_projection: bool):
    model_class = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    with init_empty_weights():
        return model_class(CLIPTextConfig.from_dict(config))


def _flatten_for(model, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5's CLIPTextModel has no ``text_model.`` level (the WithProjection variant still has it)."""
    weights = {k: v for k, v in weights.items() if not k.endswith(_IGNORED_TEXT_KEYS)}
    if hasattr(model, "text_model"):
        return weights
    return {k.removeprefix("text_model."): v for k, v in weights.items()}


def build_clip(state_dict, base: dict, *, prefix: str, device, dtype, name: str) -> CLIPTextModel:
    """OpenAI CLIP-L: SD 1.x (``cond_stage_model.transformer.``) or SDXL's first encoder (``embedders.0``)."""
    with reading("text encoder", name):
        config = ldm_config.clip_config(with_prefix(state_dict, prefix), base)
        model = _text_model(config, with_projection=False)
        outer = prefix.removesuffix("text_model.")
        weights = convert_ldm_clip_checkpoint({k: v for k, v in state_dict.items() if k.startswith(outer)})
        release(state_dict, outer)
        return assign_weights(model, _flatten_for(model, weights), device=device, dtype=dtype, name=name,
                              part="text encoder")


def build_open_clip(state_dict, base: dict, *, prefix: str, penultimate: bool, with_projection: bool,
                    device, dtype, name: str):
    """OpenCLIP in transformers' CLIP classes.

    SD 2.x (``penultimate``) conditions on the second-to-last layer: the last resblock and the projection are
    left out and the encoder is built one layer short, as diffusers' SD 2 text encoder is.
    """
    part = "second text encoder" if with_projection else "text encoder"
    sub = with_prefix(state_dict, prefix)
    with reading(part, name):
        total = ldm_config.openclip_layer_count(sub)
        used = total - 1 if penultimate else total
        if penultimate:
            last = f"transformer.resblocks.{total - 1}."
            sub = {k: v for k, v in sub.items() if not k.startswith(last) and k != "text_projection"}
        config = ldm_config.open_clip_config(sub, base, layers_used=used)
        model = _text_model(config, with_projection=with_projection)
        weights = convert_open_clip_checkpoint(model, {prefix + k: v for k, v in sub.items()}, prefix=prefix)
        del sub
        release(state_dict, prefix)
        return assign_weights(model, _flatten_for(model, weights), device=device, dtype=dtype, name=name,
                              part=part)


def build_text_encoders(state_dict, family: str, bases: dict[str, dict], *, device, dtype, name: str):
    """``(text_encoder, text_encoder_2)`` for a family; ``bases`` holds the family's text encoder configs."""
    if family == "sd1":
        return build_clip(state_dict, bases["text_encoder"], prefix=SD1_CLIP_PREFIX, device=device,
                          dtype=dtype, name=name), None
    if family == "sd2":
        return build_open_clip(state_dict, bases["text_encoder"], prefix=SD2_OPENCLIP_PREFIX, penultimate=True,
                               with_projection=False, device=device, dtype=dtype, name=name), None
    first = build_clip(state_dict, bases["text_encoder"], prefix=SDXL_CLIP_PREFIX, device=device, dtype=dtype,
                       name=name)
    second = build_open_clip(state_dict, bases["text_encoder_2"], prefix=SDXL_OPENCLIP_PREFIX, penultimate=False,
                             with_projection=True, device=device, dtype=dtype, name=name)
    return first, second
