"""txt2img's Hires. fix as AUTOMATIC1111 users know it: a second, img2img pass at a higher resolution, with its
size, steps, upscaler, sampler, prompts and CFG; in the engine, the infotext and paste, the API, X/Y/Z and the page.
"""
import json

import numpy as np
import pytest
from PIL import Image

from paragoger.core import hires
from paragoger.core.jobs import Job
from paragoger.core.payloads import GenerationJob
from paragoger.core.paste import parameters_from_infotext
from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from paragoger.imaging.metadata import read_infotext
from tests.conftest import set_slider

PROMPT, NEGATIVE = "a castle on a hill, ink drawing", "blurry"


def request(**changes) -> GenerationRequest:
    base = dict(prompt=PROMPT, negative_prompt=NEGATIVE, steps=4, width=64, height=64, seed=31, cfg_scale=7.0,
                sampler_name="Euler", save_images=False, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=3,
                denoising_strength=0.5)
    return GenerationRequest(**{**base, **changes})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


class Recording(Job):
    """A job that remembers every (step, steps) the progress bar showed, and can interrupt or skip at a step."""

    def __init__(self, *args, interrupt_at=None, skip_at=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen, self.interrupt_at, self.skip_at = [], interrupt_at, skip_at

    def set_step(self, step, preview=None):
        super().set_step(step, preview)
        self.seen.append((self.progress.job_no, step, self.progress.steps))
        if step == self.interrupt_at:
            self.interrupt()
        if (self.progress.job_no, step) == self.skip_at:
            self.skip()


# --- sizes ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, scale, resize, final, cover", [
    ((512, 512), 2, (0, 0), (1024, 1024), (1024, 1024)),
    ((512, 768), 1.5, (0, 0), (768, 1152), (768, 1152)),
    ((512, 768), 2, (1024, 0), (1024, 1536), (1024, 1536)),       # one side given: the aspect is kept
    ((512, 768), 2, (0, 1024), (680, 1024), (682, 1024)),         # whole latent cells: 682 -> 680
    ((512, 768), 2, (1024, 1024), (1024, 1024), (1024, 1536)),    # both: enlarged to cover, the middle kept
    ((768, 512), 2, (1024, 1024), (1024, 1024), (1536, 1024)),
])
def test_hires_size_follows_a1111s_rules(size, scale, resize, final, cover):
    found = hires.hires_size(*size, scale, *resize)
    assert (found.width, found.height) == final and found.cover == cover


def test_a_crop_to_cover_keeps_the_middle():
    found = hires.hires_size(512, 768, 2, 1024, 1024)
    assert found.cover_cells == (192, 128) and found.crop_cells == (32, 0)


# --- the engine ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("upscaler", ["Latent", "Latent (bicubic antialiased)", "Latent (nearest-exact)", "Lanczos",
                                      "None"])
def test_the_image_comes_out_at_the_hires_size_with_every_kind_of_upscaler(app_context, upscaler):
    result = app_context.engine.generate(request(hr_upscaler=upscaler))
    image = result.images[0].image
    assert image.size == (96, 96)
    assert pixels(image).std() > 5, "a flat picture would prove nothing"
    assert f"Hires upscaler: {upscaler}," in result.images[0].infotext


def test_resize_to_crops_to_cover_and_one_side_keeps_the_aspect(app_context):
    both = app_context.engine.generate(request(width=64, height=96, hr_resize_x=128, hr_resize_y=128))
    assert both.images[0].image.size == (128, 128)
    assert "Hires resize: 128x128," in both.images[0].infotext and "Hires upscale:" not in both.images[0].infotext
    one = app_context.engine.generate(request(width=64, height=96, hr_resize_x=96, hr_upscaler="Lanczos"))
    assert one.images[0].image.size == (96, 144)


def test_progress_counts_the_steps_of_both_passes(app_context):
    job = Recording(request=None)
    app_context.engine.generate(request(steps=4, hr_second_pass_steps=3), job)
    shown = [(step, steps) for _, step, steps in job.seen]
    assert shown[-1] == (7, 7) and {steps for _, steps in shown} == {7}
    steps_shown = [step for step, _ in shown]
    assert steps_shown == sorted(steps_shown) and set(steps_shown) == set(range(8))
    same = Recording(request=None)
    app_context.engine.generate(request(steps=4, hr_second_pass_steps=0, denoising_strength=0.7), same)
    assert same.seen[-1][1:] == (8, 8)  # "0" runs the first pass's steps again, whatever the strength


