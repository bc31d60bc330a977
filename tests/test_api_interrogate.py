"""POST /sdapi/v1/interrogate (A1111's image-to-text route) on the real server, and webuiapi's ``interrogate``."""
from __future__ import annotations

import base64
import io
import shutil

import pytest
from PIL import Image, ImageDraw

from tests.fixtures.caption import BLIP_WORDS


def picture() -> Image.Image:
    image = Image.new("RGB", (72, 56), (230, 200, 40))
    ImageDraw.Draw(image).rectangle((8, 8, 40, 40), fill=(20, 90, 160))
    return image


def png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.fixture
def with_models(app_context, caption_models):
    shutil.copytree(caption_models, app_context.paths.models_dir, dirs_exist_ok=True)
    return app_context


def test_clip_answers_a_caption_with_flavours(api, with_models):
    response = api.post("/interrogate", json={"image": png_base64(picture()), "model": "clip"})
    assert response.status_code == 200, response.text
    sentence, *flavours = response.json()["caption"].split(", ")
    assert set(sentence.split()) <= set(BLIP_WORDS) and len(flavours) == 7


def test_deepdanbooru_answers_tags_and_takes_a_data_url(api, with_models):
    response = api.post("/interrogate", json={"image": "data:image/png;base64," + png_base64(picture()),
                                              "model": "deepdanbooru"})
    assert response.status_code == 200, response.text
    assert response.json() == {"caption": r"1girl, ^_^, hatsune miku, long hair, smile, solo, star \(symbol\)"}


def test_the_model_defaults_to_clip(api, with_models):
    response = api.post("/interrogate", json={"image": png_base64(picture())})
    assert response.status_code == 200 and len(response.json()["caption"].split(", ")) == 8


def test_options_change_the_tags(api, with_models):
    assert api.post("/options", json={"interrogate_deepbooru_score_threshold": 0.85,
                                      "deepbooru_sort_alpha": False}).status_code == 200
    response = api.post("/interrogate", json={"image": png_base64(picture()), "model": "deepdanbooru"})
    assert response.json()["caption"] == "1girl, solo"


def test_bad_base64_is_400_with_the_reason(api, with_models):
    response = api.post("/interrogate", json={"image": "bm90IGFuIGltYWdl", "model": "clip"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The image could not be read: not an image")


def test_unknown_model_is_404_naming_the_known_ones(api, with_models):
    response = api.post("/interrogate", json={"image": png_base64(picture()), "model": "deepbooru-v9"})
    assert response.status_code == 404
    assert response.json()["detail"] == "Unknown captioner 'deepbooru-v9'. Known captioners: clip, deepdanbooru."


def test_missing_model_folder_is_400_telling_where_to_put_the_model(api, app_context):
    response = api.post("/interrogate", json={"image": png_base64(picture()), "model": "deepdanbooru"})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert str(app_context.paths.models_dir / "deepbooru") in detail and "selected_tags.csv" in detail
    assert api.get("/progress").status_code == 200  # the app keeps running


def test_webuiapi_interrogate(app_context, serve_app, with_models):
    webuiapi = pytest.importorskip("webuiapi")
    client = webuiapi.WebUIApi(baseurl=serve_app(app_context) + "/sdapi/v1")
    tags = client.interrogate(picture(), model="deepdanbooru")
    assert tags.info.startswith("1girl, ^_^, hatsune miku")
    caption = client.interrogate(picture())
    assert set(caption.info.split(", ")[0].split()) <= set(BLIP_WORDS)
