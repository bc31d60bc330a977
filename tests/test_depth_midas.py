"""SD 2.x depth checkpoints carry their own depth estimator (MiDaS DPT-Hybrid under ``depth_model.model.*``): it is
converted to transformers' DPTForDepthEstimation at load time and used when no depth map is uploaded, before any
``models/depth`` folder; a file without it (or with a damaged one) still asks for a folder as before."""
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from transformers import DPTConfig, DPTForDepthEstimation

from paragoger.errors import UserError
from paragoger.model_manager import midas
from paragoger.model_manager.components import CheckpointInfo
from paragoger.model_manager.loader import load_checkpoint
from tests.fixtures.depth import (hybrid_processor, hybrid_to_midas, tiny_hybrid_depth_estimator,
                                  write_depth_checkpoint, write_hybrid_depth_estimator)
from tests.test_depth_pix2pix import depth_picture, img2img
from tests.test_img2img_core import picture, pixels

# MiDaS names as 512-depth-ema spells them (a sample from each part of the network).
REAL_MIDAS_KEYS = [
    "pretrained.model.patch_embed.backbone.stem.conv.weight",
    "pretrained.model.patch_embed.backbone.stem.norm.weight",
    "pretrained.model.patch_embed.backbone.stages.0.blocks.0.downsample.conv.weight",
    "pretrained.model.patch_embed.backbone.stages.2.blocks.1.conv2.weight",
    "pretrained.model.patch_embed.proj.weight",
    "pretrained.model.cls_token",
    "pretrained.model.pos_embed",
    "pretrained.model.blocks.0.attn.qkv.weight",
    "pretrained.model.blocks.3.mlp.fc2.bias",
    "pretrained.model.norm.weight",
    "pretrained.act_postprocess3.0.project.0.weight",
    "pretrained.act_postprocess4.4.weight",
    "scratch.layer1_rn.weight",
    "scratch.refinenet4.resConfUnit1.conv1.weight",
    "scratch.refinenet1.out_conv.bias",
    "scratch.output_conv.4.weight",
]


@pytest.fixture(scope="session")
def depth_files(tmp_path_factory):
    """Tiny depth checkpoints (with, without and with a damaged MiDaS part) and the same MiDaS as a folder."""
    root = tmp_path_factory.mktemp("midas")
    return {
        "own": write_depth_checkpoint(root / "own" / "depth-own.safetensors"),
        "other": write_depth_checkpoint(root / "other" / "depth-other.safetensors", depth_seed=7),
        "none": write_depth_checkpoint(root / "none" / "depth-none.safetensors", with_depth_model=False),
        "damaged": write_depth_checkpoint(root / "damaged" / "depth-damaged.safetensors",
                                          drop=("scratch.output_conv.",)),
        "folder": write_hybrid_depth_estimator(root / "folder" / "dpt-hybrid-midas"),
    }


def use(app_context, path) -> str:
    shutil.copyfile(path, app_context.paths.default_checkpoint_dir() / path.name)
    app_context.library.refresh()
    return path.stem


def test_midas_weights_convert_to_the_same_transformers_model():
    original = tiny_hybrid_depth_estimator()
    saved = hybrid_to_midas(original)
    assert set(REAL_MIDAS_KEYS) <= set(saved)
    assert not any(key.startswith(("dpt.", "neck.", "head.")) for key in saved)

    estimator = midas.build_depth_estimator({midas.MIDAS_PREFIX + k: v for k, v in saved.items()}, name="tiny")
    pictures = [picture(seed=1).convert("RGB"), picture(seed=2).convert("RGB")]
    expected = original(hybrid_processor(original)(images=pictures, return_tensors="pt").pixel_values)
    assert torch.equal(estimator.predict(pictures), expected.predicted_depth)
    assert expected.predicted_depth.std() > 0  # a real map, not a constant


def test_sizes_come_from_the_weights_so_the_real_model_gets_the_real_config():
    real = DPTConfig.from_pretrained(midas.CONFIG_FOLDER)
    with init_empty_weights():
        model = DPTForDepthEstimation(real)
    derived = midas.hybrid_config(hybrid_to_midas(model))
    for field in ("hidden_size", "num_hidden_layers", "intermediate_size", "image_size", "backbone_featmap_shape",
                  "backbone_out_indices", "neck_hidden_sizes", "fusion_hidden_size", "num_attention_heads"):
        assert getattr(derived, field) == getattr(real, field), field
    for field in ("embedding_size", "depths", "hidden_sizes", "num_groups"):
        assert getattr(derived.backbone_config, field) == getattr(real.backbone_config, field), field
    tiny = midas.hybrid_config(hybrid_to_midas(tiny_hybrid_depth_estimator()))
    assert (tiny.hidden_size, tiny.num_hidden_layers, tiny.backbone_config.depths) == (48, 4, [1, 1, 2])


