"""The rest of A1111's /sdapi/v1 surface that needs no new model: png-info, lists, scripts, unload/reload,
--nowebui and the OpenAPI docs."""
import base64
import io
import json

import httpx
import pytest
from PIL import Image, PngImagePlugin

from paragoger.cli import parse_args
from paragoger.context import AppContext

BODY = {"prompt": "a red bicycle", "negative_prompt": "ugly", "steps": 3, "width": 64, "height": 64, "seed": 5,
        "sampler_name": "Euler a", "cfg_scale": 6.5}


def png_b64(**texts) -> str:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def test_png_info_reads_back_what_txt2img_wrote(api):
    made = api.post("/txt2img", json=BODY).json()
    data = api.post("/png-info", json={"image": made["images"][0]}).json()
    assert data["info"] == json.loads(made["info"])["infotexts"][0]
    params = data["parameters"]
    assert params["Prompt"] == "a red bicycle" and params["Negative prompt"] == "ugly"
    assert params["Steps"] == "3" and params["Seed"] == "5" and params["Sampler"] == "Euler a"
    assert params["Size-1"] == "64" and params["Size-2"] == "64"
    assert "parameters" not in data["items"]


def test_png_info_other_texts_data_urls_empty_and_broken_pictures(api):
    data = api.post("/png-info", json={"image": "data:image/png;base64," + png_b64(parameters="cat\nSteps: 4, "
                                       "Sampler: Euler, CFG scale: 7, Seed: 1, Size: 8x8", Title="mine")}).json()
    assert data["info"].startswith("cat") and data["items"] == {"Title": "mine"}
    assert data["parameters"]["Steps"] == "4"
    assert api.post("/png-info", json={"image": png_b64()}).json() == {"info": "", "items": {}, "parameters": {}}
    assert api.post("/png-info", json={"image": ""}).json()["info"] == ""
    bad = api.post("/png-info", json={"image": "bm90IGFuIGltYWdl"})
    assert bad.status_code == 400 and "not an image" in bad.json()["detail"]


def test_lists_in_a1111_shapes(api):
    upscalers = api.get("/upscalers").json()
    assert [u["name"] for u in upscalers][:3] == ["None", "Lanczos", "Nearest"]
    assert set(upscalers[0]) == {"name", "model_name", "model_path", "model_url", "scale"}
    assert [m["name"] for m in api.get("/latent-upscale-modes").json()] == [
        "Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)", "Latent (nearest)",
        "Latent (nearest-exact)"]
    assert api.get("/face-restorers").json() == []
    builtin = ["prompt matrix", "prompts from file or textbox", "x/y/z plot"]
    features = ["animatediff", "controlnet"]  # built-in features A1111 would list as its extensions' scripts
    assert api.get("/scripts").json() == {"txt2img": builtin + features, "img2img": builtin + ["loopback"] + features}
    info = api.get("/script-info").json()
    assert {(s["name"], s["is_img2img"]) for s in info} == {(n, False) for n in builtin} | {
        (n, True) for n in builtin + ["loopback"]}
    xyz = next(s for s in info if s["name"] == "x/y/z plot")
    assert [a["name"] for a in xyz["args"]][:3] == ["x_type", "x_values", "x_values_dropdown"]
    assert api.get("/extensions").json() == []
    flags = api.get("/cmd-flags").json()
    assert flags["nowebui"] is False and "api_auth" in flags


def test_unload_frees_the_model_and_the_next_generation_loads_it_again(api, app_context):
    assert api.post("/txt2img", json=BODY).status_code == 200
    assert app_context.cache.loaded()
    assert api.post("/unload-checkpoint").status_code == 200
    assert app_context.cache.loaded() == [] and api.get("/memory").json()["models"] == []
    assert api.post("/txt2img", json=BODY).status_code == 200
    assert len(app_context.cache.loaded()) == 1
    api.post("/unload-checkpoint")
    assert api.post("/reload-checkpoint").status_code == 200
    assert [m["title"] for m in api.get("/memory").json()["models"]] == [app_context.cache.current.info.title]


def test_nowebui_serves_the_api_and_docs_only(data_dir, serve_app):
    context = AppContext(parse_args(["--data-dir", str(data_dir), "--nowebui"], env={}))
    try:
        url = serve_app(context)
        assert httpx.get(url + "/").status_code == 404
        assert httpx.get(url + "/sdapi/v1/sd-models").status_code == 200
        assert httpx.get(url + "/docs").status_code == 200
        paths = httpx.get(url + "/openapi.json").json()["paths"]
        for route in ("txt2img", "img2img", "png-info", "progress", "options", "jobs/{job_id}", "scripts",
                      "unload-checkpoint", "upscalers"):
            assert f"/sdapi/v1/{route}" in paths
    finally:
        context.close()


def test_docs_are_served_beside_the_page(api):
    root = str(api.base_url).removesuffix("/sdapi/v1/")
    assert httpx.get(root + "/docs").status_code == 200
    assert httpx.get(root + "/").status_code == 200
