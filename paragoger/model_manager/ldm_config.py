"""diffusers configs for the models inside an original (LDM) checkpoint, read off the tensors' shapes.

Each function starts from the family's real config (``configs/diffusers/...``) and overrides every field the
weights determine: channel widths, number of levels and layers, which levels have attention, transformer depth,
context width, input channels, text encoder width and depth. So a full-size file and a tiny test model with the
same architecture load through the same code. What shapes cannot tell is taken from the family config, or from
the checkpoint's ``<name>.yaml`` when there is one:

* attention heads. SD 1.x uses 8 heads everywhere; SD 2.x and SDXL use 64-wide heads (``num_head_channels: 64``),
  i.e. ``channels // 64`` heads per level; CLIP text encoders also use 64-wide heads. Smaller-than-64 widths (test
  models) get one head.
* VAE scaling factor (0.18215 for SD 1.x/2.x, 0.13025 for SDXL; a yaml's ``scale_factor`` wins).
"""
from __future__ import annotations

import re

import torch

HEAD_WIDTH = 64


def _indices(keys, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) over ``keys``."""
    found = {int(m[1]) for k in keys if (m := re.match(pattern, k))}
    return sorted(found)


def heads_for(width: int) -> int:
    return max(1, width // HEAD_WIDTH)


def _yaml_unet_params(yaml_config: dict | None) -> dict:
    params = ((yaml_config or {}).get("model") or {}).get("params") or {}
    unet = params.get("unet_config") or params.get("network_config") or {}
    return unet.get("params") or {}


def unet_config(sd: dict[str, torch.Tensor], base: dict, *, yaml_config: dict | None = None,
                pooled_text_width: int | None = None) -> dict:
    """UNet2DConditionModel config for LDM UNet keys (``model.diffusion_model.`` already removed).

    ``pooled_text_width``: SDXL only, the second text encoder's projection width; the rest of the additional
    embedding input is six size/crop numbers, each embedded with ``addition_time_embed_dim`` features.
    """
    config = dict(base)
    keys = list(sd)
    input_ids = _indices(keys, r"input_blocks\.(\d+)\.")
    downsamplers = [i for i in input_ids if f"input_blocks.{i}.0.op.weight" in sd]
    levels = len(downsamplers) + 1
    layers = (len(input_ids) - 1 - len(downsamplers)) // levels
    per_level = layers + 1

    widths, down_types, depths = [], [], []
    for level in range(levels):
        first = 1 + level * per_level
        widths.append(sd[f"input_blocks.{first}.0.out_layers.3.weight"].shape[0])
        depth = len(_indices(keys, rf"input_blocks\.{first}\.1\.transformer_blocks\.(\d+)\."))
        down_types.append("CrossAttnDownBlock2D" if depth else "DownBlock2D")
        depths.append(depth or 1)
    up_types = []
    for level in range(levels):
        has_attention = any(k.startswith(f"output_blocks.{level * per_level}.1.transformer_blocks.") for k in keys)
        up_types.append("CrossAttnUpBlock2D" if has_attention else "UpBlock2D")

    proj_in = next(v for k, v in sd.items() if k.endswith(".proj_in.weight"))
    context = next(v for k, v in sd.items() if k.endswith(".attn2.to_k.weight"))
    linear = proj_in.ndim == 2
    config.update(
        in_channels=sd["input_blocks.0.0.weight"].shape[1],
        out_channels=sd["out.2.weight"].shape[0],
        block_out_channels=widths,
        layers_per_block=layers,
        down_block_types=down_types,
        up_block_types=up_types,
        cross_attention_dim=context.shape[1],
        use_linear_projection=linear,
    )
    if isinstance(base.get("transformer_layers_per_block"), list) or max(depths) > 1:
        config["transformer_layers_per_block"] = depths
    config["attention_head_dim"] = _head_counts(widths, linear, base, _yaml_unet_params(yaml_config))
    if "label_emb.0.0.weight" in sd and pooled_text_width is not None:
        extra = sd["label_emb.0.0.weight"].shape[1]
        config["projection_class_embeddings_input_dim"] = extra
        config["addition_time_embed_dim"] = (extra - pooled_text_width) // 6
    return config


def _head_counts(widths: list[int], linear: bool, base: dict, yaml_params: dict):
    """diffusers' ``attention_head_dim`` (which, for these models, is the number of heads)."""
    if yaml_params.get("num_heads", -1) not in (-1, None):
        return int(yaml_params["num_heads"])
    if yaml_params.get("num_head_channels", -1) not in (-1, None):
        return [max(1, w // int(yaml_params["num_head_channels"])) for w in widths]
    if not linear and isinstance(base.get("attention_head_dim"), int):
        return base["attention_head_dim"]  # SD 1.x: a fixed 8 heads
    return [heads_for(w) for w in widths]


def vae_config(sd: dict[str, torch.Tensor], base: dict, *, yaml_config: dict | None = None) -> dict:
    """AutoencoderKL config for LDM VAE keys (``first_stage_model.`` already removed)."""
    config = dict(base)
    keys = list(sd)
    levels = _indices(keys, r"encoder\.down\.(\d+)\.")
    widths = [sd[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] for i in levels]
    config.update(
        in_channels=sd["encoder.conv_in.weight"].shape[1],
        out_channels=sd["decoder.conv_out.weight"].shape[0],
        latent_channels=sd["post_quant_conv.weight"].shape[0],
        block_out_channels=widths,
        layers_per_block=len(_indices(keys, r"encoder\.down\.0\.block\.(\d+)\.")),
        down_block_types=["DownEncoderBlock2D"] * len(widths),
        up_block_types=["UpDecoderBlock2D"] * len(widths),
    )
    scale = (((yaml_config or {}).get("model") or {}).get("params") or {}).get("scale_factor")
    if scale is not None:
        config["scaling_factor"] = float(scale)
    return config


def clip_config(sd: dict[str, torch.Tensor], base: dict) -> dict:
    """CLIPTextConfig fields for OpenAI-CLIP keys in transformers' names (prefix up to ``text_model.`` removed)."""
    tokens = sd["embeddings.token_embedding.weight"]
    return _text_config(base, vocab=tokens.shape[0], width=tokens.shape[1],
                        positions=sd["embeddings.position_embedding.weight"].shape[0],
                        layers=len(_indices(sd, r"encoder\.layers\.(\d+)\.")),
                        mlp=sd["encoder.layers.0.mlp.fc1.weight"].shape[0])


def open_clip_config(sd: dict[str, torch.Tensor], base: dict, *, layers_used: int | None = None) -> dict:
    """CLIPTextConfig fields for OpenCLIP keys (``cond_stage_model.model.`` or ``...embedders.1.model.`` removed).

    ``layers_used``: SD 2.x conditions on the penultimate layer, so its text encoder is built one layer short.
    """
    tokens = sd["token_embedding.weight"]
    config = _text_config(base, vocab=tokens.shape[0], width=tokens.shape[1],
                          positions=sd["positional_embedding"].shape[0],
                          layers=layers_used or len(_indices(sd, r"transformer\.resblocks\.(\d+)\.")),
                          mlp=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0])
    if "text_projection" in sd:
        config["projection_dim"] = sd["text_projection"].shape[1]
    return config


def _text_config(base: dict, *, vocab: int, width: int, positions: int, layers: int, mlp: int) -> dict:
    config = dict(base)
    config.update(vocab_size=vocab, hidden_size=width, max_position_embeddings=positions,
                  num_hidden_layers=layers, intermediate_size=mlp, num_attention_heads=heads_for(width))
    return config


def openclip_layer_count(sd: dict[str, torch.Tensor]) -> int:
    return len(_indices(sd, r"transformer\.resblocks\.(\d+)\."))
