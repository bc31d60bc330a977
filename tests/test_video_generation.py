"""Video with a motion module through the core: the same frames as diffusers' AnimateDiff pipelines for the same
seed, context windows, prompt travel, FreeInit, video to video with and without a motion module, image to video,
interrupt, and the files written."""
import datetime

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline, AnimateDiffVideoToVideoPipeline, DDIMScheduler, EulerDiscreteScheduler
from PIL import Image

from paragoger.core.jobs import Job
from paragoger.core.request import GenerationRequest
from paragoger.core.video import MOTION_BETAS, motion_scheduler_config
from paragoger.video import starts
from paragoger.video.files import video_info
from paragoger.video.motion_unet import motion_unet
from paragoger.video.options import AnimateDiffOptions
from paragoger.video.windowed_unet import WindowedMotionUNet
from tests.fixtures.motion import motion_adapter, write_motion_module

PROMPT, NEGATIVE = "a paper boat on a river", "blurry"
MODULE = "mm_tiny_v2.safetensors"


@pytest.fixture
def video_context(app_context):
    write_motion_module(app_context.paths.animatediff_dirs[0] / MODULE, "v2", seed=3)
    app_context.motion_modules.library.refresh()
    return app_context


def video_request(**changes) -> GenerationRequest:
    options = dict(model=MODULE, video_length=4, format=["MP4"])
    options.update(changes.pop("video", {}))
    base = dict(prompt=PROMPT, negative_prompt=NEGATIVE, steps=3, width=64, height=64, seed=77, cfg_scale=7.0,
                sampler_name="DDIM", save_images=False, animatediff=AnimateDiffOptions(**options))
    return GenerationRequest(**{**base, **changes})


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


def reference_parts(context, scheduler_class):
    components = context.cache.current
    scheduler = scheduler_class.from_config(motion_scheduler_config(components.scheduler_config))
    return dict(vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
                unet=components.unet, motion_adapter=motion_adapter("v2", seed=3), scheduler=scheduler)


def frames_of(video) -> list:
    return [frame if isinstance(frame, Image.Image) else Image.fromarray(frame) for frame in video]


def assert_same_frames(ours, reference):
    assert len(ours) == len(reference)
    for mine, theirs in zip(ours, reference):
        assert pixels(theirs).std() > 5, "flat reference frame: the comparison would prove nothing"
        assert np.abs(pixels(mine) - pixels(theirs)).max() <= 1


@pytest.mark.parametrize("sampler, scheduler_class", [("DDIM", DDIMScheduler), ("Euler", EulerDiscreteScheduler)])
def test_text_to_video_gives_the_same_frames_as_diffusers_animatediff_pipeline(video_context, sampler,
                                                                              scheduler_class):
    ours = video_context.engine.generate(video_request(sampler_name=sampler))
    pipe = AnimateDiffPipeline(**reference_parts(video_context, scheduler_class))
    reference = pipe(PROMPT, negative_prompt=NEGATIVE, num_frames=4, num_inference_steps=3, guidance_scale=7.0,
                     width=64, height=64, generator=torch.Generator("cpu").manual_seed(77)).frames[0]
    assert_same_frames([item.image for item in ours.images], frames_of(reference))


def test_the_scheduler_uses_animatediff_training_betas_whatever_the_checkpoint_says(video_context):
    video_context.engine.generate(video_request())
    config = motion_scheduler_config(video_context.cache.current.scheduler_config)
    assert {key: config[key] for key in MOTION_BETAS} == MOTION_BETAS


def test_video_to_video_gives_the_same_frames_as_diffusers_video_to_video_pipeline(video_context):
    source = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8))
              for i in range(4)]
    request = video_request(mode="img2img", init_images=[source[0]], denoising_strength=0.6,
                            video=dict(video_source=source, video_length=0))
    ours = video_context.engine.generate(request)
    pipe = AnimateDiffVideoToVideoPipeline(**reference_parts(video_context, DDIMScheduler))
    reference = pipe(video=source, prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=3, strength=0.6,
                     height=64, width=64,
                     guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(77)).frames[0]
    assert_same_frames([item.image for item in ours.images], frames_of(reference))


def test_freeinit_gives_the_same_frames_as_diffusers_free_init(video_context):
    ours = video_context.engine.generate(video_request(video=dict(freeinit_enable=True, freeinit_iters=2)))
    pipe = AnimateDiffPipeline(**reference_parts(video_context, DDIMScheduler))
    pipe.enable_free_init(num_iters=2, use_fast_sampling=False, method="butterworth", order=4,
                          spatial_stop_frequency=0.25, temporal_stop_frequency=0.25)
    reference = pipe(PROMPT, negative_prompt=NEGATIVE, num_frames=4, num_inference_steps=3, guidance_scale=7.0,
                     width=64, height=64, generator=torch.Generator("cpu").manual_seed(77)).frames[0]
    assert_same_frames([item.image for item in ours.images], frames_of(reference))
    plain = video_context.engine.generate(video_request())
    assert any(np.abs(pixels(a.image) - pixels(b.image)).max() > 2 for a, b in zip(ours.images, plain.images))


