"""What kind of Stable Diffusion model a file or folder holds: family, variant, prediction type.

Family, from the text encoder's key layout (sizes play no part, so tiny test models are detected like real ones):

* ``cond_stage_model.transformer.*`` (OpenAI CLIP-L)            -> ``sd1``
* ``cond_stage_model.model.*`` (OpenCLIP ViT-H)                  -> ``sd2``
* ``conditioner.embedders.0.transformer.*`` + ``.1.model.*``      -> ``sdxl`` (CLIP-L + OpenCLIP bigG)

Variant, from the UNet's input channels: 4 base, 9 inpaint, 5 depth, 8 instruct-pix2pix.

Prediction type (``epsilon`` or ``v_prediction``), first rule that applies:

1. a ``<name>.yaml`` beside the checkpoint: ``model.params.parameterization: "v"`` means v-prediction, any other
   value or none means epsilon (the original LDM default);
2. the safetensors header's ``modelspec.prediction_type`` (Stability's model spec, written by common training
   tools): ``v``/``v_prediction`` or ``epsilon``/``eps``;
3. a ``v_pred`` marker key in the state dict (carried by v-prediction SDXL files; ComfyUI and Forge read it);
4. SD 2.x base models: AUTOMATIC1111's test. The 768 px SD 2.x models are v-prediction, the 512 px ones epsilon,
   and nothing in the file says which; so the UNet is run once on a constant input at t=999 with a constant
   context, and v-prediction is assumed when ``mean(output - input) < -1`` (an epsilon model predicts roughly its
   input as noise at that step; a v model does not). See ``probe_v_prediction``;
5. everything else (SD 1.x, SDXL, SD 2.x inpainting and depth): epsilon.

Diffusers folders: family from their components, prediction type from ``scheduler_config.json``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from paragoger.errors import ModelLoadError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer.text_model."
SD2_OPENCLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer.text_model."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."
UNET_INPUT_KEY = UNET_PREFIX + "input_blocks.0.0.weight"

VARIANT_BY_IN_CHANNELS = {4: "base", 9: "inpaint", 5: "depth", 8: "instruct-pix2pix"}
EPSILON, V_PREDICTION = "epsilon", "v_prediction"


@dataclass(frozen=True)
class Detection:
    family: str
    variant: str
    prediction_type: str | None  # None: decide with ``probe_v_prediction`` once the UNet is built
    prediction_source: str  # how the prediction type was (or will be) decided, for logs and the UI
    is_diffusers_folder: bool = False

    @property
    def needs_probe(self) -> bool:
        return self.prediction_type is None


def _has_prefix(keys, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def family_of(keys) -> str | None:
    """``sd1``/``sd2``/``sdxl`` from LDM key names, or None when the layout is not one of them."""
    keys = list(keys)
    if not _has_prefix(keys, UNET_PREFIX):
        return None
    if _has_prefix(keys, SDXL_CLIP_PREFIX) and _has_prefix(keys, SDXL_OPENCLIP_PREFIX):
        return "sdxl"
    if _has_prefix(keys, SD2_OPENCLIP_PREFIX):
        return "sd2"
    if _has_prefix(keys, SD1_CLIP_PREFIX):
        return "sd1"
    return None


def variant_of(state_dict: dict[str, torch.Tensor]) -> str | None:
    weight = state_dict.get(UNET_INPUT_KEY)
    return None if weight is None else VARIANT_BY_IN_CHANNELS.get(int(weight.shape[1]))


def prediction_from_yaml(yaml_config: dict | None) -> str | None:
    """The prediction type an original LDM config states (None when there is no config)."""
    if yaml_config is None:
        return None
    params = (yaml_config.get("model") or {}).get("params") or {}
    return V_PREDICTION if str(params.get("parameterization", "eps")).lower() == "v" else EPSILON


def prediction_from_metadata(metadata: dict | None) -> str | None:
    """The prediction type a safetensors header states in ``modelspec.prediction_type``, if any."""
    stated = str((metadata or {}).get("modelspec.prediction_type", "")).strip().lower()
    return {"v": V_PREDICTION, "v_prediction": V_PREDICTION, "epsilon": EPSILON, "eps": EPSILON}.get(stated)


def detect_state_dict(state_dict: dict[str, torch.Tensor], *, name: str, yaml_config: dict | None = None,
                      metadata: dict | None = None) -> Detection:
    """Detection for an original single-file checkpoint (keys already normalised by ``state_dict``)."""
    family = family_of(state_dict)
    variant = variant_of(state_dict) if family else None
    if family is None or variant is None:
        raise ModelLoadError("checkpoint_unknown_architecture", name=name)
    stated = prediction_from_yaml(yaml_config)
    if stated is not None:
        return Detection(family, variant, stated, "yaml")
    stated = prediction_from_metadata(metadata)
    if stated is not None:
        return Detection(family, variant, stated, "modelspec.prediction_type")
    if "v_pred" in state_dict:
        return Detection(family, variant, V_PREDICTION, "v_pred key")
    if family == "sd2" and variant == "base":
        return Detection(family, variant, None, "probe")
    return Detection(family, variant, EPSILON, "default")


def is_diffusers_folder(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "model_index.json").is_file()


def detect_diffusers_folder(folder: Path, *, name: str) -> Detection:
    """Detection for a diffusers pipeline folder, from its component configs.

    SDXL has a second text encoder; SD 2.x's text encoder is OpenCLIP (``gelu``), SD 1.x's is OpenAI CLIP
    (``quick_gelu``). Variant from the UNet's ``in_channels``, prediction type from the scheduler config.
    """
    from paragoger.model_manager.configs import model_config, read_json  # configs pulls in transformers

    folder = Path(folder)
    try:
        index = read_json(folder / "model_index.json")
        unet = model_config(folder, "unet")
        text = model_config(folder, "text_encoder")
    except (OSError, ValueError) as error:
        raise ModelLoadError("checkpoint_unknown_architecture", name=name) from error
    if index.get("text_encoder_2") and (folder / "text_encoder_2").is_dir():
        family = "sdxl"
    elif text.get("hidden_act") == "gelu":
        family = "sd2"
    else:
        family = "sd1"
    variant = VARIANT_BY_IN_CHANNELS.get(int(unet.get("in_channels", 4)))
    if variant is None:
        raise ModelLoadError("checkpoint_unknown_architecture", name=name)
    try:
        prediction = model_config(folder, "scheduler").get("prediction_type", EPSILON)
    except OSError:
        prediction = EPSILON
    return Detection(family, variant, prediction, "scheduler_config.json", is_diffusers_folder=True)


@torch.no_grad()
def probe_v_prediction(unet) -> bool:
    """AUTOMATIC1111's test for an SD 2.x UNet: does it look like a v-prediction model? (see module docstring)

    Runs once at 8x8 latents, in the UNet's own device and dtype (A1111 uses a float32 copy on the CPU; running
    where the model already is avoids a second copy of it). About a second for a full-size model on a CPU.
    """
    parameter = next(unet.parameters())
    device, dtype = parameter.device, parameter.dtype
    x = torch.full((1, unet.config.in_channels, 8, 8), 0.5, device=device, dtype=dtype)
    context = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, device=device, dtype=dtype)
    timestep = torch.tensor([999], device=device)
    out = unet(x, timestep, encoder_hidden_states=context).sample
    return (out.float() - x.float()).mean().item() < -1
