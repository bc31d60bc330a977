"""Upscalers: built-ins by name, model files (ESRGAN, Real-ESRGAN, Compact) from A1111's folders read through
spandrel without unpickling anything unsafe, tiled runs, and the Extras work (scale by / to, two upscalers,
infotext, saving, batch from a folder) through the job queue."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from paragoger.cli import parse_args
from paragoger.context import AppContext
from paragoger.devices import choose_device
from paragoger.core.extras import ExtrasRequest
from paragoger.errors import UserError
from paragoger.imaging.metadata import read_infotext
from paragoger.upscale import UpscalerRegistry
from paragoger.upscale.spandrel_models import SpandrelModels, build_model, read_state_dict
from tests.fixtures import upscale

ORIGINAL_INFOTEXT = "a red house\nNegative prompt: fog\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 48x40"


def picture(width=48, height=40) -> Image.Image:
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 4, height // 4, width // 2, height // 2), fill=(220, 30, 40))
    draw.ellipse((width // 2, height // 3, width - 4, height - 4), fill=(20, 90, 200))
    return image


def cpu_models(tile=192, overlap=8) -> SpandrelModels:
    return SpandrelModels(choose_device("cpu"), lambda: (tile, overlap))


# Registry ------------------------------------------------------------------------------------------------------

def test_builtin_upscalers_come_first_and_an_unknown_name_lists_the_known_ones():
    registry = UpscalerRegistry()
    assert registry.names() == ["None", "Lanczos", "Nearest"]
    assert registry.get("lanczos").name == "Lanczos"
    assert registry.upscale(picture(), 2, "Nearest").size == (96, 80)
    with pytest.raises(UserError, match="Unknown upscaler 'Foo'. Known upscalers: None, Lanczos, Nearest"):
        registry.get("Foo")


def test_model_files_are_listed_under_the_names_a1111_shows(upscaler_files, app_context):
    by_name = {u.name: u for u in app_context.upscalers.all()}
    assert list(by_name)[:3] == ["None", "Lanczos", "Nearest"]
    assert by_name["4x-tiny-esrgan"].model_path == upscaler_files["esrgan"]
    assert by_name["4x-tiny-esrgan"].model_name == "ESRGAN"
    assert by_name["R-ESRGAN 4x+"].model_path == upscaler_files["realesrgan"]   # A1111's name for that file
    assert by_name["2x-tiny-compact"].scale == 2.0                              # read from the name until loaded
    assert all(u.source == "model" for name, u in by_name.items() if name not in ("None", "Lanczos", "Nearest"))


def test_refresh_finds_new_files_and_forgets_removed_ones(upscaler_files, app_context):
    folder = upscaler_files["esrgan"].parent
    upscale.write_compact(folder / "8x_later.safetensors", scale=2)
    upscaler_files["esrgan"].unlink()
    app_context.upscaler_models.refresh()
    names = app_context.upscalers.names()
    assert "8x_later" in names and "4x-tiny-esrgan" not in names
    assert names[:3] == ["None", "Lanczos", "Nearest"]


def test_models_path_flags_replace_the_folders_as_in_a1111(tmp_path, data_dir):
    elsewhere = tmp_path / "my-esrgan"
    upscale.write_esrgan(elsewhere / "4x_Elsewhere.pth")
    context = AppContext(parse_args(["--data-dir", str(data_dir), "--esrgan-models-path", str(elsewhere)], env={}))
    try:
        assert context.paths.esrgan_dir == elsewhere.resolve()
        assert "4x_Elsewhere" in context.upscalers.names()
    finally:
        context.close()


# Reading files through spandrel -------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["old", "new"])
def test_esrgan_files_of_either_key_layout_are_read_as_esrgan_with_their_scale(tmp_path, style):
    for scale in (2, 4):
        path = upscale.write_esrgan(tmp_path / f"{style}-{scale}.pth", scale=scale, style=style)
        model = build_model(read_state_dict(path), path.name)
        assert (model.architecture.id, model.scale) == ("ESRGAN", scale)


def test_compact_safetensors_is_read_as_real_esrgan_compact(tmp_path):
    path = upscale.write_compact(tmp_path / "compact.safetensors", scale=4)
    model = build_model(read_state_dict(path), path.name)
    assert (model.architecture.id, model.scale) == ("Compact", 4)


@pytest.mark.parametrize("kind", ["esrgan", "realesrgan", "compact"])
def test_model_upscalers_give_exactly_the_asked_size_and_learn_their_native_scale(upscaler_files, app_context,
                                                                                  kind):
    upscaler = next(u for u in app_context.upscalers.all() if u.model_path == upscaler_files[kind])
    result = upscaler.upscale(picture(48, 40), 2.5)
    assert result.size == (120, 100) and result.mode == "RGB"
    assert upscaler.scale == (2.0 if kind == "compact" else 4.0)


def test_a_scale_beyond_the_model_runs_it_again_on_its_own_output(upscaler_files):
    models = cpu_models()
    path = upscaler_files["compact"]  # 2x
    twice = models.upscale(path, models.upscale(path, picture(), 2, name="c"), 2, name="c")
    assert np.array_equal(np.asarray(models.upscale(path, picture(), 4, name="c")), np.asarray(twice))


def test_compact_output_looks_like_the_picture_enlarged(upscaler_files):
    result = cpu_models().upscale(upscaler_files["compact"], picture(), 2, name="c")
    nearest = picture().resize(result.size, Image.Resampling.NEAREST)
    assert np.abs(np.asarray(result, dtype=int) - np.asarray(nearest, dtype=int)).mean() < 12


@pytest.mark.parametrize("kind", ["compact", "esrgan"])
def test_tiled_upscaling_gives_the_pixels_of_one_untiled_pass(upscaler_files, kind):
    image = picture(100, 70)
    whole = np.asarray(cpu_models(tile=0).upscale(upscaler_files[kind], image, 4, name="x"), dtype=int)
    tiled = np.asarray(cpu_models(tile=32, overlap=8).upscale(upscaler_files[kind], image, 4, name="x"), dtype=int)
    difference = np.abs(whole - tiled)
    if kind == "compact":  # its reach (4 pixels) fits in the overlap: the very same pixels
        assert difference.max() <= 1
    else:                  # ESRGAN sees further than 8 pixels: seams differ a little, nowhere visibly
        assert difference.mean() < 0.5 and difference.max() <= 8


def test_a_corrupt_file_says_so_and_the_app_goes_on(upscaler_files, app_context):
    folder = upscaler_files["esrgan"].parent
    (folder / "4x_broken.pth").write_bytes(b"this is not a model")
    (folder / "4x_cut.safetensors").write_bytes(upscaler_files["compact"].read_bytes()[:300])
    app_context.upscaler_models.refresh()
    for name in ("4x_broken", "4x_cut"):
        with pytest.raises(UserError, match=f"Could not read upscaler model '{name}.*'.*truncated or not a model"):
            app_context.upscalers.get(name).upscale(picture(), 2)
    assert app_context.upscalers.get("4x-tiny-esrgan").upscale(picture(), 2).size == (96, 80)


def test_a_file_of_no_known_architecture_is_named_as_such(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "mystery.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}, str(path))
    with pytest.raises(UserError, match="'mystery.safetensors' is not an upscaler model this app can read"):
        cpu_models().upscale(path, picture(), 2, name="mystery")


class RunsACommand:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "it-ran"
    path = tmp_path / "4x_evil.pth"
    with open(path, "wb") as file:
        pickle.dump({"params": RunsACommand(marker)}, file)
    with pytest.raises(UserError, match=r"'4x_evil.pth' was refused: its pickle asks to run '(posix|os)\.system'"):
        cpu_models().upscale(path, picture(), 2, name="4x_evil")
    assert not marker.exists()


def test_a_picture_too_large_for_one_pass_is_refused_before_running(upscaler_files):
    big = Image.new("RGB", (4200, 4200))
    with pytest.raises(UserError, match="would make a 16800x16800 picture"):
        cpu_models().upscale(upscaler_files["esrgan"], big, 2, name="4x-tiny-esrgan")


# Extras: the postprocessing job ---------------------------------------------------------------------------------

def test_extras_saves_the_picture_with_its_own_infotext_and_the_postprocess_fields(upscaler_files, app_context):
    image = picture()
    image.info["parameters"] = ORIGINAL_INFOTEXT
    result = app_context.run_extras(ExtrasRequest(images=[image], upscaler_1="R-ESRGAN 4x+", upscaling_resize=2))
    assert result.images[0].size == (96, 80)
    [path] = result.paths
    assert path.parent == app_context.paths.outputs_dir / "extras-images" and path.name == "00000.png"
    assert read_infotext(path) == (ORIGINAL_INFOTEXT
                                   + ", Postprocess upscale by: 2, Postprocess upscaler: R-ESRGAN 4x+")
    assert result.postprocess_texts == ["Postprocess upscale by: 2, Postprocess upscaler: R-ESRGAN 4x+"]
    assert [job.kind for job in app_context.queue.finished()] == ["extras"]


def test_a_picture_without_infotext_gets_the_postprocess_fields_alone(app_context):
    result = app_context.run_extras(ExtrasRequest(images=[picture()], upscaler_1="Lanczos", upscaling_resize=1.5))
    assert result.images[0].size == (72, 60)
    assert read_infotext(result.paths[0]) == "Postprocess upscale by: 1.5, Postprocess upscaler: Lanczos"


def test_scale_to_with_crop_gives_exactly_that_size_and_without_keeps_the_proportions(app_context):
    common = dict(images=[picture(48, 40)], resize_mode=1, upscaling_resize_w=96, upscaling_resize_h=96,
                  upscaler_1="Lanczos", save=False)
    cropped = app_context.run_extras(ExtrasRequest(**common, upscaling_crop=True))
    assert cropped.images[0].size == (96, 96)
    assert cropped.infotexts[0] == ("Postprocess upscale to: 96x96, Postprocess crop to fit: True, "
                                    "Postprocess upscaler: Lanczos")
    whole = app_context.run_extras(ExtrasRequest(**common, upscaling_crop=False))
    assert whole.images[0].size == (115, 96) and whole.paths == []


def test_upscaler_2_is_blended_in_by_its_visibility(app_context):
    request = ExtrasRequest(images=[picture()], upscaler_1="Nearest", upscaler_2="Lanczos",
                            extras_upscaler_2_visibility=0.4, upscaling_resize=2, save=False)
    result = app_context.run_extras(request)
    expected = Image.blend(picture().resize((96, 80), Image.Resampling.NEAREST),
                           picture().resize((96, 80), Image.Resampling.LANCZOS), 0.4)
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected))
    assert result.infotexts[0].endswith("Postprocess upscaler: Nearest, Postprocess upscaler 2: Lanczos")


def test_upscaler_1_none_leaves_the_picture_as_it_is(app_context):
    result = app_context.run_extras(ExtrasRequest(images=[picture()], upscaler_1="None", save=False))
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(picture())) and result.infotexts == [""]


@pytest.mark.parametrize("changes, message", [
    (dict(upscaler_1="R-ESRGAN 9x"), "Unknown upscaler 'R-ESRGAN 9x'"),
    (dict(upscaling_resize=50), "Upscale by must be more than 0 and at most 8"),
    (dict(upscaling_resize=0), "Upscale by must be more than 0"),
    (dict(resize_mode=1, upscaling_resize_w=100000), "Upscale to width and height must be 1 to 8192"),
    (dict(resize_mode=3), "Unknown resize mode 3"),
    (dict(extras_upscaler_2_visibility=1.5), "Upscaler 2 visibility must be between 0 and 1"),
    (dict(gfpgan_visibility=0.5), "Face restoration"),
    (dict(images=[]), "Choose a picture to upscale"),
])
def test_bad_extras_requests_are_refused_before_queueing(app_context, changes, message):
    request = ExtrasRequest(**{"images": [picture()], "upscaler_1": "Lanczos", **changes})
    with pytest.raises(UserError, match=message):
        app_context.submit_extras(request)
    assert app_context.queue.finished() == []


def test_batch_from_a_folder_keeps_the_names_and_skips_what_it_cannot_read(app_context, tmp_path):
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    picture().save(source / "house.png")
    picture(30, 30).save(source / "garden.jpg")
    (source / "broken.png").write_bytes(b"not a picture")
    request = ExtrasRequest(input_dir=source, output_dir=target, upscaler_1="Lanczos", upscaling_resize=2,
                            show_extras_results=False)
    result = app_context.run_extras(request)
    assert sorted(p.name for p in target.iterdir()) == ["00000-garden.png", "00001-house.png"]
    assert Image.open(target / "00001-house.png").size == (96, 80)
    assert result.skipped == [("broken.png", "not a readable picture (UnidentifiedImageError)")]
    assert result.images == []  # show_extras_results off: nothing kept in memory
