"""ControlNet and T2I-Adapter units in the one denoising loop: the same pixels as diffusers' ControlNet and adapter
pipelines for the same seed (weight, start/end, control modes, several units, img2img), weight 0 is the plain
picture, the Hires. fix's second pass gets its map at the hires size, and the sd-webui-controlnet unit fields of
the API (webuiapi's ControlNetUnit) are read as the extension reads them."""
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import (ControlNetModel, EulerDiscreteScheduler, StableDiffusionAdapterPipeline,
                       StableDiffusionControlNetImg2ImgPipeline, StableDiffusionControlNetPipeline,
                       StableDiffusionPipeline, T2IAdapter)
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
from PIL import Image, ImageDraw, ImageOps

from paragoger.control.guidance import covers, soft_scales
from paragoger.control.service import ControlService
from paragoger.control.units import ControlUnit
from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from paragoger.model_manager.tiny_model import fill_random, tiny_model

PROMPT, NEGATIVE = "a lighthouse on a cliff, oil painting", "blurry, low quality"
SEED, STEPS = 1234, 4


@dataclass
class TinyControlModel:
    """What control.models gives the loop (kind, module, family), for models built here."""

    kind: str
    module: Any
    family: str = "sd1"


def tiny_controlnet(seed: int) -> ControlNetModel:
    """A ControlNet of the tiny SD 1.x UNet's shape with random weights; its zero convolutions (zero in a fresh
    ControlNet, so it would change nothing) made large enough that the control shows in the pixels."""
    with torch.random.fork_rng(devices=[]):
        net = ControlNetModel.from_unet(tiny_model("sd1").unet, conditioning_embedding_out_channels=(16, 32, 32, 32))
    fill_random(net, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for block in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
            block.weight.mul_(4.0)
    return net.eval().requires_grad_(False)


def tiny_adapter(seed: int = 5) -> T2IAdapter:
    with torch.random.fork_rng(devices=[]):
        adapter = T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=8,
                             adapter_type="full_adapter")
    fill_random(adapter, torch.Generator().manual_seed(seed))
    return adapter.eval().requires_grad_(False)


def edge_map(size=(64, 64), box=(12, 16, 50, 44)) -> Image.Image:
    """A canny-like map: white lines on black."""
    image = Image.new("RGB", size, "black")
    draw = ImageDraw.Draw(image)
    draw.rectangle(box, outline="white", width=2)
    draw.line((0, size[1] - 1, size[0] - 1, 0), fill="white", width=2)
    return image


def picture() -> Image.Image:
    rng = np.random.default_rng(7)
    return Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


@pytest.fixture(scope="module")
def control_models():
    return {"cn-a": TinyControlModel("controlnet", tiny_controlnet(11)),
            "cn-b": TinyControlModel("controlnet", tiny_controlnet(12)),
            "adapter": TinyControlModel("t2i_adapter", tiny_adapter()),
            "cn-xl": TinyControlModel("controlnet", tiny_controlnet(13), family="sdxl")}


@pytest.fixture
def engine(app_context, control_models):
    app_context.engine.control = ControlService(get_model=control_models.__getitem__)
    return app_context.engine


def generate(engine, *units, **changes):
    base = dict(prompt=PROMPT, negative_prompt=NEGATIVE, steps=STEPS, width=64, height=64, seed=SEED, cfg_scale=7.0,
                sampler_name="Euler", save_images=False, controlnet_units=list(units))
    return engine.generate(GenerationRequest(**{**base, **changes})).images[0].image


def base_pipeline(tiny_model_file) -> StableDiffusionPipeline:
    return StableDiffusionPipeline.from_pretrained(tiny_model_file("sd1", "diffusers"), safety_checker=None,
                                                   local_files_only=True)


def reference(pipe, **call):
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    arguments = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=7.0,
                     generator=torch.Generator("cpu").manual_seed(SEED))
    return pipe(**{**arguments, **call}).images[0]


