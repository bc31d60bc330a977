"""Built-in scripts (paragoger/scripts): X/Y/Z plot, through the queue as the UI and the HTTP API run them."""
from __future__ import annotations

import pytest

from paragoger.core.payloads import GenerationJob
from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from paragoger.imaging.infotext import parse_infotext
from paragoger.imaging.metadata import read_infotext
from paragoger.scripts import xyz_grid


def small_request(**changes) -> GenerationRequest:
    base = dict(prompt="a red boat", steps=2, width=64, height=64, seed=7, sampler_name="Euler")
    return GenerationRequest(**{**base, **changes})


def generate(context, **changes):
    job = context.queue.run(GenerationJob(small_request(**changes)))
    if job.error is not None:
        raise job.error
    return job.result


def test_xyz_range_syntax():
    assert xyz_grid.parse_ints("1-5") == [1, 2, 3, 4, 5]
    assert xyz_grid.parse_ints("10-30 (+5)") == [10, 15, 20, 25, 30]
    assert xyz_grid.parse_ints("5-1") == [5, 4, 3, 2, 1]
    assert xyz_grid.parse_ints("30-10 (-10)") == [30, 20, 10]
    assert xyz_grid.parse_ints("1-3 [5]") == [1, 1, 2, 2, 3]
    assert xyz_grid.parse_ints("-1, 3, 7-8") == [-1, 3, 7, 8]
    assert xyz_grid.parse_floats("1-3 [5]") == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert xyz_grid.parse_floats("5-7 (+0.5)") == [5.0, 5.5, 6.0, 6.5, 7.0]
    assert xyz_grid.parse_floats("0.1, .5, 7") == [0.1, 0.5, 7.0]
    assert xyz_grid.parse_sizes("64x128, 96") == [(64, 128), (96, 96)]
    assert xyz_grid.split_list('a, "b, c" ,d,,') == ["a", "b, c", "d"]
    for bad in ("1-5 (+0)", "1-5 (-1)", "abc", "1.5"):
        with pytest.raises(UserError):
            xyz_grid.parse_ints(bad)


def test_xyz_steps_by_cfg_makes_the_right_grid_size_and_labels(app_context, monkeypatch):
    seen_labels = {}
    original = xyz_grid.api.annotate_grid

    def spy(grid, **kwargs):
        seen_labels.update(columns=list(kwargs["column_labels"]), rows=list(kwargs["row_labels"]))
        return original(grid, **kwargs)

    monkeypatch.setattr(xyz_grid.api, "annotate_grid", spy)
    result = generate(app_context, seed=-1, script_name="X/Y/Z plot", script_args={
        "x_type": "Steps", "x_values": "2-3", "y_type": "CFG Scale", "y_values": "5, 7, 9",
        "include_lone_images": True})
    assert seen_labels == {"columns": ["Steps: 2", "Steps: 3"],
                           "rows": ["CFG Scale: 5.0", "CFG Scale: 7.0", "CFG Scale: 9.0"]}
    grid, cells = result.images[0], result.images[1:]
    assert len(cells) == 6
    assert grid.image.width > 2 * 64 and grid.image.height > 3 * 64      # cells plus the label bands
    assert grid.image.width < 3 * 64 + 64 and grid.image.height < 4 * 64 + 64
    # -1 was resolved once: every cell shares the seed
    assert len({cell.seed for cell in cells}) == 1 and cells[0].seed != -1
    cell_fields = [parse_infotext(cell.infotext) for cell in cells]
    assert [(f["Steps"], f["CFG scale"]) for f in cell_fields] == [
        ("2", "5"), ("3", "5"), ("2", "7"), ("3", "7"), ("2", "9"), ("3", "9")]
    # the saved grid carries the first cell's infotext with the script's fields
    assert grid.path and result.grid_path == grid.path
    saved = parse_infotext(read_infotext(grid.path))
    assert saved["Steps"] == "2" and saved["Script"] == "X/Y/Z plot"
    assert saved["X Type"] == "Steps" and saved["X Values"] == "2-3" and saved["Y Type"] == "CFG Scale"


