"""AnimateDiff motion modules as users have them: every variant's file is recognised from its keys and shapes and
loads with exactly the weights it holds, in any of the formats real files come in; bad files are refused with a
reason; the library finds modules by file name or stem; the model manager accounts for them."""
import gc
import os
import weakref

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import MotionAdapter
from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

from paragoger.devices import DeviceConfig
from paragoger.errors import ModelLoadError, NotFoundError
from paragoger.model_manager.memory import ModelManager
from paragoger.video.motion_module_keys import to_adapter_key
from paragoger.video.motion_modules import (MotionModuleInfo, MotionModuleLibrary, MotionModules,
                                            adapter_state_dict, detect_motion_module, load_motion_module)
from tests.fixtures import motion
from tests.fixtures import networks

CPU = torch.device("cpu")
# variant -> (family, mid block, frames)
EXPECTED = {"v1": ("sd1", False, 24), "v2": ("sd1", True, 32), "v3": ("sd1", False, 32),
            "animatelcm": ("sd1", True, 32), "sdxl": ("sdxl", False, 32)}
FILE_NAMES = {"v1": "mm_sd_v15", "v2": "mm_sd_v15_v2", "v3": "v3_sd15_mm", "animatelcm": "AnimateLCM_sd15_t2v",
              "sdxl": "mm_sdxl_v10_beta"}


def info_for(path) -> MotionModuleInfo:
    return MotionModuleInfo(name=path.name, path=path, title=path.name)


def load(path, dtype=torch.float32):
    return load_motion_module(info_for(path), device=CPU, dtype=dtype)


def assert_same_weights(loaded: MotionAdapter, expected: MotionAdapter, *, atol: float = 0.0):
    got, want = loaded.state_dict(), expected.state_dict()
    assert got.keys() == want.keys()
    for key, tensor in want.items():
        assert got[key].shape == tensor.shape, key
        assert torch.allclose(got[key].float(), tensor.float(), atol=atol, rtol=0), key


# ------------------------------------------------------------------------------------------------ variants


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
@pytest.mark.parametrize("variant", motion.VARIANTS)
def test_every_variant_is_recognised_and_loads_the_weights_its_file_holds(tmp_path, variant, suffix):
    path = motion.write_motion_module(tmp_path / (FILE_NAMES[variant] + suffix), variant, seed=3)
    module = load(path)
    family, mid, frames = EXPECTED[variant]
    assert (module.spec.variant, module.spec.family, module.spec.max_frames) == (variant, family, frames)
    assert module.spec.adapter_config["use_motion_mid_block"] is mid
    assert module.spec.adapter_config["motion_layers_per_block"] == 1  # the tiny checkpoints' layers per block
    assert_same_weights(module.adapter, motion.motion_adapter(variant, seed=3))
    assert not any(p.requires_grad for p in module.adapter.parameters())


def test_fp16_file_loads_in_the_precision_asked_for(tmp_path):
    path = motion.write_motion_module(tmp_path / "mm_sd_v15_v2.safetensors", "v2", dtype=torch.float16)
    expected = motion.motion_adapter("v2")
    as_fp32 = load(path)
    assert {p.dtype for p in as_fp32.adapter.parameters()} == {torch.float32}
    rounded = {k: v.half().float() if not k.endswith(".pe") else v for k, v in expected.state_dict().items()}
    for key, tensor in as_fp32.adapter.state_dict().items():
        assert torch.equal(tensor, rounded[key]), key  # pe: the exact sinusoid, not the fp16 copy stored
    as_fp16 = load(path, torch.float16)
    assert {t.dtype for t in as_fp16.adapter.state_dict().values()} == {torch.float16}


def test_position_codes_the_file_changed_are_kept(tmp_path):
    adapter = motion.motion_adapter("v3")
    state = motion.original_state_dict(adapter)
    for key in [k for k in state if k.endswith(".pe")]:
        state[key] = state[key] * 0.5
    module = load(motion.write_state_dict(tmp_path / "custom_mm.safetensors", state))
    codes = {k: v for k, v in module.adapter.state_dict().items() if k.endswith(".pe")}
    assert codes and all(torch.equal(v, adapter.state_dict()[k] * 0.5) for k, v in codes.items())