def assert_same(ours, theirs):
    assert pixels(theirs).std() > 5, "the reference is flat: the comparison would prove nothing"
    assert np.abs(pixels(ours) - pixels(theirs)).max() <= 1


def assert_differs(a, b):
    assert np.abs(pixels(a) - pixels(b)).max() > 10


def controlnet_pipeline(tiny_model_file, controlnet):
    base = base_pipeline(tiny_model_file)
    return StableDiffusionControlNetPipeline(**{k: v for k, v in base.components.items()}, controlnet=controlnet,
                                             requires_safety_checker=False)


# --- txt2img: the same pixels as diffusers ---------------------------------------------------------------------------

@pytest.mark.parametrize("unit_fields, pipeline_call, steps", [
    ({}, {}, STEPS),
    ({"weight": 0.5}, {"controlnet_conditioning_scale": 0.5}, STEPS),
    # 10 steps: calls 3 to 6 are controlled (4 steps at 0.3-0.7 would control none)
    ({"guidance_start": 0.3, "guidance_end": 0.7}, {"control_guidance_start": 0.3, "control_guidance_end": 0.7}, 10),
    ({"control_mode": "ControlNet is more important"}, {"guess_mode": True}, STEPS),
], ids=["balanced", "weight", "start-end", "controlnet-more-important"])
def test_a_controlnet_unit_gives_the_pixels_of_diffusers_controlnet_pipeline(engine, control_models,
                                                                             tiny_model_file, unit_fields,
                                                                             pipeline_call, steps):
    ours = generate(engine, ControlUnit(model="cn-a", image=edge_map(), **unit_fields), steps=steps)
    pipe = controlnet_pipeline(tiny_model_file, control_models["cn-a"].module)
    assert_same(ours, reference(pipe, image=edge_map(), num_inference_steps=steps, **pipeline_call))
    assert_differs(ours, generate(engine, steps=steps))
    if unit_fields.get("guidance_start"):   # outside 0.3-0.7 the control is off: not the same as all the way
        assert_differs(ours, generate(engine, ControlUnit(model="cn-a", image=edge_map()), steps=steps))


def test_two_units_add_up_as_diffusers_multi_controlnet(engine, control_models, tiny_model_file):
    second_map = edge_map(box=(4, 4, 30, 60))
    ours = generate(engine, ControlUnit(model="cn-a", image=edge_map(), weight=0.8),
                    ControlUnit(model="cn-b", image=second_map, weight=0.6))
    multi = MultiControlNetModel([control_models["cn-a"].module, control_models["cn-b"].module])
    pipe = controlnet_pipeline(tiny_model_file, multi)
    assert_same(ours, reference(pipe, image=[edge_map(), second_map], controlnet_conditioning_scale=[0.8, 0.6]))


def test_weight_zero_and_disabled_units_give_the_plain_picture_bit_for_bit(engine):
    plain = generate(engine)
    assert np.array_equal(pixels(generate(engine, ControlUnit(model="cn-a", image=edge_map(), weight=0))),
                          pixels(plain))
    assert np.array_equal(pixels(generate(engine, ControlUnit(model="cn-a", image=edge_map(), enabled=False))),
                          pixels(plain))


def test_my_prompt_is_more_important_softens_the_shallow_layers_on_every_copy(engine):
    balanced = generate(engine, ControlUnit(model="cn-a", image=edge_map()))
    prompt_first = generate(engine, ControlUnit(model="cn-a", image=edge_map(),
                                                control_mode="My prompt is more important"))
    control_first = generate(engine, ControlUnit(model="cn-a", image=edge_map(),
                                                 control_mode="ControlNet is more important"))
    assert_differs(prompt_first, balanced)
    assert_differs(prompt_first, control_first)
    # sd-webui-controlnet's soft injection for SD 1.5's 13 residuals, shallowest first
    assert soft_scales(13) == pytest.approx([0.825 ** (12 - i) for i in range(13)])