def test_xyz_with_z_axis_and_no_sub_images(app_context):
    result = generate(app_context, script_name="X/Y/Z plot", script_args={
        "x_type": "Seed", "x_values": "1,2", "z_type": "Size", "z_values": "64x64, 64x64",
        "include_sub_grids": True})
    grid, *sub_grids = result.images
    assert len(sub_grids) == 2
    assert grid.image.width > 2 * sub_grids[0].image.width - 1
    assert grid.image.height > sub_grids[0].image.height        # the Z label band


def test_xyz_prompt_sr(app_context):
    result = generate(app_context, prompt="a red boat", negative_prompt="red paint", script_name="X/Y/Z plot",
                      script_args={"x_type": "Prompt S/R", "x_values": "red, blue, green",
                                   "include_lone_images": True})
    cells = result.images[1:]
    assert [cell.prompt for cell in cells] == ["a red boat", "a blue boat", "a green boat"]
    assert [cell.negative_prompt for cell in cells] == ["red paint", "blue paint", "green paint"]
    assert len({cell.seed for cell in cells}) == 1


def test_xyz_prompt_order_makes_every_order_of_the_listed_parts(app_context):
    result = generate(app_context, prompt="a boat, red sky, calm sea, 4k", script_name="X/Y/Z plot",
                      script_args={"x_type": "Prompt order", "x_values": "red sky, calm sea, a boat",
                                   "include_lone_images": True})
    assert sorted(cell.prompt for cell in result.images[1:]) == sorted([
        "a boat, red sky, calm sea, 4k", "a boat, calm sea, red sky, 4k", "red sky, a boat, calm sea, 4k",
        "red sky, calm sea, a boat, 4k", "calm sea, a boat, red sky, 4k", "calm sea, red sky, a boat, 4k"])
    assert result.images[1].prompt == "red sky, calm sea, a boat, 4k"  # the order as listed comes first


def test_xyz_variation_seed_and_strength_axes(app_context):
    result = generate(app_context, script_name="X/Y/Z plot", seed=3,
                      script_args={"x_type": "Var. seed", "x_values": "10, 11", "y_type": "Var. strength",
                                   "y_values": "0, 0.5", "include_lone_images": True})
    cells = result.images[1:]
    assert [(cell.seed, cell.subseed) for cell in cells] == [(3, 10), (3, 11), (3, 10), (3, 11)]
    assert "Variation seed strength: 0.5" in cells[2].infotext and "Variation seed: 10" in cells[2].infotext


@pytest.mark.parametrize("args, expected", [
    ({"x_type": "Sampler", "x_values": "Euler, Nope sampler"}, "X axis (Sampler)"),
    ({"x_type": "Steps", "x_values": "1-5 (+0)"}, "X axis (Steps)"),
    ({"x_type": "Steps", "x_values": "ten"}, "'ten' is not a whole number"),
    ({"x_type": "Seed", "x_values": "1", "y_type": "Prompt S/R", "y_values": "purple, blue"},
     "did not find 'purple'"),
    ({"x_type": "Schedule type", "x_values": "Nope"}, "Unknown schedule type 'Nope'"),
    ({"x_type": "Wobble", "x_values": "1"}, "no axis 'Wobble'"),
    ({"x_type": "Size", "x_values": "65x64"}, "X/Y/Z plot cell"),
])
def test_xyz_bad_axis_text_is_a_clear_error(app_context, monkeypatch, args, expected):
    calls = []
    monkeypatch.setattr(app_context.engine, "generate", lambda *a, **k: calls.append(1))
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        generate(app_context, script_name="X/Y/Z plot", script_args=args)
    assert calls == []          # nothing was generated


def test_xyz_is_listed_for_both_tabs(app_context):
    listed = app_context.scripts.api_list()
    assert "x/y/z plot" in listed["txt2img"] and "x/y/z plot" in listed["img2img"]


# --- Prompt matrix -------------------------------------------------------------------------------------------------

