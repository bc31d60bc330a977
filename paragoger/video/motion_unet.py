"""The motion UNet: diffusers' ``UNetMotionModel`` made of the loaded checkpoint's own 2D modules and a motion
module's temporal layers, sharing both (no weight copied, no second UNet in memory).

diffusers' ``UNetMotionModel.from_unet2d`` first builds a whole UNet with random weights, then copies every 2D
weight into it (``load_state_dict``): a second UNet in memory (1.7 GB for SD 1.5 in fp16, 5 GB for SDXL), and a
copy that a LoRA merged into the checkpoint afterwards would not reach. Here the skeleton is built on the meta
device (nothing allocated), then its parts are replaced by the UNet's and the adapter's module objects. A weight
changed in the 2D UNet (a LoRA merge) is therefore the motion UNet's weight too, and unloading the checkpoint or
the motion module leaves nothing behind but this thin object.
"""
from __future__ import annotations

import inspect
from itertools import chain

import torch
from accelerate import init_empty_weights
from diffusers import UNet2DConditionModel, UNetMotionModel
from diffusers.models.unets.unet_2d_blocks import UNetMidBlock2DCrossAttn

from paragoger.errors import UserError
from paragoger.model_manager.lora import FAMILY_NAMES
from paragoger.video.motion_modules import MotionModule

# The 2D parts of a UNet the motion UNet takes over as they are (when the UNet has them).
_TOP_LEVEL_PARTS = ("conv_in", "time_proj", "time_embedding", "add_time_proj", "add_embedding", "encoder_hid_proj",
                    "conv_norm_out", "conv_act", "conv_out")
_BLOCK_PARTS = ("resnets", "attentions", "downsamplers", "upsamplers")


def unet_family(unet: UNet2DConditionModel) -> str:
    """"sdxl" (additional text and size embeddings), "sd2" (1024-wide text context) or "sd1", from the config."""
    config = unet.config
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    context = config.get("cross_attention_dim")
    return "sd2" if context == 1024 else "sd1"


