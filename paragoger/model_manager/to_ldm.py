"""diffusers state dicts -> original (LDM / "single file") key names, the layout Civitai and A1111 files use.

diffusers ships only the other direction (``diffusers.loaders.single_file_utils``); this module is its inverse,
written for the test fixtures and the "create tiny test model" button, so a file we write goes through exactly the
loading path a downloaded checkpoint takes. Each function takes one model's diffusers state dict (plus its
config where block numbering depends on it) and returns LDM keys *without* the model's prefix.
"""
from __future__ import annotations

import re

import torch

_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
_VAE_TOP = {"conv_norm_out": "norm_out"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
               "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def _rename_leading(name: str, table: dict[str, str]) -> str:
    """Replace the first dotted part(s) of ``name`` found in ``table`` (longest match first)."""
    for old in sorted(table, key=len, reverse=True):
        if name == old or name.startswith(old + "."):
            return table[old] + name[len(old):]
    return name


def unet_key(key: str, config: dict) -> str:
    """One UNet2DConditionModel key -> its ``model.diffusion_model.`` key (without the prefix).

    LDM numbers the UNet's blocks flat: ``input_blocks.0`` is conv_in, then per level ``layers_per_block`` resnet
    (+attention) blocks and one downsampler; ``output_blocks`` has ``layers_per_block + 1`` per level, the last one
    also holding the upsampler (at ``.1`` or, after an attention, ``.2``).
    """
    per_level = config["layers_per_block"] + 1
    parts = key.split(".")
    if parts[0] == "down_blocks":
        level, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":  # down_blocks.L.downsamplers.0.conv.weight
            return f"input_blocks.{1 + level * per_level + per_level - 1}.0.op.{'.'.join(parts[5:])}"
        index, rest = int(parts[3]), ".".join(parts[4:])
        block = f"input_blocks.{1 + level * per_level + index}"
        return f"{block}.0.{_rename_leading(rest, _UNET_RESNET)}" if kind == "resnets" else f"{block}.1.{rest}"
    if parts[0] == "mid_block":
        index, rest = int(parts[2]), ".".join(parts[3:])
        if parts[1] == "resnets":
            return f"middle_block.{2 * index}.{_rename_leading(rest, _UNET_RESNET)}"
        return f"middle_block.1.{rest}"
    if parts[0] == "up_blocks":
        level, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # up_blocks.L.upsamplers.0.conv.weight
            has_attention = config["up_block_types"][level].startswith("CrossAttn")
            return f"output_blocks.{level * per_level + per_level - 1}.{2 if has_attention else 1}.conv.{parts[-1]}"
        index, rest = int(parts[3]), ".".join(parts[4:])
        block = f"output_blocks.{level * per_level + index}"
        return f"{block}.0.{_rename_leading(rest, _UNET_RESNET)}" if kind == "resnets" else f"{block}.1.{rest}"
    return _rename_leading(key, _UNET_TOP)


def unet_to_ldm(state_dict: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    return {unet_key(k, config): v for k, v in state_dict.items()}


def vae_key(key: str, num_levels: int) -> str:
    """One AutoencoderKL key -> its ``first_stage_model.`` key. The decoder's levels are numbered in reverse."""
    parts = key.split(".")
    coder, section = parts[0], parts[1]
    if section in ("down_blocks", "up_blocks"):
        level = int(parts[2]) if section == "down_blocks" else num_levels - 1 - int(parts[2])
        name = "down" if section == "down_blocks" else "up"
        if parts[3] in ("downsamplers", "upsamplers"):  # .downsamplers.0.conv.weight
            return f"{coder}.{name}.{level}.{name}sample.{'.'.join(parts[5:])}"
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"{coder}.{name}.{level}.block.{parts[4]}.{rest}"
    if section == "mid_block":
        rest = ".".join(parts[4:])
        if parts[2] == "resnets":
            return f"{coder}.mid.block_{int(parts[3]) + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
        return f"{coder}.mid.attn_1.{_rename_leading(rest, _VAE_ATTENTION)}"
    return f"{coder}.{_rename_leading('.'.join(parts[1:]), _VAE_TOP)}" if coder in ("encoder", "decoder") else key


def vae_to_ldm(state_dict: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """The mid-block attention's linear layers become the 1x1 convolutions the original autoencoder used."""
    levels = len(config["block_out_channels"])
    out = {}
    for key, value in state_dict.items():
        new_key = vae_key(key, levels)
        if ".mid.attn_1." in new_key and new_key.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[new_key] = value
    return out


def clip_to_ldm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI CLIP (SD 1.x, SDXL's first encoder): transformers' own names under ``transformer.text_model.``."""
    return {"transformer.text_model." + k.removeprefix("text_model."): v for k, v in state_dict.items()}


def open_clip_to_ldm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenCLIP (SD 2.x, SDXL's second encoder) names: q/k/v fused into ``in_proj``, projection as a matrix."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("text_model.")
        if key == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif key == "embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif key.startswith("final_layer_norm."):
            out["ln_final." + key.split(".")[-1]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()  # OpenCLIP computes x @ P, a Linear computes x @ W.T
        elif match := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            layer, which, kind = match.groups()
            fused.setdefault(f"transformer.resblocks.{layer}.attn.in_proj_{kind}", {})[which] = value
        elif match := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", key):
            out[f"transformer.resblocks.{match[1]}.{_rename_leading(match[2], _CLIP_LAYER)}"] = value
        elif key != "embeddings.position_ids":
            raise KeyError(f"no OpenCLIP name for text encoder key {key!r}")
    for key, qkv in fused.items():
        out[key] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    return out


def _openclip_tail(reference: torch.Tensor, width: int, *, projection: bool) -> dict[str, torch.Tensor]:
    """Tensors OpenCLIP files carry beyond what transformers models: CLIP's logit scale, SD 2's unused projection."""
    out = {"logit_scale": torch.tensor(4.6052, device=reference.device)}  # log(1 / 0.01), as trained CLIPs end
    if projection:
        out["text_projection"] = torch.eye(width, device=reference.device)
    return out


def _with_unused_last_layer(state_dict: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """SD 2.x files hold one OpenCLIP layer more than SD 2.x runs (it conditions on the penultimate layer)."""
    last = f"encoder.layers.{layers - 1}."
    extra = {k.replace(last, f"encoder.layers.{layers}.", 1): v.clone() for k, v in state_dict.items()
             if k.startswith(last)}
    return {**state_dict, **extra}


def checkpoint_to_ldm(family: str, unet, vae, text_encoder, text_encoder_2=None) -> dict[str, torch.Tensor]:
    """A whole checkpoint's modules under single-file key names, as ``family`` (sd1/sd2/sdxl) files hold them."""
    state = {
        **{"model.diffusion_model." + k: v for k, v in unet_to_ldm(unet.state_dict(), unet.config).items()},
        **{"first_stage_model." + k: v for k, v in vae_to_ldm(vae.state_dict(), vae.config).items()},
    }
    text_state = text_encoder.state_dict()
    if family == "sd1":
        state.update({"cond_stage_model." + k: v for k, v in clip_to_ldm(text_state).items()})
    elif family == "sd2":
        width, layers = text_encoder.config.hidden_size, text_encoder.config.num_hidden_layers
        text = open_clip_to_ldm(_with_unused_last_layer(text_state, layers))
        text.update(_openclip_tail(text["token_embedding.weight"], width, projection=True))
        state.update({"cond_stage_model.model." + k: v for k, v in text.items()})
    elif family == "sdxl":
        state.update({"conditioner.embedders.0." + k: v for k, v in clip_to_ldm(text_state).items()})
        second = open_clip_to_ldm(text_encoder_2.state_dict())
        second.update(_openclip_tail(second["token_embedding.weight"], 0, projection=False))
        state.update({"conditioner.embedders.1.model." + k: v for k, v in second.items()})
    else:
        raise ValueError(f"unknown family {family!r}")
    return state
