"""The depth estimator inside SD 2.x depth checkpoints (``512-depth-ema``), as a transformers model.

Stability trained the depth model with MiDaS' DPT-Hybrid (``dpt_hybrid-midas-501f0c75.pt``: a ViT-B/16 on a
ResNet-50 "BiT" stem) and saved it in the checkpoint under ``depth_model.model.``, with MiDaS' own (timm) names::

    pretrained.model.patch_embed.backbone.stem.conv / stem.norm        ResNet stem
    pretrained.model.patch_embed.backbone.stages.S.blocks.B.*          ResNet bottlenecks (3, 4, 9 per stage)
    pretrained.model.patch_embed.proj, cls_token, pos_embed            ViT embeddings
    pretrained.model.blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, pretrained.model.norm
    pretrained.act_postprocessI.{0.project.0, 3, 4}                    readout projection, 1x1 conv, resize
    scratch.layerI_rn, scratch.refinenetI.{out_conv, resConfUnitJ.convK}, scratch.output_conv.N

transformers' ``DPTForDepthEstimation`` with ``is_hybrid=True`` is the same network (it is what
``Intel/dpt-hybrid-midas`` is). Here the names are mapped onto it, the config is the project's copy of the real
one (``configs/depth/dpt-hybrid-midas``) with every size the weights show taken from their shapes, and the model is
built on the meta device with the checkpoint's own tensors assigned into it (no second copy). Float32 always.
"""
from __future__ import annotations

import logging
import math
import re

import torch
from accelerate import init_empty_weights
from transformers import AutoImageProcessor, DPTConfig, DPTForDepthEstimation

from paragoger.errors import ModelLoadError
from paragoger.model_manager import configs
from paragoger.model_manager.convert import assign_weights, reading, release, with_prefix
from paragoger.model_manager.depth import DepthEstimator

log = logging.getLogger(__name__)

MIDAS_PREFIX = "depth_model.model."
CONFIG_FOLDER = configs.CONFIGS_ROOT / "depth" / "dpt-hybrid-midas"

_VIT = "pretrained.model."
_BIT = _VIT + "patch_embed.backbone."
# timm's ImageNet classifier on the ViT: part of the saved model, never used for depth.
_UNUSED = (_VIT + "head.", _VIT + "pre_logits.", _VIT + "fc_norm.")

# (MiDaS name pattern, transformers name template); each key matches exactly one rule.
_RULES = [
    (_BIT + r"stem\.conv\.(.+)", r"dpt.embeddings.backbone.bit.embedder.convolution.\1"),
    (_BIT + r"stem\.norm\.(.+)", r"dpt.embeddings.backbone.bit.embedder.norm.\1"),
    (_BIT + r"stages\.(\d+)\.blocks\.(\d+)\.(.+)", r"dpt.embeddings.backbone.bit.encoder.stages.\1.layers.\2.\3"),
    (_VIT + r"patch_embed\.proj\.(.+)", r"dpt.embeddings.projection.\1"),
    (_VIT + r"cls_token", r"dpt.embeddings.cls_token"),
    (_VIT + r"pos_embed", r"dpt.embeddings.position_embeddings"),
    (_VIT + r"blocks\.(\d+)\.norm1\.(.+)", r"dpt.encoder.layer.\1.layernorm_before.\2"),
    (_VIT + r"blocks\.(\d+)\.norm2\.(.+)", r"dpt.encoder.layer.\1.layernorm_after.\2"),
    (_VIT + r"blocks\.(\d+)\.attn\.proj\.(.+)", r"dpt.encoder.layer.\1.attention.output.dense.\2"),
    (_VIT + r"blocks\.(\d+)\.mlp\.fc1\.(.+)", r"dpt.encoder.layer.\1.intermediate.dense.\2"),
    (_VIT + r"blocks\.(\d+)\.mlp\.fc2\.(.+)", r"dpt.encoder.layer.\1.output.dense.\2"),
    (_VIT + r"norm\.(.+)", r"dpt.layernorm.\1"),
    (r"scratch\.layer(\d)_rn\.(.+)", lambda m: f"neck.convs.{int(m[1]) - 1}.{m[2]}"),
    (r"scratch\.output_conv\.(.+)", r"head.head.\1"),
]
_POSTPROCESS = re.compile(r"pretrained\.act_postprocess(\d)\.(0\.project\.0|3|4)\.(.+)")
_REFINENET = re.compile(r"scratch\.refinenet(\d)\.(out_conv|resConfUnit(\d)\.conv(\d))\.(.+)")
_QKV = re.compile(re.escape(_VIT) + r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)")


def has_depth_model(state_dict) -> bool:
    return any(key.startswith(MIDAS_PREFIX) for key in state_dict)


