"""/sdapi/v1/extra-single-image, /extra-batch-images, /upscalers and /refresh-upscalers on the real server, with
A1111's request and response fields."""
import base64
import io

import pytest
from PIL import Image, ImageDraw

from paragoger.imaging.metadata import read_infotext
from paragoger.imaging.transport import encode_png_base64
from tests.fixtures import upscale


def picture(width=40, height=32) -> Image.Image:
    image = Image.new("RGB", (width, height), (240, 240, 230))
    ImageDraw.Draw(image).rectangle((8, 8, 24, 20), fill=(200, 20, 20))
    return image


def decoded(data: str) -> Image.Image:
    assert not data.startswith("data:")  # plain base64, as A1111 answers
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_upscalers_lists_builtins_then_model_files_with_their_folder_and_path(upscaler_files, api):
    listed = {u["name"]: u for u in api.get("/upscalers").json()}
    assert list(listed)[:3] == ["None", "Lanczos", "Nearest"]
    assert listed["Lanczos"] == {"name": "Lanczos", "model_name": None, "model_path": None, "model_url": None,
                                 "scale": 4.0}
    assert listed["R-ESRGAN 4x+"]["model_name"] == "RealESRGAN"
    assert listed["R-ESRGAN 4x+"]["model_path"] == str(upscaler_files["realesrgan"])
    assert listed["2x-tiny-compact"]["scale"] == 2.0


def test_refresh_upscalers_finds_a_file_added_while_running(upscaler_files, api):
    upscale.write_compact(upscaler_files["esrgan"].parent / "4x_NewOne.safetensors", scale=4)
    assert "4x_NewOne" not in [u["name"] for u in api.get("/upscalers").json()]
    assert api.post("/refresh-upscalers").status_code == 200
    assert "4x_NewOne" in [u["name"] for u in api.get("/upscalers").json()]


def test_extra_single_image_upscales_with_a_model_and_keeps_the_infotext(upscaler_files, api, app_context):
    source = encode_png_base64(picture(), "a barn\nSteps: 4, Sampler: Euler, Seed: 3, Size: 40x32")
    response = api.post("/extra-single-image", json={"image": "data:image/png;base64," + source,
                                                     "upscaler_1": "2x-tiny-compact", "upscaling_resize": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    image = decoded(body["image"])
    assert image.size == (120, 96)
    assert read_infotext(image) == ("a barn\nSteps: 4, Sampler: Euler, Seed: 3, Size: 40x32, "
                                    "Postprocess upscale by: 3, Postprocess upscaler: 2x-tiny-compact")
    assert body["html_info"] == "<p>Postprocess upscale by: 3, Postprocess upscaler: 2x-tiny-compact</p>"
    assert not (app_context.paths.outputs_dir / "extras-images").exists()  # A1111's API does not save


def test_extra_single_image_saves_when_asked(api, app_context):
    response = api.post("/extra-single-image", json={"image": encode_png_base64(picture()), "upscaler_1": "Lanczos",
                                                     "save_images": True})
    assert response.status_code == 200
    assert [p.name for p in (app_context.paths.outputs_dir / "extras-images").iterdir()] == ["00000.png"]


def test_extra_batch_images_answers_every_picture_in_order(upscaler_files, api):
    body = {"imageList": [{"data": encode_png_base64(picture(40, 32)), "name": "one.png"},
                          {"data": encode_png_base64(picture(20, 20)), "name": "two.png"}],
            "resize_mode": 1, "upscaling_resize_w": 80, "upscaling_resize_h": 80, "upscaling_crop": True,
            "upscaler_1": "R-ESRGAN 4x+", "upscaler_2": "Nearest", "extras_upscaler_2_visibility": 0.5}
    response = api.post("/extra-batch-images", json=body)
    assert response.status_code == 200, response.text
    images = [decoded(data) for data in response.json()["images"]]
    assert [image.size for image in images] == [(80, 80), (80, 80)]
    assert read_infotext(images[1]) == ("Postprocess upscale to: 80x80, Postprocess crop to fit: True, "
                                        "Postprocess upscaler: R-ESRGAN 4x+, Postprocess upscaler 2: Nearest")


@pytest.mark.parametrize("body, status, reason", [
    ({"image": "%%% not base64"}, 400, "The image could not be read"),
    ({"image": base64.b64encode(b"plain text").decode()}, 400, "not an image"),
    ({"upscaler_1": "R-ESRGAN 9x"}, 400, "Unknown upscaler 'R-ESRGAN 9x'. Known upscalers: None, Lanczos"),
    ({"upscaler_1": "Lanczos", "upscaling_resize": 1000}, 400, "Upscale by must be more than 0 and at most 8"),
    ({"upscaler_1": "Lanczos", "resize_mode": 1, "upscaling_resize_w": 0}, 400, "Upscale to width and height"),
    ({"upscaler_1": "Lanczos", "gfpgan_visibility": 1}, 400, "Face restoration"),
])
def test_bad_requests_get_4xx_with_the_reason(api, body, status, reason):
    response = api.post("/extra-single-image", json={"image": encode_png_base64(picture()), **body})
    assert response.status_code == status
    assert reason in response.json()["detail"]


def test_a_corrupt_model_file_answers_400_and_the_server_keeps_working(upscaler_files, api):
    (upscaler_files["esrgan"].parent / "4x_broken.pth").write_bytes(b"\x00garbage")
    api.post("/refresh-upscalers")
    response = api.post("/extra-single-image", json={"image": encode_png_base64(picture()),
                                                     "upscaler_1": "4x_broken"})
    assert response.status_code == 400 and "Could not read upscaler model '4x_broken.pth'" in response.json()["detail"]
    again = api.post("/extra-single-image", json={"image": encode_png_base64(picture()), "upscaler_1": "Lanczos"})
    assert again.status_code == 200


def test_empty_batch_is_refused(api):
    response = api.post("/extra-batch-images", json={"imageList": [], "upscaler_1": "Lanczos"})
    assert response.status_code == 400 and "Choose a picture to upscale" in response.json()["detail"]


def test_face_restorers_stay_empty(api):
    assert api.get("/face-restorers").json() == []
