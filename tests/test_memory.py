"""One model manager for every kind of model (issue 11): checkpoints, upscalers and captioners loaded under a RAM
budget, the least recently used unloaded first, a model in use never unloaded, GET /sdapi/v1/memory listing them
all, and running out of memory during a job (a decode retries in tiles; the UNet gives a message and the app keeps
working)."""
from __future__ import annotations

import base64
import gc
import io
import shutil
import threading
import time
import weakref

import pytest
import torch
from PIL import Image

from paragoger.imaging.transport import encode_png_base64
from paragoger.model_manager.memory import MIB, Budgets, ModelManager

BODY = {"prompt": "a red barn", "steps": 2, "width": 64, "height": 64, "seed": 3, "sampler_name": "Euler",
        "save_images": False}


def picture() -> Image.Image:
    return Image.new("RGB", (24, 16), (200, 40, 40))


def loaded(api) -> dict[str, dict]:
    """kind -> the /memory row of the loaded model of that kind (one of each in these tests)."""
    return {row["kind"]: row for row in api.get("/memory").json()["models"]}


def generate(api, **changes):
    response = api.post("/txt2img", json={**BODY, **changes})
    assert response.status_code == 200, response.text
    return response


def upscale(api):
    response = api.post("/extra-single-image", json={"image": encode_png_base64(picture()),
                                                     "upscaler_1": "4x-tiny-esrgan", "upscaling_resize": 2})
    assert response.status_code == 200, response.text


def caption(api):
    response = api.post("/interrogate", json={"image": encode_png_base64(picture()), "model": "deepdanbooru"})
    assert response.status_code == 200, response.text


@pytest.fixture
def with_captioners(app_context, caption_models):
    shutil.copytree(caption_models, app_context.paths.models_dir, dirs_exist_ok=True)
    app_context.settings.update({"interrogate_keep_models_in_memory": True})
    return app_context


def test_memory_lists_every_kind_of_loaded_model_besides_a1111s_fields(upscaler_files, with_captioners, api):
    generate(api)
    upscale(api)
    caption(api)
    body = api.get("/memory").json()
    assert {"used", "total", "free"} <= set(body["ram"])  # A1111's fields stay
    rows = loaded(api)
    assert set(rows) == {"checkpoint", "upscaler", "captioner"}
    assert [row["kind"] for row in body["models"]] == ["captioner", "upscaler", "checkpoint"]  # most recent first
    checkpoint = rows["checkpoint"]
    assert checkpoint["name"].startswith("tiny-sd1.safetensors") and checkpoint["device"] == "cpu"
    assert set(checkpoint["parts"]) == {"unet", "vae", "text_encoder"}
    assert checkpoint["bytes"] == sum(checkpoint["parts"].values()) == checkpoint["bytes_by_device"]["cpu"]
    assert rows["upscaler"]["name"] == "4x-tiny-esrgan.pth" and rows["upscaler"]["bytes"] > 0
    assert rows["captioner"]["bytes"] > 0 and not rows["captioner"]["in_use"]
    assert body["totals"]["ram"] == sum(row["bytes"] for row in body["models"])
    assert all(time.time() - 600 < row["last_use"] <= time.time() for row in body["models"])


