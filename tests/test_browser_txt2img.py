"""A person in a browser: open the page, type a prompt, Generate, see the image and its parameters, Interrupt.

Playwright drives Debian's chromium (never Playwright's own browser download)."""
import re

import pytest

from tests.conftest import set_slider, set_small_generation


@pytest.fixture
def page(app_context, open_page):
    return open_page(app_context, height=1000)


def test_type_a_prompt_generate_and_see_the_image_and_its_parameters(page, app_context):
    from playwright.sync_api import expect

    page.fill("#txt2img_prompt textarea", "a lighthouse at dusk")
    page.fill("#txt2img_neg_prompt textarea", "fog")
    set_slider(page, "txt2img_steps", 4)
    set_slider(page, "txt2img_width", 64)
    set_slider(page, "txt2img_height", 64)
    page.locator("#txt2img_seed input").fill("42")
    page.click("#txt2img_generate")
    info = page.locator("#txt2img_html_info")
    expect(info).to_contain_text("Seed: 42", timeout=60_000)
    expect(info).to_contain_text("a lighthouse at dusk")
    expect(info).to_contain_text("Negative prompt: fog")
    expect(info).to_contain_text("Steps: 4, Sampler: DPM++ 2M")
    expect(page.locator("#txt2img_gallery img").first).to_be_visible()
    saved = list((app_context.paths.outputs_dir / "txt2img-images").rglob("*-42.png"))
    assert len(saved) == 1


def test_interrupt_stops_a_long_generation_and_keeps_what_was_made(page, app_context):
    from playwright.sync_api import expect

    page.fill("#txt2img_prompt textarea", "a very long job")
    set_slider(page, "txt2img_steps", 150)
    page.click("#txt2img_generate")
    expect(page.locator("#txt2img_progress")).to_contain_text("Step", timeout=60_000)
    page.click("#txt2img_interrupt")
    expect(page.locator("#txt2img_html_info")).to_contain_text("Steps: 150", timeout=60_000)
    job = app_context.queue.finished()[-1]
    assert job.interrupted and job.progress.step < 150
    expect(page.locator("#txt2img_gallery img").first).to_be_visible()


def test_a_corrupt_checkpoint_shows_a_message_and_the_loaded_model_stays(page, app_context):
    from playwright.sync_api import expect

    (app_context.paths.default_checkpoint_dir() / "broken.safetensors").write_bytes(b"not a model at all")
    page.click("#refresh_sd_model_checkpoint")
    page.locator("#setting_sd_model_checkpoint input").click()
    page.get_by_role("option", name="broken.safetensors").click()
    expect(page.locator("#model_status")).to_contain_text("Could not read checkpoint", timeout=60_000)
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(
        app_context.cache.current.info.title)
    assert app_context.cache.current.info.name == "tiny-sd1.safetensors"


def test_a_checkpoint_added_while_the_page_is_open_shows_in_the_dropdown_once_loaded(page, app_context):
    """A new file is listed without its hash and titled with it once loaded: the box must show it, not go blank."""
    import shutil

    from playwright.sync_api import expect

    checkpoint = app_context.cache.current.info.path
    shutil.copy(checkpoint, app_context.paths.default_checkpoint_dir() / "second.safetensors")
    page.click("#refresh_sd_model_checkpoint")
    page.locator("#setting_sd_model_checkpoint input").click()
    page.get_by_role("option", name="second.safetensors").click()
    expect(page.locator("#setting_sd_model_checkpoint input")).to_have_value(
        re.compile(r"^second\.safetensors \[[0-9a-f]{10}\]$"), timeout=60_000)
    assert app_context.cache.current.info.name == "second.safetensors"


def test_token_counter_and_styles_in_the_page(page, app_context):
    from playwright.sync_api import expect

    from paragoger.prompts import PromptStyle

    page.fill("#txt2img_prompt textarea", ", ".join(["red apple"] * 50))
    expect(page.locator("#txt2img_token_counter")).to_contain_text("149/150", timeout=30_000)
    page.fill("#txt2img_prompt textarea", "a cat")
    page.fill("#txt2img_neg_prompt textarea", "blurry")
    page.click("#txt2img_style_save_box")
    page.fill("#txt2img_style_name textarea", "my style")
    page.click("#txt2img_style_create")
    import time

    deadline = time.time() + 20
    while "my style" not in app_context.styles.names() and time.time() < deadline:
        time.sleep(0.2)
    assert app_context.styles.get("my style") == PromptStyle("my style", "a cat", "blurry")


def test_lora_card_inserts_its_tag_and_the_weighted_prompt_generates(app_context, open_page):
    from playwright.sync_api import expect

    from tests.fixtures import networks

    networks.write_kohya_lora(app_context.paths.lora_dirs[-1] / "paper_cut.safetensors", "sd1")
    app_context.loras.refresh()
    page = open_page(app_context, height=1200)
    page.fill("#txt2img_prompt textarea", "(masterpiece:1.2), a paper fox")
    page.click("#txt2img_extra_networks")
    page.click("#txt2img_lora_cards_tab-button")
    page.locator("#txt2img_lora_cards").get_by_text("paper_cut").first.click()
    expect(page.locator("#txt2img_prompt textarea")).to_have_value(
        "(masterpiece:1.2), a paper fox <lora:paper_cut:1>", timeout=30_000)
    set_small_generation(page, "txt2img", steps=3)
    page.click("#txt2img_generate")
    info = page.locator("#txt2img_html_info")
    expect(info).to_contain_text('Lora hashes: "paper_cut: ', timeout=60_000)
    expect(info).to_contain_text("(masterpiece:1.2), a paper fox <lora:paper_cut:1>")
