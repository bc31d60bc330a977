"""A person inpaints in the browser: uploads a picture, paints a mask stroke, generates, and gets a picture
whose parameters say it was inpainted."""
import numpy as np
import pytest
from PIL import Image

from tests.conftest import set_slider, set_small_generation


@pytest.fixture
def page(app_context, open_page):
    return open_page(app_context)


def test_paint_a_mask_stroke_and_inpaint(page, app_context):
    """A picture made in txt2img is sent to Inpaint (the editor gets it from the server, as a person's "Send to
    inpaint" does: no upload to wait for on a busy machine), a brush stroke is painted, and only the stroke (and its
    blur) is redrawn."""
    from playwright.sync_api import expect

    page.fill("#txt2img_prompt textarea", "a calm harbour")
    set_small_generation(page, "txt2img", steps=2)
    page.click("#txt2img_generate")
    expect(page.locator("#txt2img_html_info")).to_contain_text("Size: 64x64", timeout=60_000)
    started = list((app_context.paths.outputs_dir / "txt2img-images").rglob("*.png"))
    assert len(started) == 1
    page.click("#txt2img_send_to_inpaint")
    editor = page.locator("#img2maskimg")
    expect(editor).to_be_visible(timeout=30_000)
    expect(editor).not_to_contain_text("Upload an image", timeout=30_000)
    set_slider(page, "img2img_width", 64)
    set_slider(page, "img2img_height", 64)
    page.locator("#img2maskimg button[aria-label='Brush']").click()
    canvas = page.locator("#img2maskimg canvas").first
    canvas.wait_for(timeout=30_000)
    page.wait_for_timeout(1500)
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 40, cy)
    page.mouse.down()
    page.mouse.move(cx, cy + 10, steps=3)
    page.mouse.move(cx + 40, cy, steps=3)
    page.mouse.up()
    page.wait_for_timeout(1500)  # the editor hands its layers to the page's value shortly after the stroke ends
    page.fill("#img2img_prompt textarea", "a small boat")
    set_slider(page, "img2img_steps", 4)
    page.click("#img2img_generate")
    info = page.locator("#img2img_html_info")
    expect(info).to_contain_text("Denoising strength: 0.75", timeout=90_000)
    expect(info).to_contain_text("Mask blur: 4")
    expect(info).to_contain_text("Size: 64x64")
    saved = list((app_context.paths.outputs_dir / "img2img-images").rglob("*.png"))
    assert len(saved) == 1
    result = np.asarray(Image.open(saved[0]).convert("RGB")).astype(int)
    start = np.asarray(Image.open(started[0]).convert("RGB")).astype(int)
    changed = np.abs(result - start).max(axis=2) > 0
    assert changed.any() and not changed.all()  # only the painted stroke (and its blur) was redrawn


def test_send_to_img2img_carries_the_picture_and_its_parameters(page, app_context):
    from playwright.sync_api import expect

    page.fill("#txt2img_prompt textarea", "a red kite")
    set_small_generation(page, "txt2img", steps=3)
    page.locator("#txt2img_seed input").fill("321")
    page.click("#txt2img_generate")
    expect(page.locator("#txt2img_html_info")).to_contain_text("Seed: 321", timeout=60_000)
    page.click("#txt2img_send_to_img2img")
    expect(page.locator("#img2img_prompt textarea")).to_have_value("a red kite", timeout=30_000)
    expect(page.locator("#img2img_seed input")).to_have_value("321")
    set_slider(page, "img2img_steps", 3)
    page.click("#img2img_generate")
    expect(page.locator("#img2img_html_info")).to_contain_text("Denoising strength: 0.75", timeout=60_000)
    expect(page.locator("#img2img_html_info")).to_contain_text("Size: 64x64")


def test_batch_tab_processes_a_folder_and_reports_a_broken_file(page, app_context, tmp_path):
    from playwright.sync_api import expect

    from tests.test_img2img_core import picture

    source = tmp_path / "in"
    source.mkdir()
    picture(seed=1).save(source / "one.png")
    (source / "broken.png").write_bytes(b"not a picture")
    page.click("#tab_img2img-button")
    page.click("#img2img_batch_tab-button")
    page.fill("#img2img_batch_input_dir textarea", str(source))
    page.fill("#img2img_batch_output_dir textarea", str(tmp_path / "out"))
    set_small_generation(page, "img2img", steps=3)
    page.click("#img2img_batch_run")
    info = page.locator("#img2img_html_info")
    expect(info).to_contain_text("1 pictures written", timeout=60_000)
    expect(info).to_contain_text("broken.png: not a readable picture")
    assert (tmp_path / "out" / "one.png").is_file()
