"""The motion UNet runs the loaded checkpoint's own 2D weights (shared, never copied) with a motion module's
temporal layers, and gives what diffusers' own UNetMotionModel gives; a module made for another family or size is
refused with the reason; motion LoRAs change the motion module for one generation only, and an ordinary picture
naming one is made as if the tag were not there."""
import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from paragoger.model_manager import configs
from paragoger.model_manager.tiny_model import tiny_model
from paragoger.prompts import extract_extra_networks
from paragoger.video.motion_lora import MotionLora, apply_motion_loras, is_motion_lora, split_motion_loras
from paragoger.video.motion_modules import MotionModule, MotionModuleInfo, detect_motion_module, load_motion_module
from paragoger.video.motion_unet import check_fits, motion_unet
from tests.fixtures import motion
from tests.test_video_motion_modules import full_size_layout

FRAMES = 3


@pytest.fixture(scope="module")
def unets():
    return {kind: tiny_model(kind, seed=0).unet for kind in ("sd1", "sdxl")}


@pytest.fixture(scope="module")
def module_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("motion-modules")
    return lambda variant, name: motion.write_motion_module(folder / name, variant, seed=7) \
        if not (folder / name).exists() else folder / name


def load(path) -> MotionModule:
    return load_motion_module(MotionModuleInfo(path.name, path, path.name), device="cpu", dtype=torch.float32)


def run(model, kind, seed=1):
    """One denoising call on FRAMES frames of 8x8 latents, as AnimateDiffPipeline calls its UNet."""
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, 4, FRAMES, 8, 8, generator=generator)
    width = 32 if kind == "sd1" else 96
    context = torch.randn(1, 77, width, generator=generator).repeat_interleave(FRAMES, dim=0)
    extra = None
    if kind == "sdxl":
        extra = {"text_embeds": torch.randn(1, 64, generator=generator),
                 "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])}
    with torch.no_grad():
        return model(sample, 500, encoder_hidden_states=context, added_cond_kwargs=extra).sample


CASES = [("sd1", "v2", "mm_sd_v15_v2.safetensors"), ("sd1", "v3", "v3_sd15_mm.ckpt"),
         ("sdxl", "sdxl", "mm_sdxl_v10_beta.safetensors")]


def from_unet2d(unet, adapter):
    """diffusers' own motion UNet (a copy). diffusers 0.42's from_unet2d leaves SDXL's added-embedding layer with
    its random initial weights (it copies every other 2D part): copied here too, so the reference is the model."""
    model = UNetMotionModel.from_unet2d(unet, adapter)
    if getattr(unet, "add_embedding", None) is not None:
        model.add_embedding.load_state_dict(unet.add_embedding.state_dict())
    return model


@pytest.mark.parametrize("kind, variant, name", CASES)
def test_motion_unet_gives_what_diffusers_from_unet2d_gives(unets, module_file, kind, variant, name):
    module = load(module_file(variant, name))
    ours = run(motion_unet(unets[kind], module), kind)
    theirs = run(from_unet2d(unets[kind], module.adapter), kind)
    assert ours.shape == (1, 4, FRAMES, 8, 8)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind, variant, name", CASES)
def test_motion_unet_shares_the_checkpoint_and_module_weights(unets, module_file, kind, variant, name):
    unet, module = unets[kind], load(module_file(variant, name))
    model = motion_unet(unet, module)
    pointers = {t.data_ptr() for t in [*model.parameters(), *model.buffers()]}
    own = [*unet.parameters(), *module.adapter.parameters()]
    assert {t.data_ptr() for t in own} == {p.data_ptr() for p in model.parameters()}
    assert {b.data_ptr() for b in module.adapter.buffers()} <= pointers
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in own)