def test_renames_agree_with_diffusers_own_conversion():
    state = motion.original_state_dict(motion.motion_adapter("v2"))
    ours = {k: v for k, v in adapter_state_dict(state, "x").items() if not k.endswith(".pe")}
    theirs = convert_animatediff_checkpoint_to_diffusers(dict(state))
    assert ours.keys() == theirs.keys() and all(ours[k] is theirs[k] for k in ours)


def test_a_file_in_diffusers_motion_adapter_layout_also_loads(tmp_path):
    adapter = motion.motion_adapter("v2", seed=5)
    state = {k: v.clone() for k, v in adapter.state_dict().items()}
    module = load(motion.write_state_dict(tmp_path / "diffusion_pytorch_model.safetensors", state))
    assert module.spec.variant == "v2"
    assert_same_weights(module.adapter, adapter)


# ------------------------------------------------------------------------------------------------ bad files


def test_a_pickle_that_asks_to_run_code_is_refused_and_named(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    state = motion.original_state_dict(motion.motion_adapter("v2"))
    torch.save({**state, "payload": Payload()}, tmp_path / "mm_evil.ckpt")
    with pytest.raises(ModelLoadError, match="refused.*system") as caught:
        load(tmp_path / "mm_evil.ckpt")
    assert caught.value.key == "pickle_refused" and not marker.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_a_truncated_file_is_reported_as_damaged(tmp_path, suffix):
    path = motion.write_motion_module(tmp_path / ("mm_sd_v15_v2" + suffix), "v2")
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(ModelLoadError) as caught:
        load(path)
    assert caught.value.key == "motion_module_corrupt" and "mm_sd_v15_v2" in str(caught.value)


def test_a_file_with_a_missing_weight_is_reported_as_damaged(tmp_path):
    state = motion.original_state_dict(motion.motion_adapter("v2"))
    del state[next(k for k in state if k.endswith("attention_blocks.1.to_v.weight"))]
    with pytest.raises(ModelLoadError) as caught:
        load(motion.write_state_dict(tmp_path / "mm_cut.safetensors", state))
    assert caught.value.key == "motion_module_corrupt" and "to_v" in str(caught.value)


def test_a_checkpoint_or_a_lora_given_as_a_motion_module_is_not_one(tmp_path, tiny_sd1_file):
    lora = networks.write_kohya_lora(tmp_path / "style.safetensors", "sd1")
    module = motion.write_motion_module(tmp_path / "mm_sd_v15_v2.ckpt", "v2")
    motion_lora = motion.write_motion_lora(tmp_path / "v2_lora_ZoomIn.ckpt", module)
    for path in (tiny_sd1_file, lora, motion_lora):
        with pytest.raises(ModelLoadError) as caught:
            load(path)
        assert caught.value.key == "motion_module_unknown" and path.name in str(caught.value)


# ------------------------------------------------------------------------------------------------ library


def test_library_lists_both_folders_first_wins_and_finds_by_name_or_stem(tmp_path):
    first, second = tmp_path / "AnimateDiff", tmp_path / "extension-model"
    motion.write_motion_module(first / "mm_sd_v15_v2.ckpt", "v2")
    motion.write_motion_module(second / "mm_sd_v15_v2.ckpt", "v3")
    motion.write_motion_module(second / "v3_sd15_mm.safetensors", "v3")
    motion.write_motion_lora(second / "v2_lora_PanLeft.safetensors", first / "mm_sd_v15_v2.ckpt")
    library = MotionModuleLibrary([first, second])
    assert [info.name for info in library.entries()] == ["mm_sd_v15_v2.ckpt", "v3_sd15_mm.safetensors"]
    assert library.find("mm_sd_v15_v2.ckpt").path == first / "mm_sd_v15_v2.ckpt"
    assert library.find("v3_sd15_mm").name == "v3_sd15_mm.safetensors"
    with pytest.raises(NotFoundError) as caught:
        library.find("mm_sd_v14")
    assert caught.value.key == "motion_module_not_found" and str(first) in str(caught.value)
    motion.write_motion_module(first / "AnimateLCM.ckpt", "animatelcm")
    assert "AnimateLCM.ckpt" in [info.name for info in library.refresh()]


def test_modules_load_once_through_the_model_manager_and_unloading_frees_them(tmp_path):
    motion.write_motion_module(tmp_path / "mm_sd_v15_v2.safetensors", "v2")
    manager = ModelManager("cpu")
    modules = MotionModules(MotionModuleLibrary([tmp_path]), manager, DeviceConfig(CPU, torch.float32, torch.float32))
    module = modules.get("mm_sd_v15_v2")
    assert modules.get("mm_sd_v15_v2.safetensors") is module and manager.loads == 1
    [entry] = manager.entries("motion_module")
    size = sum(p.numel() * 4 for p in module.adapter.parameters())
    assert entry.name == "mm_sd_v15_v2.safetensors" and size <= entry.bytes_in("ram") <= size * 1.1
    adapter = weakref.ref(module.adapter)
    del module
    manager.unload("motion_module", str(tmp_path / "mm_sd_v15_v2.safetensors"))
    gc.collect()
    assert manager.entries("motion_module") == [] and adapter() is None


# ------------------------------------------------------------------------------------------------ full size


def full_size_layout(widths, *, mid: bool, frames: int | None) -> dict[str, torch.Tensor]:
    """The original layout of a real motion module, written out by hand from AnimateDiff's architecture (meta
    tensors: shapes only): 2 modules per down block, 3 per up block, geglu feed-forward 4x wide."""
    layout = {}

    def add(key, *shape):
        layout[key] = torch.empty(shape, device="meta")

    def module(prefix, width):
        for part in ("norm", "proj_in", "proj_out"):
            shape = (width,) if part == "norm" else (width, width)
            add(f"{prefix}.temporal_transformer.{part}.weight", *shape)
            add(f"{prefix}.temporal_transformer.{part}.bias", width)
        block = f"{prefix}.temporal_transformer.transformer_blocks.0"
        for attention in ("attention_blocks.0", "attention_blocks.1"):
            for projection in ("to_q", "to_k", "to_v", "to_out.0"):
                add(f"{block}.{attention}.{projection}.weight", width, width)
            add(f"{block}.{attention}.to_out.0.bias", width)
            if frames:
                add(f"{block}.{attention}.pos_encoder.pe", 1, frames, width)
        for norm in ("norms.0", "norms.1", "ff_norm"):
            add(f"{block}.{norm}.weight", width)
            add(f"{block}.{norm}.bias", width)
        add(f"{block}.ff.net.0.proj.weight", 8 * width, width)
        add(f"{block}.ff.net.0.proj.bias", 8 * width)
        add(f"{block}.ff.net.2.weight", width, 4 * width)
        add(f"{block}.ff.net.2.bias", width)

    for level, width in enumerate(widths):
        for index in range(2):
            module(f"down_blocks.{level}.motion_modules.{index}", width)
        for index in range(3):
            module(f"up_blocks.{len(widths) - 1 - level}.motion_modules.{index}", width)
    if mid:
        module("mid_block.motion_modules.0", widths[-1])
    return layout


@pytest.mark.parametrize("name, widths, mid, frames, variant, family, millions", [
    ("mm_sd_v15.ckpt", [320, 640, 1280, 1280], False, 24, "v1", "sd1", 417),
    ("mm_sd_v15_v2.ckpt", [320, 640, 1280, 1280], True, 32, "v2", "sd1", 453),
    ("v3_sd15_mm.ckpt", [320, 640, 1280, 1280], False, 32, "v3", "sd1", 417),
    ("AnimateLCM_sd15_t2v.ckpt", [320, 640, 1280, 1280], True, None, "animatelcm", "sd1", 453),
    ("mm_sdxl_v10_beta.ckpt", [320, 640, 1280], False, 32, "sdxl", "sdxl", 237),
])
def test_real_size_modules_are_recognised_and_their_adapter_has_their_exact_layout(name, widths, mid, frames,
                                                                                    variant, family, millions):
    layout = full_size_layout(widths, mid=mid, frames=frames)
    spec = detect_motion_module(layout, name)
    assert (spec.variant, spec.family, spec.max_frames) == (variant, family, frames or 32)
    assert spec.adapter_config["motion_layers_per_block"] == 2
    with init_empty_weights():
        adapter = MotionAdapter(**spec.adapter_config)
    expected = {to_adapter_key(k): tuple(v.shape) for k, v in layout.items()}
    shapes = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    if not frames:  # AnimateLCM stores no pe; the adapter computes its own
        shapes = {k: v for k, v in shapes.items() if not k.endswith(".pe")}
    assert shapes == expected
    values = sum(p.numel() for p in adapter.parameters())
    assert round(values / 1e6) == millions
