"""The unchanged `webuiapi` client (package index) against the real server. interrogate is tested in
test_api_interrogate.py (with the tiny captioning models). extra-single-image and extra-batch-images use the tiny
upscaler files (conftest's upscaler_files)."""
import threading
import time

import pytest
from PIL import Image, ImageDraw

webuiapi = pytest.importorskip("webuiapi")

SMALL = dict(steps=3, width=64, height=64, seed=7, cfg_scale=6.0)


@pytest.fixture
def client(app_context, serve_app):
    url = serve_app(app_context)
    return webuiapi.WebUIApi(baseurl=url + "/sdapi/v1", sampler="Euler a", steps=3)


def test_txt2img_and_png_info(client):
    result = client.txt2img(prompt="a lighthouse", negative_prompt="fog", **SMALL)
    assert result.image.size == (64, 64)
    assert result.info["seed"] == 7 and result.info["infotexts"][0].startswith("a lighthouse\nNegative prompt: fog")
    assert result.parameters["prompt"] == "a lighthouse"
    info = client.png_info(result.image)
    assert info.info.startswith("a lighthouse\nNegative prompt: fog\nSteps: 3, Sampler: Euler a")


def test_img2img_with_a_mask(client):
    picture = Image.new("RGB", (64, 64), (200, 30, 30))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    result = client.img2img(images=[picture], mask_image=mask, prompt="a blue square", denoising_strength=0.9,
                            inpaint_full_res=False, **SMALL)
    assert result.image.size == (64, 64)
    pixels = result.image.convert("RGB")
    assert pixels.getpixel((2, 2)) == (200, 30, 30)          # outside the mask: the picture, unchanged
    assert pixels.getpixel((32, 32)) != (200, 30, 30)         # inside: repainted
    assert "Denoising strength: 0.9" in result.info["infotexts"][0]


def test_lists_and_options(client):
    assert [m["model_name"] for m in client.get_sd_models()] == ["tiny-sd1"]
    assert "Euler a" in [s["name"] for s in client.get_samplers()]
    assert [u["name"] for u in client.get_upscalers()][:3] == ["None", "Lanczos", "Nearest"]
    assert client.get_loras() == []
    options = client.get_options()
    assert "sd_model_checkpoint" in options
    client.set_options({"CLIP_stop_at_last_layers": 2})
    assert client.get_options()["CLIP_stop_at_last_layers"] == 2
    assert client.get_cmd_flags()["nowebui"] is False


def test_progress_interrupt_and_skip(client):
    results = {}

    def long_job():
        results["r"] = client.txt2img(prompt="slow", n_iter=3, **{**SMALL, "steps": 80})

    thread = threading.Thread(target=long_job)
    thread.start()
    deadline = time.time() + 60
    while client.get_progress()["state"].get("sampling_step", 0) < 2:
        assert time.time() < deadline
        time.sleep(0.05)
    progress = client.get_progress()
    assert 0 < progress["progress"] < 1 and progress["state"]["sampling_steps"] == 80
    client.skip()                      # ends the first image of the batch early, goes on with the next
    while client.get_progress()["state"].get("job_no", 0) < 1:
        assert time.time() < deadline
        time.sleep(0.05)
    client.interrupt()
    thread.join(60)
    info = results["r"].info
    assert info["interrupted"] is True and len(info["all_seeds"]) == 2


@pytest.fixture
def client_with_upscalers(upscaler_files, app_context, serve_app):
    url = serve_app(app_context)
    return webuiapi.WebUIApi(baseurl=url + "/sdapi/v1", sampler="Euler a", steps=3)


def test_extra_single_image_with_a_model_upscaler(client_with_upscalers):
    picture = Image.new("RGB", (40, 32), (30, 120, 200))
    picture.info["parameters"] = "a lake\nSteps: 3, Sampler: Euler a, Seed: 7, Size: 40x32"
    result = client_with_upscalers.extra_single_image(picture, upscaler_1="R-ESRGAN 4x+", upscaling_resize=2)
    assert result.image.size == (80, 64)
    assert result.info == "<p>Postprocess upscale by: 2, Postprocess upscaler: R-ESRGAN 4x+</p>"
    assert client_with_upscalers.png_info(result.image).info.startswith("a lake\nSteps: 3, Sampler: Euler a")


def test_extra_batch_images_scaled_to_a_size(client_with_upscalers):
    pictures = [Image.new("RGB", (40, 32), (200, 30, 30)), Image.new("RGB", (16, 16), (30, 200, 30))]
    result = client_with_upscalers.extra_batch_images(pictures, resize_mode=1, upscaling_resize_w=64,
                                                      upscaling_resize_h=48, upscaling_crop=True,
                                                      upscaler_1="2x-tiny-compact", upscaler_2="Lanczos",
                                                      extras_upscaler_2_visibility=0.3)
    assert [image.size for image in result.images] == [(64, 48), (64, 48)]
    assert "Postprocess upscaler 2: Lanczos" in result.info
