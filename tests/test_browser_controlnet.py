"""A person in a browser uses one ControlNet unit in txt2img: uploads a control picture, previews the canny map,
picks the model, generates, and finds the unit in the picture's infotext.

Playwright drives Debian's chromium (never Playwright's own browser download)."""
import pytest
from PIL import Image, ImageDraw

from tests.conftest import set_small_generation

MODEL = "control_tiny_sd15_canny"
UNIT = "#txt2img_controlnet_ControlNet-0"


@pytest.fixture
def controlnet_context(data_dir, start_context):
    """The app over a data dir whose models/ControlNet holds a tiny SD 1.5 ControlNet in the original layout."""
    from tests.fixtures.control import write_controlnet

    write_controlnet(data_dir / "models" / "ControlNet" / f"{MODEL}.safetensors", "sd1", seed=5)
    return start_context()


def test_one_unit_previews_its_map_and_controls_the_picture(controlnet_context, open_page, tmp_path):
    from playwright.sync_api import expect

    picture = Image.new("RGB", (64, 64), (230, 230, 230))
    ImageDraw.Draw(picture).rectangle((12, 16, 50, 44), outline=(10, 10, 10), width=3)
    picture.save(tmp_path / "box.png")

    page = open_page(controlnet_context, height=1600)
    page.fill("#txt2img_prompt textarea", "a box")
    page.click("#txt2img_controlnet")  # the accordion
    page.locator(f"{UNIT}_input_image input[type=file]").first.set_input_files(str(tmp_path / "box.png"))
    expect(page.locator(f"{UNIT}_input_image img")).to_be_visible(timeout=30_000)

    page.locator(f"{UNIT}_preprocessor_dropdown input").click()
    page.get_by_role("option", name="canny", exact=True).click()
    expect(page.locator(f"{UNIT}_threshold_A_slider")).to_be_visible(timeout=10_000)
    page.click(f"{UNIT}_trigger_preprocessor")
    expect(page.locator(f"{UNIT}_generated_image img")).to_be_visible(timeout=30_000)

    page.locator(f"{UNIT}_model_dropdown input").click()
    page.get_by_role("option", name=MODEL, exact=False).first.click()
    page.locator(f"{UNIT}_enable_checkbox input").check()
    set_small_generation(page, "txt2img", steps=2, size=64)
    page.click("#txt2img_generate")

    info = page.locator("#txt2img_html_info")
    expect(info).to_contain_text(f'ControlNet 0: "Module: canny, Model: {MODEL} [', timeout=60_000)
    expect(page.locator("#txt2img_error")).to_have_text("")
