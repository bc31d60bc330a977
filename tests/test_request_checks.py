"""One check for every request (core/checks.py) and the Limits settings: a request that cannot run, or would hold the
machine for an unreasonable time, is refused at once with a 4xx naming the field or the limit and its setting, the
same way from the API, from extensions' services and from the engine; the next good request works at once."""
import json
import time

import pytest

from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError

GOOD = {"prompt": "a red bicycle", "steps": 2, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler"}


def post_raw(api, route: str, text: str):
    """A body as Python's json writes NaN and Infinity (not valid JSON, but what many clients send)."""
    return api.post(route, content=text, headers={"content-type": "application/json"})


def assert_refused_at_once_and_next_works(api, send, *, names: str):
    started = time.monotonic()
    response = send()
    assert 400 <= response.status_code < 500, response.text[:300]
    assert time.monotonic() - started < 1.0
    assert names in response.text
    started = time.monotonic()
    assert api.post("/txt2img", json=GOOD).status_code == 200
    assert time.monotonic() - started < 30  # nothing left running in front of it
    return response


@pytest.mark.parametrize("route, body, field", [
    ("/txt2img", {**GOOD, "steps": float("nan")}, "steps"),
    ("/txt2img", {**GOOD, "width": float("inf")}, "width"),
    ("/txt2img", {**GOOD, "seed": float("-inf")}, "seed"),
    ("/txt2img", {**GOOD, "subseed_strength": float("nan")}, "subseed_strength"),
    ("/txt2img", {**GOOD, "enable_hr": True, "hr_scale": float("nan")}, "hr_scale"),
    ("/img2img", {**GOOD, "denoising_strength": float("nan"), "init_images": []}, "denoising_strength"),
    ("/extra-single-image", {"upscaling_resize": float("inf"), "image": ""}, "upscaling_resize"),
    ("/txt2img", {**GOOD, "script_args": [1, float("nan")]}, "script_args[1]"),
    ("/txt2img", {**GOOD, "override_settings": {"some_key": float("inf")}}, "override_settings.some_key"),
    ("/txt2img", {**GOOD, "unknown_field": float("nan")}, "unknown_field"),
    ("/options", {"jpeg_quality": float("nan")}, "jpeg_quality"),
    ("/options", {"jpeg_quality": float("inf")}, "jpeg_quality"),
    ("/options", {"default_cfg_scale": float("nan")}, "default_cfg_scale"),
])
def test_nan_and_infinity_in_any_numeric_field_answer_4xx_naming_the_field(api, route, body, field):
    response = assert_refused_at_once_and_next_works(api, lambda: post_raw(api, route, json.dumps(body)),
                                                     names=field)
    assert response.status_code in (400, 422)
    assert "nan" not in api.get("/options").text.lower()  # nothing was stored


def test_a_3_mb_prompt_is_refused_at_once_naming_the_limit_and_its_setting(api):
    response = assert_refused_at_once_and_next_works(
        api, lambda: api.post("/txt2img", json={**GOOD, "prompt": "a red bicycle, " * 200_000}),
        names="limit_prompt_tokens")
    assert response.status_code == 400 and "characters" in response.json()["detail"]


def test_prompt_tokens_are_counted_after_styles_and_without_network_tags(api, app_context):
    api.post("/options", json={"limit_prompt_tokens": 100})
    words = "red " * 90  # 90 tokens
    assert api.post("/txt2img", json={**GOOD, "prompt": words + "<lora:some_lora_name_that_is_long:1>" * 20}
                    ).status_code == 200  # tags are not encoded
    from paragoger.prompts.styles import PromptStyle

    app_context.styles.save_style(PromptStyle("long", "blue " * 20, ""))  # + "," between prompt and style
    response = api.post("/txt2img", json={**GOOD, "prompt": words, "styles": ["long"]})
    assert response.status_code == 400, response.text
    assert "111 tokens" in response.json()["detail"] and "limit_prompt_tokens" in response.json()["detail"]
    schedule = api.post("/txt2img", json={**GOOD, "prompt": f"[{words}:{'green ' * 120}:1]"})
    assert schedule.status_code == 400 and "120 tokens" in schedule.json()["detail"]  # each scheduled text
    negative = api.post("/txt2img", json={**GOOD, "negative_prompt": "ugly " * 101})
    assert negative.status_code == 400 and "negative_prompt" in negative.json()["detail"]


@pytest.mark.parametrize("settings, change, setting", [
    ({"limit_steps": 10}, {"steps": 11}, "limit_steps"),
    ({"limit_steps": 10}, {"enable_hr": True, "hr_second_pass_steps": 11}, "limit_steps"),
    ({"limit_images": 6}, {"batch_size": 2, "n_iter": 4}, "limit_images"),
    ({"limit_image_pixels": 96 * 96}, {"width": 128, "height": 128}, "limit_image_pixels"),
    ({"limit_image_pixels": 96 * 96}, {"enable_hr": True, "hr_scale": 2}, "limit_image_pixels"),
])
def test_limits_are_settings_and_the_message_names_the_limit_and_the_setting(api, settings, change, setting):
    assert api.post("/options", json=settings).status_code == 200
    response = assert_refused_at_once_and_next_works(api, lambda: api.post("/txt2img", json={**GOOD, **change}),
                                                     names=setting)
    assert str(next(iter(settings.values()))) in response.json()["detail"]
    # a request cannot lift a limit for itself
    overridden = api.post("/txt2img", json={**GOOD, **change, "override_settings": {setting: 10 ** 6}})
    assert overridden.status_code == 400


def test_extras_respect_the_pixel_limit_after_upscaling(api):
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    api.post("/options", json={"limit_image_pixels": 100 * 100})
    body = {"image": image, "upscaler_1": "Lanczos", "upscaling_resize": 2}
    refused = api.post("/extra-single-image", json=body)
    assert refused.status_code == 400 and "limit_image_pixels" in refused.json()["detail"]
    assert "128x128" in refused.json()["detail"]
    assert api.post("/extra-single-image", json={**body, "upscaling_resize": 1.5}).status_code == 200


def test_the_api_extensions_and_the_engine_refuse_the_same_request_for_the_same_reason(api, app_context):
    """One check: what the API refuses, ``ext.app.generate`` and the engine refuse with the same message."""
    from paragoger.ext.services import AppServices

    app_context.apply_options({"limit_steps": 10})
    services = AppServices(app_context)
    for change, key in (({"steps": 11}, "limit_steps"), ({"sampler_name": "Bogus"}, "unknown_sampler"),
                        ({"styles": ["no such style"]}, "unknown_style"),
                        ({"override_settings": {"sd_model_checkpoint": "missing.safetensors"}},
                         "checkpoint_not_found"),
                        ({"override_settings": {"sd_vae": "missing.vae.pt"}}, "vae_not_found"),
                        ({"script_name": "no such script"}, "script_not_found"),
                        ({"override_settings": {"outdir_txt2img_samples": "../../elsewhere"}}, "path_outside_folder"),
                        ({"cfg_scale": float("nan")}, "number_invalid")):
        fields = {**GOOD, **change}
        if "cfg_scale" not in change:
            response = api.post("/txt2img", json=fields)
            assert response.status_code in (400, 404) and response.json()["key"] == key, response.text[:300]
        with pytest.raises(UserError) as from_extension:
            services.generate(**fields)
        assert from_extension.value.key == key
        with pytest.raises(UserError) as from_engine:
            app_context.engine.generate(GenerationRequest(**fields))
        assert from_engine.value.key == key
    assert app_context.queue.waiting_count() == 0


def test_a_whole_float_is_taken_for_an_int_field_and_a_fraction_is_refused(app_context):
    checked = app_context.check(GenerationRequest(**{**GOOD, "steps": 3.0}))
    assert checked.steps == 3 and type(checked.steps) is int
    with pytest.raises(UserError) as err:
        app_context.check(GenerationRequest(**{**GOOD, "steps": 2.5}))
    assert err.value.key == "number_not_whole" and "steps" in str(err.value)


def test_a_seed_beyond_what_the_generators_take_is_refused_before_queueing(api):
    response = api.post("/txt2img", json={**GOOD, "seed": 10 ** 30})
    assert response.status_code == 400 and "seed" in response.json()["detail"]


def test_the_prompt_counter_stays_quick_for_a_3_mb_paste_and_shows_it_is_over_the_limit(app_context):
    started = time.monotonic()
    tokens, _ = app_context.token_count("a red bicycle, " * 200_000)
    assert time.monotonic() - started < 1.0
    assert tokens > app_context.settings["limit_prompt_tokens"]


def test_a_scripts_whole_plan_counts_against_the_pictures_limit_before_the_first_picture(api, app_context):
    api.post("/options", json={"limit_images": 5})
    body = {**GOOD, "batch_size": 1, "script_name": "x/y/z plot",
            "script_args": {"x_type": "Seed", "x_values": "1, 2, 3", "y_type": "Steps", "y_values": "1, 2"}}
    response = api.post("/txt2img", json=body)
    assert response.status_code == 400, response.text[:300]
    assert "6 pictures" in response.json()["detail"] and "limit_images" in response.json()["detail"]
    assert app_context.queue.finished()[-1].progress.step == 0  # nothing was sampled
    body["script_args"]["y_values"] = "1"
    assert api.post("/txt2img", json=body).status_code == 200  # 3 pictures
