"""The page's Generate handlers build the request by name: every control fills its own GenerationRequest field
(so adding a control never shifts another's value), and a job from the img2img tab is an img2img job at
GET /sdapi/v1/jobs/{id}, as one from the API is."""
from __future__ import annotations

from paragoger.prompts import PromptStyle
from paragoger.ui.app import build_ui
from tests.test_extensions_ui import call_handler, handler
from tests.test_img2img_core import picture, square_mask


def generate_on_page(context, tab: str, wanted: dict, source: str | None = None):
    """Run the tab's Generate handler as Gradio does, with ``wanted`` (elem_id -> value) and the img2img sub-tab
    ``source``: the job it queued and the handler's last update (gallery, ..., error)."""
    fn = handler(build_ui(context), "generate", f"{tab}_prompt")
    if source is not None:  # a gr.State without an elem_id: the sub-tab whose picture the request takes
        wanted = {**wanted, next(c for c in fn.inputs if c.get_block_name() == "state" and c.value == "img2img"):
                  source}
    updates = call_handler(fn, wanted)
    assert updates[-1][-1] == ""  # no error shown
    job_id = next(update[3] for update in updates if update[3])
    return context.queue.get(job_id), updates[-1]


def assert_fields(request, expected: dict) -> None:
    got = {name: getattr(request, name) for name in expected}
    assert got == expected


# Each control with a value unlike its default and unlike its neighbours', and the request field it must fill.
TXT2IMG = {
    "txt2img_prompt": ("prompt", "a lighthouse"), "txt2img_neg_prompt": ("negative_prompt", "fog"),
    "txt2img_styles": ("styles", ["ink"]), "txt2img_sampling": ("sampler_name", "Euler"),
    "txt2img_scheduler": ("scheduler", "Karras"), "txt2img_steps": ("steps", 2), "txt2img_width": ("width", 64),
    "txt2img_height": ("height", 72), "txt2img_batch_count": ("n_iter", 2), "txt2img_batch_size": ("batch_size", 3),
    "txt2img_cfg_scale": ("cfg_scale", 6.5), "txt2img_seed": ("seed", 1234), "txt2img_subseed": ("subseed", 99),
    "txt2img_subseed_strength": ("subseed_strength", 0.25), "txt2img_seed_resize_from_w": ("seed_resize_from_w", 56),
    "txt2img_seed_resize_from_h": ("seed_resize_from_h", 48),
    # Hires. fix
    "txt2img_enable_hr": ("enable_hr", True), "txt2img_hr_upscaler": ("hr_upscaler", "Lanczos"),
    "txt2img_hires_steps": ("hr_second_pass_steps", 1), "txt2img_denoising_strength": ("denoising_strength", 0.45),
    "txt2img_hr_scale": ("hr_scale", 1.5), "txt2img_hr_resize_x": ("hr_resize_x", 80),
    "txt2img_hr_resize_y": ("hr_resize_y", 88), "txt2img_hr_sampler": ("hr_sampler_name", "DPM++ 2M"),
    "txt2img_hr_scheduler": ("hr_scheduler", "Simple"), "txt2img_hr_cfg": ("hr_cfg", 5.5),
    "txt2img_hr_prompt": ("hr_prompt", "a lighthouse at dusk"),
    "txt2img_hr_negative_prompt": ("hr_negative_prompt", "rain"),
}


def test_every_txt2img_control_fills_its_own_request_field(app_context):
    app_context.styles.save_style(PromptStyle("ink", "{prompt}, ink drawing", ""))
    job, (gallery, *_) = generate_on_page(app_context, "txt2img",
                                          {elem_id: value for elem_id, (_, value) in TXT2IMG.items()})
    assert job.kind == "txt2img"
    assert_fields(job.payload.request, dict(TXT2IMG.values()))
    assert len(gallery) == 1 + 6  # the grid and 2 batches of 3 pictures


