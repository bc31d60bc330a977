"""VAEs that replace a checkpoint's own: from a file beside it, the VAE folder, or a diffusers folder."""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL

from paragoger.errors import ModelLoadError
from paragoger.model_manager import configs, convert
from paragoger.model_manager.detect import VAE_PREFIX
from paragoger.model_manager.state_dict import read_state_dict
from paragoger.model_manager.to_ldm import vae_to_ldm

VAE_SUFFIXES_BESIDE = (".vae.safetensors", ".vae.pt", ".vae.ckpt")


def vae_beside(path: Path) -> Path | None:
    """``<name>.vae.safetensors`` (or .vae.pt / .vae.ckpt) next to a checkpoint."""
    path = Path(path)
    for suffix in VAE_SUFFIXES_BESIDE:
        candidate = path.with_name(path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def load_vae(path: Path, *, device="cpu", dtype=torch.float32, base_config: dict | None = None) -> AutoencoderKL:
    """A VAE from an LDM-format file (``encoder.down.*``, with or without ``first_stage_model.``), a
    diffusers-format file (``encoder.down_blocks.*``) or a diffusers VAE folder.

    ``base_config`` supplies what shapes cannot tell, chiefly the latent scaling factor (SD 1.x's by default).
    """
    path, device = Path(path), torch.device(device)
    name = path.name
    base = dict(base_config or configs.model_config(configs.DIFFUSERS_CONFIGS / configs.SD15, "vae"))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError("vae_unknown_architecture", name=name)
        vae = AutoencoderKL.from_pretrained(path, dtype=dtype, local_files_only=True)
        return vae.to(device).eval().requires_grad_(False)
    if not path.is_file():
        raise ModelLoadError("vae_not_found", name=name)
    state_dict, _ = read_state_dict(path, display_name=name)
    if any(k.startswith(VAE_PREFIX) for k in state_dict):
        state_dict = convert.with_prefix(state_dict, VAE_PREFIX)
    if any(k.startswith("encoder.down_blocks.") for k in state_dict):
        levels = 1 + max(int(k.split(".")[2]) for k in state_dict if k.startswith("encoder.down_blocks."))
        state_dict = vae_to_ldm(state_dict, {"block_out_channels": [0] * levels})
    if "encoder.conv_in.weight" not in state_dict or "post_quant_conv.weight" not in state_dict:
        raise ModelLoadError("vae_unknown_architecture", name=name)
    return convert.build_vae(state_dict, base, device=device, dtype=dtype, name=name, prefix="")