def _as_list(value, count: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * count


def check_fits(unet: UNet2DConditionModel, module: MotionModule, family: str | None = None) -> None:
    """UserError("motion_module_wrong_family") or ("motion_module_does_not_fit") when ``module`` cannot run with
    ``unet``; ``family`` is the checkpoint's (read from the UNet when not given)."""
    family = family or unet_family(unet)
    name = module.info.name
    if module.spec.family != family:
        raise UserError("motion_module_wrong_family", module=name,
                        module_family=FAMILY_NAMES.get(module.spec.family, module.spec.family),
                        checkpoint_family=FAMILY_NAMES.get(family, family))
    config, adapter = unet.config, module.spec.adapter_config
    levels = len(config["down_block_types"])
    widths, module_widths = list(config["block_out_channels"]), list(adapter["block_out_channels"])

    def refuse(reason: str):
        raise UserError("motion_module_does_not_fit", module=name, reason=reason)

    if len(module_widths) != levels:
        refuse(f"it has {len(module_widths)} levels, the checkpoint's UNet {levels}")
    if module_widths != widths:
        refuse(f"its widths are {'/'.join(map(str, module_widths))}, the UNet's {'/'.join(map(str, widths))}")
    layers = _as_list(config["layers_per_block"], levels)
    if _as_list(adapter["motion_layers_per_block"], levels) != layers:
        refuse(f"it has {adapter['motion_layers_per_block']} motion layers per block, the UNet "
               f"{config['layers_per_block']} layers per block")
    if not isinstance(unet.mid_block, UNetMidBlock2DCrossAttn):
        refuse("the UNet has no cross-attention middle block")
    if config.get("class_embed_type") is not None or config.get("addition_embed_type") not in (None, "text_time"):
        refuse("the UNet takes class or extra embeddings a motion UNet has no place for")
    if config.get("encoder_hid_dim_type") not in (None, "ip_image_proj"):
        refuse(f"the UNet projects its text context ({config['encoder_hid_dim_type']})")


def _motion_config(unet: UNet2DConditionModel, module: MotionModule) -> dict:
    """The UNet's config in ``UNetMotionModel``'s terms, its motion fields from the adapter."""
    config = dict(unet.config)
    config["down_block_types"] = ["CrossAttnDownBlockMotion" if "CrossAttn" in kind else "DownBlockMotion"
                                  for kind in config["down_block_types"]]
    config["up_block_types"] = ["CrossAttnUpBlockMotion" if "CrossAttn" in kind else "UpBlockMotion"
                                for kind in config["up_block_types"]]
    adapter = module.adapter.config
    config.update(
        layers_per_block=adapter["motion_layers_per_block"],
        motion_num_attention_heads=adapter["motion_num_attention_heads"],
        motion_max_seq_length=adapter["motion_max_seq_length"],
        use_motion_mid_block=adapter["use_motion_mid_block"],
        temporal_transformer_layers_per_block=adapter["motion_transformer_layers_per_block"],
        temporal_transformer_layers_per_mid_block=adapter["motion_transformer_layers_per_mid_block"],
    )
    # UNet2DConditionModel's configs call the head count attention_head_dim (a naming kept for old files).
    if not config.get("num_attention_heads"):
        config["num_attention_heads"] = config["attention_head_dim"]
    accepted = inspect.signature(UNetMotionModel.__init__).parameters
    return {key: value for key, value in config.items() if key in accepted}


def _take_block_parts(target: torch.nn.Module, source: torch.nn.Module) -> None:
    for part in _BLOCK_PARTS:
        if getattr(source, part, None) is not None or getattr(target, part, None) is not None:
            setattr(target, part, getattr(source, part))


def _check_nothing_left_empty(model: UNetMotionModel) -> None:
    empty = [name for name, tensor in chain(model.named_parameters(), model.named_buffers()) if tensor.is_meta]
    if empty:
        raise RuntimeError(f"the motion UNet has parts neither the checkpoint nor the motion module filled "
                           f"({len(empty)}, e.g. {empty[0]}): has diffusers' UNetMotionModel changed?")


def motion_unet(unet: UNet2DConditionModel, module: MotionModule, *, family: str | None = None) -> UNetMotionModel:
    """A ``UNetMotionModel`` whose 2D parts are ``unet``'s modules and whose motion modules are the adapter's.

    ``family``: the checkpoint's family ("sd1", "sd2", "sdxl"; ``Components.family``), read from the UNet when
    not given. UserError when the module does not fit (see ``check_fits``). The adapter must be on the UNet's
    device in its dtype (``MotionModules`` loads it so).
    """
    check_fits(unet, module, family)
    reference = next(unet.parameters())
    adapter_weight = next(module.adapter.parameters())
    if (adapter_weight.device, adapter_weight.dtype) != (reference.device, reference.dtype):
        raise ValueError(f"motion module on {adapter_weight.device} in {adapter_weight.dtype}, UNet on "
                         f"{reference.device} in {reference.dtype}: load it with the UNet's device and dtype")
    with init_empty_weights(include_buffers=True):
        model = UNetMotionModel.from_config(_motion_config(unet, module))
    for part in _TOP_LEVEL_PARTS:
        if hasattr(unet, part):
            setattr(model, part, getattr(unet, part))
    adapter = module.adapter
    for target, source, motion in zip(model.down_blocks, unet.down_blocks, adapter.down_blocks):
        _take_block_parts(target, source)
        target.motion_modules = motion.motion_modules
    for target, source, motion in zip(model.up_blocks, unet.up_blocks, adapter.up_blocks):
        _take_block_parts(target, source)
        target.motion_modules = motion.motion_modules
    if adapter.mid_block is not None:
        model.mid_block.resnets, model.mid_block.attentions = unet.mid_block.resnets, unet.mid_block.attentions
        model.mid_block.motion_modules = adapter.mid_block.motion_modules
    else:
        model.mid_block = unet.mid_block
    _check_nothing_left_empty(model)
    return model.eval()