def test_start_end_follows_diffusers_controlnet_keep():
    # call i of n is controlled unless i/n < start or (i+1)/n > end
    assert [covers(i, 10, 0.3, 0.7) for i in range(10)] == [False] * 3 + [True] * 4 + [False] * 3
    assert [covers(i, 4, 0.25, 0.75) for i in range(4)] == [False, True, True, False]
    assert [covers(i, 4, 0.0, 1.0) for i in range(4)] == [True] * 4


def test_a_t2i_adapter_unit_gives_the_pixels_of_diffusers_adapter_pipeline(engine, control_models,
                                                                           tiny_model_file):
    ours = generate(engine, ControlUnit(model="adapter", image=edge_map(), weight=0.7))
    base = base_pipeline(tiny_model_file)
    pipe = StableDiffusionAdapterPipeline(**{k: v for k, v in base.components.items() if k != "image_encoder"},
                                          adapter=control_models["adapter"].module, requires_safety_checker=False)
    assert_same(ours, reference(pipe, image=edge_map(), adapter_conditioning_scale=0.7, height=64, width=64))
    assert_differs(ours, generate(engine))


# --- img2img, hires fix ---------------------------------------------------------------------------------------------

def test_img2img_unit_without_a_picture_uses_the_img2img_picture_as_diffusers_controlnet_img2img(
        engine, control_models, tiny_model_file):
    ours = generate(engine, ControlUnit(model="cn-a"), mode="img2img", init_images=[picture()],
                    denoising_strength=0.6, steps=5)
    base = base_pipeline(tiny_model_file)
    pipe = StableDiffusionControlNetImg2ImgPipeline(**base.components, controlnet=control_models["cn-a"].module,
                                                    requires_safety_checker=False)
    assert_same(ours, reference(pipe, image=picture(), control_image=picture(), strength=0.6,
                                num_inference_steps=5, controlnet_conditioning_scale=1.0))  # its default is 0.8


def test_hires_fix_gives_the_second_pass_its_map_at_the_hires_size(engine, control_models, monkeypatch):
    seen = []
    net = control_models["cn-a"].module
    original = type(net).forward

    def recording(self, *args, controlnet_cond, **kwargs):
        seen.append(tuple(controlnet_cond.shape[-2:]))
        return original(self, *args, controlnet_cond=controlnet_cond, **kwargs)

    monkeypatch.setattr(type(net), "forward", recording)
    image = generate(engine, ControlUnit(model="cn-a", image=edge_map()), enable_hr=True, hr_scale=1.5,
                     hr_second_pass_steps=2, denoising_strength=0.5)
    assert image.size == (96, 96)
    assert (64, 64) in seen and (96, 96) in seen and seen[-1] == (96, 96)


class InvertingPreprocessors:
    """A preprocessor registry with one annotator, "invert" (white lines on black become black on white), that
    notes what it was asked."""

    def __init__(self):
        self.calls, self.images = [], []

    def detect(self, name, image, *, resolution, threshold_a, threshold_b):
        self.calls.append((name, image.mode, image.size, resolution, threshold_a, threshold_b))
        self.images.append(image)
        return ImageOps.invert(image.convert("RGB"))


def test_the_preprocessor_makes_the_map_once_per_picture_with_the_units_settings(app_context, control_models):
    preprocessors = InvertingPreprocessors()
    app_context.engine.control = ControlService(get_model=control_models.__getitem__, preprocessors=preprocessors)
    detected = generate(app_context.engine, ControlUnit(model="cn-a", module="invert", image=edge_map(),
                                                         processor_res=256, threshold_a=100, threshold_b=200),
                        n_iter=2, seed=SEED)
    assert preprocessors.calls == [("invert", "RGB", (64, 64), 256, 100, 200)]   # both batches, one detection
    given = generate(app_context.engine, ControlUnit(model="cn-a", image=ImageOps.invert(edge_map())))
    assert np.array_equal(pixels(detected), pixels(given))


