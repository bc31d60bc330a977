"""A tiny Stable Diffusion model for trying the app without downloading one (``--create-test-model``, the
Settings button "Create tiny test model", ``python -m paragoger.bench``); the tests build their models here too.

Its images are noise: the weights are random. A tiny model has every structural feature of its family (same block
types, attention layout, text encoder kind, the real 49,408-token CLIP vocabulary and tokenizer) at widths of
32-64 channels, so it goes through the exact loading path of a downloaded file in well under a second.

Kinds: ``sd1``, ``sd1-inpaint`` (9-channel UNet), ``sd1-pix2pix`` (8-channel instruct-pix2pix UNet), ``sd2``
(epsilon), ``sd2-v`` (v-prediction), ``sd2-depth`` (5-channel depth UNet, like 512-depth-ema), ``sdxl``.
``tiny_model`` builds the modules; ``write_single_file`` writes them as an original single-file ``.safetensors``.
Same kind + seed -> same bytes. (The other formats real checkpoints come in, for the tests, are written by
tests/fixtures/checkpoints.py.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from paragoger.model_manager import configs, to_ldm

KINDS = ("sd1", "sd1-inpaint", "sd1-pix2pix", "sd2", "sd2-v", "sd2-depth", "sdxl")

# kind -> (family, variant, prediction type)
_KIND = {
    "sd1": ("sd1", "base", "epsilon"),
    "sd1-inpaint": ("sd1", "inpaint", "epsilon"),
    "sd1-pix2pix": ("sd1", "instruct-pix2pix", "epsilon"),
    "sd2": ("sd2", "base", "epsilon"),
    "sd2-v": ("sd2", "base", "v_prediction"),
    "sd2-depth": ("sd2", "depth", "epsilon"),
    "sdxl": ("sdxl", "base", "epsilon"),
}

# Only what the weights' shapes determine is made small; every other field is the family's real config.
_TINY_UNET = {"block_out_channels": [32, 64], "layers_per_block": 1, "cross_attention_dim": 32}
_TINY_UNET_BY_FAMILY = {
    "sd1": {"down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]},
    "sd2": {"down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "attention_head_dim": [1, 1]},
    # SDXL: no attention at the top level, a deeper transformer below, CLIP-L (32) + bigG (64) context,
    # additional embeddings of the pooled text (64) and six size numbers (6 x 8).
    "sdxl": {"down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "attention_head_dim": [1, 1],
             "transformer_layers_per_block": [1, 2], "cross_attention_dim": 32 + 64,
             "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 64 + 6 * 8},
}
# Four levels like the real VAE, so latents are 1/8 of the image size as the rest of the app expects.
_TINY_VAE = {"block_out_channels": [32, 64, 64, 64], "layers_per_block": 1}
_TINY_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 1}
# SDXL's second encoder is wider than its first, as in the real model (diffusers tells them apart by width).
_TINY_TEXT_2 = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 1,
                "projection_dim": 64}


@dataclass
class TinyModel:
    """The diffusers/transformers modules of one tiny checkpoint (the ground truth a loaded file is compared to)."""

    kind: str
    family: str
    variant: str
    prediction_type: str
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    text_encoder_2: CLIPTextModelWithProjection | None
    config_folder: Path

    @property
    def text_encoders(self) -> list:
        return [m for m in (self.text_encoder, self.text_encoder_2) if m is not None]


def fill_random(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Deterministic random weights: matrices ~ N(0, 1/fan_in), norm scales ~ 1, biases ~ 0."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0.0, 1.0 / math.sqrt(parameter[0].numel()), generator=generator)
            elif name.endswith("bias"):
                parameter.normal_(0.0, 0.02, generator=generator)
            else:
                parameter.normal_(1.0, 0.02, generator=generator)


def tiny_configs(kind: str) -> dict[str, dict]:
    """The diffusers configs of a tiny model of ``kind``: the family's real configs with small widths."""
    family, variant, prediction = _KIND[kind]
    folder = configs.config_folder_for(family, variant, prediction)
    unet = configs.model_config(folder, "unet")
    unet.update(_TINY_UNET, **_TINY_UNET_BY_FAMILY[family])
    unet["in_channels"] = {"base": 4, "inpaint": 9, "depth": 5, "instruct-pix2pix": 8}[variant]
    vae = configs.model_config(folder, "vae")
    vae.update(_TINY_VAE)
    out = {"unet": unet, "vae": vae, "text_encoder": {**configs.model_config(folder, "text_encoder"), **_TINY_TEXT}}
    if family == "sdxl":
        out["text_encoder_2"] = {**configs.model_config(folder, "text_encoder_2"), **_TINY_TEXT_2}
    return out


def tiny_model(kind: str = "sd1", seed: int = 0) -> TinyModel:
    """Build the tiny model of ``kind`` with weights drawn from ``seed``."""
    if kind not in _KIND:
        raise ValueError(f"unknown tiny model kind {kind!r}; known: {', '.join(KINDS)}")
    family, variant, prediction = _KIND[kind]
    tiny = tiny_configs(kind)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG; leave it untouched
        unet = UNet2DConditionModel.from_config(tiny["unet"])
        vae = AutoencoderKL.from_config(tiny["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(tiny["text_encoder"]))
        text_encoder_2 = None
        if "text_encoder_2" in tiny:
            text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(tiny["text_encoder_2"]))
    for module in (unet, vae, text_encoder, text_encoder_2):
        if module is not None:
            fill_random(module, generator)
            module.eval().requires_grad_(False)
    if family == "sd2":
        # Random weights have no "prediction type". Give the output a bias that AUTOMATIC1111's probe (run the
        # UNet at t=999 on a constant input) reads as v-prediction for sd2-v and as epsilon for sd2.
        with torch.no_grad():
            unet.conv_out.bias.fill_(-3.0 if prediction == "v_prediction" else 0.0)
    return TinyModel(kind, family, variant, prediction, unet, vae, text_encoder, text_encoder_2,
                     configs.config_folder_for(family, variant, prediction))


# ---------------------------------------------------------------------------------------------- LDM layout


def file_tensors(state: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Tensors as a file holds them: floating ones cast to ``dtype`` (float32 by default), contiguous, nothing
    shared."""
    cast = dtype or torch.float32
    return {k: (v.to(cast) if v.is_floating_point() else v).contiguous().clone() for k, v in state.items()}


def ldm_state_dict(model: TinyModel, *, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The model's weights under original single-file key names (contiguous tensors, nothing shared)."""
    state = to_ldm.checkpoint_to_ldm(model.family, model.unet, model.vae, model.text_encoder, model.text_encoder_2)
    return file_tensors(state, dtype)


# ---------------------------------------------------------------------------------------------- writing


def save_single_file(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """``state`` as a ``.safetensors`` file (folders made as needed; ``format: pt`` in the header, as torch's
    writers put it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt", **(metadata or {})})
    return path


def write_single_file(path: Path, kind: str = "sd1", *, seed: int = 0, dtype: torch.dtype = torch.float32,
                      metadata: dict[str, str] | None = None) -> Path:
    """The tiny model of ``kind`` as an original single-file ``.safetensors`` (optionally fp16)."""
    return save_single_file(path, ldm_state_dict(tiny_model(kind, seed), dtype=dtype), metadata)
