"""Tiny Stable Diffusion models with the real architectures, written the ways real checkpoints are distributed.

Used by the tests and by the UI's "create tiny test model" (its images are noise: the weights are random). A tiny
model has every structural feature of its family (same block types, attention layout, text encoder kind, the real
49,408-token CLIP vocabulary and tokenizer) at widths of 32-64 channels, so it goes through the exact loading path
of a downloaded file in well under a second.

Kinds: ``sd1``, ``sd1-inpaint`` (9-channel UNet), ``sd1-pix2pix`` (8-channel instruct-pix2pix UNet), ``sd2``
(epsilon), ``sd2-v`` (v-prediction), ``sd2-depth`` (5-channel depth UNet, like 512-depth-ema), ``sdxl``.
Formats: original single file (``write_single_file``), 2022-style Lightning ``.ckpt`` (``write_ckpt``), diffusers
folder (``write_diffusers_folder``), standalone VAE (``write_vae``). Same kind + seed -> same bytes.

Full-size helpers live in ``full_size`` and are re-exported here.
"""
from __future__ import annotations

import json
import math
import pickle
import shutil
import types
from dataclasses import dataclass
from pathlib import Path

import numpy
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from paragoger.model_manager import configs, to_ldm
from paragoger.model_manager.full_size import sdxl_full_size_state_dict_on_meta, write_full_size_sd15  # noqa: F401
from paragoger.model_manager.safe_pickle import LIGHTNING_CHECKPOINT_CLASS, LightningModelCheckpoint

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


def _fill(module: torch.nn.Module, generator: torch.Generator) -> None:
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
            _fill(module, generator)
            module.eval().requires_grad_(False)
    if family == "sd2":
        # Random weights have no "prediction type". Give the output a bias that AUTOMATIC1111's probe (run the
        # UNet at t=999 on a constant input) reads as v-prediction for sd2-v and as epsilon for sd2.
        with torch.no_grad():
            unet.conv_out.bias.fill_(-3.0 if prediction == "v_prediction" else 0.0)
    return TinyModel(kind, family, variant, prediction, unet, vae, text_encoder, text_encoder_2,
                     configs.config_folder_for(family, variant, prediction))


# ---------------------------------------------------------------------------------------------- LDM layout


def _real_file_extras(state_dict: dict[str, torch.Tensor], model: TinyModel) -> dict[str, torch.Tensor]:
    """What downloaded files carry besides the models: EMA copies, the noise schedule, CLIP's position ids."""
    extras = {}
    for key, value in state_dict.items():
        if key.startswith("model.diffusion_model."):
            # LDM's EMA module flattens names: model.diffusion_model.a.b -> model_ema.diffusion_modelab
            extras["model_ema." + key[len("model."):].replace(".", "")] = value.clone()
    extras["model_ema.decay"] = torch.tensor(0.9999)
    extras["model_ema.num_updates"] = torch.tensor(470000, dtype=torch.int32)
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    extras["betas"] = betas.float()
    extras["alphas_cumprod"] = alphas_cumprod.float()
    extras["alphas_cumprod_prev"] = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]]).float()
    clip_prefix = {"sd1": "cond_stage_model.transformer.", "sdxl": "conditioner.embedders.0.transformer."}
    if model.family in clip_prefix:
        extras[clip_prefix[model.family] + "text_model.embeddings.position_ids"] = torch.arange(77)[None]
    return extras


def ldm_state_dict(model: TinyModel, *, dtype: torch.dtype | None = None,
                   extras: bool = False) -> dict[str, torch.Tensor]:
    """The model's weights under original single-file key names (contiguous tensors, nothing shared)."""
    state = to_ldm.checkpoint_to_ldm(model.family, model.unet, model.vae, model.text_encoder, model.text_encoder_2)
    if extras:
        state.update(_real_file_extras(state, model))
    cast = dtype or torch.float32
    return {k: (v.to(cast) if v.is_floating_point() else v).contiguous().clone() for k, v in state.items()}


# ---------------------------------------------------------------------------------------------- writers