@pytest.mark.parametrize("resize_mode, resolution", [("Crop and Resize", 64), ("Just Resize", 64),
                                                     ("Resize and Fill", 48)])
def test_pixel_perfect_detects_at_the_size_the_map_is_used_at(app_context, control_models, resize_mode,
                                                              resolution):
    preprocessors = InvertingPreprocessors()
    app_context.engine.control = ControlService(get_model=control_models.__getitem__, preprocessors=preprocessors)
    generate(app_context.engine, ControlUnit(model="cn-a", module="invert", image=edge_map(size=(128, 96)),
                                             pixel_perfect=True, resize_mode=resize_mode))
    assert preprocessors.calls[0][3] == resolution


def test_an_inpaint_unit_gets_the_picture_with_the_mask_as_alpha(app_context, control_models):
    preprocessors = InvertingPreprocessors()
    app_context.engine.control = ControlService(get_model=control_models.__getitem__, preprocessors=preprocessors)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    generate(app_context.engine, ControlUnit(model="cn-a", module="invert"), mode="img2img",
             init_images=[picture()], mask=mask, mask_blur=0, denoising_strength=0.5)
    assert preprocessors.calls[0][:3] == ("invert", "RGBA", (64, 64))
    assert np.array_equal(np.asarray(preprocessors.images[0].getchannel("A")), np.asarray(mask))
    assert np.array_equal(pixels(preprocessors.images[0]), pixels(picture()))


def test_units_are_refused_with_a_reason(engine):
    with pytest.raises(UserError, match="no picture"):
        generate(engine, ControlUnit(model="cn-a"))
    with pytest.raises(UserError, match="no ControlNet model"):
        generate(engine, ControlUnit(image=edge_map()))
    with pytest.raises(UserError, match="SDXL"):
        generate(engine, ControlUnit(model="cn-xl", image=edge_map()))


# --- the API's unit fields ----------------------------------------------------------------------------------------

def test_webuiapi_controlnet_unit_round_trip():
    import webuiapi

    sent = webuiapi.ControlNetUnit(image=edge_map(), module="canny", model="control_v11p_sd15_canny [d14c016b]",
                                   weight=0.75, resize_mode="Crop and Resize", processor_res=384, threshold_a=80,
                                   threshold_b=160, guidance_start=0.1, guidance_end=0.8, control_mode=2,
                                   pixel_perfect=True)
    unit = ControlUnit.from_api(sent.to_dict())
    assert (unit.module, unit.model, unit.weight, unit.resize_mode, unit.processor_res) == (
        "canny", "control_v11p_sd15_canny [d14c016b]", 0.75, "Crop and Resize", 384)
    assert (unit.threshold_a, unit.threshold_b, unit.guidance_start, unit.guidance_end) == (80, 160, 0.1, 0.8)
    assert unit.control_mode == "ControlNet is more important" and unit.pixel_perfect and unit.enabled
    assert np.array_equal(pixels(unit.image), pixels(edge_map()))
    assert unit.mask is None and unit.hr_option == "Both"
    assert ControlUnit.from_api(webuiapi.ControlNetUnit().to_dict()).image is None  # "" is no picture


@pytest.mark.parametrize("fields, expected", [
    ({"input_image": None, "resize_mode": 0, "control_mode": 1}, ("Just Resize", "My prompt is more important")),
    ({"resize_mode": "Inner Fit (Scale to Fit)", "control_mode": "2"}, ("Crop and Resize",
                                                                         "ControlNet is more important")),
    ({"resize_mode": "Envelope (Outer Fit)"}, ("Resize and Fill", "Balanced")),
    ({"resize_mode": "Outer Fit (Shrink to Fit)", "guessmode": True}, ("Resize and Fill",
                                                                        "ControlNet is more important")),
    ({"resize_mode": 3}, ("Just Resize", "Balanced")),
])
def test_resize_and_control_modes_are_read_by_name_number_and_old_name(fields, expected):
    unit = ControlUnit.from_api({"model": "x", **fields})
    assert (unit.resize_mode, unit.control_mode) == expected