def test_the_second_pass_equals_img2img_of_the_enlarged_first_pass_picture(app_context):
    """With a picture upscaler the second pass is the core's img2img, seed for seed: Hires steps 3 at strength 0.5
    run the last 3 steps of a 6-step schedule, which img2img does for 6 steps at 0.5."""
    engine = app_context.engine
    for sampler in ("Euler", "Euler a"):
        first = engine.generate(request(sampler_name=sampler, enable_hr=False)).images[0].image
        made = engine.generate(request(sampler_name=sampler, hr_upscaler="Lanczos", hr_scale=2)).images[0].image
        enlarged = first.resize((128, 128), Image.Resampling.LANCZOS)
        reference = engine.generate(GenerationRequest(
            mode="img2img", prompt=PROMPT, negative_prompt=NEGATIVE, init_images=[enlarged], width=128, height=128,
            steps=6, denoising_strength=0.5, seed=31, cfg_scale=7.0, sampler_name=sampler,
            save_images=False)).images[0].image
        assert pixels(reference).std() > 5
        assert np.array_equal(pixels(made), pixels(reference)), sampler
        assert np.abs(pixels(made) - pixels(enlarged)).max() > 10  # the second pass did change the picture


def test_a_hires_prompt_is_scheduled_over_the_second_pass(app_context):
    req = request(hr_prompt="a [castle:tower:5]", steps=4, hr_second_pass_steps=3)
    sampler, schedule = app_context.samplers.resolve(req.sampler_name, req.scheduler)
    plan = hires.HiresFix(app_context.engine, req, app_context.settings, sampler=sampler, schedule=schedule)
    # whole numbers count on from the first pass: step 5 is the second pass's step 1
    assert plan.prompts.positives[0].schedule == [[1, "a castle"], [3, "a tower"]]
    with_prompt = app_context.engine.generate(req)
    plain = app_context.engine.generate(request())
    assert np.abs(pixels(with_prompt.images[0].image) - pixels(plain.images[0].image)).max() > 0
    assert 'Hires prompt: "a [castle:tower:5]"' in with_prompt.images[0].infotext


def test_interrupt_in_the_first_pass_gives_the_first_pass_picture(app_context):
    job = Recording(request=None, interrupt_at=2)
    result = app_context.engine.generate(request(), job)
    assert result.interrupted and result.images[0].image.size == (64, 64)
    assert job.seen[-1][1] == 2


def test_interrupt_in_the_second_pass_stops_it_and_keeps_the_hires_picture(app_context):
    job = Recording(request=None, interrupt_at=5)
    result = app_context.engine.generate(request(), job)
    assert result.interrupted and result.images[0].image.size == (96, 96)
    assert job.seen[-1][1] == 5


def test_skip_in_the_first_pass_skips_that_image_and_the_batch_goes_on(app_context):
    job = Recording(request=None, skip_at=(0, 1))
    result = app_context.engine.generate(request(n_iter=2), job)
    assert [item.image.size for item in result.images] == [(64, 64), (96, 96)]
    assert not result.interrupted


def test_the_first_pass_picture_is_saved_too_when_the_setting_says_so(app_context):
    app_context.settings.update({"save_images_before_highres_fix": True})
    result = app_context.engine.generate(request(save_images=True, seed=55))
    folder = app_context.paths.outputs_dir / "txt2img-images"
    before = list(folder.rglob("*-55-before-highres-fix.png"))
    assert len(before) == 1 and Image.open(before[0]).size == (64, 64)
    assert Image.open(result.images[0].path).size == (96, 96)
    assert read_infotext(before[0]) == result.images[0].infotext


@pytest.mark.parametrize("changes, message", [
    ({"hr_scale": 100}, "Upscale by must be"),
    ({"hr_resize_x": 8192}, "Hires. fix size must be between 64 and 4096"),
    ({"hr_resize_x": -8}, "Resize width/height to must be"),
    ({"hr_second_pass_steps": -1}, "Hires steps must be"),
    ({"denoising_strength": 1.5}, "Denoising strength must be"),
    ({"hr_upscaler": "R-ESRGAN 9x"}, "Unknown upscaler 'R-ESRGAN 9x'"),
    ({"hr_sampler_name": "Nope"}, "Unknown sampler 'Nope'"),
])
def test_bad_hires_requests_are_refused_with_a_reason(app_context, changes, message):
    with pytest.raises(UserError, match=message):
        app_context.engine.generate(request(**changes))