def test_prompt_matrix_combinations(app_context):
    from paragoger.scripts.prompt_matrix import combinations

    assert combinations("a cat|in a hat|on a mat") == [
        "a cat", "a cat, in a hat", "a cat, on a mat", "a cat, in a hat, on a mat"]
    assert combinations("a cat|hat", at_start=True, joiner=" ") == ["a cat", "hat a cat"]

    result = generate(app_context, prompt="a boat|red|at night", script_name="Prompt matrix")
    grid, *cells = result.images
    assert [cell.prompt for cell in cells] == ["a boat", "a boat, red", "a boat, at night",
                                               "a boat, red, at night"]
    assert len({cell.seed for cell in cells}) == 1
    assert grid.path and grid.image.width > 2 * 64 and grid.image.height > 2 * 64
    assert parse_infotext(read_infotext(grid.path))["Script"] == "Prompt matrix"
    with pytest.raises(UserError, match="no '\\|'"):
        generate(app_context, prompt="a boat", script_name="Prompt matrix")


# --- Prompts from file or textbox ----------------------------------------------------------------------------------

def test_prompts_from_file_line_format(app_context):
    from paragoger.scripts.prompts_from_file import parse_line

    assert parse_line('--prompt "a cat" --negative_prompt "blurry, dark" --steps 20 --cfg_scale 7 --seed 1 '
                      '--width 512 --height 512 --sampler_name "Euler a"') == {
        "prompt": "a cat", "negative_prompt": "blurry, dark", "steps": 20, "cfg_scale": 7.0, "seed": 1,
        "width": 512, "height": 512, "sampler_name": "Euler a"}
    assert parse_line("  a plain prompt, with commas  ") == {"prompt": "a plain prompt, with commas"}
    assert parse_line('--styles "one" "two" --do_not_save_samples') == {"styles": ["one", "two"],
                                                                         "save_images": False}

    text = 'a lighthouse\n\n--prompt "a boat" --steps 3 --seed 11 --sampler_name "Euler a"\n'
    result = generate(app_context, prompt="", seed=5, script_name="Prompts from file or textbox",
                      script_args={"prompt_txt": text})
    assert [(i.prompt, i.seed) for i in result.images] == [("a lighthouse", 5), ("a boat", 11)]
    fields = parse_infotext(result.images[1].infotext)
    assert fields["Steps"] == "3" and fields["Sampler"] == "Euler a"

    iterated = generate(app_context, prompt="at sea", seed=5, script_name="Prompts from file or textbox",
                        script_args={"prompt_txt": "a\nb", "checkbox_iterate": True})
    assert [(i.prompt, i.seed) for i in iterated.images] == [("a at sea", 5), ("b at sea", 6)]

    for bad, reason in (("ok\n--stepz 3", "line 2: unknown option --stepz"),
                        ("--steps many", "line 1: --steps 'many' is not a valid int"),
                        ('--sampler_name "No such"', "prompt 1")):
        with pytest.raises(UserError, match=reason):
            generate(app_context, script_name="Prompts from file or textbox", script_args={"prompt_txt": bad})


# --- Loopback ------------------------------------------------------------------------------------------------------

def test_loopback_feeds_each_result_back(app_context, monkeypatch):
    from PIL import Image

    seen = []
    original = app_context.engine.generate

    def spy(request, job=None):
        seen.append((request.init_images[0], round(request.denoising_strength, 4), request.seed))
        return original(request, job)

    monkeypatch.setattr(app_context.engine, "generate", spy)
    start = Image.new("RGB", (64, 64), "gray")
    # steps=8: every pass keeps at least one denoising step (0.125 * 8)
    result = generate(app_context, mode="img2img", init_images=[start], denoising_strength=0.5, seed=3, steps=8,
                      script_name="Loopback", script_args={"loops": 3, "denoising_strength_change_factor": 0.5})
    assert len(result.images) == 3 and result.grid is not None
    assert [s for _, s, _ in seen] == [0.5, 0.25, 0.125]
    assert [seed for _, _, seed in seen] == [3, 4, 5]
    assert seen[0][0] is start
    assert seen[1][0] is result.images[0].image and seen[2][0] is result.images[1].image
    assert "loopback" not in app_context.scripts.api_list()["txt2img"]
