"""ControlNet preprocessors: sd-webui-controlnet's module names and aliases, maps equal to OpenCV's for the same
picture, Pixel Perfect, depth and normal maps from the project's depth estimators, and the messages for what is
missing or broken."""
import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from paragoger.control.pictures import control_tensor, preview
from paragoger.control.preprocessors import default_preprocessors, pixel_perfect_resolution
from paragoger.errors import UserError
from paragoger.model_manager.depth import DepthEstimators
from tests.fixtures.annotators import write_flat_depth_estimator, write_midas_annotator
from tests.fixtures.depth import write_depth_estimator


def shapes(width, height, seed=0):
    """A picture with edges to find: a few filled shapes on a gradient, plus a little noise."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), (40, 90, 160))
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        x0, y0 = rng.integers(0, width - 8), rng.integers(0, height - 8)
        x1, y1 = x0 + rng.integers(6, width // 2), y0 + rng.integers(6, height // 2)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=color)
    pixels = np.asarray(image).astype(int) + rng.integers(-6, 7, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")


@pytest.fixture
def registry(tmp_path):
    return default_preprocessors(annotator_dir=tmp_path / "annotators")


def pixels(image):
    return np.asarray(image)


def grey(image):
    """The map's one channel, after checking all three are the same."""
    values = pixels(image)
    assert image.mode == "RGB" and (values == values[:, :, :1]).all()
    return values[:, :, 0]


@pytest.mark.parametrize("size, resolution, interpolation", [((64, 32), 64, cv2.INTER_CUBIC),    # enlarged
                                                              ((256, 128), 64, cv2.INTER_AREA)])  # shrunk
def test_canny_equals_opencv_canny_of_the_picture_brought_to_the_resolution(registry, size, resolution,
                                                                            interpolation):
    picture = shapes(*size)
    resized = cv2.resize(pixels(picture), (128, 64), interpolation=interpolation)  # short side 64
    edges = grey(registry.detect("canny", picture, resolution=resolution, threshold_a=50, threshold_b=150))
    assert np.array_equal(edges, cv2.Canny(resized, 50, 150))
    assert 50 < np.count_nonzero(edges) < edges.size // 2
    # unset thresholds (None, or the API's -1) are the module's defaults, 100 and 200
    for unset in (None, -1):
        default = grey(registry.detect("canny", picture, resolution=resolution, threshold_a=unset,
                                       threshold_b=unset))
        assert np.array_equal(default, cv2.Canny(resized, 100, 200))


@pytest.mark.parametrize("size, resolution, expected", [((333, 500), 512, (512, 769)),   # 768.77 -> 769
                                                        ((1000, 600), 512, (853, 512)),  # 853.33 -> 853
                                                        ((90, 60), 64, (96, 64))])
def test_maps_have_the_short_side_at_the_resolution(registry, size, resolution, expected):
    picture = Image.new("RGB", size, "white")
    for module in ("canny", "threshold", "scribble_xdog", "blur_gaussian"):
        assert registry.detect(module, picture, resolution=resolution).size == expected


def test_invert_turns_black_lines_on_white_into_white_on_black_at_the_pictures_size(registry):
    picture = shapes(90, 50)
    inverted = registry.detect("invert (from white bg & black line)", picture, resolution=256)
    assert inverted.size == (90, 50) and np.array_equal(pixels(inverted), 255 - pixels(picture))


def test_threshold_is_white_where_every_channel_is_above_it(registry):
    picture = shapes(128, 64)  # short side already 64: not resized
    expected = np.where(pixels(picture).min(axis=2) > 100, 255, 0)
    assert np.array_equal(grey(registry.detect("threshold", picture, resolution=64, threshold_a=100)), expected)
    default = np.where(pixels(picture).min(axis=2) > 127, 255, 0)
    assert np.array_equal(grey(registry.detect("threshold", picture, resolution=64)), default)


def test_tile_resample_shrinks_by_the_rate_and_keeps_the_picture_below_1_1(registry):
    picture = shapes(100, 60)
    halved = registry.detect("tile_resample", picture, resolution=512, threshold_a=2)
    assert np.array_equal(pixels(halved), cv2.resize(pixels(picture), (50, 30), interpolation=cv2.INTER_AREA))
    for rate in (None, 1.0, 1.05):
        assert np.array_equal(pixels(registry.detect("tile_resample", picture, threshold_a=rate)), pixels(picture))


