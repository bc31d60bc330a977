"""img2img and inpainting on the shared core: the same pixels as diffusers' img2img and inpaint pipelines,
strength 0 and 1, masks, only-masked paste-back, one copy of the UNet across modes."""
import numpy as np
import pytest
import torch
from diffusers import (DDIMScheduler, EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline,
                       StableDiffusionInpaintPipeline)
from PIL import Image

from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError

PROMPT, NEGATIVE = "a watercolour harbour", "dark"


def picture(size=64, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(40, 210, size)[None, :, None] + rng.normal(0, 25, (size, size, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def square_mask(size=64, box=(16, 16, 48, 48)) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, box)
    return mask


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


def img2img(**changes) -> GenerationRequest:
    base = dict(mode="img2img", prompt=PROMPT, negative_prompt=NEGATIVE, init_images=[picture()], steps=6,
                width=64, height=64, seed=99, cfg_scale=7.0, sampler_name="Euler", denoising_strength=0.5,
                save_images=False, mask_blur=0)
    return GenerationRequest(**{**base, **changes})


def use_model(app_context, tiny_model_file, kind):
    import shutil

    target = app_context.paths.default_checkpoint_dir() / f"{kind}.safetensors"
    shutil.copyfile(tiny_model_file(kind, "safetensors"), target)
    app_context.library.refresh()
    return kind


@pytest.mark.parametrize("sampler, scheduler_class", [("Euler", EulerDiscreteScheduler), ("DDIM", DDIMScheduler)])
def test_img2img_gives_the_same_pixels_as_diffusers_img2img_pipeline(app_context, tiny_model_file, sampler,
                                                                     scheduler_class):
    ours = app_context.engine.generate(img2img(sampler_name=sampler))
    pipe = StableDiffusionImg2ImgPipeline.from_single_file(
        tiny_model_file("sd1", "safetensors"), config=str(tiny_model_file("sd1", "diffusers")), safety_checker=None,
        local_files_only=True)
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    reference = pipe(PROMPT, negative_prompt=NEGATIVE, image=picture(), strength=0.5, num_inference_steps=6,
                     guidance_scale=7.0, generator=torch.Generator("cpu").manual_seed(99)).images[0]
    assert np.abs(pixels(ours.images[0].image) - pixels(reference)).max() <= 1
    assert "Denoising strength: 0.5," in ours.images[0].infotext


@pytest.mark.parametrize("kind", ["sd1", "sd1-inpaint"])
@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_inpaint_gives_the_same_pixels_as_diffusers_inpaint_pipeline(app_context, tiny_model_file, kind, strength):
    checkpoint = use_model(app_context, tiny_model_file, kind)
    mask = square_mask()
    ours = app_context.engine.generate(img2img(checkpoint=checkpoint, mask=mask, denoising_strength=strength))
    pipe = StableDiffusionInpaintPipeline.from_single_file(
        tiny_model_file(kind, "safetensors"), config=str(tiny_model_file(kind, "diffusers")), safety_checker=None,
        local_files_only=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    reference = pipe(PROMPT, negative_prompt=NEGATIVE, image=picture(), mask_image=mask, strength=strength,
                     num_inference_steps=6, guidance_scale=7.0, height=64, width=64,
                     generator=torch.Generator("cpu").manual_seed(99)).images[0]
    inside = np.asarray(mask) > 127
    ours_pixels, ref_pixels = pixels(ours.images[0].image), pixels(reference)
    assert np.abs(ours_pixels[inside] - ref_pixels[inside]).max() <= 1
    # Outside the mask the picture comes back untouched (A1111 lays the original over the result).
    assert np.array_equal(ours_pixels[~inside], pixels(picture())[~inside])


def test_strength_zero_returns_the_picture_itself(app_context):
    result = app_context.engine.generate(img2img(denoising_strength=0.0))
    assert np.array_equal(pixels(result.images[0].image), pixels(picture()))


def test_only_masked_leaves_pixels_outside_the_padded_box_unchanged(app_context):
    original = picture(96)
    mask = square_mask(96, (40, 40, 56, 56))
    result = app_context.engine.generate(img2img(init_images=[original], mask=mask, width=64, height=64,
                                                 inpaint_full_res=True, inpaint_full_res_padding=8, mask_blur=2))
    out = pixels(result.images[0].image)
    assert out.shape[:2] == (96, 96)
    outside = np.ones((96, 96), dtype=bool)
    outside[30:66, 30:66] = False  # the mask, its blur and the padding all lie inside this square
    assert np.array_equal(out[outside], pixels(original)[outside])
    assert np.abs(out[44:52, 44:52] - pixels(original)[44:52, 44:52]).max() > 0
    text = result.images[0].infotext
    assert "Mask blur: 2, Inpaint area: Only masked, Masked area padding: 8" in text


def test_img2img_outputs_go_to_their_own_folder(app_context):
    result = app_context.engine.generate(img2img(save_images=True, seed=7))
    assert "/outputs/img2img-images/" in result.images[0].path and result.images[0].path.endswith("-7.png")


def test_one_copy_of_the_unet_serves_txt2img_img2img_and_inpaint(app_context):
    app_context.engine.generate(GenerationRequest(prompt="x", steps=2, width=64, height=64, save_images=False))
    first = app_context.cache.current
    pointers = {name: param.data_ptr() for name, param in first.unet.named_parameters()}
    app_context.engine.generate(img2img())
    app_context.engine.generate(img2img(mask=square_mask()))
    assert app_context.cache.current is first and len(app_context.cache.loaded()) == 1
    assert {name: param.data_ptr() for name, param in first.unet.named_parameters()} == pointers


@pytest.mark.parametrize("changes, message", [
    ({"init_images": []}, "needs a picture"),
    ({"denoising_strength": 1.5}, "Denoising strength"),
    ({"mask": square_mask(32)}, "same size"),
])
def test_bad_img2img_requests_are_refused_with_a_reason(app_context, changes, message):
    with pytest.raises(UserError, match=message):
        app_context.engine.generate(img2img(**changes))


def test_outpaint_extends_the_canvas_and_keeps_the_original_in_place(app_context):
    from paragoger.core.outpaint import OutpaintOptions, outpaint_request

    base = img2img(denoising_strength=1.0)
    request = outpaint_request(base, OutpaintOptions(left=32, bottom=16, fill="edge"))
    assert (request.width, request.height) == (96, 80)
    result = app_context.engine.generate(request)
    out = pixels(result.images[0].image)
    assert out.shape[:2] == (80, 96)
    # The original sits untouched away from the seam; the new strip on the left was generated.
    assert np.array_equal(out[:40, 60:], pixels(picture())[:40, 28:])
    assert "Outpaint: 32 0 0 16 edge" in result.images[0].infotext


def test_a_strength_too_small_for_one_step_still_runs_one(app_context):
    result = app_context.engine.generate(img2img(steps=2, denoising_strength=0.25))
    assert np.abs(pixels(result.images[0].image) - pixels(picture())).max() > 0


def test_latent_upscale_resizes_the_latents_not_the_picture(app_context):
    small = picture(48)
    stretched = app_context.engine.generate(img2img(init_images=[small], resize_mode=0))
    latent = app_context.engine.generate(img2img(init_images=[small], resize_mode=3))
    assert latent.images[0].image.size == (64, 64)
    assert np.abs(pixels(latent.images[0].image) - pixels(stretched.images[0].image)).max() > 0