def _rename(key: str) -> str | None:
    """The transformers name of one MiDaS key (None for the qkv matrices, which are split instead)."""
    if _QKV.fullmatch(key):
        return None
    if match := _POSTPROCESS.fullmatch(key):
        stage, part, rest = int(match[1]) - 1, match[2], match[3]
        if part == "0.project.0":
            return f"neck.reassemble_stage.readout_projects.{stage}.0.{rest}"
        return f"neck.reassemble_stage.layers.{stage}.{'projection' if part == '3' else 'resize'}.{rest}"
    if match := _REFINENET.fullmatch(key):
        # MiDaS counts fusion blocks from the top (refinenet4 runs first); transformers in running order.
        layer = f"neck.fusion_stage.layers.{4 - int(match[1])}"
        if match[2] == "out_conv":
            return f"{layer}.projection.{match[5]}"
        return f"{layer}.residual_layer{match[3]}.convolution{match[4]}.{match[5]}"
    for pattern, template in _RULES:
        if match := re.fullmatch(pattern, key):
            return template(match) if callable(template) else match.expand(template)
    raise KeyError(f"unknown MiDaS key {key}")


def midas_to_transformers(midas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MiDaS DPT-Hybrid weights (``depth_model.model.`` removed) under ``DPTForDepthEstimation`` names.

    The tensors are the same objects (the qkv matrices become three row slices of themselves): nothing is copied.
    """
    out = {}
    for key, tensor in midas.items():
        if key.startswith(_UNUSED):
            continue
        if match := _QKV.fullmatch(key):
            layer, kind = match[1], match[2]
            for name, part in zip(("query", "key", "value"), tensor.chunk(3, dim=0)):
                out[f"dpt.encoder.layer.{layer}.attention.attention.{name}.{kind}"] = part
            continue
        out[_rename(key)] = tensor
    return out


def _count(keys, pattern: str) -> int:
    found = {int(m[1]) for key in keys if (m := re.match(pattern, key))}
    return max(found) + 1 if found else 0


def hybrid_config(midas: dict[str, torch.Tensor]) -> DPTConfig:
    """The real dpt-hybrid-midas config with every size the weights show read from their shapes.

    What shapes cannot tell (attention heads, group-norm groups, activations) stays as in the real model.
    """
    config = configs.read_json(CONFIG_FOLDER / "config.json")
    keys = list(midas)
    hidden = midas[_VIT + "cls_token"].shape[-1]
    layers = _count(keys, re.escape(_VIT) + r"blocks\.(\d+)\.")
    grid = math.isqrt(midas[_VIT + "pos_embed"].shape[1] - 1)
    stages = _count(keys, re.escape(_BIT) + r"stages\.(\d+)\.")
    widths = [midas[f"{_BIT}stages.{s}.blocks.0.conv3.weight"].shape[0] for s in range(stages)]
    backbone = config["backbone_config"]
    backbone.update(
        embedding_size=midas[_BIT + "stem.conv.weight"].shape[0],
        depths=[_count(keys, re.escape(f"{_BIT}stages.{s}.") + r"blocks\.(\d+)\.") for s in range(stages)],
        # The real config lists a fourth width the three stages never build; kept in the same form.
        hidden_sizes=[*widths, 2 * widths[-1]],
    )
    config.update(
        hidden_size=hidden,
        num_hidden_layers=layers,
        intermediate_size=midas[_VIT + "blocks.0.mlp.fc1.weight"].shape[0],
        image_size=grid * config["patch_size"],
        backbone_featmap_shape=[1, midas[_VIT + "patch_embed.proj.weight"].shape[1], grid, grid],
        # MiDaS reads the ViT out at the end of each quarter of its blocks (12 blocks: 2, 5, 8, 11).
        backbone_out_indices=[layers * (quarter + 1) // 4 - 1 for quarter in range(4)],
        neck_hidden_sizes=[midas[f"scratch.layer{i}_rn.weight"].shape[1] for i in range(1, 5)],
        fusion_hidden_size=midas["scratch.layer1_rn.weight"].shape[0],
    )
    if hidden % config["num_attention_heads"]:
        raise ValueError(f"width {hidden} does not split into {config['num_attention_heads']} attention heads")
    return DPTConfig.from_dict(config)


def image_processor(image_size: int):
    """The real dpt-hybrid-midas preprocessing at the network's input size (384 for the real model)."""
    return AutoImageProcessor.from_pretrained(CONFIG_FOLDER, local_files_only=True,
                                              size={"height": image_size, "width": image_size})


def build_depth_estimator(state_dict, *, name: str, device="cpu") -> DepthEstimator:
    """The estimator from a full checkpoint's ``depth_model.model.*`` entries. Raises ModelLoadError."""
    midas = with_prefix(state_dict, MIDAS_PREFIX)
    with reading("depth model", name):
        config = hybrid_config(midas)
        weights = midas_to_transformers(midas)
        del midas
        with init_empty_weights():
            model = DPTForDepthEstimation(config)
        release(state_dict, MIDAS_PREFIX)
        model = assign_weights(model, weights, device=device, dtype=torch.float32, name=name, part="depth model")
    return DepthEstimator(name=name, model=model, processor=image_processor(config.image_size))


def own_depth_estimator(state_dict, *, name: str, device="cpu") -> DepthEstimator | None:
    """The checkpoint's own estimator, or None when it has none or its depth part cannot be read (a warning is
    logged then: the checkpoint itself stays usable, with an uploaded map or a ``models/depth`` estimator)."""
    if not has_depth_model(state_dict):
        return None
    try:
        return build_depth_estimator(state_dict, name=name, device=device)
    except (ModelLoadError, TypeError) as error:
        log.warning("%s: its depth model is not used (%s)", name, error)
        return None
