"""IP-Adapter units (ip-adapter_sd15, ip-adapter-plus_sd15) in models/ControlNet with their CLIP image encoder in
models/clip_vision (or image_encoder/ beside them): the same pixels as diffusers' StableDiffusionPipeline after
``load_ip_adapter`` with the same picture, scale and seed; weight 0 is the plain picture; the shared UNet is left
exactly as it was; an adapter without an encoder is refused naming the folders to put it in."""
import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline
from PIL import Image

from paragoger.control.models import detect_control_model, read_weights
from paragoger.control.units import ControlUnit
from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from tests.fixtures.ip_adapter import write_image_encoder, write_ip_adapter

PROMPT, NEGATIVE = "a lighthouse on a cliff, oil painting", "blurry, low quality"
SEED, STEPS = 1234, 4
PLAIN, PLUS = "ip-adapter_sd15.safetensors", "ip-adapter-plus_sd15.bin"


def picture(seed: int = 7) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


@pytest.fixture(scope="module")
def adapter_files(tmp_path_factory):
    """The files once: models/ControlNet's two adapters and models/clip_vision's encoder folder."""
    root = tmp_path_factory.mktemp("ip-adapter")
    write_ip_adapter(root / "ControlNet" / PLAIN)
    write_ip_adapter(root / "ControlNet" / PLUS, plus=True, seed=41)
    write_image_encoder(root / "clip_vision" / "CLIP-ViT-H-14-laion2B-s32B-b79K")
    return root


@pytest.fixture
def engine(app_context, adapter_files):
    import shutil
    models = app_context.paths.models_dir
    shutil.copytree(adapter_files / "ControlNet", models / "ControlNet", dirs_exist_ok=True)
    shutil.copytree(adapter_files / "clip_vision", models / "clip_vision", dirs_exist_ok=True)
    app_context.control_models.library.refresh()
    return app_context.engine


def generate(engine, *units, **changes):
    base = dict(prompt=PROMPT, negative_prompt=NEGATIVE, steps=STEPS, width=64, height=64, seed=SEED, cfg_scale=7.0,
                sampler_name="Euler", save_images=False, controlnet_units=list(units))
    return engine.generate(GenerationRequest(**{**base, **changes})).images[0].image


def unit(model="ip-adapter_sd15", **fields):
    return ControlUnit(module="ip-adapter_clip_sd15", model=model, image=picture(), **fields)


def reference(tiny_model_file, adapter_files, weight_name, scale, pipeline=StableDiffusionPipeline, **call):
    """diffusers' own IP-Adapter path, from the same local files (offline)."""
    pipe = pipeline.from_pretrained(tiny_model_file("sd1", "diffusers"), safety_checker=None, local_files_only=True)
    pipe.load_ip_adapter(str(adapter_files), subfolder="ControlNet", weight_name=weight_name,
                         image_encoder_folder=str(adapter_files / "clip_vision" / "CLIP-ViT-H-14-laion2B-s32B-b79K"),
                         local_files_only=True)
    pipe.set_ip_adapter_scale(scale)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    arguments = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=7.0,
                     generator=torch.Generator("cpu").manual_seed(SEED), ip_adapter_image=picture())
    if pipeline is StableDiffusionPipeline:
        arguments.update(width=64, height=64)
    return pipe(**{**arguments, **call}).images[0]


def assert_same(ours, theirs):
    assert pixels(theirs).std() > 5, "the reference is flat: the comparison would prove nothing"
    assert np.abs(pixels(ours) - pixels(theirs)).max() <= 1


def test_both_file_layouts_are_recognised_as_sd15_ip_adapters(adapter_files):
    for name in (PLAIN, PLUS):
        state = read_weights(adapter_files / "ControlNet" / name, name)
        assert detect_control_model(state, name) == ("ip_adapter", "sd1")


@pytest.mark.parametrize("weight_name, model, weight", [
    (PLAIN, "ip-adapter_sd15", 1.0),
    (PLAIN, "ip-adapter_sd15", 0.6),
    (PLUS, "ip-adapter-plus_sd15", 0.8),
], ids=["plain", "plain-weight", "plus"])
def test_an_ip_adapter_unit_gives_the_pixels_of_diffusers_ip_adapter_pipeline(engine, tiny_model_file,
                                                                               adapter_files, weight_name, model,
                                                                               weight):
    title = engine.control.find_model(model).title   # as clients name it: "ip-adapter_sd15 [hash]"
    ours = generate(engine, unit(model=title, weight=weight))
    theirs = reference(tiny_model_file, adapter_files, weight_name, weight)
    assert_same(ours, theirs)
    assert np.abs(pixels(ours) - pixels(generate(engine))).max() > 10, "the adapter changed nothing"


