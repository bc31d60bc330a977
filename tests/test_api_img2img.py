"""POST /sdapi/v1/img2img as A1111 clients send it: base64 or data-URL pictures, masks, clear 400s."""
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.test_img2img_core import picture, square_mask


def b64(image: Image.Image, data_url: bool = False) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    text = base64.b64encode(buffer.getvalue()).decode()
    return "data:image/png;base64," + text if data_url else text


BODY = {"prompt": "a harbour", "steps": 4, "width": 64, "height": 64, "seed": 3, "sampler_name": "Euler",
        "denoising_strength": 0.5}


def decode(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


@pytest.mark.parametrize("data_url", [False, True])
def test_img2img_takes_base64_or_data_urls(api, data_url):
    response = api.post("/img2img", json={**BODY, "init_images": [b64(picture(), data_url)]})
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert "Denoising strength: 0.5" in info["infotexts"][0] and info["denoising_strength"] == 0.5
    assert decode(response.json()["images"][0]).size == (64, 64)


def test_inpaint_with_a_mask_keeps_the_rest_of_the_picture(api):
    body = {**BODY, "init_images": [b64(picture())], "mask": b64(square_mask()), "inpainting_fill": 1,
            "inpaint_full_res": False, "mask_blur": 0, "denoising_strength": 1.0}
    response = api.post("/img2img", json=body)
    assert response.status_code == 200, response.text
    out = np.asarray(decode(response.json()["images"][0]).convert("RGB")).astype(int)
    outside = np.asarray(square_mask()) < 128
    assert np.array_equal(out[outside], np.asarray(picture()).astype(int)[outside])
    assert "Mask blur: 0" in json.loads(response.json()["info"])["infotexts"][0]


def test_outpaint_grows_the_picture(api):
    body = {**BODY, "init_images": [b64(picture())], "denoising_strength": 1.0,
            "outpaint": {"left": 16, "right": 16, "fill": "blur"}}
    response = api.post("/img2img", json=body)
    assert response.status_code == 200, response.text
    assert decode(response.json()["images"][0]).size == (96, 64)


@pytest.mark.parametrize("init, reason", [
    ("%%%not base64%%%", "init_images[0] could not be read"),
    (base64.b64encode(b"plain text, not a picture").decode(), "not an image"),
])
def test_broken_pictures_answer_400_with_the_reason(api, init, reason):
    response = api.post("/img2img", json={**BODY, "init_images": [init]})
    assert response.status_code == 400 and reason in response.json()["detail"]
    assert api.post("/img2img", json={**BODY, "init_images": [b64(picture())]}).status_code == 200


def test_missing_picture_answers_400(api):
    response = api.post("/img2img", json=BODY)
    assert response.status_code == 400 and "needs a picture" in response.json()["detail"]