@pytest.mark.parametrize("kind", ["sdxl", "sd1-inpaint"])
def test_every_model_family_takes_the_hires_fix(app_context, tiny_model_file, kind):
    import shutil

    target = app_context.paths.default_checkpoint_dir() / f"{kind}.safetensors"
    shutil.copyfile(tiny_model_file(kind, "safetensors"), target)
    app_context.library.refresh()
    for upscaler in ("Latent", "Lanczos"):
        result = app_context.engine.generate(request(checkpoint=kind, hr_upscaler=upscaler, batch_size=2))
        assert [item.image.size for item in result.images] == [(96, 96), (96, 96)]


# --- infotext and paste ------------------------------------------------------------------------------------------

def test_the_infotext_holds_a1111s_hires_fields_and_reads_back_into_the_same_picture(app_context):
    result = app_context.engine.generate(request(
        hr_upscaler="Lanczos", hr_sampler_name="DPM++ 2M", hr_scheduler="Karras", hr_cfg=5,
        hr_negative_prompt="dark, grainy", hr_resize_x=96, hr_resize_y=80))
    text = result.images[0].infotext
    assert ("Seed: 31, Size: 64x64, Model hash: " in text and "Denoising strength: 0.5, Hires resize: 96x80, "
            'Hires steps: 3, Hires upscaler: Lanczos, Hires sampler: DPM++ 2M, Hires schedule type: Karras, '
            'Hires negative prompt: "dark, grainy", Hires CFG Scale: 5, Version: ' in text)
    assert "Hires prompt" not in text  # the same as the prompt
    pasted = parameters_from_infotext(text)
    again = app_context.engine.generate(GenerationRequest(
        prompt=pasted.prompt, negative_prompt=pasted.negative_prompt, save_images=False, **pasted.fields))
    assert again.images[0].image.size == (96, 80)
    assert np.array_equal(pixels(again.images[0].image), pixels(result.images[0].image))


A1111_HIRES = (
    "1girl, masterpiece, white blouse\nNegative prompt: bad fingers\n"
    "Steps: 20, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 7, Seed: 2245042501, Size: 512x768, "
    "Model hash: d4c1719023, Model: animekawa_v10, Denoising strength: 0.6, Hires upscale: 2, Hires steps: 10, "
    "Hires upscaler: R-ESRGAN 4x+ Anime6B, Hires sampler: DPM++ 2M Karras, Version: v1.9.3")


def test_pasting_an_a1111_hires_infotext_fills_the_hires_fields():
    fields = parameters_from_infotext(A1111_HIRES).fields
    assert fields.items() >= {
        "enable_hr": True, "denoising_strength": 0.6, "hr_scale": 2.0, "hr_second_pass_steps": 10,
        "hr_upscaler": "R-ESRGAN 4x+ Anime6B", "hr_resize_x": 0, "hr_resize_y": 0, "hr_sampler_name": "DPM++ 2M",
        "hr_scheduler": "Karras", "hr_prompt": "", "hr_negative_prompt": "", "hr_cfg": None}.items()
    resized = parameters_from_infotext(A1111_HIRES.replace("Hires upscale: 2", "Hires resize: 1024x1536")).fields
    assert (resized["hr_resize_x"], resized["hr_resize_y"]) == (1024, 1536)
    plain = parameters_from_infotext("a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512")
    assert plain.fields["enable_hr"] is False and "hr_scale" not in plain.fields


# --- API and X/Y/Z ---------------------------------------------------------------------------------------------------