def write_single_file(path: Path, kind: str = "sd1", *, seed: int = 0, dtype: torch.dtype = torch.float32,
                      extras: bool = False, metadata: dict[str, str] | None = None) -> Path:
    """An original single-file ``.safetensors`` (optionally fp16, optionally with the extras real files have)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = ldm_state_dict(tiny_model(kind, seed), dtype=dtype, extras=extras)
    save_file(state, str(path), metadata={"format": "pt", **(metadata or {})})
    return path


class _Lightning2022Pickler(pickle._Pickler):
    """Writes two globals the way 2022 checkpoints spell them, without pytorch_lightning or numpy 1 installed:
    the Lightning ``ModelCheckpoint`` class and numpy's scalar constructor (``numpy.core.multiarray.scalar``).
    """

    _SPELLINGS = {
        LightningModelCheckpoint: tuple(LIGHTNING_CHECKPOINT_CLASS.rsplit(".", 1)),
        numpy._core.multiarray.scalar: ("numpy.core.multiarray", "scalar"),
    }

    def save_global(self, obj, name=None):
        spelled = self._SPELLINGS.get(obj)
        if spelled is None:
            return super().save_global(obj, name)
        module, qualname = spelled
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("utf-8"))
        self.memoize(obj)



def lightning_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict:
    """What a 2022 Lightning ``.ckpt`` held around the weights (as in the SD 1.x release files)."""
    callback_state = {"monitor": None, "best_model_score": None, "best_model_path": "", "current_score": None,
                      "dirpath": "/fsx/stable-diffusion/logs/checkpoints"}
    return {
        "epoch": 6,
        "global_step": numpy.int64(470000),
        "pytorch-lightning_version": "1.4.2",
        "state_dict": state_dict,
        "callbacks": {LightningModelCheckpoint: callback_state},
        "optimizer_states": [],
        "lr_schedulers": [],
    }


def write_ckpt(path: Path, kind: str = "sd1", *, seed: int = 0, extras: bool = True) -> Path:
    """A ``.ckpt`` shaped like the 2022 release files: Lightning wrapper, numpy ``global_step``, callbacks."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = ldm_state_dict(tiny_model(kind, seed), extras=extras)
    return save_like_2022(lightning_checkpoint(state), path)


def save_like_2022(obj, path: Path) -> Path:
    """``torch.save`` with protocol 2 and the global names 2022 files use (see ``_Lightning2022Pickler``)."""
    # torch.save takes a "pickle module"; all it uses of it is its Pickler class (and its name).
    pickle_module = types.SimpleNamespace(Pickler=_Lightning2022Pickler, __name__="pickle")
    torch.save(obj, path, pickle_module=pickle_module, pickle_protocol=2)
    return Path(path)


def write_diffusers_folder(folder: Path, kind: str = "sd1", *, seed: int = 0) -> Path:
    """A diffusers pipeline folder (weights, configs, tokenizers, scheduler, model_index.json).

    Also usable as ``config=`` for diffusers' ``from_single_file`` on the single file of the same kind.
    """
    folder = Path(folder)
    model = tiny_model(kind, seed)
    configs.materialize(model.config_folder, folder)  # model_index, scheduler, tokenizers
    scheduler = configs.model_config(folder, "scheduler")
    scheduler["prediction_type"] = model.prediction_type
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler, indent=2), encoding="utf-8")
    for sub in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(model, sub)
        if module is not None:
            shutil.rmtree(folder / sub, ignore_errors=True)
            module.save_pretrained(folder / sub)
    return folder


def write_vae(path: Path, *, seed: int = 1, kind: str = "sd1", layout: str = "ldm") -> Path:
    """A standalone VAE (different weights from the checkpoints' own, by default).

    layout: ``ldm`` (``encoder.down.*`` keys, like vae-ft-mse-840000 files; ``.safetensors`` or, by suffix,
    a ``.pt``/``.ckpt`` with a ``state_dict``), ``diffusers-file`` (``encoder.down_blocks.*`` keys) or
    ``diffusers-folder`` (save_pretrained).
    """
    path = Path(path)
    vae = tiny_model(kind, seed).vae
    if layout == "diffusers-folder":
        vae.save_pretrained(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    state = vae.state_dict() if layout == "diffusers-file" else to_ldm.vae_to_ldm(vae.state_dict(), vae.config)
    state = {k: v.contiguous().clone() for k, v in state.items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path), metadata={"format": "pt"})
    else:
        torch.save({"state_dict": state}, path)
    return path