def test_a_weight_changed_in_the_checkpoint_is_seen_by_the_motion_unet(module_file):
    unet = tiny_model("sd1", seed=0).unet  # changed below: not the shared fixture
    model = motion_unet(unet, load(module_file("v2", "mm_sd_v15_v2.safetensors")))
    before = run(model, "sd1")
    with torch.no_grad():  # what a LoRA merge does: in place
        unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_v.weight.mul_(1.5)
    after = run(model, "sd1")
    assert (after - before).abs().max() > 1e-3
    copied = from_unet2d(unet, load(module_file("v2", "mm_sd_v15_v2.safetensors")).adapter)
    assert torch.allclose(after, run(copied, "sd1"), atol=1e-5, rtol=0)


def test_a_module_for_the_other_family_is_refused(unets, module_file):
    sdxl_module = load(module_file("sdxl", "mm_sdxl_v10_beta.safetensors"))
    sd1_module = load(module_file("v2", "mm_sd_v15_v2.safetensors"))
    for unet, module, families in ((unets["sd1"], sdxl_module, ("SDXL", "SD 1.x")),
                                   (unets["sdxl"], sd1_module, ("SD 1.x", "SDXL"))):
        with pytest.raises(UserError) as caught:
            motion_unet(unet, module)
        assert caught.value.key == "motion_module_wrong_family"
        assert caught.value.params["module_family"] == families[0]
        assert caught.value.params["checkpoint_family"] == families[1]
    with pytest.raises(UserError, match="SD 2.x"):
        motion_unet(unets["sd1"], sd1_module, family="sd2")


def real_size_module(name, widths, mid):
    spec = detect_motion_module(full_size_layout(widths, mid=mid, frames=32), name)
    with init_empty_weights():
        adapter = MotionAdapter(**spec.adapter_config)
    return MotionModule(MotionModuleInfo(name, name, name), spec, adapter)


def real_size_unet(config_name):
    with init_empty_weights():
        return UNet2DConditionModel.from_config(configs.model_config(configs.DIFFUSERS_CONFIGS / config_name, "unet"))


def test_real_size_modules_fit_their_family_only():
    v2 = real_size_module("mm_sd_v15_v2.ckpt", [320, 640, 1280, 1280], True)
    sdxl = real_size_module("mm_sdxl_v10_beta.ckpt", [320, 640, 1280], False)
    sd15_unet, sdxl_unet = real_size_unet(configs.SD15), real_size_unet(configs.SDXL_BASE)
    check_fits(sd15_unet, v2)
    check_fits(sdxl_unet, sdxl)
    for unet, module in ((sd15_unet, sdxl), (sdxl_unet, v2)):
        with pytest.raises(UserError) as caught:
            check_fits(unet, module)
        assert caught.value.key == "motion_module_wrong_family"


def test_a_module_of_another_size_does_not_fit(unets):
    real = real_size_module("mm_sd_v15_v2.ckpt", [320, 640, 1280, 1280], True)
    with pytest.raises(UserError) as caught:
        motion_unet(unets["sd1"], real)
    assert caught.value.key == "motion_module_does_not_fit" and "levels" in str(caught.value)


# ------------------------------------------------------------------------------------------------ motion LoRAs


def test_motion_lora_changes_the_output_and_is_taken_out_bit_for_bit(unets, module_file):
    path = module_file("v2", "mm_sd_v15_v2.safetensors")
    module = load(path)
    lora = motion.motion_lora_state_dict(path, seed=2)
    assert is_motion_lora(lora) and not is_motion_lora(["lora_unet_down_blocks_0_attentions_0.lora_down.weight"])
    model = motion_unet(unets["sd1"], module)
    before = {k: v.clone() for k, v in module.adapter.state_dict().items()}
    plain = run(model, "sd1")
    with apply_motion_loras(module, [(lora, 0.8)]) as applied:
        moved = run(model, "sd1")
        changed = {k for k, v in module.adapter.state_dict().items() if not torch.equal(v, before[k])}
    assert applied.layers == len(lora) // 2 and applied.skipped == []
    assert changed and all(k.endswith(("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight"))
                           for k in changed)
    assert (moved - plain).abs().max() > 1e-3
    assert all(torch.equal(v, before[k]) for k, v in module.adapter.state_dict().items())
    assert torch.equal(run(model, "sd1"), plain)
    with pytest.raises(KeyboardInterrupt):
        with apply_motion_loras(module, [MotionLora(lora, 1.0, "v2_lora_ZoomIn")]):
            raise KeyboardInterrupt
    assert all(torch.equal(v, before[k]) for k, v in module.adapter.state_dict().items())


