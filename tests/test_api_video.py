"""Video over plain HTTP: the A1111 AnimateDiff extension's contract on /sdapi/v1/txt2img and /img2img, the job-id
route for long videos, Stable Video Diffusion's route, and 400s with a reason for what cannot be made."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from paragoger.video.files import video_info
from tests.fixtures.motion import write_motion_module
from tests.fixtures.svd import write_svd_folder

MODULE = "mm_tiny_v2.safetensors"


@pytest.fixture
def video_api(app_context, serve_app):
    import httpx

    write_motion_module(app_context.paths.animatediff_dirs[0] / MODULE, "v2", seed=3)
    write_motion_module(app_context.paths.animatediff_dirs[0] / "mm_tiny_sdxl.safetensors", "sdxl", seed=4)
    app_context.motion_modules.library.refresh()
    url = serve_app(app_context)
    with httpx.Client(base_url=url + "/sdapi/v1", timeout=300) as client:
        yield client


def animatediff(**changes) -> dict:
    args = {"enable": True, "model": MODULE, "video_length": 4, "fps": 8, "format": ["MP4"], "batch_size": 16,
            "stride": 1, "overlap": -1, "closed_loop": "N"}
    args.update(changes)
    return {"AnimateDiff": {"args": [args]}}


def body(**changes) -> dict:
    base = {"prompt": "a kite in the wind", "negative_prompt": "blurry", "steps": 2, "width": 64, "height": 64,
            "seed": 5, "sampler_name": "Euler", "alwayson_scripts": animatediff()}
    base.update(changes)
    return base


def saved(data: str, tmp_path, suffix: str):
    path = tmp_path / f"answer{suffix}"
    path.write_bytes(base64.b64decode(data))
    return path


def test_txt2img_with_animatediff_answers_the_video_then_the_png_frames(video_api, tmp_path):
    answer = video_api.post("/txt2img", json=body(alwayson_scripts=animatediff(format=["MP4", "GIF", "PNG"])))
    assert answer.status_code == 200, answer.text
    images = answer.json()["images"]
    assert len(images) == 2 + 4
    assert video_info(saved(images[0], tmp_path, ".mp4")) == (4, 8.0)
    gif = Image.open(io.BytesIO(base64.b64decode(images[1])))
    assert gif.format == "GIF" and gif.n_frames == 4
    frame = Image.open(io.BytesIO(base64.b64decode(images[2])))
    assert frame.size == (64, 64) and "AnimateDiff" in frame.info["parameters"]


def test_a_video_asked_for_without_saving_leaves_no_file_behind(video_api, app_context):
    answer = video_api.post("/txt2img", json=body(save_images=False))
    assert answer.status_code == 200
    assert not list(app_context.paths.outputs_dir.rglob("*.mp4"))
    answer = video_api.post("/txt2img", json=body(save_images=True))
    assert len(list((app_context.paths.outputs_dir / "txt2img-videos").rglob("*.mp4"))) == 1


def test_img2img_video_source_as_base64_makes_video_to_video_at_the_source_fps_without_a_picture(video_api, tmp_path):
    frames = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8))
              for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    request = body(denoising_strength=0.5,  # no init_images: the first frame is the picture
                   alwayson_scripts=animatediff(video_length=0, fps=0,
                                                video_source=base64.b64encode(gif.getvalue()).decode()))
    answer = video_api.post("/img2img", json=request)
    assert answer.status_code == 200, answer.text
    assert video_info(saved(answer.json()["images"][0], tmp_path, ".mp4")) == (3, 10.0)


def test_a_long_video_runs_as_a_job_whose_result_is_the_same_answer(video_api, tmp_path):
    import time

    queued = video_api.post("/txt2img", json={**body(), "async": True})
    assert queued.status_code == 202
    job_id = queued.json()["job_id"]
    for _ in range(600):
        report = video_api.get(f"/jobs/{job_id}").json()
        if report["state"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert report["state"] == "done", report
    assert video_info(saved(report["result"]["images"][0], tmp_path, ".mp4"))[0] == 4


@pytest.mark.parametrize("args, reason", [
    ({"model": "mm_nowhere.ckpt"}, "mm_nowhere"),
    ({"video_length": -3}, "1 to"),
    ({"video_length": 10000}, "1 to"),
    ({"video_length": 4.5}, "video_length"),
    ({"closed_loop": "sometimes"}, "closed_loop"),
    ({"format": ["AVI"]}, "AVI"),
    ({"video_source": base64.b64encode(b"this is not a video").decode()}, "video_source"),
    ({"model": "mm_tiny_sdxl.safetensors"}, "sdxl"),
])
def test_what_cannot_be_made_is_a_400_with_the_reason(video_api, args, reason):
    answer = video_api.post("/txt2img", json=body(alwayson_scripts=animatediff(**args)))
    assert answer.status_code == 400, answer.text
    assert reason.lower() in answer.json()["detail"].lower()


def test_webuiapi_animatediff_defaults_and_its_disabled_form_work(video_api, tmp_path):
    import webuiapi

    options = webuiapi.AnimateDiff(model=MODULE, format=["MP4", "Frame"], batch_size=4)  # video_length 0
    answer = video_api.post("/txt2img", json=body(alwayson_scripts={"animatediff": {"args": [options.to_dict()]}}))
    assert answer.status_code == 200, answer.text
    images = answer.json()["images"]
    assert video_info(saved(images[0], tmp_path, ".mp4"))[0] == 4 and len(images) == 1 + 4
    off = video_api.post("/txt2img", json=body(alwayson_scripts={"animatediff": {"args": [False]}}))
    assert off.status_code == 200 and len(off.json()["images"]) == 1  # a picture, no video


def test_motion_modules_are_listed(video_api):
    names = [entry["name"] for entry in video_api.get("/motion-modules").json()]
    assert MODULE in names and "mm_tiny_sdxl.safetensors" in names


def test_svd_route_makes_a_video_from_a_picture(video_api, app_context, tmp_path):
    write_svd_folder(app_context.paths.svd_dirs[-1] / "svd-tiny", frames=3)
    assert [m["name"] for m in video_api.get("/svd-models").json()] == ["svd-tiny"]
    picture = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(picture, "PNG")
    answer = video_api.post("/svd", json={"image": base64.b64encode(picture.getvalue()).decode(), "width": 64,
                                          "height": 64, "steps": 2, "seed": 9, "format": ["MP4"], "video_fps": 6})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert video_info(saved(data["videos"][0], tmp_path, ".mp4")) == (3, 6.0)
    assert "Seed: 9" in data["info"] and data["seed"] == 9
    assert len(list((app_context.paths.outputs_dir / "svd-videos").rglob("*.mp4"))) == 1


def test_svd_route_refuses_a_bad_request_with_the_reason(video_api, app_context):
    write_svd_folder(app_context.paths.svd_dirs[-1] / "svd-tiny", frames=3)
    answer = video_api.post("/svd", json={"image": "", "steps": 2})
    assert answer.status_code == 400
    picture = io.BytesIO()
    Image.new("RGB", (8, 8)).save(picture, "PNG")
    answer = video_api.post("/svd", json={"image": base64.b64encode(picture.getvalue()).decode(), "width": 63})
    assert answer.status_code == 400 and "width" in answer.json()["detail"]
