"""ControlNet beyond a single generation: the X/Y/Z plot's "[ControlNet] ..." axes change the first enabled unit
per cell, the img2img batch takes each input's control picture from a ControlNet input folder by file name, and
the ↙️ button fills a unit's controls from an infotext's "ControlNet 0" field."""
from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from paragoger.control.units import ControlUnit
from paragoger.core.batch import BatchRequest
from paragoger.core.payloads import Img2ImgBatchJob
from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from tests.fixtures.control import write_controlnet

MODEL = "control_tiny_sd15_canny"


def drawing(seed: int) -> Image.Image:
    """A 64 px picture with a box and a ball placed by ``seed``."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (64, 64), (230, 230, 230))
    draw = ImageDraw.Draw(image)
    x, y = (int(v) for v in rng.integers(4, 30, 2))
    draw.rectangle((x, y, x + 30, y + 28), outline=(10, 10, 10), width=3)
    draw.ellipse((64 - y - 20, x, 64 - y, x + 20), fill=(40, 90, 200))
    return image


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decoded(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")).astype(int)


@pytest.fixture
def with_model(app_context):
    write_controlnet(app_context.paths.controlnet_dirs[-2] / f"{MODEL}.safetensors", "sd1", seed=5)
    app_context.control_models.library.refresh()
    return app_context


def xyz_body(units: list, script_args) -> dict:
    return {"prompt": "a blue ball in a box", "steps": 3, "width": 64, "height": 64, "seed": 11,
            "sampler_name": "Euler", "script_name": "x/y/z plot", "script_args": script_args,
            "alwayson_scripts": {"controlnet": {"args": units}}}


def api_unit(**changes) -> dict:
    return {"enabled": True, "image": b64(drawing(1)), "module": "none", "model": MODEL, "weight": 1.0, **changes}


def test_a_weight_axis_makes_one_picture_per_weight_each_saying_its_weight(with_model, api):
    answer = api.post("/txt2img", json=xyz_body([api_unit()], {
        "x_type": "[ControlNet] Weight", "x_values": "0.25, 1.5", "include_lone_images": True}))
    assert answer.status_code == 200, answer.text
    _, light, strong = answer.json()["images"]
    assert np.abs(decoded(light) - decoded(strong)).max() > 2
    infotexts = json.loads(answer.json()["info"])["infotexts"]
    assert "X Type: [ControlNet] Weight" in infotexts[0]
    assert [re.search(r"ControlNet 0: \"Module: none, Model: [^,]+, Weight: ([\d.]+)", t)[1]
            for t in infotexts[1:]] == ["0.25", "1.5"]


def test_controlnet_axes_by_position_and_their_refusals(with_model, api):
    """A1111's clients send script_args as a list; a ControlNet axis needs an enabled unit, and names a model or
    mode this app knows; nothing is generated when it cannot run."""
    by_position = api.post("/txt2img", json=xyz_body([api_unit()], [
        "[ControlNet] Guidance End", "0.5, 1", [], "Nothing", "", [], "Nothing", "", [], True, True]))
    assert by_position.status_code == 200, by_position.text
    infotexts = json.loads(by_position.json()["info"])["infotexts"]
    assert ["Guidance End: 0.5" in t for t in infotexts[1:]] == [True, False]
    assert ["Guidance End: 1," in t for t in infotexts[1:]] == [False, True]

    no_unit = api.post("/txt2img", json=xyz_body([api_unit(enabled=False)],
                                                 {"x_type": "[ControlNet] Weight", "x_values": "0.5, 1"}))
    assert no_unit.status_code == 400 and "no unit is enabled" in no_unit.json()["detail"]
    unknown = api.post("/txt2img", json=xyz_body([api_unit()], {"x_type": "[ControlNet] Model",
                                                              "x_values": f"{MODEL}, control_elsewhere"}))
    assert unknown.status_code == 400 and "control_elsewhere" in unknown.json()["detail"]
    bad_mode = api.post("/txt2img", json=xyz_body([api_unit()], {"x_type": "[ControlNet] Control Mode",
                                                               "x_values": "Balanced, Loudest"}))
    assert bad_mode.status_code == 400 and "Loudest" in bad_mode.json()["detail"]


# --- img2img batch ----------------------------------------------------------------------------------------------

def batch_template(**unit) -> GenerationRequest:
    return GenerationRequest(mode="img2img", prompt="ink drawing", steps=3, width=64, height=64, seed=5,
                             sampler_name="Euler", denoising_strength=0.9, init_images=[drawing(0)],
                             controlnet_units=[ControlUnit(enabled=False, model=MODEL),
                                               ControlUnit(module="none", model=MODEL, weight=1.5, **unit)])


def generated(context, request) -> np.ndarray:
    return np.asarray(context.engine.generate(request.copy(save_images=False)).images[0].image.convert("RGB"))


def test_the_controlnet_input_folder_gives_each_input_its_control_picture_by_name(with_model, tmp_path):
    source, controls, out = tmp_path / "in", tmp_path / "control", tmp_path / "out"
    source.mkdir(), controls.mkdir()
    drawing(1).save(source / "a.png")
    drawing(2).save(source / "b.png")
    drawing(3).save(controls / "a.jpg")   # b has none: its unit takes b itself, as img2img does
    template = batch_template()
    job = with_model.queue.run(Img2ImgBatchJob(BatchRequest(template, source, out, control_dir=controls)))
    assert job.error is None and sorted(p.name for p in job.result.written) == ["a.png", "b.png"]
    batch_a = np.asarray(Image.open(out / "a.png").convert("RGB"))
    batch_b = np.asarray(Image.open(out / "b.png").convert("RGB"))

    control_a = Image.open(controls / "a.jpg").convert("RGB")
    units = template.controlnet_units
    with_control_a = template.copy(init_images=[drawing(1)],
                                   controlnet_units=[units[0], units[1].copy(image=control_a)])
    assert np.array_equal(batch_a, generated(with_model, with_control_a))
    assert np.array_equal(batch_b, generated(with_model, template.copy(init_images=[drawing(2)])))
    assert not np.array_equal(batch_a, generated(with_model, template.copy(init_images=[drawing(1)])))
    assert template.controlnet_units[1].image is None   # the template's unit was not changed


def test_a_controlnet_input_folder_needs_an_enabled_unit(with_model, tmp_path):
    (tmp_path / "in").mkdir(), (tmp_path / "control").mkdir()
    drawing(1).save(tmp_path / "in" / "a.png")
    template = batch_template().copy(controlnet_units=[ControlUnit(enabled=False, model=MODEL)])
    job = with_model.queue.run(Img2ImgBatchJob(BatchRequest(template, tmp_path / "in", tmp_path / "out",
                                                            control_dir=tmp_path / "control")))
    assert isinstance(job.error, UserError) and "no ControlNet unit is enabled" in str(job.error)
    missing = with_model.queue.run(Img2ImgBatchJob(BatchRequest(batch_template(), tmp_path / "in", tmp_path / "out",
                                                                control_dir=tmp_path / "nope")))
    assert isinstance(missing.error, UserError) and "nope" in str(missing.error)


def test_the_batch_tab_passes_the_controlnet_folder_and_keeps_it_inside_the_data_folder(data_dir, start_context,
                                                                                          tmp_path):
    from paragoger.ui.app import build_ui
    from tests.test_extensions_ui import call_handler, handler

    process = handler(build_ui(start_context("--listen")), "process", "img2img_batch_controlnet_input_dir")
    (data_dir / "in").mkdir()
    wanted = {"img2img_batch_input_dir": "in", "img2img_batch_output_dir": "out",
              "img2img_batch_controlnet_input_dir": str(tmp_path), "img2img_steps": 2, "img2img_width": 64,
              "img2img_height": 64}
    _, error, _ = call_handler(process, wanted)[-1]
    assert "outside" in error and "control" in error


# --- paste ------------------------------------------------------------------------------------------------------

INFOTEXT = ('a blue ball\nSteps: 3, Sampler: Euler, Seed: 11, Size: 64x64, ControlNet 0: "Module: canny, '
            f'Model: {MODEL} [0badc0de], Weight: 0.65, Resize Mode: Just Resize, Low Vram: False, Processor Res: 256, '
            'Threshold A: 90, Threshold B: 180, Guidance Start: 0.1, Guidance End: 0.8, Pixel Perfect: True, '
            'Control Mode: My prompt is more important"')


def test_paste_fills_unit_0_from_the_infotext_and_enables_it(with_model):
    from paragoger.ui.app import build_ui
    from tests.test_extensions_ui import call_handler, handler

    paste = handler(build_ui(with_model), "paste", "txt2img_prompt")
    updates, = call_handler(paste, {"txt2img_prompt": INFOTEXT})
    by_id = {getattr(c, "elem_id", None): value for c, value in updates.items()}
    unit = "txt2img_controlnet_ControlNet-0"
    title = with_model.control_models.library.find(MODEL).title   # this app's copy, whatever the pasted hash
    assert by_id[f"{unit}_enable_checkbox"] is True
    assert by_id[f"{unit}_control_weight_slider"] == 0.65 and by_id[f"{unit}_model_dropdown"] == title
    assert by_id[f"{unit}_preprocessor_dropdown"] == "canny"
    assert (by_id[f"{unit}_start_control_step_slider"], by_id[f"{unit}_ending_control_step_slider"]) == (0.1, 0.8)
    assert by_id[f"{unit}_resize_mode_radio"] == "Just Resize"
    assert by_id[f"{unit}_control_mode_radio"] == "My prompt is more important"
    assert by_id[f"{unit}_pixel_perfect_checkbox"] is True
    threshold_a = by_id[f"{unit}_threshold_A_slider"]   # shown, as canny's, at the pasted value
    assert threshold_a.value == 90 and threshold_a.visible
    # unit 1 is not named: left as it is
    assert by_id["txt2img_controlnet_ControlNet-1_enable_checkbox"] == {"__type__": "update"}
