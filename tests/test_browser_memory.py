"""A person sees what is loaded in the browser: the Memory tab lists every loaded model (checkpoint, upscaler,
captioner) with its size and the totals, and an Unload button per row frees one."""
import shutil

from PIL import Image


def test_memory_tab_shows_the_loaded_models_and_unloads_one(app_context, open_page, upscaler_files, caption_models):
    from playwright.sync_api import expect

    shutil.copytree(caption_models, app_context.paths.models_dir, dirs_exist_ok=True)
    app_context.settings.update({"interrogate_keep_models_in_memory": True})
    page = open_page(app_context)  # loads the checkpoint
    picture = Image.new("RGB", (24, 16), (30, 120, 200))
    app_context.interrogate(picture, "deepdanbooru")
    app_context.upscaler_models.models.upscale(upscaler_files["esrgan"], picture, 2, name="4x-tiny-esrgan")

    page.locator("#tab_memory-button").click()
    rows = page.locator("#memory_table .memory-row")
    expect(rows).to_have_count(3, timeout=30_000)
    expect(page.locator("#memory_table")).to_contain_text("tiny-sd1.safetensors")
    expect(page.locator("#memory_table")).to_contain_text("4x-tiny-esrgan.pth")
    expect(page.locator("#memory_table")).to_contain_text("Captioner")
    expect(page.locator("#memory_totals")).to_contain_text("Loaded models: 3, holding")
    kinds = [rows.nth(i).get_attribute("data-kind") for i in range(3)]
    assert kinds == ["upscaler", "captioner", "checkpoint"]  # most recently used first

    page.locator("#memory_table .memory-unload").first.click()  # the upscaler's row
    expect(rows).to_have_count(2, timeout=30_000)
    assert [entry.kind for entry in app_context.models.entries()] == ["checkpoint", "captioner"]
    expect(page.locator("#memory_totals")).to_contain_text("Loaded models: 2, holding")
