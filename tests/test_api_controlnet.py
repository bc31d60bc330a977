"""sd-webui-controlnet's HTTP contract over plain HTTP and through the unchanged webuiapi client: the units in
alwayson_scripts, /controlnet/version, model_list, module_list, settings, detect, and 400s with the reason."""
import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.fixtures.control import write_controlnet

webuiapi = pytest.importorskip("webuiapi")
MODEL = "control_tiny_sd15_canny"


def picture() -> Image.Image:
    image = Image.new("RGB", (64, 64), (230, 230, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((12, 16, 50, 44), outline=(10, 10, 10), width=3)
    draw.ellipse((20, 20, 40, 40), fill=(40, 90, 200))
    return image


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def served(app_context, serve_app):
    write_controlnet(app_context.paths.controlnet_dirs[-2] / f"{MODEL}.safetensors", "sd1", seed=5)
    write_controlnet(app_context.paths.controlnet_dirs[-2] / "control_tiny_sdxl.safetensors", "sdxl", seed=6)
    app_context.control_models.library.refresh()
    return serve_app(app_context)


@pytest.fixture
def http(served):
    import httpx

    with httpx.Client(base_url=served, timeout=300) as client:
        yield client


def unit(**changes) -> dict:
    base = {"enabled": True, "image": b64(picture()), "module": "canny", "model": MODEL, "weight": 1.0,
            "resize_mode": "Crop and Resize", "processor_res": 64, "threshold_a": 100, "threshold_b": 200,
            "guidance_start": 0.0, "guidance_end": 1.0, "control_mode": "Balanced", "pixel_perfect": False}
    base.update(changes)
    return base


def body(*units, **changes) -> dict:
    base = {"prompt": "a blue ball in a box", "steps": 3, "width": 64, "height": 64, "seed": 11,
            "sampler_name": "Euler", "alwayson_scripts": {"controlnet": {"args": list(units)}}}
    base.update(changes)
    return base


def test_the_extension_routes_answer_as_it_does(http):
    assert http.get("/controlnet/version").json() == {"version": 2}
    models = http.get("/controlnet/model_list").json()["model_list"]
    assert any(title.startswith(MODEL + " [") for title in models)
    modules = http.get("/controlnet/module_list").json()
    assert {"none", "canny", "depth_midas"} <= set(modules["module_list"])
    sliders = modules["module_detail"]["canny"]["sliders"]
    assert [s["value"] for s in sliders][-2:] == [100, 200]
    assert http.get("/controlnet/settings").json() == {"control_net_unit_count": 3}


def test_detect_gives_the_preprocessor_map(http, app_context):
    answer = http.post("/controlnet/detect", json={"controlnet_module": "canny", "controlnet_input_images": [
        b64(picture())], "controlnet_processor_res": 64, "controlnet_threshold_a": 100, "controlnet_threshold_b": 200})
    assert answer.status_code == 200, answer.text
    detected = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    expected = app_context.preprocessors.detect("canny", picture(), resolution=64, threshold_a=100, threshold_b=200)
    assert np.array_equal(np.asarray(detected.convert("RGB")), np.asarray(expected.convert("RGB")))
    assert np.asarray(expected).max() == 255  # the map has edges: the comparison means something


def test_a_unit_changes_the_picture_and_weight_zero_does_not(http):
    plain = http.post("/sdapi/v1/txt2img", json=body())
    controlled = http.post("/sdapi/v1/txt2img", json=body(unit()))
    zero = http.post("/sdapi/v1/txt2img", json=body(unit(weight=0)))
    assert plain.status_code == controlled.status_code == zero.status_code == 200, controlled.text
    first = lambda answer: np.asarray(Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0]))))
    assert np.abs(first(plain).astype(int) - first(controlled).astype(int)).max() > 2
    assert np.array_equal(first(plain), first(zero))
    infotext = controlled.json()["info"]
    assert 'ControlNet 0: \\"Module: canny, Model: control_tiny_sd15_canny [' in infotext


def test_webuiapi_controlnet_unit_works_unchanged(served):
    client = webuiapi.WebUIApi(baseurl=served + "/sdapi/v1", sampler="Euler", steps=3)
    assert client.controlnet_version() == 2
    title = next(t for t in client.controlnet_model_list() if t.startswith(MODEL))
    cn_unit = webuiapi.ControlNetUnit(image=picture(), module="canny", model=title, weight=0.8,
                                      processor_res=64, threshold_a=100, threshold_b=200)
    # alwayson_scripts given: webuiapi's default for it is one shared dict that its txt2img writes the units into,
    # so later calls in the same process (other tests) would send them again
    result = client.txt2img(prompt="a blue ball in a box", width=64, height=64, seed=11, controlnet_units=[cn_unit],
                            alwayson_scripts={})
    assert result.image.size == (64, 64)
    assert "ControlNet 0" in result.info["infotexts"][0] and "Weight: 0.8" in result.info["infotexts"][0]
    detected = client.controlnet_detect([picture()], module="canny", processor_res=64, threshold_a=100,
                                        threshold_b=200)
    assert detected.images and detected.images[0].size == (64, 64)


@pytest.mark.parametrize("changes, reason", [
    ({"model": "control_nowhere"}, "control_nowhere"),
    ({"module": "no_such_module"}, "no_such_module"),
    ({"model": "control_tiny_sdxl"}, "sdxl"),
    ({"image": "not base64 at all!"}, "image"),
])
def test_what_cannot_run_is_a_400_with_the_reason(http, changes, reason):
    answer = http.post("/sdapi/v1/txt2img", json=body(unit(**changes)))
    assert answer.status_code == 400, answer.text
    assert reason.lower() in answer.json()["detail"].lower()


def test_detect_refuses_an_unknown_module(http):
    answer = http.post("/controlnet/detect", json={"controlnet_module": "nope", "controlnet_input_images": [
        b64(picture())]})
    assert answer.status_code == 400 and "nope" in answer.json()["detail"]