IMG2IMG = {
    "img2img_prompt": ("prompt", "a harbour"), "img2img_steps": ("steps", 2), "img2img_width": ("width", 64),
    "img2img_height": ("height", 64), "img2img_seed": ("seed", 77), "img2img_cfg_scale": ("cfg_scale", 5.0),
    "resize_mode": ("resize_mode", 1), "img2img_denoising_strength": ("denoising_strength", 0.42),
    "img2img_mask_blur": ("mask_blur", 7), "img2img_mask_mode": ("inpainting_mask_invert", 1),
    "img2img_inpainting_fill": ("inpainting_fill", 0), "img2img_inpaint_full_res": ("inpaint_full_res", True),
    "img2img_inpaint_full_res_padding": ("inpaint_full_res_padding", 40),
    "img2img_image_cfg_scale": ("image_cfg_scale", 1.25),
}


def test_every_img2img_control_fills_its_own_request_field(app_context):
    base, mask = picture(seed=1), square_mask()
    wanted = {elem_id: value for elem_id, (_, value) in IMG2IMG.items()}
    job, _ = generate_on_page(app_context, "img2img", {**wanted, "img_inpaint_base": base, "img_inpaint_mask": mask},
                              source="inpaint_upload")
    request = job.payload.request
    assert job.kind == "img2img"
    assert_fields(request, dict(IMG2IMG.values()))
    assert request.init_images[0].tobytes() == base.tobytes() and request.mask is mask


def test_each_outpaint_side_comes_from_its_own_box(app_context):
    job, _ = generate_on_page(app_context, "img2img", {
        "img2img_prompt": "a wider harbour", "img2img_steps": 2, "img2img_image": picture(),
        "img2img_outpaint_left": 8, "img2img_outpaint_right": 16, "img2img_outpaint_top": 24,
        "img2img_outpaint_bottom": 32, "img2img_outpaint_fill": "noise"})
    request = job.payload.request
    assert request.extra_params["Outpaint"] == "8 16 24 32 noise"
    assert (request.width, request.height) == (64 + 8 + 16, 64 + 24 + 32)


def test_a_job_from_the_img2img_tab_is_an_img2img_job_at_get_jobs(api, app_context):
    for tab, picture_input in (("img2img", {"img2img_image": picture()}), ("txt2img", {})):
        job, _ = generate_on_page(app_context, tab, {f"{tab}_prompt": "a quay", f"{tab}_steps": 2,
                                                     f"{tab}_width": 64, f"{tab}_height": 64, **picture_input})
        report = api.get(f"/jobs/{job.id}").json()
        assert (report["kind"], report["state"]) == (tab, "done")


EXTRAS = {
    "extras_upscaling_resize": ("upscaling_resize", 2.5), "extras_upscaling_resize_w": ("upscaling_resize_w", 96),
    "extras_upscaling_resize_h": ("upscaling_resize_h", 80), "extras_upscaling_crop": ("upscaling_crop", False),
    "extras_upscaler_1": ("upscaler_1", "Lanczos"), "extras_upscaler_2": ("upscaler_2", "Nearest"),
    "extras_upscaler_2_visibility": ("extras_upscaler_2_visibility", 0.3),
}


def test_every_extras_control_fills_its_own_request_field(app_context, tmp_path):
    from paragoger.core.extras import RESIZE_TO

    picture().save(tmp_path / "harbour.png")
    fn = handler(build_ui(app_context), "run", "extras_image")
    resize_mode = next(c for c in fn.inputs if c.get_block_name() == "state" and c.value == 0)  # "Scale by" tab
    wanted = {elem_id: value for elem_id, (_, value) in EXTRAS.items()}
    *_, (gallery, _, _, error) = call_handler(fn, {**wanted, "extras_image": str(tmp_path / "harbour.png"),
                                                   resize_mode: RESIZE_TO})
    assert error == "" and len(gallery) == 1
    [job] = [job for job in app_context.queue.finished() if job.kind == "extras"]
    assert_fields(job.payload.request, {**dict(EXTRAS.values()), "resize_mode": RESIZE_TO})