def test_img2img_with_an_ip_adapter_unit_gives_the_pixels_of_diffusers_img2img(engine, tiny_model_file,
                                                                              adapter_files):
    start = picture(9).resize((64, 64))
    ours = generate(engine, unit(), mode="img2img", init_images=[start], denoising_strength=0.6, steps=5)
    theirs = reference(tiny_model_file, adapter_files, PLAIN, 1.0, pipeline=StableDiffusionImg2ImgPipeline,
                       image=start, strength=0.6, num_inference_steps=5)
    assert_same(ours, theirs)


def test_weight_zero_gives_the_plain_picture_and_the_unet_is_left_as_it_was(engine, app_context):
    plain = generate(engine)
    unet = engine.load_model(None, None, app_context.settings).unet
    processors, projection = dict(unet.attn_processors), unet.encoder_hid_proj
    hid_type = unet.config.encoder_hid_dim_type

    assert pixels(generate(engine, unit(weight=0.0))).tobytes() == pixels(plain).tobytes()
    generate(engine, unit())

    after = unet.attn_processors
    assert after.keys() == processors.keys() and all(after[name] is processors[name] for name in processors)
    assert unet.encoder_hid_proj is projection and unet.config.encoder_hid_dim_type == hid_type
    assert np.asarray(generate(engine)).tobytes() == np.asarray(plain).tobytes()


def test_the_unet_is_restored_when_the_generation_fails(engine, app_context, monkeypatch):
    unet = engine.load_model(None, None, app_context.settings).unet
    processors = dict(unet.attn_processors)

    def failing(*args, **kwargs):
        raise RuntimeError("the device failed")

    monkeypatch.setattr(unet, "forward", failing)
    with pytest.raises(RuntimeError):
        generate(engine, unit())
    monkeypatch.undo()
    assert all(unet.attn_processors[name] is processors[name] for name in processors)
    assert unet.encoder_hid_proj is None


def test_start_end_leaves_the_calls_outside_unguided(engine):
    plain, whole, late = generate(engine), generate(engine, unit()), generate(engine, unit(guidance_start=0.5))
    assert np.abs(pixels(whole) - pixels(late)).max() > 10 and np.abs(pixels(plain) - pixels(late)).max() > 10
    assert np.abs(pixels(generate(engine, unit(guidance_end=0.0))) - pixels(plain)).max() <= 1


def test_an_ip_adapter_without_its_image_encoder_names_the_folder_to_put_it_in(app_context, adapter_files):
    import shutil
    shutil.copytree(adapter_files / "ControlNet", app_context.paths.models_dir / "ControlNet", dirs_exist_ok=True)
    app_context.control_models.library.refresh()
    with pytest.raises(UserError) as error:
        generate(app_context.engine, unit())
    assert error.value.key == "ip_adapter_no_image_encoder"
    assert str(app_context.paths.models_dir / "clip_vision") in str(error.value)


def test_an_encoder_beside_the_adapter_file_is_used(app_context, adapter_files, tiny_model_file):
    import shutil
    folder = app_context.paths.models_dir / "ControlNet"
    shutil.copytree(adapter_files / "ControlNet", folder, dirs_exist_ok=True)
    shutil.copytree(adapter_files / "clip_vision" / "CLIP-ViT-H-14-laion2B-s32B-b79K", folder / "image_encoder")
    app_context.control_models.library.refresh()
    assert "model" not in [info.name for info in app_context.control_models.library.entries()]
    assert_same(generate(app_context.engine, unit()), reference(tiny_model_file, adapter_files, PLAIN, 1.0))


def test_of_several_encoders_the_one_whose_width_fits_the_adapter_is_used(engine, app_context, tiny_model_file,
                                                                          adapter_files):
    """Another CLIP (a ViT-bigG beside the ViT-H, say) sorts first but gives other widths."""
    write_image_encoder(app_context.paths.models_dir / "clip_vision" / "AAA-other-clip", width=24, projection_dim=8)
    assert_same(generate(engine, unit()), reference(tiny_model_file, adapter_files, PLAIN, 1.0))
    assert_same(generate(engine, unit(model="ip-adapter-plus_sd15", weight=0.8)),
                reference(tiny_model_file, adapter_files, PLUS, 0.8))