def test_blur_gaussian_equals_opencv_blur_with_that_sigma(registry):
    picture = shapes(128, 64)
    blurred = registry.detect("blur_gaussian", picture, resolution=64, threshold_a=3)
    assert np.array_equal(pixels(blurred), cv2.GaussianBlur(pixels(picture), (0, 0), 3.0))
    default = registry.detect("blur_gaussian", picture, resolution=64)
    assert np.array_equal(pixels(default), cv2.GaussianBlur(pixels(picture), (0, 0), 9.0))
    # a sigma below the slider's minimum is raised to it instead of failing inside OpenCV
    assert registry.detect("blur_gaussian", picture, resolution=64, threshold_a=0).size == (128, 64)


def test_scribble_xdog_marks_dark_lines(registry):
    picture = Image.new("RGB", (128, 64), "white")
    ImageDraw.Draw(picture).line((10, 32, 118, 32), fill="black", width=2)
    scribble = grey(registry.detect("scribble_xdog", picture, resolution=64))
    assert set(np.unique(scribble)) == {0, 255}
    assert scribble[31:34, 20:100].max() == 255 and scribble[:20].max() == 0 and scribble[45:].max() == 0


@pytest.mark.parametrize("image_size, target_size, mode, expected", [
    # portrait 512x768 into a 512x512 generation: width ratio 1, height ratio 2/3, short side 512
    ((512, 768), (512, 512), "Just Resize", 512),
    ((512, 768), (512, 512), "Crop and Resize", 512),
    ((512, 768), (512, 512), "Resize and Fill", 341),    # 512 * 2/3 = 341.33
    # landscape 1024x512 into 768x512: width ratio 0.75, height ratio 1, short side 512
    ((1024, 512), (768, 512), "Crop and Resize", 512),
    ((1024, 512), (768, 512), "Resize and Fill", 384),   # 512 * 0.75
    ((1024, 512), (768, 512), 2, 384),                   # the API's number for Resize and Fill
    ((1024, 512), (768, 512), "Outer Fit (Shrink to Fit)", 384),  # the extension's old name
    # a small picture for a larger generation: 300x200 into 900x900, ratios 3 and 4.5, short side 200
    ((300, 200), (900, 900), "Just Resize", 900),
    ((300, 200), (900, 900), "Crop and Resize", 900),
    ((300, 200), (900, 900), "Resize and Fill", 600),
])
def test_pixel_perfect_resolution(image_size, target_size, mode, expected):
    assert pixel_perfect_resolution(image_size, target_size, mode) == expected


def test_pixel_perfect_map_covers_the_generation_size_when_cropping(registry):
    picture = shapes(150, 100)  # ratios 384 / 150 = 2.56 and 320 / 100 = 3.2: scaled by 3.2 to cover
    resolution = pixel_perfect_resolution(picture.size, (384, 320), "Crop and Resize")
    assert resolution == 320
    assert registry.detect("canny", picture, resolution=resolution).size == (480, 320)  # cropped to 384 wide


def test_an_unknown_resize_mode_is_a_user_error():
    with pytest.raises(UserError) as raised:
        pixel_perfect_resolution((64, 64), (64, 64), "Stretch")
    assert raised.value.key == "control_resize_mode_unknown" and "Resize and Fill" in str(raised.value)


def test_depth_midas_draws_the_estimators_depth_white_near(tmp_path):
    estimators = DepthEstimators(tmp_path / "depth")
    write_depth_estimator(tmp_path / "depth" / "tiny-dpt", seed=3)
    registry = default_preprocessors(annotator_dir=tmp_path / "annotators", depth_estimators=estimators)
    picture = shapes(96, 64)
    depth = grey(registry.detect("depth", picture, resolution=64))
    assert depth.shape == (64, 96) and depth.min() == 0 and depth.max() == 255
    # nearer (larger predicted depth) is brighter
    raw = estimators.get().predict([picture.resize((96, 64))])[0].detach()
    raw = torch.nn.functional.interpolate(raw[None, None], size=(64, 96), mode="bicubic")[0, 0].numpy()
    assert np.corrcoef(raw.ravel(), depth.ravel())[0, 1] > 0.95
    assert np.array_equal(grey(registry.detect("depth_midas", picture, resolution=64)), depth)


