"""ControlNet files in the layouts users have, read into diffusers' ``ControlNetModel``: layout and family from
the keys and shapes, the config from the shapes, the original key names renamed to diffusers' (no hub, no yaml).

Layouts:

* original (ControlNet 1.0/1.1, ``control_v11p_sd15_canny.pth``, the pruned fp16 ``.safetensors``): the UNet's
  encoder half in LDM names (``time_embed``, ``input_blocks``, ``middle_block``), the hint encoder
  ``input_hint_block.{0,2,...,14}``, ``zero_convs.{i}.0`` and ``middle_block_out.0``, usually under
  ``control_model.``. ControlNet 1.0's full ``control_sd15_*.pth`` also carry a whole SD model beside it, which is
  not read. Renamed by diffusers' ``convert_controlnet_checkpoint`` (plus SDXL's ``label_emb``, which it skips).
* diffusers (``ControlNetModel``'s own names; ``diffusion_pytorch_model.safetensors`` renamed, as most SDXL
  ControlNets are shared): taken as they are.

Family: the cross-attention context width says it for real models (768 SD 1.x, 1024 SD 2.x, 2048 SDXL); for
others (the project's tiny test models) the structure does: SDXL's added embeddings, SD 2's linear projections.
What shapes cannot say comes from the family's UNet config (``configs/diffusers``), as for checkpoints: heads
(SD 1.x: 8; SD 2/SDXL: 64-wide), the time embedding's flips and shifts, SDXL's size embedding width.
"""
from __future__ import annotations

import re

import torch
from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

from paragoger.model_manager import configs
from paragoger.model_manager.ldm_config import heads_for

ORIGINAL_PREFIX = "control_model."
ORIGINAL_MARKERS = ("input_hint_block.0.weight", "zero_convs.0.0.weight", "middle_block_out.0.weight",
                    "time_embed.0.weight")
DIFFUSERS_MARKERS = ("controlnet_cond_embedding.conv_in.weight", "controlnet_down_blocks.0.weight",
                     "controlnet_mid_block.weight", "time_embedding.linear_1.weight")
ORIGINAL_PARTS = ("time_embed", "label_emb", "input_blocks", "middle_block", "input_hint_block", "zero_convs",
                  "middle_block_out")
DIFFUSERS_PARTS = ("time_embedding", "add_embedding", "class_embedding", "conv_in", "controlnet_cond_embedding",
                   "down_blocks", "mid_block", "controlnet_down_blocks", "controlnet_mid_block")
FAMILY_BY_CONTEXT = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
_CONFIG_FOLDER = {"sd1": configs.SD15, "sd2": configs.SD2, "sdxl": configs.SDXL_BASE}
# The UNet config fields a ControlNet shares (what diffusers' ControlNetModel.from_unet copies) that no shape shows.
_FROM_UNET = ("flip_sin_to_cos", "freq_shift", "downsample_padding", "mid_block_scale_factor", "act_fn",
              "norm_num_groups", "norm_eps", "only_cross_attention", "upcast_attention", "resnet_time_scale_shift",
              "class_embed_type", "num_class_embeds", "encoder_hid_dim", "encoder_hid_dim_type")
_LABEL_EMB = {"label_emb.0.0.": "add_embedding.linear_1.", "label_emb.0.2.": "add_embedding.linear_2."}
SIZE_NUMBERS = 6  # SDXL's added embedding: the pooled text plus six size/crop numbers, each embedded alike


def _indices(keys, pattern: str) -> list[int]:
    return sorted({int(m[1]) for k in keys if (m := re.match(pattern, k))})


