"""A person upscales in the browser: opens the Extras tab, uploads a picture, picks a model upscaler, generates,
and sees the enlarged picture with its postprocess parameters; and sends a txt2img picture to the Extras tab."""
import numpy as np
import pytest
from PIL import Image

from paragoger.imaging.infotext import format_infotext
from paragoger.imaging.metadata import read_infotext
from tests.conftest import set_slider, set_small_generation


@pytest.fixture
def page(upscaler_files, app_context, open_page):
    return open_page(app_context)


def choose(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def test_upload_a_picture_and_upscale_it_with_a_model(page, app_context, tmp_path):
    from playwright.sync_api import expect

    rng = np.random.default_rng(1)
    pixels = np.clip(np.linspace(30, 220, 48)[None, :, None] + rng.normal(0, 20, (40, 48, 3)), 0, 255)
    source = Image.fromarray(pixels.astype(np.uint8))
    source.info["parameters"] = format_infotext("a windmill", "", {"Steps": 3, "Seed": 11, "Size": "48x40"})
    source.save(tmp_path / "windmill.png", pnginfo=_png_text(source.info["parameters"]))

    page.click("#tab_extras-button")
    page.locator("#extras_image input[type=file]").first.set_input_files(str(tmp_path / "windmill.png"))
    expect(page.locator("#extras_image img")).to_be_visible(timeout=30_000)
    set_slider(page, "extras_upscaling_resize", 3)
    choose(page, "extras_upscaler_1", "R-ESRGAN 4x+")
    page.click("#extras_generate")
    info = page.locator("#extras_html_info")
    expect(info).to_contain_text("Postprocess upscaler: R-ESRGAN 4x+", timeout=60_000)
    expect(info).to_contain_text("Postprocess upscale by: 3")
    expect(info).to_contain_text("a windmill")                        # the picture's own parameters stay
    expect(page.locator("#extras_gallery img").first).to_be_visible()
    [saved] = (app_context.paths.outputs_dir / "extras-images").iterdir()
    assert Image.open(saved).size == (144, 120)
    assert read_infotext(saved).startswith("a windmill\nSteps: 3, Seed: 11, Size: 48x40, Postprocess upscale by: 3")


def test_an_unknown_folder_in_batch_from_directory_shows_the_reason(page, tmp_path):
    from playwright.sync_api import expect

    page.click("#tab_extras-button")
    page.click("#extras_batch_directory_tab-button")
    page.fill("#extras_batch_input_dir textarea", str(tmp_path / "nowhere"))
    choose(page, "extras_upscaler_1", "Lanczos")
    page.click("#extras_generate")
    expect(page.locator("#extras_error")).to_contain_text("does not exist", timeout=30_000)


def test_send_to_extras_puts_the_generated_picture_into_the_extras_tab(page, app_context):
    from playwright.sync_api import expect

    page.fill("#txt2img_prompt textarea", "a blue door")
    set_small_generation(page, "txt2img", steps=3)
    page.click("#txt2img_generate")
    expect(page.locator("#txt2img_html_info")).to_contain_text("a blue door", timeout=60_000)
    page.click("#txt2img_send_to_extras")
    expect(page.locator("#extras_image img")).to_be_visible(timeout=30_000)
    choose(page, "extras_upscaler_1", "Nearest")
    page.click("#extras_generate")
    info = page.locator("#extras_html_info")
    expect(info).to_contain_text("Postprocess upscaler: Nearest", timeout=60_000)
    expect(info).to_contain_text("a blue door")
    [saved] = (app_context.paths.outputs_dir / "extras-images").iterdir()
    assert Image.open(saved).size == (128, 128)


def _png_text(text: str):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    return info
