"""Recognising what a checkpoint is, on real-size layouts (built on the meta device: no memory) and tiny files."""
from __future__ import annotations

import pytest
import torch

from paragoger.errors import ModelLoadError
from paragoger.model_manager import configs, convert, tiny_model
from paragoger.model_manager.components import CheckpointInfo
from paragoger.model_manager.detect import detect_diffusers_folder, detect_state_dict
from paragoger.model_manager.full_size import (
    full_size_state_dict_on_meta,
    modules_on_meta,
    sdxl_full_size_state_dict_on_meta,
)
from paragoger.model_manager.loader import load_checkpoint

# Parameter counts of the released models (UNet, VAE, text encoder, second text encoder).
REAL_SIZES = {
    "sd15": (859_520_964, 83_653_863, 123_060_480, None),
    "sd15-inpainting": (859_535_364, 83_653_863, 123_060_480, None),
    "sd2": (865_910_724, 83_653_863, 340_387_840, None),  # OpenCLIP-H, 23 of its 24 layers
    "sd2-base": (865_910_724, 83_653_863, 340_387_840, None),
    "sdxl-base": (2_567_463_684, 83_653_863, 123_060_480, 694_659_840),
}


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(REAL_SIZES))
def test_project_configs_describe_the_released_models(name):
    modules = modules_on_meta(configs.DIFFUSERS_CONFIGS / name)

    sizes = tuple(count(modules[p]) if p in modules else None
                  for p in ("unet", "vae", "text_encoder", "text_encoder_2"))
    assert sizes == REAL_SIZES[name]


def test_sdxl_is_detected_on_a_full_size_key_layout():
    state = sdxl_full_size_state_dict_on_meta()

    detection = detect_state_dict(state, name="sd_xl_base_1.0.safetensors")

    assert (detection.family, detection.variant, detection.prediction_type) == ("sdxl", "base", "epsilon")
    assert sum(k.startswith("model.diffusion_model.") for k in state) == 1680  # as in the released file
    assert state["conditioner.embedders.1.model.text_projection"].shape == (1280, 1280)


@pytest.mark.parametrize("name, family, prediction", [("sd15", "sd1", "epsilon"), ("sd2", "sd2", None),
                                                      ("sd15-inpainting", "sd1", "epsilon")])
def test_sd1_and_sd2_are_detected_on_full_size_layouts(name, family, prediction):
    detection = detect_state_dict(full_size_state_dict_on_meta(name), name=f"{name}.safetensors")

    assert detection.family == family
    assert detection.prediction_type == prediction  # None: SD 2.x base is decided by running the UNet once
    assert detection.variant == ("inpaint" if "inpainting" in name else "base")


@pytest.mark.parametrize("name", sorted(REAL_SIZES))
def test_configs_read_off_full_size_shapes_are_the_released_configs(name):
    folder = configs.DIFFUSERS_CONFIGS / name
    state = full_size_state_dict_on_meta(name)
    released = configs.model_config(folder, "unet")

    derived = convert.unet_config_for(state, configs.model_config(folder, "unet"), name=name)

    for key in ("in_channels", "block_out_channels", "layers_per_block", "down_block_types", "up_block_types",
                "cross_attention_dim", "attention_head_dim", "use_linear_projection",
                "transformer_layers_per_block", "projection_class_embeddings_input_dim", "addition_time_embed_dim"):
        assert derived.get(key) == released.get(key, derived.get(key)), key
    assert derived["use_linear_projection"] == (name != "sd15" and name != "sd15-inpainting")


def test_full_size_sdxl_layout_converts_to_modules_of_the_released_sizes():
    """The whole conversion (configs from shapes, diffusers' key renaming, assignment) on a real-size SDXL
    layout, done on the meta device so it needs no memory."""
    state = sdxl_full_size_state_dict_on_meta()
    folder = configs.DIFFUSERS_CONFIGS / configs.SDXL_BASE
    meta = {"device": "meta", "dtype": torch.float16, "name": "sd_xl_base_1.0.safetensors"}

    unet = convert.build_unet(state, convert.unet_config_for(state, configs.model_config(folder, "unet"),
                                                             name="sdxl"), **meta)
    vae = convert.build_vae(state, configs.model_config(folder, "vae"), **meta)
    bases = {p: configs.model_config(folder, p) for p in ("text_encoder", "text_encoder_2")}
    first, second = convert.build_text_encoders(state, "sdxl", bases, **meta)

    assert (count(unet), count(vae), count(first), count(second)) == REAL_SIZES["sdxl-base"]


