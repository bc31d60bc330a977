"""The A1111-compatible HTTP API, served by the real server on a loopback port."""
import base64
import io
import json
import threading
import time

import httpx
import pytest
from PIL import Image

from paragoger.cli import parse_args
from paragoger.context import AppContext

BODY = {"prompt": "a red bicycle", "negative_prompt": "ugly", "steps": 3, "width": 64, "height": 64, "seed": 5,
        "sampler_name": "Euler a", "cfg_scale": 6.5}


def decode(b64: str) -> Image.Image:
    assert not b64.startswith("data:")
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_txt2img_answers_images_parameters_and_info_like_a1111(api):
    response = api.post("/txt2img", json={**BODY, "some_unknown_field": {"x": 1}})
    assert response.status_code == 200, response.text
    data = response.json()
    image = decode(data["images"][0])
    assert image.size == (64, 64)
    info = json.loads(data["info"])
    assert info["seed"] == 5 and info["all_seeds"] == [5]
    assert info["infotexts"][0].startswith("a red bicycle\nNegative prompt: ugly\nSteps: 3, Sampler: Euler a, "
                                           "CFG scale: 6.5, Seed: 5, Size: 64x64")
    assert image.info["parameters"] == info["infotexts"][0]
    assert data["parameters"]["prompt"] == "a red bicycle"


def test_batch_answers_the_grid_first_then_each_image(api):
    data = api.post("/txt2img", json={**BODY, "batch_size": 2}).json()
    info = json.loads(data["info"])
    assert len(data["images"]) == 3 and info["index_of_first_image"] == 1
    assert decode(data["images"][0]).size == (128, 64)
    assert info["all_seeds"] == [5, 6]


@pytest.mark.parametrize("change, status, reason", [
    ({"width": 65}, 400, "multiples of 8"),
    ({"sampler_name": "Bogus"}, 400, "Unknown sampler"),
    ({"steps": 100000}, 400, "Steps must be"),
    ({"width": "wide"}, 422, ""),
])
def test_bad_requests_answer_4xx_with_a_reason_and_the_app_keeps_working(api, change, status, reason):
    response = api.post("/txt2img", json={**BODY, **change})
    assert response.status_code == status
    assert reason in response.text
    assert api.post("/txt2img", json=BODY).status_code == 200


def test_lists_of_models_samplers_and_schedulers(api):
    models = api.get("/sd-models").json()
    assert [m["model_name"] for m in models] == ["tiny-sd1"]
    samplers = [s["name"] for s in api.get("/samplers").json()]
    for name in ("Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE",
                 "DPM++ 2S a", "DDIM", "PLMS", "UniPC", "LCM"):
        assert name in samplers
    labels = [s["label"] for s in api.get("/schedulers").json()]
    for label in ("Automatic", "Karras", "Exponential", "Uniform"):
        assert label in labels


def test_options_switch_the_checkpoint_and_persist(api, app_context, tiny_sd1_file):
    import shutil

    shutil.copyfile(tiny_sd1_file, app_context.paths.default_checkpoint_dir() / "second.safetensors")
    assert api.post("/refresh-checkpoints").status_code == 200
    assert len(api.get("/sd-models").json()) == 2
    assert api.post("/options", json={"sd_model_checkpoint": "second"}).status_code == 200
    current = api.get("/options").json()["sd_model_checkpoint"]
    assert current.startswith("second.safetensors [")
    assert json.loads(app_context.paths.config_file.read_text())["sd_model_checkpoint"] == current
    response = api.post("/options", json={"sd_model_checkpoint": "does-not-exist"})
    assert response.status_code == 404 and "not in the checkpoint list" in response.text
    assert api.get("/options").json()["sd_model_checkpoint"] == current


def test_corrupt_checkpoint_gives_a_reason_and_the_loaded_model_stays(api, app_context):
    api.post("/txt2img", json=BODY)
    loaded = api.get("/options").json()["sd_model_checkpoint"]
    (app_context.paths.default_checkpoint_dir() / "broken.safetensors").write_bytes(b"\x10\x00" * 100)
    api.post("/refresh-checkpoints")
    response = api.post("/options", json={"sd_model_checkpoint": "broken"})
    assert response.status_code == 400 and "broken" in response.json()["detail"]
    assert api.get("/options").json()["sd_model_checkpoint"] == loaded
    assert api.post("/txt2img", json=BODY).status_code == 200