def test_config_files_hold_the_real_dpt_hybrid_midas_values():
    """Intel/dpt-hybrid-midas (as copied into stabilityai/stable-diffusion-2-depth/depth_estimator)."""
    config = json.loads((midas.CONFIG_FOLDER / "config.json").read_text())
    assert config["is_hybrid"] is True and config["readout_type"] == "project"
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["intermediate_size"], config["image_size"], config["patch_size"]) == (768, 12, 12, 3072, 384, 16)
    assert config["backbone_out_indices"] == [2, 5, 8, 11]
    assert config["reassemble_factors"] == [1, 1, 1, 0.5]
    assert config["neck_hidden_sizes"] == [256, 512, 768, 768]
    assert config["backbone_featmap_shape"] == [1, 1024, 24, 24]
    assert config["neck_ignore_stages"] == [0, 1] and config["fusion_hidden_size"] == 256
    assert config["use_batch_norm_in_fusion_residual"] is False
    bit = config["backbone_config"]
    assert (bit["model_type"], bit["layer_type"], bit["global_padding"]) == ("bit", "bottleneck", "SAME")
    assert bit["depths"] == [3, 4, 9] and bit["hidden_sizes"] == [256, 512, 1024, 2048]
    assert (bit["embedding_size"], bit["num_groups"], bit["embedding_dynamic_padding"]) == (64, 32, True)
    assert bit["out_features"] == ["stage1", "stage2", "stage3"]
    processor = json.loads((midas.CONFIG_FOLDER / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 384, "width": 384}
    assert processor["image_mean"] == processor["image_std"] == [0.5, 0.5, 0.5]
    assert (processor["keep_aspect_ratio"], processor["ensure_multiple_of"], processor["resample"]) == (False, 1, 2)
    assert processor["do_normalize"] and processor["do_rescale"] and processor["do_resize"]


def test_the_estimator_is_built_at_load_time_in_float32(depth_files):
    info = CheckpointInfo(path=depth_files["own"], name="depth-own.safetensors", model_name="depth-own")
    components = load_checkpoint(info, dtype=torch.bfloat16)
    estimator = components.extra["depth_estimator"]
    assert components.unet.dtype == torch.bfloat16
    assert {p.dtype for p in estimator.model.parameters()} == {torch.float32}
    assert estimator.processor.size.height == estimator.model.config.image_size == 64
    without = load_checkpoint(CheckpointInfo(path=depth_files["none"], name="n.safetensors", model_name="n"))
    assert without.variant == "depth" and without.extra["depth_estimator"] is None


def test_a_depth_checkpoint_uses_its_own_depth_model_and_gives_the_folders_pixels(app_context, depth_files):
    assert not (app_context.paths.models_dir / "depth").exists()
    own = app_context.engine.generate(img2img(use(app_context, depth_files["own"]))).images[0].image

    # The same MiDaS weights as a models/depth folder, for a checkpoint without its own: the same pixels.
    shutil.copytree(depth_files["folder"], app_context.paths.models_dir / "depth" / "dpt-hybrid-midas")
    folder = app_context.engine.generate(img2img(use(app_context, depth_files["none"]))).images[0].image
    assert np.array_equal(pixels(own), pixels(folder))

    # The checkpoint's own estimator comes before the folder; an uploaded map before both.
    other = app_context.engine.generate(img2img(use(app_context, depth_files["other"]))).images[0].image
    assert np.abs(pixels(other) - pixels(own)).max() > 8
    uploaded = app_context.engine.generate(img2img("depth-own", depth_map=depth_picture())).images[0].image
    assert np.abs(pixels(uploaded) - pixels(own)).max() > 8


def test_a_depth_checkpoint_without_a_depth_model_still_asks_for_a_folder(app_context, depth_files):
    with pytest.raises(UserError, match="depth model") as raised:
        app_context.engine.generate(img2img(use(app_context, depth_files["none"])))
    assert raised.value.key == "depth_estimator_missing"
    assert str(app_context.paths.models_dir / "depth") in str(raised.value)


def test_a_damaged_depth_model_is_left_out_and_the_folder_serves(app_context, depth_files, caplog):
    checkpoint = use(app_context, depth_files["damaged"])
    with caplog.at_level(logging.WARNING, logger="paragoger.model_manager.midas"):
        with pytest.raises(UserError) as raised:
            app_context.engine.generate(img2img(checkpoint))
    assert raised.value.key == "depth_estimator_missing"
    assert "depth-damaged" in caplog.text and "depth model" in caplog.text

    shutil.copytree(depth_files["folder"], app_context.paths.models_dir / "depth" / "dpt-hybrid-midas")
    result = app_context.engine.generate(img2img(checkpoint))
    assert result.images[0].image.size == (64, 64)
