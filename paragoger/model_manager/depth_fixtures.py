"""Tiny depth estimators with real architectures: transformers folders like downloaded ones, and the MiDaS part of
SD 2.x depth checkpoints.

``tiny_depth_estimator``: a DPT (``DPTForDepthEstimation``, the ViT variant of the MiDaS DPT models) at widths of
8-32 channels, with its image processor config beside it, so ``models/depth/<name>`` holding it goes through the
exact loading path of a real ``dpt-large`` folder. ``tiny_hybrid_depth_estimator``: the DPT-Hybrid that
512-depth-ema carries, written as a folder (``write_hybrid_depth_estimator``) or, under MiDaS' own names, inside a
tiny depth checkpoint (``write_depth_checkpoint``). Their depth is noise (the weights are random). Same seed -> same
bytes.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

from paragoger.model_manager.fixtures import _fill, ldm_state_dict, tiny_model
from paragoger.model_manager.midas import CONFIG_FOLDER, MIDAS_PREFIX

# Only sizes are small; the layout (4 ViT stages read out, reassembled and fused, depth head) is DPT's own.
_TINY_DPT = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 64,
             "image_size": 32, "patch_size": 8, "backbone_out_indices": [0, 1, 2, 3],
             "neck_hidden_sizes": [8, 16, 32, 32], "fusion_hidden_size": 16, "use_auxiliary_head": False}
# The MiDaS models' preprocessing (scale to the network size, normalise to -1..1), at the tiny network's size.
_TINY_PROCESSOR = {"size": {"height": 32, "width": 32}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                   "do_normalize": True, "keep_aspect_ratio": False}


def tiny_depth_estimator(seed: int = 0) -> DPTForDepthEstimation:
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # constructors draw from the global RNG; leave it untouched
        model = DPTForDepthEstimation(DPTConfig(**_TINY_DPT))
    _fill(model, generator)
    # The head ends in a ReLU: random weights would flatten most of the map to 0. A positive last bias keeps the
    # (random) depth positive and varied, like a real relative-depth map.
    last_conv = [module for module in model.head.modules() if isinstance(module, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last_conv.bias.fill_(1.0)
    return model.eval().requires_grad_(False)


def write_depth_estimator(folder: Path, *, seed: int = 0) -> Path:
    """``config.json``, the weights and ``preprocessor_config.json`` in ``folder`` (e.g. models/depth/tiny-dpt)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tiny_depth_estimator(seed).save_pretrained(folder)
    DPTImageProcessor(**_TINY_PROCESSOR).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------- MiDaS DPT-Hybrid
# The estimator SD 2.x depth checkpoints carry (``depth_model.model.*``): the real dpt-hybrid-midas config
# (configs/depth/dpt-hybrid-midas) with only the sizes the weights show made small. Heads (12) and group-norm
# groups (32) stay real, so widths are multiples of them. A 64 px input: a 4 x 4 token grid after the stride-16 stem.
_TINY_HYBRID = {"hidden_size": 48, "num_hidden_layers": 4, "intermediate_size": 96, "image_size": 64,
                "backbone_featmap_shape": [1, 256, 4, 4], "backbone_out_indices": [0, 1, 2, 3],
                "neck_hidden_sizes": [128, 128, 48, 48], "fusion_hidden_size": 16}
_TINY_BIT = {"embedding_size": 32, "depths": [1, 1, 2], "hidden_sizes": [128, 128, 256, 512]}