def test_progress_reports_steps_and_interrupt_stops_the_running_job(api):
    result = {}

    def long_job():
        result["response"] = api.post("/txt2img", json={**BODY, "steps": 60, "n_iter": 2})

    thread = threading.Thread(target=long_job)
    thread.start()
    seen = None
    deadline = time.time() + 60
    while time.time() < deadline:
        progress = api.get("/progress").json()
        if progress["state"]["sampling_step"] >= 2:
            seen = progress
            break
        time.sleep(0.05)
    assert seen is not None and seen["state"]["sampling_steps"] == 60 and 0 < seen["progress"] < 1
    assert api.post("/interrupt").status_code == 200
    thread.join(60)
    info = json.loads(result["response"].json()["info"])
    assert info["interrupted"] is True and len(info["all_seeds"]) == 1
    assert api.get("/progress").json()["state"]["job_count"] == 0


def test_api_auth_refuses_without_credentials(data_dir, serve_app):
    context = AppContext(parse_args(["--data-dir", str(data_dir), "--api-auth", "teacher:secret"], env={}))
    try:
        url = serve_app(context)
        refused = httpx.get(url + "/sdapi/v1/sd-models")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Basic"
        assert httpx.get(url + "/sdapi/v1/sd-models", auth=("teacher", "wrong")).status_code == 401
        assert httpx.get(url + "/sdapi/v1/sd-models", auth=("teacher", "secret")).status_code == 200
    finally:
        context.close()


def test_prompt_styles_are_listed_and_applied_by_name(api, app_context):
    from paragoger.prompts import PromptStyle

    app_context.styles.save_style(PromptStyle("film", "{prompt}, film grain", "cartoon"))
    assert api.get("/prompt-styles").json() == [
        {"name": "film", "prompt": "{prompt}, film grain", "negative_prompt": "cartoon"}]
    info = json.loads(api.post("/txt2img", json={**BODY, "styles": ["film"]}).json()["info"])
    assert info["infotexts"][0].startswith("a red bicycle, film grain\nNegative prompt: ugly, cartoon\n")
    response = api.post("/txt2img", json={**BODY, "styles": ["nope"]})
    assert response.status_code == 400 and "Unknown style: nope" in response.text


def test_always_on_script_arguments_reach_the_script_from_the_api(data_dir, serve_app, tmp_path):
    import shutil
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "extensions" / "example"
    extensions = data_dir / "extensions"
    extensions.mkdir(exist_ok=True)
    shutil.copytree(example, extensions / "example")
    context = AppContext(parse_args(["--data-dir", str(data_dir)], env={}))
    try:
        url = serve_app(context) + "/sdapi/v1"
        assert set(httpx.get(url + "/scripts").json()) == {"txt2img", "img2img"}
        info = httpx.get(url + "/script-info").json()
        assert "example stamp" in [item["name"].lower() for item in info]
        titles = [item["name"] for item in httpx.get(url + "/extensions").json()]
        assert "example" in [title.lower() for title in titles]
        bad = httpx.post(url + "/txt2img", json={**BODY, "script_name": "no such script"}, timeout=60)
        assert bad.status_code == 400
        # the extension's sampler is used, its per-step callback sees every step, its fields land in the PNG
        for args in ([True, "from the API"], {"enabled": True, "note": "from the API"}):
            answer = httpx.post(url + "/txt2img", timeout=60, json={
                **BODY, "sampler_name": "Example Euler a (step function)",
                "alwayson_scripts": {"example stamp": {"args": args}}})
            assert answer.status_code == 200, answer.text
            png = decode(answer.json()["images"][0]).info["parameters"]
            assert "Sampler: Example Euler a (step function)" in png
            assert "Example note: from the API" in png and "Example steps seen: 3" in png
    finally:
        context.close()


def test_save_images_and_send_images_are_honoured(api, app_context):
    """A1111's API saves nothing unless ``save_images`` is true, and ``send_images: false`` answers no pictures
    (the info still describes them)."""
    outputs = app_context.paths.outputs_dir

    def saved() -> list:
        return sorted(outputs.rglob("*.png"))

    data = api.post("/txt2img", json=BODY).json()
    assert len(data["images"]) == 1 and saved() == []
    data = api.post("/txt2img", json={**BODY, "save_images": True, "send_images": False}).json()
    assert data["images"] == [] and json.loads(data["info"])["all_seeds"] == [5]
    assert len(saved()) == 1 and saved()[0].parent.parent.name == "txt2img-images"
    assert Image.open(saved()[0]).info["parameters"].startswith("a red bicycle")