def test_under_a_ram_budget_for_two_models_the_least_recently_used_is_unloaded(upscaler_files, with_captioners,
                                                                               api, app_context):
    generate(api)
    upscale(api)
    caption(api)
    sizes = {kind: row["bytes"] for kind, row in loaded(api).items()}
    # The captioner goes (the Unload button's route), and the budget holds the checkpoint and the upscaler but
    # not a third model as well.
    captioner = loaded(api)["captioner"]
    assert api.post("/memory/unload", json={"kind": "captioner", "key": captioner["key"]}).status_code == 200
    assert set(loaded(api)) == {"checkpoint", "upscaler"}
    budget = sizes["checkpoint"] + sizes["upscaler"] + sizes["captioner"] // 2
    assert api.post("/options", json={"memory_ram_budget_mb": budget / MIB}).status_code == 200
    reads = app_context.models.loads
    unet = weakref.ref(app_context.cache.current.unet)

    caption(api)  # loading the captioner unloads the least recently used model: the checkpoint
    assert set(loaded(api)) == {"upscaler", "captioner"}
    gc.collect()
    assert unet() is None  # nothing else kept it: its memory is free
    generate(api)  # the checkpoint comes back; now the upscaler is the least recently used
    assert set(loaded(api)) == {"checkpoint", "captioner"}
    assert app_context.models.loads == reads + 2
    assert api.get("/memory").json()["totals"]["ram"] <= budget


def test_a_lower_budget_unloads_the_least_recently_used_models_at_once(upscaler_files, api, app_context):
    generate(api)
    upscale(api)
    assert set(loaded(api)) == {"checkpoint", "upscaler"}
    budget = loaded(api)["upscaler"]["bytes"] + 1024  # room for the upscaler alone
    assert api.post("/options", json={"memory_ram_budget_mb": budget / MIB}).status_code == 200
    assert set(loaded(api)) == {"upscaler"}


def test_a_model_a_running_job_uses_is_never_unloaded(upscaler_files, api, app_context):
    generate(api)
    unet = app_context.cache.current.unet
    # Room for the checkpoint alone: the hires fix's upscaler loads while the generation uses the checkpoint.
    budget = loaded(api)["checkpoint"]["bytes"] + 1024
    app_context.apply_options({"memory_ram_budget_mb": budget / MIB})
    generate(api, enable_hr=True, hr_upscaler="4x-tiny-esrgan", hr_scale=1.5, hr_second_pass_steps=1,
             denoising_strength=0.5)
    assert app_context.cache.current.unet is unet  # never unloaded, so never read again
    assert "checkpoint" in loaded(api)

    # The Unload button refuses while a generation runs, and works once it has ended.
    answers = {}
    key = loaded(api)["checkpoint"]["key"]
    slow = {**BODY, "steps": 100}
    running = threading.Thread(target=lambda: answers.update(job=api.post("/txt2img", json=slow)))
    running.start()
    deadline = time.time() + 60
    while not loaded(api)["checkpoint"]["in_use"] and time.time() < deadline:
        time.sleep(0.05)
    refused = api.post("/memory/unload", json={"kind": "checkpoint", "key": key})
    running.join()
    assert refused.status_code == 400 and "in use by a running job" in refused.json()["detail"]
    assert answers["job"].status_code == 200
    assert api.post("/memory/unload", json={"kind": "checkpoint", "key": key}).status_code == 200
    assert "checkpoint" not in loaded(api)


def raise_out_of_memory(_module, args, _output):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_in_the_decoder_retries_in_tiles_and_the_picture_comes_out(api, app_context):
    generate(api)
    decoder = app_context.cache.current.vae.decoder
    tiles = []

    def only_small_tiles_fit(module, args, output):
        if max(args[0].shape[-2:]) > 8:
            raise_out_of_memory(module, args, output)
        tiles.append(tuple(args[0].shape[-2:]))

    hook = decoder.register_forward_hook(only_small_tiles_fit)
    try:
        response = generate(api, width=128, height=128)  # 16x16 latents: too large in one piece
    finally:
        hook.remove()
    image = Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0])))
    assert image.size == (128, 128)
    assert tiles and all(max(tile) <= 8 for tile in tiles)