def test_motion_lora_merge_is_w_plus_multiplier_up_down(module_file):
    path = module_file("v2", "mm_sd_v15_v2.safetensors")
    module = load(path)
    lora = motion.motion_lora_state_dict(path, seed=4)
    prefix = "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1"
    up, down = lora[f"{prefix}.processor.to_out_lora.up.weight"], lora[f"{prefix}.processor.to_out_lora.down.weight"]
    weight = module.adapter.down_blocks[0].motion_modules[0].transformer_blocks[0].attn2.to_out[0].weight
    original = weight.clone()
    with apply_motion_loras(module, [(lora, 0.5)]):
        assert torch.allclose(weight, original + 0.5 * up @ down, atol=1e-6)


def test_a_motion_lora_for_another_module_size_is_refused_before_any_change(module_file):
    module = load(module_file("v2", "mm_sd_v15_v2.safetensors"))
    real = real_size_module("mm_sd_v15_v2.ckpt", [320, 640, 1280, 1280], True)
    before = {k: v.clone() for k, v in module.adapter.state_dict().items()}
    with pytest.raises(UserError) as caught:
        with apply_motion_loras(module, [MotionLora(motion.motion_lora_state_dict(real.spec), 1.0, "big")]):
            pass
    assert caught.value.key == "motion_lora_does_not_fit" and "big" in str(caught.value)
    assert all(torch.equal(v, before[k]) for k, v in module.adapter.state_dict().items())


def request(prompt):
    return GenerationRequest(prompt=prompt, steps=2, width=64, height=64, seed=5, sampler_name="Euler",
                             save_images=False)


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_a_picture_naming_a_motion_lora_is_made_as_if_it_were_not_named(app_context, module_file, suffix):
    path = module_file("v2", "mm_sd_v15_v2.safetensors")
    motion.write_motion_lora(app_context.paths.lora_dirs[-1] / f"v2_lora_ZoomIn{suffix}", path, seed=1)
    app_context.loras.refresh()
    plain = app_context.engine.generate(request("a fox"))
    tagged = app_context.engine.generate(request("a fox <lora:v2_lora_ZoomIn:1>"))
    assert np.array_equal(np.asarray(tagged.images[0].image), np.asarray(plain.images[0].image))
    assert "Lora hashes" not in tagged.images[0].infotext
    info = app_context.loras.find("v2_lora_ZoomIn")
    assert info.kind == "motion" and app_context.loras.compatible("sd1") == []
    calls, _ = app_context.loras.resolve(extract_extra_networks("<lora:v2_lora_ZoomIn:0.7>")[1])
    image_calls, motion_loras = split_motion_loras(app_context.loras, calls)
    assert image_calls == [] and [(m.name, m.multiplier) for m in motion_loras] == [("v2_lora_ZoomIn", 0.7)]
    assert is_motion_lora(motion_loras[0].state_dict)


def test_a_part_left_without_weights_is_a_clear_error_not_a_silent_meta_tensor():
    """Real-size UNet and module on the meta device: everything fits, but no part holds weights, which the motion
    UNet must refuse (the guard against a diffusers version adding a part this app does not fill)."""
    module = real_size_module("mm_sd_v15_v2.ckpt", [320, 640, 1280, 1280], True)
    with pytest.raises(RuntimeError, match="has diffusers' UNetMotionModel changed"):
        motion_unet(real_size_unet(configs.SD15), module)