def test_enable_hr_through_the_api(api):
    import base64
    import io

    body = {"prompt": PROMPT, "steps": 3, "width": 64, "height": 64, "seed": 8, "sampler_name": "Euler",
            "enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent (antialiased)", "hr_second_pass_steps": 2,
            "denoising_strength": 0.6}
    response = api.post("/txt2img", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert Image.open(io.BytesIO(base64.b64decode(data["images"][0]))).size == (96, 96)
    info = json.loads(data["info"])
    assert ("Size: 64x64" in info["infotexts"][0] and "Denoising strength: 0.6, Hires upscale: 1.5, Hires steps: 2, "
            "Hires upscaler: Latent (antialiased)," in info["infotexts"][0])
    assert info["denoising_strength"] == 0.6
    refused = api.post("/txt2img", json={**body, "hr_upscaler": "Nope 4x"})
    assert refused.status_code == 400
    assert "Unknown upscaler 'Nope 4x'. Known upscalers: Latent, " in refused.json()["detail"]
    too_big = api.post("/txt2img", json={**body, "hr_scale": 70})
    assert too_big.status_code == 400 and "Upscale by must be" in too_big.json()["detail"]
    assert [mode["name"] for mode in api.get("/latent-upscale-modes").json()] == list(hires.LATENT_UPSCALE_MODES)


def test_xyz_plot_has_hires_axes(app_context):
    job = app_context.queue.run(GenerationJob(request(
        steps=2, hr_second_pass_steps=1, script_name="X/Y/Z plot", script_args={
            "x_type": "Hires upscaler", "x_values": "Latent, lanczos", "y_type": "Hires steps", "y_values": "1, 2",
            "include_lone_images": True})))
    assert job.error is None, job.error
    cells = job.result.images[1:]
    assert [cell.image.size for cell in cells] == [(96, 96)] * 4
    assert ["Hires upscaler: Lanczos" in cell.infotext for cell in cells] == [False, True, False, True]
    assert ["Hires steps: 2" in cell.infotext for cell in cells] == [False, False, True, True]
    refused = app_context.queue.run(GenerationJob(request(script_name="X/Y/Z plot", script_args={
        "x_type": "Hires sampler", "x_values": "Euler, Nope"})))
    assert isinstance(refused.error, UserError) and "Hires sampler" in str(refused.error)


# --- the page --------------------------------------------------------------------------------------------------------

def test_paste_hires_parameters_then_generate_at_the_hires_size_in_the_page(app_context, open_page):
    from playwright.sync_api import expect

    page = open_page(app_context, height=1400)
    page.fill("#txt2img_prompt textarea", "a lighthouse\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 12, "
              "Size: 64x64, Denoising strength: 0.55, Hires upscale: 1.5, Hires steps: 2, Hires upscaler: Lanczos")
    page.click("#txt2img_paste")
    expect(page.locator("#txt2img_enable_hr input")).to_be_checked(timeout=30_000)
    expect(page.locator("#txt2img_hr_scale input[type=number]")).to_have_value("1.5")
    expect(page.locator("#txt2img_hires_steps input[type=number]")).to_have_value("2")
    expect(page.locator("#txt2img_denoising_strength input[type=number]")).to_have_value("0.55")
    expect(page.locator("#txt2img_hr_upscaler input")).to_have_value("Lanczos")
    expect(page.locator("#txt2img_hr_finalres")).to_contain_text("from 64x64 to 96x96")
    set_slider(page, "txt2img_hr_resize_x", 128)
    expect(page.locator("#txt2img_hr_finalres")).to_contain_text("from 64x64 to 128x128")
    set_slider(page, "txt2img_hr_resize_x", 0)
    expect(page.locator("#txt2img_hr_finalres")).to_contain_text("from 64x64 to 96x96")
    page.click("#txt2img_generate")
    info = page.locator("#txt2img_html_info")
    expect(info).to_contain_text("Hires upscale: 1.5, Hires steps: 2, Hires upscaler: Lanczos", timeout=90_000)
    shown = page.locator("#txt2img_gallery img").first
    expect(shown).to_be_visible()
    page.wait_for_function("document.querySelector('#txt2img_gallery img').naturalWidth > 0")
    assert shown.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [96, 96]
    page.screenshot(path=str(app_context.paths.data_dir / "hires.png"), full_page=True)



def test_upscaler_files_added_while_the_page_is_open_are_offered_when_the_hires_options_open(app_context,
                                                                                             open_page):
    from playwright.sync_api import expect

    from tests.fixtures.upscale import write_esrgan

    page = open_page(app_context, height=1400)
    folder = app_context.paths.esrgan_dir
    folder.mkdir(parents=True, exist_ok=True)
    write_esrgan(folder / "fresh-4x.pth")
    app_context.upscaler_models.refresh()  # what the Extras tab's refresh button and /refresh-upscalers do
    page.click("#txt2img_enable_hr input")
    page.click("#txt2img_hr_upscaler input")
    expect(page.get_by_role("option", name="fresh-4x")).to_be_visible(timeout=30_000)