def test_overlapping_windows_average_the_motion_unet_predictions(video_context):
    video_context.engine.generate(video_request())  # loads the checkpoint
    components = video_context.cache.current
    unet = motion_unet(components.unet, video_context.motion_modules.get(MODULE))
    sample = torch.randn(2, 4, 5, 8, 8, generator=torch.Generator().manual_seed(0))
    embeds = torch.randn(2 * 5, 77, 32, generator=torch.Generator().manual_seed(1))
    windows = [[0, 1, 2], [2, 3, 4]]
    with torch.inference_mode():
        averaged = WindowedMotionUNet(unet, windows, 5)(sample, torch.tensor(500), encoder_hidden_states=embeds)[0]
        by_window = [unet(sample[:, :, w], torch.tensor(500), encoder_hidden_states=embeds.view(2, 5, 77, 32)[:, w]
                          .reshape(2 * 3, 77, 32)).sample for w in windows]
    torch.testing.assert_close(averaged[:, :, :2], by_window[0][:, :, :2])
    torch.testing.assert_close(averaged[:, :, 3:], by_window[1][:, :, 1:])
    torch.testing.assert_close(averaged[:, :, 2], (by_window[0][:, :, 2] + by_window[1][:, :, 0]) / 2)


def test_a_video_longer_than_the_context_window_is_made_window_by_window(video_context):
    job = Job(request=None)
    seen = []
    original = job.set_step

    def watch(step, preview=None):
        seen.append(job.progress.textinfo)
        original(step, preview)

    job.set_step = watch
    result = video_context.engine.generate(video_request(video=dict(video_length=6, batch_size=4, overlap=2)), job)
    assert len(result.images) == 6
    assert "window 2/2" in seen


def test_prompt_travel_interpolates_the_conditioning_between_key_frames(video_context):
    engine = video_context.engine
    engine.generate(video_request())
    from paragoger.core.conditioning import PromptEncoder
    from paragoger.core.prompting import prepare_prompts

    encoder = PromptEncoder(video_context.cache.current, clip_skip=1, emphasis="Original")
    travel = "a meadow\n0: spring\n3: autumn\nphoto"
    prompts = prepare_prompts(travel, NEGATIVE, steps=3)
    guidance = engine.videos._guidance(encoder, prompts, video_request(prompt=travel), AnimateDiffOptions(), 4)
    embeds = guidance.at(0).embeds  # [negative x 4 frames, positive x 4 frames]
    spring, autumn = encoder.encode("a meadow, spring, photo").embeds[0], encoder.encode("a meadow, autumn, photo").embeds[0]
    torch.testing.assert_close(embeds[4], spring)
    torch.testing.assert_close(embeds[7], autumn)
    torch.testing.assert_close(embeds[5], spring * 2 / 3 + autumn / 3)
    torch.testing.assert_close(embeds[0], encoder.encode(NEGATIVE).embeds[0])


def test_video_to_video_without_a_motion_module_is_img2img_frame_by_frame_with_one_seed(video_context):
    source = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8))
              for i in range(2)]
    request = video_request(mode="img2img", init_images=[source[0]], denoising_strength=0.5,
                            video=dict(model="None", video_source=source, video_length=0))
    video = video_context.engine.generate(request)
    for frame, made in zip(source, video.images):
        alone = video_context.engine.generate(GenerationRequest(
            mode="img2img", prompt=PROMPT, negative_prompt=NEGATIVE, steps=3, width=64, height=64, seed=77,
            cfg_scale=7.0, sampler_name="DDIM", init_images=[frame], denoising_strength=0.5, save_images=False))
        assert np.array_equal(pixels(made.image), pixels(alone.images[0].image))
    assert "AnimateDiff" in video.images[0].infotext and "model: None" in video.images[0].infotext


