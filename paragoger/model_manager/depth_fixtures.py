"""A tiny depth estimator with a real architecture, written as a transformers folder like a downloaded one.

It is a DPT (``DPTForDepthEstimation``, the ViT variant of the MiDaS DPT models) at widths of 8-32 channels, with
its image processor config beside it, so ``models/depth/<name>`` holding it goes through the exact loading path of
a real ``dpt-hybrid-midas`` / ``dpt-large`` folder. Its depth is noise (the weights are random). Same seed -> same
bytes.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

from paragoger.model_manager.fixtures import _fill

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
