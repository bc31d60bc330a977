"""Load a checkpoint (original single file or diffusers folder) into ``Components``, fully offline.

Single files: read once (``state_dict``), detected (``detect``), each model's config derived from the family's
config in ``configs/`` plus the tensors' shapes (``ldm_config``), converted with diffusers' own functions and
assigned into meta-device modules (``convert``). A ``<name>.yaml`` beside the file is honoured for what shapes
cannot say (prediction type, head counts, VAE scale). A VAE override comes from ``vae_path`` or from
``<name>.vae.safetensors`` (``.vae.pt``, ``.vae.ckpt``) beside the checkpoint, as in AUTOMATIC1111 (see ``vae``).
Diffusers folders load with ``from_pretrained`` from their local subfolders.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from paragoger.errors import ModelLoadError
from paragoger.model_manager import configs, convert, midas
from paragoger.model_manager.components import CheckpointInfo, Components
from paragoger.model_manager.detect import (
    EPSILON,
    V_PREDICTION,
    VAE_PREFIX,
    Detection,
    detect_diffusers_folder,
    detect_state_dict,
    is_diffusers_folder,
    probe_v_prediction,
)
from paragoger.model_manager.hashing import sha256_of, short_hash
from paragoger.model_manager.state_dict import read_state_dict
from paragoger.model_manager.vae import load_vae, vae_beside

log = logging.getLogger(__name__)

def read_yaml_beside(path: Path) -> dict | None:
    """The original LDM config ``<name>.yaml`` next to a checkpoint, if any (unreadable ones are ignored)."""
    candidate = Path(path).with_suffix(".yaml")
    if not candidate.is_file():
        return None
    try:
        loaded = yaml.safe_load(candidate.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        log.warning("ignoring %s: %s", candidate, error)
        return None
    return loaded if isinstance(loaded, dict) else None


def scheduler_config_for(folder: Path, prediction_type: str) -> dict:
    config = configs.model_config(folder, "scheduler")
    config["prediction_type"] = prediction_type
    return config


def load_checkpoint(info: CheckpointInfo, *, device="cpu", dtype=torch.float32, vae_path: Path | None = None,
                    vae_beside_checkpoint: bool = True) -> Components:
    """Every model of a checkpoint on ``device`` in ``dtype``. Raises ModelLoadError with a readable message.

    The VAE is, in order: ``vae_path``; ``<name>.vae.safetensors`` (.pt, .ckpt) beside a single-file checkpoint
    unless ``vae_beside_checkpoint`` is False (A1111's VAE setting "None"); the checkpoint's own.
    """
    device = torch.device(device)
    path = Path(info.path)
    diffusers_folder = info.is_diffusers_folder or is_diffusers_folder(path)
    beside = vae_beside(path) if vae_beside_checkpoint and not diffusers_folder else None
    override = Path(vae_path) if vae_path else beside
    if diffusers_folder:
        components = _load_diffusers_folder(info, device=device, dtype=dtype)
    else:
        # The checkpoint's own VAE is not even built when another one replaces it.
        components = _load_single_file(info, device=device, dtype=dtype, with_vae=override is None)
    if override is not None:
        base = configs.model_config(components.extra["config_folder"], "vae")
        components.vae = load_vae(override, device=device, dtype=dtype, base_config=base)
        components.vae_name = override.name
        # The infotext's "VAE hash" (a VAE file is a few hundred MB: hashing it takes a fraction of a second).
        components.vae_hash = short_hash(sha256_of(override)) if override.is_file() else None
    return components


def _load_single_file(info: CheckpointInfo, *, device, dtype, with_vae: bool) -> Components:
    path, name = Path(info.path), info.name
    yaml_config = read_yaml_beside(path)
    state_dict, metadata = read_state_dict(path, display_name=name)
    detection = detect_state_dict(state_dict, name=name, yaml_config=yaml_config, metadata=metadata)
    prediction = detection.prediction_type or EPSILON
    folder = configs.config_folder_for(detection.family, detection.variant, prediction)

    unet_base = configs.model_config(folder, "unet")
    unet_config = convert.unet_config_for(state_dict, unet_base, name=name, yaml_config=yaml_config)
    unet = convert.build_unet(state_dict, unet_config, device=device, dtype=dtype, name=name)
    if detection.needs_probe:
        prediction = V_PREDICTION if probe_v_prediction(unet) else EPSILON
        detection = replace(detection, prediction_type=prediction)
        v_folder = configs.config_folder_for(detection.family, detection.variant, prediction)
        if v_folder != folder:
            folder = v_folder
            unet = _rebuild_unet(unet, convert.unet_config_for(
                state_dict, configs.model_config(folder, "unet"), name=name, yaml_config=yaml_config))

    vae = None
    if with_vae:
        if not any(k.startswith(VAE_PREFIX) for k in state_dict):
            raise ModelLoadError("checkpoint_missing_vae", name=name, stem=path.stem)
        vae = convert.build_vae(state_dict, configs.model_config(folder, "vae"), device=device, dtype=dtype,
                                name=name, yaml_config=yaml_config)
    bases = {sub: configs.model_config(folder, sub) for sub in ("text_encoder", "text_encoder_2")
             if (folder / sub).is_dir()}
    text_encoder, text_encoder_2 = convert.build_text_encoders(state_dict, detection.family, bases,
                                                               device=device, dtype=dtype, name=name)
    # 512-depth-ema carries the MiDaS model it was trained with; a damaged one is left out (with a warning).
    depth_estimator = midas.own_depth_estimator(state_dict, name=name, device=device) \
        if detection.variant == "depth" else None
    del state_dict
    return Components(
        family=detection.family, variant=detection.variant, prediction_type=prediction,
        unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=configs.tokenizer_from_folder(folder / "tokenizer"),
        tokenizer_2=configs.tokenizer_from_folder(folder / "tokenizer_2") if text_encoder_2 is not None else None,
        scheduler_config=scheduler_config_for(folder, prediction), info=info,
        extra={"detection": detection, "config_folder": folder, "yaml": yaml_config is not None,
               "metadata": metadata, "is_diffusers": False, "depth_estimator": depth_estimator},
    )


def _rebuild_unet(unet: UNet2DConditionModel, config: dict) -> UNet2DConditionModel:
    """The same weights under another config (SD 2.x base -> 768 v settings), sharing every tensor."""
    with init_empty_weights():
        rebuilt = UNet2DConditionModel.from_config(config)
    rebuilt.load_state_dict(unet.state_dict(), strict=True, assign=True)
    return rebuilt.eval().requires_grad_(False)


def _load_diffusers_folder(info: CheckpointInfo, *, device, dtype) -> Components:
    folder, name = Path(info.path), info.name
    detection: Detection = detect_diffusers_folder(folder, name=name)
    options = {"local_files_only": True}
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", dtype=dtype, **options)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", dtype=dtype, **options)
        text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=dtype, **options)
        text_encoder_2 = None
        if detection.family == "sdxl":
            text_encoder_2 = CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder_2", dtype=dtype,
                                                                         **options)
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError("checkpoint_corrupt", name=name, reason=str(error).splitlines()[0]) from None
    modules = [m.to(device).eval().requires_grad_(False) for m in (unet, vae, text_encoder)]
    if text_encoder_2 is not None:
        text_encoder_2 = text_encoder_2.to(device).eval().requires_grad_(False)
    family_folder = configs.config_folder_for(detection.family, detection.variant, detection.prediction_type)
    return Components(
        family=detection.family, variant=detection.variant, prediction_type=detection.prediction_type,
        unet=modules[0], vae=modules[1], text_encoder=modules[2], text_encoder_2=text_encoder_2,
        tokenizer=configs.tokenizer_from_folder(folder / "tokenizer"),
        tokenizer_2=configs.tokenizer_from_folder(folder / "tokenizer_2") if text_encoder_2 is not None else None,
        scheduler_config=scheduler_config_for(folder, detection.prediction_type), info=info,
        extra={"detection": detection, "config_folder": family_folder, "yaml": False, "metadata": {},
               "is_diffusers": True},
    )
