"""Depth (SD 2.x 512-depth) and instruct-pix2pix checkpoints in img2img: the same pixels as diffusers' depth2img
and instruct-pix2pix pipelines on the same files, and what the user is told when something is missing."""
import shutil

import numpy as np
import pytest
import torch
from diffusers import (EulerDiscreteScheduler, StableDiffusionDepth2ImgPipeline, StableDiffusionImg2ImgPipeline,
                       StableDiffusionInstructPix2PixPipeline)
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForDepthEstimation

from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from tests.fixtures.depth import write_depth_estimator
from tests.test_img2img_core import NEGATIVE, PROMPT, picture, pixels

STEPS, SEED, CFG = 5, 99, 7.0


@pytest.fixture(scope="session")
def tiny_depth_estimator_folder(tmp_path_factory):
    """A tiny DPT depth estimator folder (config, weights, preprocessor config), as models/depth holds them."""
    return write_depth_estimator(tmp_path_factory.mktemp("depth") / "tiny-dpt")


def use_model(app_context, tiny_model_file, kind) -> str:
    shutil.copyfile(tiny_model_file(kind, "safetensors"),
                    app_context.paths.default_checkpoint_dir() / f"{kind}.safetensors")
    app_context.library.refresh()
    return kind


def img2img(checkpoint, **changes) -> GenerationRequest:
    base = dict(mode="img2img", prompt=PROMPT, negative_prompt=NEGATIVE, init_images=[picture()], steps=STEPS,
                width=64, height=64, seed=SEED, cfg_scale=CFG, sampler_name="Euler", denoising_strength=0.6,
                save_images=False, checkpoint=checkpoint)
    return GenerationRequest(**{**base, **changes})


def reference_modules(tiny_model_file, kind) -> dict:
    """The same file as diffusers itself loads it (its single-file loader), with Euler."""
    pipe = StableDiffusionImg2ImgPipeline.from_single_file(
        tiny_model_file(kind, "safetensors"), config=str(tiny_model_file(kind, "diffusers")), safety_checker=None,
        local_files_only=True)
    modules = {name: pipe.components[name] for name in ("vae", "text_encoder", "tokenizer", "unet")}
    modules["scheduler"] = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    return modules


def depth_picture(size=64) -> Image.Image:
    """A depth map as a person would upload one: a bright (near) blob on a dark (far) gradient."""
    y, x = np.mgrid[0:size, 0:size]
    depth = 60 + 80 * x / size + 110 * np.exp(-((x - 40) ** 2 + (y - 24) ** 2) / 120)
    return Image.fromarray(np.clip(depth, 0, 255).astype(np.uint8), mode="L")


@pytest.mark.parametrize("source", ["estimator", "uploaded map"])
def test_depth_checkpoint_gives_the_same_pixels_as_diffusers_depth2img(app_context, tiny_model_file,
                                                                       tiny_depth_estimator_folder, source):
    checkpoint = use_model(app_context, tiny_model_file, "sd2-depth")
    depth_map = None
    if source == "estimator":
        shutil.copytree(tiny_depth_estimator_folder, app_context.paths.models_dir / "depth" / "tiny-dpt")
    else:
        depth_map = depth_picture()  # and no estimator at all in models/depth
    ours = app_context.engine.generate(img2img(checkpoint, depth_map=depth_map))

    pipe = StableDiffusionDepth2ImgPipeline(
        **reference_modules(tiny_model_file, "sd2-depth"),
        depth_estimator=AutoModelForDepthEstimation.from_pretrained(tiny_depth_estimator_folder,
                                                                    local_files_only=True),
        feature_extractor=AutoImageProcessor.from_pretrained(tiny_depth_estimator_folder, local_files_only=True))
    reference_map = None if depth_map is None else torch.from_numpy(np.asarray(depth_map, dtype=np.float32))[None]
    reference = pipe(PROMPT, negative_prompt=NEGATIVE, image=picture(), depth_map=reference_map, strength=0.6,
                     num_inference_steps=STEPS, guidance_scale=CFG,
                     generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    assert np.abs(pixels(ours.images[0].image) - pixels(reference)).max() <= 1
    assert "Image CFG scale" not in ours.images[0].infotext


def test_depth_without_an_estimator_or_map_is_a_clear_error(app_context, tiny_model_file):
    checkpoint = use_model(app_context, tiny_model_file, "sd2-depth")
    with pytest.raises(UserError, match="depth model") as raised:
        app_context.engine.generate(img2img(checkpoint))
    assert raised.value.key == "depth_estimator_missing"
    assert str(app_context.paths.models_dir / "depth") in str(raised.value)
    assert "depth map" in str(raised.value)


@pytest.mark.parametrize("kind", ["sd2-depth", "sd1-pix2pix"])
def test_depth_and_pix2pix_checkpoints_refuse_txt2img_with_a_reason(app_context, tiny_model_file, kind):
    checkpoint = use_model(app_context, tiny_model_file, kind)
    with pytest.raises(UserError, match="img2img") as raised:
        app_context.engine.generate(GenerationRequest(prompt=PROMPT, steps=2, width=64, height=64,
                                                      checkpoint=checkpoint, save_images=False))
    assert raised.value.key == "checkpoint_needs_picture"


@pytest.mark.parametrize("image_cfg_scale, expected", [(None, 1.5), (1.8, 1.8)])
def test_pix2pix_gives_the_same_pixels_as_diffusers_instruct_pix2pix(app_context, tiny_model_file,
                                                                     image_cfg_scale, expected):
    checkpoint = use_model(app_context, tiny_model_file, "sd1-pix2pix")
    # diffusers' pipeline always runs the whole schedule from noise: denoising strength 1.
    ours = app_context.engine.generate(img2img(checkpoint, denoising_strength=1.0, image_cfg_scale=image_cfg_scale))

    pipe = StableDiffusionInstructPix2PixPipeline(**reference_modules(tiny_model_file, "sd1-pix2pix"),
                                                  safety_checker=None, feature_extractor=None,
                                                  requires_safety_checker=False)
    reference = pipe(PROMPT, negative_prompt=NEGATIVE, image=picture(), num_inference_steps=STEPS,
                     guidance_scale=CFG, image_guidance_scale=expected,
                     generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    assert np.abs(pixels(ours.images[0].image) - pixels(reference)).max() <= 1


def test_image_cfg_scale_is_written_for_pix2pix_only(app_context, tiny_model_file):
    checkpoint = use_model(app_context, tiny_model_file, "sd1-pix2pix")
    edited = app_context.engine.generate(img2img(checkpoint, steps=2, image_cfg_scale=1.25))
    assert "CFG scale: 7, Image CFG scale: 1.25, Seed: 99," in edited.images[0].infotext
    ordinary = app_context.engine.generate(img2img("tiny-sd1", steps=2, image_cfg_scale=1.25))
    assert "Image CFG scale" not in ordinary.images[0].infotext
    txt2img = app_context.engine.generate(GenerationRequest(prompt=PROMPT, steps=2, width=64, height=64,
                                                            checkpoint="tiny-sd1", image_cfg_scale=1.25,
                                                            save_images=False))
    assert "Image CFG scale" not in txt2img.images[0].infotext
