"""Reading generation parameters back: pasting an A1111 infotext, or dropping a PNG on the prompt box."""
import base64
import io

from PIL import Image, PngImagePlugin

from paragoger.core.paste import parameters_from_infotext

A1111_EXAMPLE = (
    "1girl, masterpiece, white blouse, [midriff::12], <lora:fubuki:1>\n"
    "Negative prompt: bad fingers\n"
    "Steps: 20, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 7, Seed: 2245042501, Size: 512x768, "
    "Model hash: d4c1719023, Model: animekawa_v10, VAE hash: 735e4c3a44, VAE: vaeFtMse840000EmaPruned_vae.safetensors, "
    "Denoising strength: 0.6, Hires upscale: 2, Hires steps: 10, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "fubuki: ce30cae7c555, space_hopper: f4112c058273", Version: v1.9.3')


def test_an_a1111_infotext_fills_the_request_fields():
    pasted = parameters_from_infotext(A1111_EXAMPLE)
    assert pasted.prompt == "1girl, masterpiece, white blouse, [midriff::12], <lora:fubuki:1>"
    assert pasted.negative_prompt == "bad fingers"
    assert pasted.fields.items() >= {"steps": 20, "sampler_name": "DPM++ 2M SDE", "scheduler": "Karras", "cfg_scale": 7.0,
                             "seed": 2245042501, "width": 512, "height": 768, "denoising_strength": 0.6,
                                     "clip_skip": 1}.items()  # missing keys take A1111's reading defaults
    assert (pasted.model_hash, pasted.model_name) == ("d4c1719023", "animekawa_v10")
    assert (pasted.fields["enable_hr"], pasted.fields["hr_second_pass_steps"]) == (True, 10)


def test_old_combined_sampler_names_are_split():
    pasted = parameters_from_infotext("a cat\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1")
    assert (pasted.fields["sampler_name"], pasted.fields["scheduler"]) == ("DPM++ 2M", "Karras")


def png_with(text: str) -> str:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "gray").save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def test_dropping_a_png_on_the_prompt_fills_every_field_and_selects_its_checkpoint(app_context, open_page):
    from playwright.sync_api import expect

    page = open_page(app_context, height=1000)
    model_hash = app_context.cache.current.info.short_hash
    text = ("a lighthouse, (storm:1.2)\nNegative prompt: blurry\nSteps: 7, Sampler: Euler a, CFG scale: 5.5, "
            f"Seed: 1234, Size: 128x192, Model hash: {model_hash}, Model: tiny-sd1, Version: v1.10.1")
    transfer = page.evaluate_handle(
        """(b64) => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                      const dt = new DataTransfer();
                      dt.items.add(new File([bytes], 'old.png', {type: 'image/png'})); return dt; }""",
        png_with(text))
    page.dispatch_event("#txt2img_prompt textarea", "drop", {"dataTransfer": transfer})
    expect(page.locator("#txt2img_prompt textarea")).to_have_value("a lighthouse, (storm:1.2)", timeout=30_000)
    expect(page.locator("#txt2img_neg_prompt textarea")).to_have_value("blurry")
    expect(page.locator("#txt2img_steps input[type=number]")).to_have_value("7")
    expect(page.locator("#txt2img_width input[type=number]")).to_have_value("128")
    expect(page.locator("#txt2img_height input[type=number]")).to_have_value("192")
    expect(page.locator("#txt2img_cfg_scale input[type=number]")).to_have_value("5.5")
    expect(page.locator("#txt2img_seed input")).to_have_value("1234")
    expect(page.locator("#txt2img_sampling input")).to_have_value("Euler a")