def tiny_hybrid_depth_estimator(seed: int = 0) -> DPTForDepthEstimation:
    """A DPT-Hybrid (``is_hybrid=True``: BiT ResNet stem + ViT) at tiny widths, weights drawn from ``seed``."""
    config = json.loads((CONFIG_FOLDER / "config.json").read_text(encoding="utf-8"))
    config.update(_TINY_HYBRID)
    config["backbone_config"].update(_TINY_BIT)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        model = DPTForDepthEstimation(DPTConfig.from_dict(config))
    _fill(model, generator)
    last_conv = [module for module in model.head.modules() if isinstance(module, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last_conv.bias.fill_(1.0)  # positive, varied depth through the final ReLU (see tiny_depth_estimator)
    return model.eval().requires_grad_(False)


def hybrid_processor(model: DPTForDepthEstimation) -> DPTImageProcessor:
    """The real dpt-hybrid-midas preprocessing at ``model``'s input size."""
    settings = json.loads((CONFIG_FOLDER / "preprocessor_config.json").read_text(encoding="utf-8"))
    settings.pop("image_processor_type")
    size = model.config.image_size
    return DPTImageProcessor(**{**settings, "size": {"height": size, "width": size}})


def _midas_name(key: str) -> str | None:
    """MiDaS' name for one ``DPTForDepthEstimation`` key (None for the q/k/v parts, joined separately).

    Written independently of ``midas._rename`` (walking the transformers names instead of the MiDaS ones), so the
    round trip through both checks each against the other.
    """
    parts = key.split(".")
    if key.startswith("dpt.embeddings.backbone.bit."):
        backbone = "pretrained.model.patch_embed.backbone."
        if parts[4] == "embedder":  # embedder.convolution.weight / embedder.norm.{weight,bias}
            return backbone + "stem." + {"convolution": "conv", "norm": "norm"}[parts[5]] + "." + parts[6]
        # encoder.stages.S.layers.B.<rest>
        return backbone + f"stages.{parts[6]}.blocks.{parts[8]}." + ".".join(parts[9:])
    if parts[:2] == ["dpt", "embeddings"]:
        return {"projection": "pretrained.model.patch_embed.proj." + parts[-1],
                "cls_token": "pretrained.model.cls_token",
                "position_embeddings": "pretrained.model.pos_embed"}[parts[2]]
    if parts[:2] == ["dpt", "encoder"]:
        block, inner = f"pretrained.model.blocks.{parts[3]}.", ".".join(parts[4:])
        if inner.startswith("attention.attention."):
            return None
        names = {"layernorm_before": "norm1", "layernorm_after": "norm2", "attention.output.dense": "attn.proj",
                 "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
        module, leaf = inner.rsplit(".", 1)
        return block + names[module] + "." + leaf
    if parts[:2] == ["dpt", "layernorm"]:
        return "pretrained.model.norm." + parts[2]
    if parts[:2] == ["neck", "reassemble_stage"]:
        stage = int(parts[3]) + 1
        if parts[2] == "readout_projects":
            return f"pretrained.act_postprocess{stage}.0.project.0.{parts[-1]}"
        return f"pretrained.act_postprocess{stage}.{ {'projection': 3, 'resize': 4}[parts[4]] }.{parts[-1]}"
    if parts[:2] == ["neck", "convs"]:
        return f"scratch.layer{int(parts[2]) + 1}_rn.{parts[-1]}"
    if parts[:2] == ["neck", "fusion_stage"]:
        block = f"scratch.refinenet{4 - int(parts[3])}."
        if parts[4] == "projection":
            return block + "out_conv." + parts[-1]
        unit, conv = parts[4][-1], parts[5][-1]  # residual_layerJ.convolutionK
        return block + f"resConfUnit{unit}.conv{conv}.{parts[-1]}"
    if parts[0] == "head":
        return "scratch.output_conv." + ".".join(parts[2:])
    raise KeyError(key)


def hybrid_to_midas(model: DPTForDepthEstimation) -> dict[str, torch.Tensor]:
    """The model's weights as MiDaS saves them (fused qkv per ViT block), as in ``depth_model.model.*``."""
    state = model.state_dict()
    midas = {}
    for key, tensor in state.items():
        name = _midas_name(key)
        if name is not None:
            midas[name] = tensor.contiguous().clone()
    for layer in range(model.config.num_hidden_layers):
        prefix = f"dpt.encoder.layer.{layer}.attention.attention."
        for kind in ("weight", "bias"):
            midas[f"pretrained.model.blocks.{layer}.attn.qkv.{kind}"] = torch.cat(
                [state[f"{prefix}{name}.{kind}"] for name in ("query", "key", "value")]).contiguous()
    # timm's ImageNet classifier is saved with the ViT in real files (1000 classes); MiDaS never uses it.
    midas["pretrained.model.head.weight"] = torch.zeros(1000, model.config.hidden_size)
    midas["pretrained.model.head.bias"] = torch.zeros(1000)
    return midas


def write_hybrid_depth_estimator(folder: Path, *, seed: int = 0) -> Path:
    """The tiny hybrid as a transformers folder (what ``models/depth/dpt-hybrid-midas`` holds, at tiny size)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_hybrid_depth_estimator(seed)
    model.save_pretrained(folder)
    hybrid_processor(model).save_pretrained(folder)
    return folder


def write_depth_checkpoint(path: Path, *, seed: int = 0, depth_seed: int = 0, with_depth_model: bool = True,
                           drop: tuple[str, ...] = ()) -> Path:
    """A tiny ``sd2-depth`` single file like 512-depth-ema: with its MiDaS part under ``depth_model.model.``.

    ``drop``: MiDaS key prefixes to leave out (a damaged depth part).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = ldm_state_dict(tiny_model("sd2-depth", seed))
    if with_depth_model:
        midas = hybrid_to_midas(tiny_hybrid_depth_estimator(depth_seed))
        state.update({MIDAS_PREFIX + k: v for k, v in midas.items() if not any(k.startswith(p) for p in drop)})
    save_file(state, str(path), metadata={"format": "pt"})
    return path
