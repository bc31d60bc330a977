"""Tiny models (the product's tiny_model and the tests' other formats): deterministic, and laid out exactly like
the files people download."""
from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors import safe_open

from paragoger.model_manager.full_size import full_size_state_dict_on_meta
from paragoger.model_manager.tiny_model import tiny_model, write_single_file
from tests.fixtures.checkpoints import write_ckpt, write_diffusers_folder


def digest(path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(digest(p).encode() + p.name.encode()
                                       for p in sorted(path.rglob("*")) if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("writer, name", [(write_single_file, "m.safetensors"),
                                          (write_ckpt, "m.ckpt"),
                                          (write_diffusers_folder, "m")])
def test_same_seed_gives_the_same_bytes(tmp_path, writer, name):
    first = writer(tmp_path / "a" / name, "sd1", seed=4)
    second = writer(tmp_path / "b" / name, "sd1", seed=4)
    other = writer(tmp_path / "c" / name, "sd1", seed=5)

    assert digest(first) == digest(second) != digest(other)


def test_building_a_tiny_model_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_model("sdxl")
    assert torch.equal(torch.rand(3), expected)


def keys_of(path) -> set[str]:
    with safe_open(str(path), framework="pt") as handle:
        return set(handle.keys())


def test_tiny_sd1_file_has_the_key_layout_of_the_released_sd15_file(tiny_sd1_file):
    """Same key names as the real file wherever the tiny model has the same block (the real one has more)."""
    tiny, real = keys_of(tiny_sd1_file), set(full_size_state_dict_on_meta("sd15"))

    assert {k for k in tiny if not k.startswith("model.diffusion_model.")} <= real  # VAE and CLIP
    for key in ("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
                "model.diffusion_model.input_blocks.1.0.emb_layers.1.weight",
                "model.diffusion_model.middle_block.1.proj_in.weight",
                "first_stage_model.decoder.mid.attn_1.q.weight",
                "first_stage_model.encoder.down.1.downsample.conv.weight",
                "cond_stage_model.transformer.text_model.final_layer_norm.weight"):
        assert key in tiny and key in real, key


def test_real_file_extras_are_present_in_the_fp16_fixture(tiny_model_file):
    path = tiny_model_file("sd1", "fp16")
    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        assert handle.get_tensor("model.diffusion_model.out.2.weight").dtype == torch.float16
        assert handle.get_tensor("cond_stage_model.transformer.text_model.embeddings.position_ids").dtype == torch.int64

    assert "alphas_cumprod" in keys and "model_ema.decay" in keys
    assert "model_ema.diffusion_modelout2weight" in keys


def test_vae_attention_is_stored_as_one_by_one_convolutions(tiny_sd1_file):
    with safe_open(str(tiny_sd1_file), framework="pt") as handle:
        assert handle.get_slice("first_stage_model.encoder.mid.attn_1.proj_out.weight").get_shape() == [64, 64, 1, 1]


def test_openclip_weights_are_fused_like_the_original(tiny_model_file):
    model = tiny_model("sdxl")
    with safe_open(str(tiny_model_file("sdxl")), framework="pt") as handle:
        fused = handle.get_tensor("conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight")
        projection = handle.get_tensor("conditioner.embedders.1.model.text_projection")
    attention = model.text_encoder_2.text_model.encoder.layers[0].self_attn

    assert torch.equal(fused, torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]))
    assert torch.equal(projection, model.text_encoder_2.text_projection.weight.T)


def test_sd2_file_has_the_extra_openclip_layer_sd2_never_uses(tiny_model_file):
    keys = keys_of(tiny_model_file("sd2"))

    layers = {int(k.split(".")[4]) for k in keys if k.startswith("cond_stage_model.model.transformer.resblocks.")}
    assert layers == {0, 1, 2}  # the tiny text encoder runs 2 of them
    assert "cond_stage_model.model.text_projection" in keys


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="sd1, sd1-inpaint"):
        tiny_model("sd3")