def test_out_of_memory_in_an_upscaler_retries_in_smaller_tiles(upscaler_files, api, app_context):
    app_context.settings.update({"ESRGAN_tile": 64})
    model = app_context.upscaler_models.models.load(upscaler_files["esrgan"])
    windows = []

    def only_small_windows_fit(module, args, output):
        if max(args[0].shape[-2:]) > 32:
            raise_out_of_memory(module, args, output)
        windows.append(tuple(args[0].shape[-2:]))

    hook = model.model.register_forward_hook(only_small_windows_fit)
    try:
        response = api.post("/extra-single-image", json={"image": encode_png_base64(Image.new("RGB", (96, 64))),
                                                         "upscaler_1": "4x-tiny-esrgan", "upscaling_resize": 4})
    finally:
        hook.remove()
    assert response.status_code == 200, response.text
    assert Image.open(io.BytesIO(base64.b64decode(response.json()["image"]))).size == (384, 256)
    assert windows and all(max(window) <= 32 for window in windows)


def raise_ram_allocation_failure(_module, args, _output):
    # What torch's CPU allocator raises when RAM runs out.
    raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 2147483648 bytes. Error code 12 (Cannot allocate memory)")


@pytest.mark.parametrize("failure", [raise_out_of_memory, raise_ram_allocation_failure], ids=["cuda", "ram"])
def test_out_of_memory_in_the_unet_names_the_size_and_the_app_keeps_working(api, app_context, failure):
    generate(api)
    components = app_context.cache.current
    hook = components.unet.register_forward_hook(failure)
    try:
        response = api.post("/txt2img", json={**BODY, "width": 96, "height": 64, "batch_size": 2})
    finally:
        hook.remove()
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "Out of memory while sampling a 96x64 picture (batch of 2) on cpu" in detail
    assert "other programs that use the GPU" in detail and "smaller size" in detail
    generate(api)  # the next job works, with the same checkpoint still loaded
    assert app_context.cache.current is components


def test_a_kind_of_model_to_come_loads_through_the_same_manager_and_counts_shared_weights_once():
    manager = ModelManager("cpu")
    layer = torch.nn.Linear(64, 64)
    both = torch.nn.Sequential(layer, layer)  # one weight used twice
    model = manager.load("motion_module", "mm", lambda: both, name="tiny motion module")
    assert model is both and manager.load("motion_module", "mm", lambda: pytest.fail("loaded twice"), name="x") is both
    (row,) = manager.report()["models"]
    assert row["kind"] == "motion_module" and row["bytes"] == (64 * 64 + 64) * 4
    with pytest.raises(ValueError, match="unknown model kind"):
        manager.load("hologram", "h", lambda: layer, name="h")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_least_recently_used_model_moves_to_ram_and_comes_back_when_used():
    manager = ModelManager("cuda", budgets=lambda ram, vram: Budgets(ram=None, vram=6 * MIB))
    first = manager.load("controlnet", "a", lambda: torch.nn.Linear(1024, 1024).cuda(), name="a")  # 4 MB each
    second = manager.load("controlnet", "b", lambda: torch.nn.Linear(1024, 1024).cuda(), name="b")
    assert first.weight.device.type == "cpu" and second.weight.device.type == "cuda"
    rows = {row["name"]: row for row in manager.report()["models"]}
    assert rows["a"]["offloaded"] and rows["a"]["device"] == "cpu" and rows["a"]["runs_on"].startswith("cuda")
    assert manager.load("controlnet", "a", lambda: pytest.fail("read again"), name="a") is first
    assert first.weight.device.type == "cuda" and second.weight.device.type == "cpu"
    assert manager.loads == 2


def test_switching_back_to_a_checkpoint_kept_in_memory_is_fast(app_context, tiny_sd1_file):
    shutil.copyfile(tiny_sd1_file, app_context.paths.default_checkpoint_dir() / "other.safetensors")
    app_context.library.refresh()
    app_context.apply_options({"sd_checkpoints_limit": 2})
    app_context.select_checkpoint("tiny-sd1.safetensors")
    app_context.select_checkpoint("other.safetensors")
    reads = app_context.models.loads
    started = time.perf_counter()
    app_context.select_checkpoint("tiny-sd1.safetensors")
    assert time.perf_counter() - started < 0.2
    assert app_context.models.loads == reads