def test_full_size_sd2_layout_builds_the_23_layer_text_encoder():
    state = full_size_state_dict_on_meta("sd2")
    folder = configs.DIFFUSERS_CONFIGS / "sd2"

    text_encoder, _ = convert.build_text_encoders(state, "sd2", {"text_encoder": configs.model_config(
        folder, "text_encoder")}, device="meta", dtype=torch.float16, name="v2-1_768.safetensors")

    assert text_encoder.config.num_hidden_layers == 23 and text_encoder.config.hidden_act == "gelu"
    assert count(text_encoder) == REAL_SIZES["sd2"][2]


@pytest.mark.parametrize("channels, variant", [(4, "base"), (9, "inpaint"), (5, "depth"), (8, "instruct-pix2pix")])
def test_variant_comes_from_the_unet_input_channels(channels, variant):
    state = full_size_state_dict_on_meta("sd15")
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.empty(320, channels, 3, 3, device="meta")

    assert detect_state_dict(state, name="x").variant == variant


def test_upscaler_and_other_unets_are_not_guessed_at():
    state = full_size_state_dict_on_meta("sd15")
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.empty(320, 7, 3, 3, device="meta")

    with pytest.raises(ModelLoadError) as error:
        detect_state_dict(state, name="x4-upscaler.safetensors")
    assert error.value.key == "checkpoint_unknown_architecture"


def test_sdxl_refiner_is_not_mistaken_for_a_base_model():
    state = {k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v
             for k, v in sdxl_full_size_state_dict_on_meta().items()
             if not k.startswith("conditioner.embedders.0.")}

    with pytest.raises(ModelLoadError):
        detect_state_dict(state, name="sd_xl_refiner_1.0.safetensors")


def test_inpainting_checkpoint_is_detected_and_gets_the_inpainting_config(tiny_model_file):
    path = tiny_model_file("sd1-inpaint")
    components = load_checkpoint(CheckpointInfo(path=path, name=path.name, model_name=path.stem))

    assert components.variant == "inpaint" and components.unet.config.in_channels == 9
    assert components.extra["config_folder"].name == "sd15-inpainting"


def test_yaml_saying_epsilon_wins_over_the_sd2_probe(tmp_path, tiny_model_file):
    path = tmp_path / "looks-v.safetensors"
    path.write_bytes(tiny_model_file("sd2-v").read_bytes())
    (tmp_path / "looks-v.yaml").write_text("model:\n  params:\n    parameterization: eps\n", encoding="utf-8")

    components = load_checkpoint(CheckpointInfo(path=path, name=path.name, model_name=path.stem))

    assert components.prediction_type == "epsilon"


def test_model_spec_header_states_the_prediction_type(tmp_path):
    path = tiny_model.write_single_file(tmp_path / "sdxl-v.safetensors", "sdxl",
                                        metadata={"modelspec.prediction_type": "v"})

    components = load_checkpoint(CheckpointInfo(path=path, name=path.name, model_name=path.stem))

    assert components.prediction_type == "v_prediction"
    assert components.scheduler_config["prediction_type"] == "v_prediction"


def test_v_pred_marker_key_means_v_prediction():
    state = sdxl_full_size_state_dict_on_meta()
    state["v_pred"] = torch.empty(0, device="meta")

    assert detect_state_dict(state, name="noob-vpred.safetensors").prediction_type == "v_prediction"


def test_sd2_inpainting_is_epsilon_without_running_anything():
    state = full_size_state_dict_on_meta("sd2")
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.empty(320, 9, 3, 3, device="meta")

    assert detect_state_dict(state, name="512-inpainting-ema.safetensors").prediction_type == "epsilon"


@pytest.mark.parametrize("kind", ["sd1", "sd2-v", "sdxl", "sd1-inpaint"])
def test_diffusers_folders_are_detected_from_their_configs(tiny_model_file, kind):
    model = tiny_model.tiny_model(kind)

    detection = detect_diffusers_folder(tiny_model_file(kind, "diffusers"), name=kind)

    assert (detection.family, detection.variant, detection.prediction_type) == (
        model.family, model.variant, model.prediction_type)
    assert detection.is_diffusers_folder