def test_depth_midas_reads_the_extensions_own_midas_file(tmp_path):
    write_midas_annotator(tmp_path / "annotators" / "midas", seed=1)  # the extension's downloads/midas layout
    registry = default_preprocessors(annotator_dir=tmp_path / "annotators")
    depth = grey(registry.detect("depth_midas", shapes(64, 64), resolution=64))
    assert depth.shape == (64, 64) and depth.min() == 0 and depth.max() == 255


def test_normal_midas_of_a_flat_depth_is_flat(tmp_path):
    write_flat_depth_estimator(tmp_path / "depth" / "flat")
    registry = default_preprocessors(annotator_dir=tmp_path / "annotators",
                                     depth_estimators=DepthEstimators(tmp_path / "depth"))
    normal = pixels(registry.detect("normal_midas", shapes(96, 64), resolution=64))
    assert normal.shape == (64, 96, 3) and (normal == (127, 127, 255)).all()


def test_normal_midas_tilts_where_depth_changes_and_its_threshold_flattens_the_background(tmp_path):
    write_depth_estimator(tmp_path / "depth" / "tiny-dpt", seed=3)
    registry = default_preprocessors(annotator_dir=tmp_path / "annotators",
                                     depth_estimators=DepthEstimators(tmp_path / "depth"))
    picture = shapes(96, 64)
    normal = pixels(registry.detect("normal_midas", picture, resolution=64, threshold_a=0))
    assert normal.shape == (64, 96, 3) and (normal != (127, 127, 255)).any(axis=2).mean() > 0.5
    background = pixels(registry.detect("normal_midas", picture, resolution=64, threshold_a=1))
    assert (background == (127, 127, 255)).all(axis=2).mean() > 0.99


def test_a_missing_depth_model_names_the_file_and_the_folders(tmp_path):
    registry = default_preprocessors(annotator_dir=tmp_path / "annotators",
                                     depth_estimators=DepthEstimators(tmp_path / "depth"))
    for module in ("depth_midas", "normal_midas"):
        with pytest.raises(UserError) as raised:
            registry.detect(module, shapes(64, 64))
        message = str(raised.value)
        assert "dpt_hybrid-midas-501f0c75.pt" in message and str(tmp_path / "annotators") in message
        assert str(tmp_path / "depth") in message and module in message
    with pytest.raises(UserError) as raised:
        registry.detect("depth_anything", shapes(64, 64))
    assert raised.value.key == "control_annotator_missing"
    assert str(tmp_path / "annotators" / "depth_anything") in str(raised.value)


@pytest.mark.parametrize("module, file", [("lineart_realistic", "sk_model.pth"), ("lineart_anime", "netG.pth"),
                                          ("softedge_hed", "ControlNetHED.pth"),
                                          ("softedge_pidinet", "table5_pidinet.pth"),
                                          ("openpose", "body_pose_model.pth"),
                                          ("mlsd", "mlsd_large_512_fp32.pth"),
                                          ("seg_ofade20k", "250_16_swin_l_oneformer_ade20k_160k.pth")])
def test_network_annotators_say_which_file_goes_where_and_that_they_cannot_run_yet(tmp_path, module, file):
    annotators = tmp_path / "annotators"
    registry = default_preprocessors(annotator_dir=annotators)
    assert file in registry.get(module).needs_files
    for present in (False, True):
        if present:
            annotators.mkdir(exist_ok=True)
            (annotators / file).write_bytes(b"weights")
        with pytest.raises(UserError) as raised:
            registry.detect(module, shapes(64, 64))
        message = str(raised.value)
        assert file in message and str(annotators) in message and "cannot run it yet" in message


@pytest.mark.parametrize("alias, name", [("depth", "depth_midas"), ("invert", "invert (from white bg & black line)"),
                                         ("lineart", "lineart_realistic"), ("normal_map", "normal_midas"),
                                         ("inpaint", "inpaint_global_harmonious"), ("hed", "softedge_hed"),
                                         ("pidinet", "softedge_pidinet"), ("oneformer_ade20k", "seg_ofade20k"),
                                         ("Canny", "canny"), ("canny", "canny")])
def test_the_extensions_internal_names_find_the_module(registry, alias, name):
    assert registry.get(alias).name == name


