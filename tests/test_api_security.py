"""LAN safety: page login (--gradio-auth, --gradio-auth-path), CORS flags, size limits, and no route that reads
or writes outside the app's folders through a name or path given in a request."""
import base64
import io
import json
import os
import shutil

import httpx
import pytest
from PIL import Image

from paragoger.cli import parse_args
from paragoger.context import AppContext
from paragoger.server import exposure_warning

BODY = {"prompt": "a red bicycle", "steps": 2, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler"}


@pytest.fixture
def start(data_dir, serve_app):
    contexts = []

    def make(*flags):
        context = AppContext(parse_args(["--data-dir", str(data_dir), *flags], env={}))
        contexts.append(context)
        return context, serve_app(context)

    yield make
    for context in contexts:
        context.close()


def check_page_login(url, user, password):
    with httpx.Client(base_url=url, timeout=30) as browser:
        assert browser.get("/config").status_code == 401
        assert browser.get("/gradio_api/info").status_code == 401
        page = browser.get("/")
        assert '"auth_required":true' in page.text.replace(" ", "") and "txt2img_prompt" not in page.text
        assert browser.post("/login", data={"username": user, "password": "wrong"}).status_code == 400
        assert browser.get("/config").status_code == 401
        assert browser.post("/login", data={"username": user, "password": password}).json() == {"success": True}
        config = browser.get("/config")
        assert config.status_code == 200 and config.json()["components"]


def test_gradio_auth_protects_the_page_until_login(start):
    _, url = start("--gradio-auth", "anna:s3cret,ben:pa:ss")
    check_page_login(url, "anna", "s3cret")
    check_page_login(url, "ben", "pa:ss")


def test_gradio_auth_path_reads_users_from_a_file(start, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("carla:one\ndan:two\n")
    _, url = start("--gradio-auth-path", str(users))
    check_page_login(url, "dan", "two")


def test_exposure_warning_only_without_auth_beyond_localhost():
    assert exposure_warning(parse_args([], env={})) is None
    assert "WARNING" in exposure_warning(parse_args(["--listen"], env={}))
    assert exposure_warning(parse_args(["--listen", "--gradio-auth", "a:b"], env={})) is None
    assert exposure_warning(parse_args(["--listen", "--api-auth", "a:b"], env={})) is None


def test_cors_allows_only_the_listed_origins(start):
    _, url = start("--nowebui", "--cors-allow-origins", "http://krita.local, http://localhost:3000",
                   "--cors-allow-origins-regex", r"https://.*\.example\.org")
    for origin in ("http://krita.local", "http://localhost:3000", "https://app.example.org"):
        answer = httpx.get(url + "/sdapi/v1/samplers", headers={"Origin": origin})
        assert answer.headers["access-control-allow-origin"] == origin
        preflight = httpx.options(url + "/sdapi/v1/txt2img", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == origin
    answer = httpx.get(url + "/sdapi/v1/samplers", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in answer.headers


def test_no_cors_headers_without_the_flags(api):
    answer = api.get("/samplers", headers={"Origin": "http://krita.local"})
    assert "access-control-allow-origin" not in answer.headers


def test_request_body_limit_gives_413(start):
    _, url = start("--nowebui", "--api-max-request-mb", "0.01")
    answer = httpx.post(url + "/sdapi/v1/png-info", json={"image": "A" * 20000})
    assert answer.status_code == 413 and "too large" in answer.json()["detail"]
    assert httpx.post(url + "/sdapi/v1/png-info", json={"image": ""}).status_code == 200


def test_a_picture_with_too_many_pixels_is_refused_with_a_reason(api):
    buffer = io.BytesIO()
    Image.new("1", (8200, 8200)).save(buffer, format="PNG")   # small file, 67 million pixels
    huge = base64.b64encode(buffer.getvalue()).decode()
    for route, body in (("/png-info", {"image": huge}), ("/img2img", {**BODY, "init_images": [huge]})):
        answer = api.post(route, json=body)
        assert answer.status_code in (400, 413) and "too large" in answer.json()["detail"]
    assert api.post("/txt2img", json=BODY).status_code == 200


# --------------------------------------------------------------------------------------------- paths
@pytest.fixture
def outside(tmp_path, tiny_sd1_file):
    """A valid checkpoint, VAE-named file and LoRA outside every app folder, for requests to reach for."""
    folder = tmp_path / "outside"
    folder.mkdir()
    shutil.copyfile(tiny_sd1_file, folder / "stolen.safetensors")
    return folder


def escapes(app_context, outside, stem="stolen", suffix=".safetensors"):
    ckpt_dir = app_context.paths.default_checkpoint_dir()
    relative = os.path.relpath(outside / f"{stem}{suffix}", ckpt_dir)
    return [relative, relative.removesuffix(suffix), str(outside / f"{stem}{suffix}"),
            "../" * 12 + "etc/passwd", "/etc/passwd"]


def test_checkpoint_and_vae_names_cannot_escape(api, app_context, outside):
    loaded = api.get("/options").json()["sd_model_checkpoint"]
    for name in escapes(app_context, outside):
        answer = api.post("/options", json={"sd_model_checkpoint": name})
        assert answer.status_code == 404, name
        answer = api.post("/options", json={"sd_vae": name})
        assert answer.status_code == 404, name
        answer = api.post("/txt2img", json={**BODY, "override_settings": {"sd_model_checkpoint": name}})
        assert answer.status_code == 404, name
        answer = api.post("/txt2img", json={**BODY, "override_settings": {"sd_vae": name}})
        assert answer.status_code == 404, name
    assert api.get("/options").json()["sd_model_checkpoint"] == loaded
    assert all("stolen" not in m["title"] for m in api.get("/memory").json()["models"])


def test_a_symlink_to_a_model_outside_is_listed_only_if_the_user_put_it_in_a_model_folder(api, app_context,
                                                                                           outside):
    link = app_context.paths.outputs_dir / "link.safetensors"
    link.symlink_to(outside / "stolen.safetensors")
    assert api.post("/options", json={"sd_model_checkpoint": str(link)}).status_code == 404
    assert api.post("/options", json={"sd_model_checkpoint": "../../outputs/link"}).status_code == 404


def test_lora_and_embedding_names_in_prompts_cannot_escape(api, app_context, outside):
    from tests.fixtures.networks import write_kohya_lora

    write_kohya_lora(outside / "stolen-lora.safetensors")
    lora_dir = app_context.paths.lora_dirs[-1]
    relative = os.path.relpath(outside / "stolen-lora", lora_dir)
    for name in (relative, str(outside / "stolen-lora"), str(outside / "stolen-lora.safetensors")):
        answer = api.post("/txt2img", json={**BODY, "prompt": f"cat <lora:{name}:1> {name}"})
        assert answer.status_code == 200
        infotext = json.loads(answer.json()["info"])["infotexts"][0]
        assert "Lora hashes" not in infotext and "TI hashes" not in infotext


@pytest.mark.parametrize("key", ["outdir_samples", "outdir_txt2img_samples", "outdir_txt2img_grids"])
def test_output_folders_given_in_requests_stay_inside_outputs(api, app_context, tmp_path, key):
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = app_context.paths.outputs_dir / "sneaky"
    if not link.exists():
        link.symlink_to(target)
    for value in ("../../elsewhere", str(target), "../" * 12 + "tmp", "sneaky", "sneaky/sub"):
        answer = api.post("/options", json={key: value})
        assert answer.status_code == 400 and "outside" in answer.json()["detail"], value
        answer = api.post("/txt2img", json={**BODY, "save_images": True, "override_settings": {key: value}})
        assert answer.status_code == 400 and "outside" in answer.json()["detail"], value
    assert list(target.iterdir()) == []
    # inside is fine
    answer = api.post("/txt2img", json={**BODY, "save_images": True, "batch_size": 2,
                                        "override_settings": {key: "mine"}})
    assert answer.status_code == 200
    assert list((app_context.paths.outputs_dir / "mine").rglob("*.png"))


def test_job_ids_are_only_looked_up(api):
    for job_id in ("..", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"):
        assert api.get(f"/jobs/{job_id}").status_code == 404


def test_output_folders_from_the_settings_page_and_the_engine_stay_inside_outputs(app_context, tmp_path):
    from paragoger.core.payloads import GenerationJob
    from paragoger.core.request import GenerationRequest
    from paragoger.errors import UserError

    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(UserError, match="outside"):
        app_context.apply_options({"outdir_txt2img_samples": str(elsewhere)})  # what the Settings tab calls
    job = app_context.queue.run(GenerationJob(GenerationRequest(
        prompt="x", steps=1, width=64, height=64, override_settings={"outdir_samples": "../../elsewhere"})))
    assert isinstance(job.error, UserError) and "outside" in str(job.error)
    assert not elsewhere.exists()


def test_an_output_folder_written_into_config_json_by_hand_is_the_owners_choice(data_dir, tmp_path):
    from paragoger.cli import parse_args
    from paragoger.context import AppContext
    from paragoger.core.payloads import GenerationJob
    from paragoger.core.request import GenerationRequest

    chosen = tmp_path / "my-pictures"
    (data_dir / "config.json").write_text(json.dumps({"outdir_txt2img_samples": str(chosen)}))
    context = AppContext(parse_args(["--data-dir", str(data_dir)], env={}))
    try:
        context.apply_options({"outdir_txt2img_samples": str(chosen), "jpeg_quality": 90})  # the page saves all
        result = context.queue.run(GenerationJob(GenerationRequest(prompt="x", steps=1, width=64, height=64))).result
        assert str(result.images[0].path).startswith(str(chosen))
    finally:
        context.close()