def strip_original_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``control_model.`` entries without the prefix when there are any (anything else in such a file, like
    ControlNet 1.0's whole SD model, is dropped); else the state dict as it is."""
    if any(key.startswith(ORIGINAL_PREFIX) for key in state_dict):
        return {k[len(ORIGINAL_PREFIX):]: v for k, v in state_dict.items() if k.startswith(ORIGINAL_PREFIX)}
    return state_dict


def _only_parts(state_dict, parts: tuple[str, ...]) -> bool:
    return all(key.split(".", 1)[0] in parts for key in state_dict)


def is_original_controlnet(state_dict) -> bool:
    """ControlNet 1.x's layout, and nothing else: Stability's Control-LoRAs (``lora_controlnet``, LoRA pairs for the
    encoder) share its markers but are another kind of model."""
    return all(marker in state_dict for marker in ORIGINAL_MARKERS) and _only_parts(state_dict, ORIGINAL_PARTS)


def is_diffusers_controlnet(state_dict) -> bool:
    """``ControlNetModel``'s names, and nothing else: ControlNet-Union's task embeddings and the like are other
    models that ``ControlNetModel`` cannot hold."""
    return all(marker in state_dict for marker in DIFFUSERS_MARKERS) and _only_parts(state_dict, DIFFUSERS_PARTS)


def original_layers_per_block(state_dict) -> int:
    """Resnets per level of an original ControlNet's ``input_blocks`` (after ``input_blocks.0``, ``layers`` blocks
    and one downsampler per level, no downsampler after the last)."""
    ids = [i for i in _indices(state_dict, r"input_blocks\.(\d+)\.") if i > 0]
    downsamplers = [i for i in ids if f"input_blocks.{i}.0.op.weight" in state_dict]
    return (len(ids) - len(downsamplers)) // (len(downsamplers) + 1)


def original_to_diffusers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An original ControlNet's tensors (prefix removed) under ``ControlNetModel``'s names."""
    converted = convert_controlnet_checkpoint(state_dict, {"layers_per_block": original_layers_per_block(state_dict)})
    for old, new in _LABEL_EMB.items():
        for key in [k for k in state_dict if k.startswith(old)]:
            converted[new + key[len(old):]] = state_dict[key]
    # diffusers' converter reads every zero conv by index, present or not: a short file leaves holes, not errors.
    return {key: value for key, value in converted.items() if value is not None}


def _context_width(state_dict) -> int | None:
    found = next((v for k, v in state_dict.items() if k.endswith(".attn2.to_k.weight")), None)
    return None if found is None else int(found.shape[1])


def _linear_projection(state_dict) -> bool | None:
    found = next((v for k, v in state_dict.items() if k.endswith(".proj_in.weight")), None)
    return None if found is None else found.ndim == 2


def controlnet_family(state_dict) -> str:
    """sd1, sd2 or sdxl for a ControlNet in diffusers names."""
    family = FAMILY_BY_CONTEXT.get(_context_width(state_dict))
    if family:
        return family
    if "add_embedding.linear_1.weight" in state_dict:
        return "sdxl"
    return "sd2" if _linear_projection(state_dict) else "sd1"


def _transformer_depth(state_dict, attention: str) -> int:
    return len(_indices(state_dict, rf"{re.escape(attention)}\.transformer_blocks\.(\d+)\."))


def _size_embedding_width(projection_width: int, base: dict) -> int:
    """SDXL's ``addition_time_embed_dim``, which no tensor holds: the real model's 256 when the added embedding is
    wide enough for it (2816 = 1280 pooled text + 6 x 256); for narrower, test-sized models the tiny SDXL's value
    (``paragoger.model_manager.tiny_model``)."""
    real = base.get("addition_time_embed_dim") or 256
    if projection_width > SIZE_NUMBERS * real:
        return real
    from paragoger.model_manager.tiny_model import tiny_configs  # only for test-sized models

    return tiny_configs("sdxl")["unet"]["addition_time_embed_dim"]


def controlnet_config(state_dict: dict[str, torch.Tensor], family: str, *, name: str = "") -> dict:
    """The ``ControlNetModel`` config for a ControlNet in diffusers names, from its shapes and its family.

    ``name`` matters for one thing shapes cannot show: ControlNet 1.1's shuffle model pools its result over the
    picture (``global_pool_conditions``), and is the only one named so.
    """
    base = configs.model_config(configs.DIFFUSERS_CONFIGS / _CONFIG_FOLDER[family], "unet")
    config = {key: base[key] for key in _FROM_UNET if key in base}
    keys = list(state_dict)
    levels = _indices(keys, r"down_blocks\.(\d+)\.")
    widths = [int(state_dict[f"down_blocks.{level}.resnets.0.conv2.weight"].shape[0]) for level in levels]
    attention = [any(k.startswith(f"down_blocks.{level}.attentions.0.") for k in keys) for level in levels]
    depths = [_transformer_depth(state_dict, f"down_blocks.{level}.attentions.0") if has else 1
              for level, has in zip(levels, attention)]
    mid_attention = any(k.startswith("mid_block.attentions.0.") for k in keys)
    if mid_attention and depths and not attention[-1]:  # the mid block's depth is given as the last level's
        depths[-1] = _transformer_depth(state_dict, "mid_block.attentions.0")
    linear = bool(_linear_projection(state_dict))
    hint_blocks = len(_indices(keys, r"controlnet_cond_embedding\.blocks\.(\d+)\."))
    hint_widths = [int(state_dict["controlnet_cond_embedding.conv_in.weight"].shape[0])] + [
        int(state_dict[f"controlnet_cond_embedding.blocks.{i}.weight"].shape[0]) for i in range(1, hint_blocks, 2)]
    config.update(
        in_channels=int(state_dict["conv_in.weight"].shape[1]),
        conditioning_channels=int(state_dict["controlnet_cond_embedding.conv_in.weight"].shape[1]),
        block_out_channels=widths,
        layers_per_block=len(_indices(keys, r"down_blocks\.0\.resnets\.(\d+)\.")),
        down_block_types=["CrossAttnDownBlock2D" if has else "DownBlock2D" for has in attention],
        mid_block_type="UNetMidBlock2DCrossAttn" if mid_attention else "UNetMidBlock2D",
        transformer_layers_per_block=depths,
        cross_attention_dim=_context_width(state_dict) or base["cross_attention_dim"],
        use_linear_projection=linear,
        attention_head_dim=base["attention_head_dim"] if not linear and isinstance(base["attention_head_dim"], int)
        else [heads_for(width) for width in widths],
        conditioning_embedding_out_channels=hint_widths,
        global_pool_conditions="shuffle" in name.lower(),
        addition_embed_type=None,
    )
    if not isinstance(base.get("transformer_layers_per_block"), list) and set(depths) == {1}:
        config["transformer_layers_per_block"] = 1  # as the SD 1.x/2.x configs give it
    if "add_embedding.linear_1.weight" in state_dict:
        width = int(state_dict["add_embedding.linear_1.weight"].shape[1])
        config.update(addition_embed_type="text_time", projection_class_embeddings_input_dim=width,
                      addition_time_embed_dim=_size_embedding_width(width, base))
    return config