def test_numbers_as_strings_and_the_old_input_image_name_are_taken():
    import base64
    import io

    buffer = io.BytesIO()
    edge_map().save(buffer, format="PNG")
    unit = ControlUnit.from_api({"input_image": base64.b64encode(buffer.getvalue()).decode(), "weight": "0.4",
                                 "processor_res": "256", "enabled": "true", "unknown_field": 1})
    assert unit.image.size == (64, 64) and unit.weight == 0.4 and unit.processor_res == 256 and unit.enabled


@pytest.mark.parametrize("fields, field", [
    ({"weight": "heavy"}, "weight"),
    ({"weight": -1}, "weight"),
    ({"guidance_start": 1.5}, "guidance_start"),
    ({"guidance_start": 0.8, "guidance_end": 0.2}, "guidance_start"),
    ({"resize_mode": "Stretch"}, "resize_mode"),
    ({"control_mode": 7}, "control_mode"),
    ({"processor_res": 12.5}, "processor_res"),
    ({"enabled": "maybe"}, "enabled"),
    ({"image": "not base64 at all!"}, "image"),
])
def test_bad_values_are_refused_naming_the_field(fields, field):
    with pytest.raises(UserError) as caught:
        ControlUnit.from_api(fields, 2)
    assert field in str(caught.value) and "2" in str(caught.value)


# --- video (AnimateDiff): one map per frame, residuals sliced per context window -----------------------------------

VIDEO_MODULE = "mm_tiny_v2.safetensors"


@pytest.fixture
def video_engine(engine, app_context):
    from tests.fixtures.motion import write_motion_module

    write_motion_module(app_context.paths.animatediff_dirs[0] / VIDEO_MODULE, "v2", seed=3)
    app_context.motion_modules.library.refresh()
    return engine


def source_frames(count=4) -> list:
    return [edge_map(box=(8 + 4 * i, 10, 40 + 4 * i, 50)) for i in range(count)]


def video_request(*units, **video):
    from paragoger.video.options import AnimateDiffOptions

    options = dict(model=VIDEO_MODULE, video_source=source_frames(), video_length=0, format=["MP4"], **video)
    return GenerationRequest(mode="img2img", init_images=[source_frames()[0]], prompt=PROMPT, negative_prompt=NEGATIVE,
                             steps=3, width=64, height=64, seed=77, cfg_scale=7.0, sampler_name="DDIM",
                             denoising_strength=0.6, save_images=False, animatediff=AnimateDiffOptions(**options),
                             controlnet_units=list(units))


def test_video_to_video_unit_maps_each_frame_as_diffusers_animatediff_controlnet(video_engine, control_models,
                                                                                 app_context):
    from diffusers import AnimateDiffVideoToVideoControlNetPipeline, DDIMScheduler

    from paragoger.core.video import motion_scheduler_config
    from tests.fixtures.motion import motion_adapter

    ours = [item.image for item in video_engine.generate(video_request(ControlUnit(model="cn-a"))).images]
    components = app_context.cache.current
    pipe = AnimateDiffVideoToVideoControlNetPipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=components.unet, motion_adapter=motion_adapter("v2", seed=3), controlnet=control_models["cn-a"].module,
        scheduler=DDIMScheduler.from_config(motion_scheduler_config(components.scheduler_config)))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(video=source_frames(), conditioning_frames=source_frames(), prompt=PROMPT,
                  negative_prompt=NEGATIVE, num_inference_steps=3, strength=0.6, height=64, width=64,
                  guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(77)).frames[0]
    assert len(ours) == len(theirs) == 4
    for mine, reference_frame in zip(ours, theirs):
        assert_same(mine, reference_frame)
    plain = [item.image for item in video_engine.generate(video_request()).images]
    assert any(np.abs(pixels(a) - pixels(b)).max() > 10 for a, b in zip(ours, plain))


