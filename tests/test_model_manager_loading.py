"""Loading checkpoints: what a user who drops a file into models/Stable-diffusion gets."""
from __future__ import annotations

import shutil
import socket

import pytest
import torch

from paragoger.errors import ModelLoadError
from paragoger.model_manager.components import CheckpointInfo
from paragoger.model_manager.loader import load_checkpoint, load_vae
from paragoger.model_manager.tiny_model import KINDS, TinyModel, tiny_model
from tests.fixtures.checkpoints import write_vae

PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def info_for(path, **kwargs) -> CheckpointInfo:
    return CheckpointInfo(path=path, name=path.name, model_name=path.stem, **kwargs)


def assert_same_weights(expected, actual, *, dtype=None):
    expected_state, actual_state = expected.state_dict(), actual.state_dict()
    assert set(expected_state) == set(actual_state)
    for key, value in expected_state.items():
        value = value.to(dtype) if dtype is not None and value.is_floating_point() else value
        assert torch.equal(value, actual_state[key]), key


def assert_components_match(model: TinyModel, components, *, dtype=None):
    for part in PARTS:
        original = getattr(model, part)
        if original is None:
            assert getattr(components, part) is None
        else:
            assert_same_weights(original, getattr(components, part), dtype=dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_original_single_file_loads_with_the_same_weights_as_the_diffusers_model_it_came_from(
        tiny_model_file, kind):
    components = load_checkpoint(info_for(tiny_model_file(kind)), device="cpu", dtype=torch.float32)

    model = tiny_model(kind)
    assert (components.family, components.variant, components.prediction_type) == (
        model.family, model.variant, model.prediction_type)
    assert_components_match(model, components)
    # The configs read off the shapes are the very configs the model was built with.
    for part in ("unet", "vae"):
        expected = {k: v for k, v in getattr(model, part).config.items() if not k.startswith("_")}
        actual = {k: v for k, v in getattr(components, part).config.items() if not k.startswith("_")}
        assert actual == expected, part
    assert components.scheduler_config["prediction_type"] == model.prediction_type


def test_components_are_ready_to_use(tiny_sd1_file):
    components = load_checkpoint(info_for(tiny_sd1_file))

    assert components.vae_scale_factor == 8
    assert components.latent_channels == 4
    assert components.tokenizer.model_max_length == 77
    assert components.tokenizer.pad_token == "<|endoftext|>"
    assert not any(p.requires_grad for m in components.modules().values() for p in m.parameters())
    ids = components.tokenizer("a photo of a cat", padding="max_length", return_tensors="pt").input_ids
    hidden = components.text_encoder(ids).last_hidden_state
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = components.unet(latents, torch.tensor([500]), encoder_hidden_states=hidden).sample
    image = components.vae.decode(latents).sample
    assert noise.shape == latents.shape and torch.isfinite(noise).all()
    assert image.shape == (1, 3, 64, 64)


def test_sdxl_components_have_both_text_encoders_and_tokenizers(tiny_sdxl_file):
    components = load_checkpoint(info_for(tiny_sdxl_file))

    assert components.is_sdxl
    assert components.text_encoder_2.config.projection_dim == 64
    assert components.tokenizer.pad_token == "<|endoftext|>"
    assert components.tokenizer_2.pad_token == "!" and components.tokenizer_2.pad_token_id == 0
    assert components.unet.config.addition_embed_type == "text_time"
    assert components.scheduler_config["_class_name"] == "EulerDiscreteScheduler"


def test_diffusers_reference_pipeline_reads_the_same_single_file_to_the_same_weights(tiny_model_file):
    from diffusers import StableDiffusionXLPipeline

    path, folder = tiny_model_file("sdxl"), tiny_model_file("sdxl", "diffusers")
    reference = StableDiffusionXLPipeline.from_single_file(str(path), config=str(folder), local_files_only=True)
    ours = load_checkpoint(info_for(path))

    for part in PARTS:
        assert_same_weights(getattr(reference, part), getattr(ours, part))


def test_fp16_file_with_ema_and_scheduler_buffers_loads_like_real_downloads(tiny_model_file):
    components = load_checkpoint(info_for(tiny_model_file("sd1", "fp16")), dtype=torch.float16)

    assert all(p.dtype == torch.float16 for m in components.modules().values() for p in m.parameters())
    assert_components_match(tiny_model("sd1"), components, dtype=torch.float16)


def test_fp16_file_can_be_loaded_in_float32(tiny_model_file):
    components = load_checkpoint(info_for(tiny_model_file("sd1", "fp16")), dtype=torch.float32)

    assert components.unet.dtype == torch.float32
    assert_components_match(tiny_model("sd1"), components, dtype=torch.float16)


def test_ckpt_from_2022_with_lightning_callbacks_loads(tiny_model_file):
    components = load_checkpoint(info_for(tiny_model_file("sd1", "ckpt")))

    assert components.family == "sd1"
    assert_components_match(tiny_model("sd1"), components)


def test_diffusers_folder_loads(tiny_model_file):
    folder = tiny_model_file("sdxl", "diffusers")
    components = load_checkpoint(CheckpointInfo(path=folder, name=folder.name, model_name=folder.name,
                                                is_diffusers_folder=True))

    assert (components.family, components.variant, components.prediction_type) == ("sdxl", "base", "epsilon")
    assert_components_match(tiny_model("sdxl"), components)
    assert components.tokenizer_2.pad_token_id == 0


def test_sd2_v_prediction_is_recognised_without_a_yaml_and_uses_the_768_config(tiny_model_file):
    v = load_checkpoint(info_for(tiny_model_file("sd2-v")))
    epsilon = load_checkpoint(info_for(tiny_model_file("sd2")))

    assert v.prediction_type == "v_prediction" and v.scheduler_config["prediction_type"] == "v_prediction"
    assert v.unet.config.sample_size == 96 and v.unet.config.upcast_attention
    assert epsilon.prediction_type == "epsilon" and epsilon.unet.config.sample_size == 64


def test_yaml_beside_the_checkpoint_decides_the_prediction_type(tmp_path, tiny_model_file):
    path = tmp_path / "anime-v.safetensors"
    shutil.copyfile(tiny_model_file("sd1"), path)
    (tmp_path / "anime-v.yaml").write_text(
        "model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n"
        "    parameterization: \"v\"\n    scale_factor: 0.2\n    unet_config:\n      params:\n"
        "        num_heads: 4\n", encoding="utf-8")

    components = load_checkpoint(info_for(path))

    assert components.prediction_type == "v_prediction"
    assert components.vae.config.scaling_factor == 0.2
    assert components.unet.config.attention_head_dim == 4
    assert components.extra["detection"].prediction_source == "yaml"


def test_vae_beside_the_checkpoint_replaces_its_vae(tmp_path, tiny_sd1_file):
    path = tmp_path / "model.safetensors"
    shutil.copyfile(tiny_sd1_file, path)
    write_vae(tmp_path / "model.vae.safetensors", seed=7)

    components = load_checkpoint(info_for(path))

    assert components.vae_name == "model.vae.safetensors" and len(components.vae_hash) == 10
    assert_same_weights(tiny_model("sd1", seed=7).vae, components.vae)
    assert_same_weights(tiny_model("sd1").unet, components.unet)
    without = load_checkpoint(info_for(path), vae_beside_checkpoint=False)
    assert_same_weights(tiny_model("sd1").vae, without.vae)


@pytest.mark.parametrize("layout, file_name", [("ldm", "vae.safetensors"), ("ldm", "vae.pt"),
                                               ("diffusers-file", "vae.safetensors"),
                                               ("diffusers-folder", "vae-folder")])
def test_explicit_vae_replaces_the_checkpoint_vae(tmp_path, tiny_sd1_file, layout, file_name):
    vae_path = write_vae(tmp_path / file_name, seed=3, layout=layout)

    components = load_checkpoint(info_for(tiny_sd1_file), vae_path=vae_path)

    assert_same_weights(tiny_model("sd1", seed=3).vae, components.vae)
    assert components.vae_name == file_name


def test_sdxl_vae_override_keeps_the_sdxl_scaling_factor(tmp_path, tiny_sdxl_file):
    vae_path = write_vae(tmp_path / "sdxl_vae.safetensors", kind="sdxl")

    components = load_checkpoint(info_for(tiny_sdxl_file), vae_path=vae_path)

    assert components.vae.config.scaling_factor == 0.13025


def test_load_vae_reads_an_ldm_vae_file(tmp_path):
    vae = load_vae(write_vae(tmp_path / "vae-ft-mse.safetensors", seed=5), dtype=torch.bfloat16)

    assert vae.dtype == torch.bfloat16 and vae.config.scaling_factor == 0.18215
    assert_same_weights(tiny_model("sd1", seed=5).vae, vae, dtype=torch.bfloat16)


def test_a_vae_file_that_is_not_a_vae_is_refused(tmp_path, tiny_sd1_file):
    from safetensors.torch import save_file

    save_file({"lora_unet_down.weight": torch.zeros(2, 2)}, str(tmp_path / "lora.safetensors"))
    with pytest.raises(ModelLoadError) as error:
        load_vae(tmp_path / "lora.safetensors")
    assert error.value.key == "vae_unknown_architecture"


def test_loading_never_touches_the_network(monkeypatch, tiny_model_file):
    paths = [tiny_model_file("sd1"), tiny_model_file("sdxl", "ckpt"), tiny_model_file("sd2-v")]

    def refuse(*args, **kwargs):
        raise AssertionError(f"a socket was opened: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for path in paths:
        load_checkpoint(info_for(path))
    folder = tiny_model_file("sd1", "diffusers")
    load_checkpoint(CheckpointInfo(path=folder, name=folder.name, model_name=folder.name,
                                   is_diffusers_folder=True))


def test_a_checkpoint_can_be_laid_out_on_the_meta_device_without_memory(tiny_sd1_file):
    components = load_checkpoint(info_for(tiny_sd1_file), device="meta", dtype=torch.float16)

    assert all(p.is_meta and p.dtype == torch.float16 for p in components.unet.parameters())


def test_checkpoint_without_vae_says_so(tmp_path, tiny_sd1_file):
    from safetensors.torch import load_file, save_file

    state = {k: v for k, v in load_file(str(tiny_sd1_file)).items() if not k.startswith("first_stage_model.")}
    save_file(state, str(tmp_path / "unet-only.safetensors"))

    with pytest.raises(ModelLoadError) as error:
        load_checkpoint(info_for(tmp_path / "unet-only.safetensors"))
    assert error.value.key == "checkpoint_missing_vae"
    assert "unet-only.vae.safetensors" in str(error.value)


def test_a_loaded_model_does_not_change_when_its_file_is_overwritten(tmp_path, tiny_sd1_file):
    path = tmp_path / "model.safetensors"
    shutil.copyfile(tiny_sd1_file, path)
    components = load_checkpoint(info_for(path))
    before = components.unet.conv_out.bias.clone()

    data = bytearray(path.read_bytes())
    data[-4096:] = bytes(4096)  # the last tensors' bytes, zeroed in place
    with open(path, "r+b") as stream:
        stream.write(data)

    assert_components_match(tiny_model("sd1"), components)
    assert torch.equal(components.unet.conv_out.bias, before)
