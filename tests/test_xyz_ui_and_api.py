"""X/Y/Z plot as people start it: from the txt2img page's Script dropdown (the Generate handler with the
script's widgets) and from the HTTP API (``script_name``/``script_args``), each giving one labelled grid of the
right size saved with its infotext."""
from __future__ import annotations

import base64
import io
import json

from PIL import Image

from paragoger.imaging.infotext import parse_infotext
from paragoger.imaging.metadata import read_infotext
from paragoger.ui.app import build_ui
from tests.test_extensions_ui import call_handler, handler

CELL = 64


def test_xyz_from_the_page_script_dropdown(app_context):
    demo = build_ui(app_context)
    generate = handler(demo, "generate", "txt2img_prompt")
    xyz = "txt2img_script_x_y_z_plot"
    wanted = {"txt2img_prompt": "a lighthouse", "txt2img_steps": 2, "txt2img_width": CELL, "txt2img_height": CELL,
              "txt2img_sampling": "Euler", "txt2img_seed": 5, "txt2img_script": "X/Y/Z plot",
              f"{xyz}_x_type": "Steps", f"{xyz}_x_values": "1-3", f"{xyz}_y_type": "CFG Scale",
              f"{xyz}_y_values": "3, 7", f"{xyz}_include_lone_images": True}
    *_, last = call_handler(generate, wanted)
    gallery, *_, error = last
    assert error == ""
    grid_path, *cell_paths = [item[0] for item in gallery]
    grid = Image.open(grid_path)
    # 3 columns x 2 rows of 64 px cells, plus the legend band on top (Steps) and at the left (CFG Scale)
    assert grid.width > 3 * CELL and grid.height > 2 * CELL
    assert grid.width - 3 * CELL < 3 * CELL and grid.height - 2 * CELL < 2 * CELL
    fields = parse_infotext(read_infotext(grid_path))
    assert fields["X Type"] == "Steps" and fields["X Values"] == "1-3" and fields["Y Type"] == "CFG Scale"
    cells = [parse_infotext(read_infotext(path)) for path in cell_paths]
    assert [(c["Steps"], c["CFG scale"]) for c in cells] == [("1", "3"), ("2", "3"), ("3", "3"),
                                                             ("1", "7"), ("2", "7"), ("3", "7")]


def test_xyz_from_the_http_api_with_arguments_by_name_and_by_position(api):
    base = {"prompt": "a lighthouse", "steps": 2, "width": CELL, "height": CELL, "sampler_name": "Euler",
            "seed": 5, "script_name": "x/y/z plot"}
    by_name = api.post("/txt2img", json={**base, "script_args": {"x_type": "Seed", "x_values": "1, 2",
                                                                 "y_type": "Sampler", "y_values": "Euler, DDIM"}})
    assert by_name.status_code == 200, by_name.text
    grid = Image.open(io.BytesIO(base64.b64decode(by_name.json()["images"][0])))
    assert 2 * CELL < grid.width < 4 * CELL and 2 * CELL < grid.height < 4 * CELL
    info = json.loads(by_name.json()["info"])
    assert "X Type: Seed" in info["infotexts"][0] and "Y Type: Sampler" in info["infotexts"][0]

    # A1111's clients send script_args as a list in the script's input order
    by_position = api.post("/txt2img", json={**base, "script_args": ["Steps", "1-4", [], "Nothing", "", []]})
    assert by_position.status_code == 200, by_position.text
    strip = Image.open(io.BytesIO(base64.b64decode(by_position.json()["images"][0])))
    assert strip.width == 4 * CELL and CELL < strip.height < 2 * CELL  # one row: legend on top only

    bad = api.post("/txt2img", json={**base, "script_args": {"x_type": "Steps", "x_values": "ten"}})
    assert bad.status_code == 400 and "Steps" in bad.json()["detail"]


def test_xyz_axis_numbers_as_automatic1111_clients_send_them(api):
    """A1111's dropdown numbers differ between txt2img (4 Steps, 6 CFG Scale) and img2img (5 CFG Scale), and its
    clients send all 18 inputs, "Use text inputs instead of dropdowns" last."""
    base = {"prompt": "a lighthouse", "steps": 2, "width": CELL, "height": CELL, "sampler_name": "Euler", "seed": 5,
            "script_name": "x/y/z plot"}
    tail = [True, True, False, False, False, False, False, 0, False]
    answer = api.post("/txt2img", json={**base, "script_args": [4, "1-2", [], 6, "3, 7", [], 0, "", [], *tail]})
    assert answer.status_code == 200, answer.text
    infotexts = json.loads(answer.json()["info"])["infotexts"]
    assert "X Type: Steps" in infotexts[0] and "Y Type: CFG Scale" in infotexts[0]
    assert [("Steps: 1" in t, "CFG scale: 7" in t) for t in infotexts[1:]] == [(True, False), (False, False),
                                                                               (True, True), (False, True)]
    unknown = api.post("/txt2img", json={**base, "script_args": [40, "1", [], 0, "", [], 0, "", [], *tail]})
    assert unknown.status_code == 400 and "by name" in unknown.json()["detail"]
