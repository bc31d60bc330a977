"""A person gets text from a picture in the browser: the Image to text tab (tags, then sent to the txt2img prompt)
and img2img's "Interrogate DeepBooru" button, which puts the tags into the img2img prompt."""
import shutil

import pytest
from PIL import Image, ImageDraw

TAGS = r"1girl, ^_^, hatsune miku, long hair, smile, solo, star \(symbol\)"


@pytest.fixture
def page(app_context, open_page, caption_models):
    shutil.copytree(caption_models, app_context.paths.models_dir, dirs_exist_ok=True)
    return open_page(app_context)


@pytest.fixture
def picture_file(tmp_path):
    image = Image.new("RGB", (64, 64), (240, 220, 90))
    ImageDraw.Draw(image).ellipse((12, 12, 52, 52), fill=(40, 80, 200))
    image.save(tmp_path / "picture.png")
    return str(tmp_path / "picture.png")


def upload(page, elem_id: str, path: str) -> None:
    from playwright.sync_api import expect

    target = page.locator(f"#{elem_id}")
    for _attempt in range(3):  # a busy 2-core machine sometimes drops the first file set on the input
        page.locator(f"#{elem_id} input[type=file]").first.set_input_files(path)
        try:
            expect(target.locator("img").first).to_be_visible(timeout=15_000)
            return
        except AssertionError:
            page.wait_for_timeout(1000)
    expect(target.locator("img").first).to_be_visible(timeout=5_000)


def test_image_to_text_tab_tags_a_picture_and_sends_them_to_txt2img(page, picture_file):
    from playwright.sync_api import expect

    page.click("#tab_image_to_text-button")
    upload(page, "image_to_text_image", picture_file)
    page.locator("#image_to_text_captioner input").click()
    page.get_by_role("option", name="DeepBooru (WD tagger tags)").click()
    page.click("#image_to_text_run")
    expect(page.locator("#image_to_text_result textarea")).to_have_value(TAGS, timeout=60_000)
    page.click("#image_to_text_send_to_txt2img")
    expect(page.locator("#txt2img_prompt textarea")).to_have_value(TAGS, timeout=10_000)
    expect(page.locator("#txt2img_prompt textarea")).to_be_visible()


def test_clip_caption_appears_in_the_tab(page, picture_file):
    from playwright.sync_api import expect

    page.click("#tab_image_to_text-button")
    upload(page, "image_to_text_image", picture_file)
    page.click("#image_to_text_run")
    result = page.locator("#image_to_text_result textarea")
    expect(result).not_to_have_value("", timeout=60_000)
    assert len(result.input_value().split(", ")) == 8  # the BLIP sentence and 7 flavours


def test_img2img_interrogate_deepbooru_fills_the_prompt(page, picture_file):
    from playwright.sync_api import expect

    page.click("#tab_img2img-button")
    upload(page, "img2img_image", picture_file)
    page.click("#deepbooru")
    expect(page.locator("#img2img_prompt textarea")).to_have_value(TAGS, timeout=60_000)


def test_without_models_the_tab_says_which_folder_to_fill(app_context, open_page, picture_file):
    from playwright.sync_api import expect

    page = open_page(app_context)
    page.click("#tab_image_to_text-button")
    upload(page, "image_to_text_image", picture_file)
    page.click("#image_to_text_run")
    error = page.locator("#image_to_text_error")
    expect(error).to_contain_text("needs a BLIP captioning model", timeout=60_000)
    expect(error).to_contain_text(str(app_context.paths.models_dir / "BLIP"))