def test_context_windows_take_their_own_frames_residuals(video_engine, app_context):
    from paragoger.video.motion_unet import motion_unet
    from paragoger.video.windowed_unet import WindowedMotionUNet

    video_engine.generate(video_request())   # loads the checkpoint
    unet = motion_unet(app_context.cache.current.unet, app_context.motion_modules.get(VIDEO_MODULE))
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 4, 4, 8, 8, generator=generator)
    embeds = torch.randn(2 * 4, 77, 32, generator=generator)
    down = [torch.randn(2 * 4, c, s, s, generator=generator) for c, s in ((32, 8), (32, 8), (32, 4), (64, 4),
                                                                         (64, 4))]
    mid = torch.randn(2 * 4, 64, 4, 4, generator=generator)
    windows = [[0, 1], [2, 3]]

    def rows(tensor, window):
        return tensor.view(2, 4, *tensor.shape[1:])[:, window].reshape(4, *tensor.shape[1:])

    with torch.inference_mode():
        whole = WindowedMotionUNet(unet, windows, 4)(sample, torch.tensor(500), encoder_hidden_states=embeds,
                                                     down_block_additional_residuals=down,
                                                     mid_block_additional_residual=mid)[0]
        by_window = [unet(sample[:, :, w], torch.tensor(500), encoder_hidden_states=rows(embeds, w),
                          down_block_additional_residuals=[rows(d, w) for d in down],
                          mid_block_additional_residual=rows(mid, w)).sample for w in windows]
    torch.testing.assert_close(whole, torch.cat(by_window, dim=2))


def test_a_long_video_with_a_unit_is_made_window_by_window(video_engine):
    frames = [item.image for item in video_engine.generate(
        video_request(ControlUnit(model="cn-a"), batch_size=2, overlap=0)).images]
    assert len(frames) == 4


def test_an_adapter_cannot_guide_a_motion_video(video_engine):
    with pytest.raises(UserError, match="T2I-Adapter"):
        video_engine.generate(video_request(ControlUnit(model="adapter")))


def test_an_sdxl_controlnet_unit_gives_the_pixels_of_diffusers_sdxl_controlnet_pipeline(app_context,
                                                                                        tiny_sdxl_file):
    import shutil

    from diffusers import StableDiffusionXLControlNetPipeline

    shutil.copyfile(tiny_sdxl_file, app_context.paths.checkpoint_dirs[-1] / "tiny-sdxl.safetensors")
    app_context.library.refresh()
    with torch.random.fork_rng(devices=[]):
        net = ControlNetModel.from_unet(tiny_model("sdxl").unet, conditioning_embedding_out_channels=(16, 32, 32, 32))
    fill_random(net, torch.Generator().manual_seed(21))
    net.eval().requires_grad_(False)
    app_context.engine.control = ControlService(
        get_model={"cn-sdxl": TinyControlModel("controlnet", net, family="sdxl")}.__getitem__)
    ours = generate(app_context.engine, ControlUnit(model="cn-sdxl", image=edge_map()),
                    checkpoint="tiny-sdxl.safetensors")
    components = app_context.cache.current
    pipe = StableDiffusionXLControlNetPipeline(
        vae=components.vae, text_encoder=components.text_encoder, text_encoder_2=components.text_encoder_2,
        tokenizer=components.tokenizer, tokenizer_2=components.tokenizer_2, unet=components.unet, controlnet=net,
        scheduler=EulerDiscreteScheduler.from_config(components.scheduler_config))
    assert_same(ours, reference(pipe, image=edge_map(), height=64, width=64))
    assert_differs(ours, generate(app_context.engine, checkpoint="tiny-sdxl.safetensors"))