def test_image_to_video_starts_the_first_frame_from_the_picture(video_context):
    components = video_context.engine.load_model(None, None, video_context.settings)
    scheduler = DDIMScheduler.from_config(motion_scheduler_config(components.scheduler_config))
    scheduler.set_timesteps(10)
    picture = Image.fromarray(np.random.default_rng(5).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    start = starts.from_picture(components.vae, scheduler, pixels=starts.frames_to_pixels([picture]), frames=4,
                                seed=1, steps=10, strength=0.5, latent_power=1, latent_scale=4,
                                device=torch.device("cpu"), dtype=torch.float32)
    picture_latents = components.vae.encode(starts.frames_to_pixels([picture])).latent_dist.sample(
        generator=torch.Generator().manual_seed(1)) * components.vae.config.scaling_factor
    torch.testing.assert_close(start.image_latents[:, :, 0], picture_latents)
    torch.testing.assert_close(start.image_latents[:, :, 3], start.noise[:, :, 3] * 3 / 4 + picture_latents / 4)
    assert start.steps == 5
    result = video_context.engine.generate(video_request(mode="img2img", init_images=[picture],
                                                         denoising_strength=0.5))
    assert len(result.images) == 4


def test_a_saved_video_has_its_files_its_infotext_and_one_seed(video_context):
    result = video_context.engine.generate(video_request(save_images=True, video=dict(format=["MP4", "GIF", "PNG"])))
    saved = result.videos[0]
    folder = video_context.paths.outputs_dir / "txt2img-videos" / datetime.date.today().isoformat()
    assert saved.files["MP4"].parent == folder and saved.files["MP4"].name == "00000-77.mp4"
    assert video_info(saved.files["MP4"])[0] == 4
    assert {item.seed for item in result.images} == {77}
    text = saved.files["TXT"].read_text(encoding="utf-8")
    assert "Seed: 77" in text and "AnimateDiff:" in text and f"model: {MODULE}" in text


def test_interrupt_keeps_the_frames_and_writes_them(video_context):
    job = Job(request=None)
    original = job.set_step

    def interrupt_after_first(step, preview=None):
        original(step, preview)
        if step >= 1:
            job.interrupt()

    job.set_step = interrupt_after_first
    result = video_context.engine.generate(video_request(save_images=True, steps=6), job)
    assert result.interrupted and len(result.images) == 4
    assert video_info(result.videos[0].files["MP4"])[0] == 4


def test_a_motion_lora_in_the_prompt_changes_the_motion_module_for_that_video_only(video_context):
    from tests.fixtures.motion import write_motion_lora

    module_file = video_context.paths.animatediff_dirs[0] / MODULE
    write_motion_lora(video_context.paths.lora_dirs[-1] / "v2_lora_TinyZoom.safetensors", module_file, seed=8)
    video_context.loras.refresh()
    plain = video_context.engine.generate(video_request())
    module = video_context.motion_modules.get(MODULE)
    before = {key: value.clone() for key, value in module.adapter.state_dict().items()}
    zoomed = video_context.engine.generate(video_request(prompt=PROMPT + " <lora:v2_lora_TinyZoom:1>"))
    assert any(np.abs(pixels(a.image) - pixels(b.image)).max() > 2 for a, b in zip(plain.images, zoomed.images))
    after = module.adapter.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    again = video_context.engine.generate(video_request())
    assert all(np.array_equal(pixels(a.image), pixels(b.image)) for a, b in zip(plain.images, again.images))


def test_sdxl_text_to_video_gives_the_same_frames_as_diffusers_sdxl_animatediff_pipeline(app_context, tiny_sdxl_file):
    from diffusers import AnimateDiffSDXLPipeline

    import shutil
    shutil.copyfile(tiny_sdxl_file, app_context.paths.checkpoint_dirs[-1] / "tiny-sdxl.safetensors")
    app_context.library.refresh()
    write_motion_module(app_context.paths.animatediff_dirs[0] / "mm_tiny_sdxl.safetensors", "sdxl", seed=4)
    app_context.motion_modules.library.refresh()
    request = video_request(checkpoint="tiny-sdxl.safetensors", video=dict(model="mm_tiny_sdxl.safetensors"))
    ours = app_context.engine.generate(request)
    components = app_context.cache.current
    pipe = AnimateDiffSDXLPipeline(
        vae=components.vae, text_encoder=components.text_encoder, text_encoder_2=components.text_encoder_2,
        tokenizer=components.tokenizer, tokenizer_2=components.tokenizer_2, unet=components.unet,
        motion_adapter=motion_adapter("sdxl", seed=4),
        scheduler=DDIMScheduler.from_config(motion_scheduler_config(components.scheduler_config)))
    # diffusers 0.42's from_unet2d leaves SDXL's added-embedding layer random: give the reference the model's own
    pipe.unet.add_embedding.load_state_dict(components.unet.add_embedding.state_dict())
    reference = pipe(PROMPT, negative_prompt=NEGATIVE, num_frames=4, num_inference_steps=3, guidance_scale=7.0,
                     width=64, height=64, generator=torch.Generator("cpu").manual_seed(77)).frames[0]
    assert_same_frames([item.image for item in ours.images], frames_of(reference))


def test_motion_modules_refuse_an_inpainting_checkpoint_with_the_reason(app_context, tiny_model_file):
    import shutil

    from paragoger.errors import UserError

    shutil.copyfile(tiny_model_file("sd1-inpaint", "safetensors"),
                    app_context.paths.checkpoint_dirs[-1] / "tiny-inpainting.safetensors")
    app_context.library.refresh()
    write_motion_module(app_context.paths.animatediff_dirs[0] / MODULE, "v2", seed=3)
    app_context.motion_modules.library.refresh()
    with pytest.raises(UserError, match="ordinary checkpoints"):
        app_context.engine.generate(video_request(checkpoint="tiny-inpainting.safetensors"))