def test_module_list_and_sliders_are_the_extensions(registry):
    names = registry.names()
    assert names[:2] == ["none", "invert (from white bg & black line)"]
    assert {"canny", "threshold", "tile_resample", "blur_gaussian", "scribble_xdog", "inpaint_only",
            "inpaint_global_harmonious", "depth_midas", "depth_anything", "normal_midas"} <= set(names)
    canny = registry.get("canny")
    assert (canny.threshold_a.label, canny.threshold_a.default, canny.threshold_b.default) == \
        ("Canny Low Threshold", 100, 200)
    assert registry.get("tile_resample").threshold_a[:4] == ("Down Sampling Rate", 1.0, 1.0, 8.0)
    assert registry.get("normal_midas").threshold_a.default == 0.4
    assert registry.get("none").threshold_a is None and registry.get("none").resolution is None


def test_an_unknown_module_is_a_user_error_listing_the_known_ones(registry):
    with pytest.raises(UserError) as raised:
        registry.detect("sharpen", shapes(64, 64))
    assert raised.value.key == "control_module_unknown" and raised.value.params["name"] == "sharpen"
    assert "canny" in str(raised.value)


def test_any_picture_mode_goes_in_and_rgb_comes_out(registry):
    picture = shapes(128, 64)
    transparent = picture.convert("RGBA")
    transparent.putalpha(0)  # fully transparent: laid over white, as the extension does
    white_edges = grey(registry.detect("canny", transparent, resolution=64))
    assert white_edges.max() == 0
    assert np.array_equal(grey(registry.detect("invert", picture.convert("L"), resolution=64)),
                          255 - pixels(picture.convert("L")))
    palette = picture.convert("P", palette=Image.Palette.ADAPTIVE)
    assert np.array_equal(pixels(registry.detect("none", palette)), pixels(palette.convert("RGB")))
    for mode in ("RGBA", "L", "P", "1", "I;16"):
        assert registry.detect("canny", picture.convert(mode), resolution=64).mode == "RGB"


def test_a_broken_picture_is_a_user_error_with_the_reason(registry):
    data = io.BytesIO()
    shapes(64, 64).save(data, format="PNG")
    truncated = Image.open(io.BytesIO(data.getvalue()[:200]))
    with pytest.raises(UserError) as raised:
        registry.detect("canny", truncated)
    assert raised.value.key == "control_image_unreadable" and "could not be read" in str(raised.value)
    with pytest.raises(UserError):
        registry.detect("canny", b"not a picture")


def test_the_inpaint_map_carries_the_mask_as_alpha_and_becomes_minus_one_there(registry):
    picture = shapes(64, 48)
    mask = Image.new("L", (64, 48), 0)
    mask.paste(200, (16, 8, 40, 30))  # above 127: masked
    mask.paste(100, (0, 40, 64, 48))  # below 128: not masked
    for module in ("inpaint", "inpaint_only"):
        inpaint = registry.detect(module, picture, mask=mask)
        assert inpaint.mode == "RGBA" and inpaint.size == (64, 48)
        assert np.array_equal(pixels(inpaint)[:, :, :3], pixels(picture))
        masked = pixels(mask) >= 128
        assert np.array_equal(pixels(inpaint)[:, :, 3], np.where(masked, 255, 0))
        tensor = control_tensor(inpaint)
        assert tensor.shape == (1, 3, 48, 64)
        assert (tensor[0, :, torch.from_numpy(masked)] == -1).all()
        expected = torch.from_numpy(pixels(picture) / 255.0).float().permute(2, 0, 1)
        assert torch.allclose(tensor[0, :, ~torch.from_numpy(masked)], expected[:, ~torch.from_numpy(masked)])
        shown = pixels(preview(inpaint))
        assert shown[20, 20, 3] == 128 and shown[0, 0, 3] == 255  # masked half transparent, the rest opaque
    nothing_masked = registry.detect("inpaint_only", picture)
    assert (control_tensor(nothing_masked) >= 0).all()


def test_a_plain_map_becomes_values_from_0_to_1():
    picture = shapes(32, 16)
    tensor = control_tensor(picture)
    assert tensor.shape == (1, 3, 16, 32)
    assert torch.allclose(tensor[0].permute(1, 2, 0), torch.from_numpy(pixels(picture) / 255.0).float())


def test_resolution_outside_the_range_is_a_user_error(registry):
    with pytest.raises(UserError) as raised:
        registry.detect("canny", shapes(64, 64), resolution=100_000)
    assert raised.value.key == "control_resolution_out_of_range"
    assert registry.detect("canny", shapes(64, 64), resolution=-1).size == (512, 512)  # -1: the default
