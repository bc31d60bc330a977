"""Stable Video Diffusion through the core: the same frames as diffusers' StableVideoDiffusionPipeline, guidance
from min to max over the frames, the model's own frame count, interrupt, loading through the model manager, and
the reasons a person reads for a missing or wrong model and a bad request."""
import shutil

import numpy as np
import pytest
import torch
from diffusers import StableVideoDiffusionPipeline
from PIL import Image
from safetensors.torch import save_file

from paragoger.core.jobs import Job
from paragoger.devices import DeviceConfig
from paragoger.errors import ModelLoadError, NotFoundError, UserError
from paragoger.model_manager.memory import ModelManager
from paragoger.video.svd import SvdEngine, SvdRequest, svd_noise
from paragoger.video.svd_models import SvdLibrary
from tests.fixtures.svd import write_svd_folder

MODEL_FRAMES = 4   # the tiny model's num_frames (14 in svd, 25 in svd_xt)
CPU = DeviceConfig(device=torch.device("cpu"), dtype=torch.float32, vae_dtype=torch.float32)


@pytest.fixture(scope="module")
def svd_dir(tmp_path_factory):
    """models/svd holding the tiny model (read-only: copy it before changing it)."""
    folder = tmp_path_factory.mktemp("svd")
    write_svd_folder(folder / "tiny-svd", seed=0, frames=MODEL_FRAMES)
    return folder


def engine(folder, manager=None, settings=None) -> SvdEngine:
    return SvdEngine(library=SvdLibrary([folder]), manager=manager or ModelManager("cpu"), device=CPU,
                     settings=settings)


def picture(width=64, height=64, seed=0) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(height, width, 3) * 255).astype(np.uint8))


def request(**changes) -> SvdRequest:
    base = dict(image=picture(), width=64, height=64, frames=3, steps=3, seed=1234)
    return SvdRequest(**{**base, **changes})


def pixels(frames) -> np.ndarray:
    return np.stack([np.asarray(frame.convert("RGB")) for frame in frames]).astype(np.int16)


def reference_frames(folder, req: SvdRequest) -> np.ndarray:
    """diffusers' pipeline on the same folder, given the same seed's generator and starting noise."""
    pipe = StableVideoDiffusionPipeline.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    frames = req.frames or pipe.unet.config.num_frames
    latent_shape = (1, frames, 4, req.height // 8, req.width // 8)
    _, noise = svd_noise(req.seed, (1, 3, req.height, req.width), latent_shape)
    video = pipe(req.image, width=req.width, height=req.height, num_frames=frames, num_inference_steps=req.steps,
                 min_guidance_scale=req.min_guidance_scale, max_guidance_scale=req.max_guidance_scale, fps=req.fps,
                 motion_bucket_id=req.motion_bucket_id, noise_aug_strength=req.noise_aug_strength,
                 decode_chunk_size=req.decode_chunk_size, generator=torch.Generator("cpu").manual_seed(req.seed),
                 latents=noise, output_type="np").frames[0]
    return (video * 255).round().astype(np.int16)


@pytest.mark.parametrize("min_cfg, max_cfg", [(1.0, 3.0), (1.0, 1.0), (2.5, 2.5)])
def test_frames_equal_diffusers_pipeline_for_the_same_seed(svd_dir, min_cfg, max_cfg):
    req = request(min_guidance_scale=min_cfg, max_guidance_scale=max_cfg, decode_chunk_size=2)
    result = engine(svd_dir).generate(req, Job())

    reference = reference_frames(svd_dir / "tiny-svd", req)
    ours = pixels(result.frames)
    assert ours.shape == reference.shape == (3, 64, 64, 3)
    assert reference.std() > 5, "the reference frames are flat: the comparison would prove nothing"
    assert np.abs(ours - reference).max() <= 1
    assert result.seed == 1234 and not result.interrupted


def test_guidance_rises_from_min_to_max_over_the_frames(svd_dir):
    svd = engine(svd_dir)
    unguided = pixels(svd.generate(request(min_guidance_scale=1.0, max_guidance_scale=1.0), Job()).frames)
    ramp = pixels(svd.generate(request(min_guidance_scale=1.0, max_guidance_scale=3.0), Job()).frames)
    constant = pixels(svd.generate(request(min_guidance_scale=3.0, max_guidance_scale=3.0), Job()).frames)
    assert np.abs(unguided - ramp).max() > 10
    assert np.abs(constant - ramp).max() > 10


def test_frames_default_to_the_models_own_number(svd_dir):
    result = engine(svd_dir).generate(request(frames=None, steps=2), Job())
    assert len(result.frames) == MODEL_FRAMES
    assert result.parameters["Frames"] == MODEL_FRAMES


def test_infotext_fields_name_every_setting(svd_dir):
    result = engine(svd_dir).generate(request(seed=-1, fps=8, motion_bucket_id=40, noise_aug_strength=0.1,
                                              steps=2), Job())
    assert 0 <= result.seed < 2**32
    assert result.parameters == {
        "Steps": 2, "Sampler": "Euler", "Schedule type": "Karras", "Min CFG": 1.0, "Max CFG": 3.0,
        "Seed": result.seed, "Size": "64x64", "Model": "tiny-svd", "Frames": 3, "Motion bucket id": 40, "FPS": 8,
        "Augmentation level": 0.1, "Decode chunk size": 8}


def test_same_seed_gives_the_same_frames_and_fps_conditioning_changes_them(svd_dir):
    svd = engine(svd_dir)
    first = pixels(svd.generate(request(), Job()).frames)
    assert np.array_equal(first, pixels(svd.generate(request(), Job()).frames))
    assert np.abs(first - pixels(svd.generate(request(fps=20, motion_bucket_id=300), Job()).frames)).max() > 0


def test_interrupt_after_step_2_keeps_the_frames(svd_dir):
    class InterruptAtStep2(Job):
        def set_step(self, step, preview=None):
            super().set_step(step, preview)
            if step == 2:
                self.interrupt()

    job = InterruptAtStep2()
    svd = engine(svd_dir)
    result = svd.generate(request(steps=4), job)
    assert result.interrupted and job.progress.step == 2 and job.progress.steps == 4
    assert len(result.frames) == 3 and result.frames[0].size == (64, 64)
    finished = svd.generate(request(steps=4), Job())
    assert np.abs(pixels(result.frames) - pixels(finished.frames)).max() > 0


def test_progress_counts_steps_and_previews_the_first_frame(svd_dir):
    previews = []

    class Recording(Job):
        def set_step(self, step, preview=None):
            super().set_step(step, preview)
            previews.append((step, preview))

    settings = {"live_previews_enable": True, "show_progress_every_n_steps": 1}
    engine(svd_dir, settings=settings).generate(request(steps=3), Recording())
    assert [step for step, _ in previews] == [1, 2, 3]
    assert [preview.size for _, preview in previews if preview is not None] == [(64, 64), (64, 64)]


def test_model_loads_once_through_the_manager_as_a_video_model(svd_dir):
    manager = ModelManager("cpu")
    svd = engine(svd_dir, manager)
    svd.generate(request(steps=1), Job())
    svd.generate(request(steps=1, model="tiny-svd"), Job())
    assert manager.loads == 1
    [entry] = manager.entries("video")
    assert entry.name == "tiny-svd" and entry.bytes_in("ram") > 0 and entry.users == 0
    assert set(entry.parts) >= {"unet", "vae", "image_encoder"}


def test_any_picture_is_cropped_and_resized_to_the_video_size(svd_dir):
    svd = engine(svd_dir)
    for image in (Image.new("RGB", (1, 1), "red"), Image.new("RGBA", (200, 90), (0, 0, 255, 0)),
                  picture(100, 50).convert("P")):
        result = svd.generate(request(image=image, width=128, height=64, steps=1, frames=2), Job())
        assert [frame.size for frame in result.frames] == [(128, 64), (128, 64)]


def test_a_folder_holding_only_fp16_files_loads_that_variant(svd_dir, tmp_path):
    folder = tmp_path / "svd"
    shutil.copytree(svd_dir / "tiny-svd", folder / "fp16-only")
    for weights in folder.rglob("*.safetensors"):
        weights.rename(weights.with_name(weights.name.replace(".safetensors", ".fp16.safetensors")))
    result = engine(folder).generate(request(steps=1), Job())
    assert len(result.frames) == 3


# ----------------------------------------------------------------------------------------- what a person reads
def test_a_missing_model_names_the_models_there_are(svd_dir, tmp_path):
    with pytest.raises(NotFoundError) as missing:
        engine(svd_dir).generate(request(model="svd_xt_1_1"), Job())
    assert missing.value.key == "svd_model_not_found" and "tiny-svd" in str(missing.value)
    with pytest.raises(NotFoundError) as none:
        engine(tmp_path).generate(request(), Job())
    assert none.value.key == "svd_no_models" and str(tmp_path) in str(none.value)


def test_a_folder_that_is_not_svd_says_why(tmp_path):
    (tmp_path / "sd15").mkdir()
    (tmp_path / "sd15" / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (tmp_path / "frames").mkdir()
    library = SvdLibrary([tmp_path])
    assert library.entries() == []
    with pytest.raises(UserError) as wrong:
        engine(tmp_path).generate(request(model="sd15"), Job())
    assert wrong.value.key == "svd_not_svd" and "StableDiffusionPipeline" in str(wrong.value)
    with pytest.raises(UserError) as plain:
        engine(tmp_path).generate(request(model="frames"), Job())
    assert "no model_index.json" in str(plain.value)


def test_single_files_are_listed_and_refused_with_what_to_do(tmp_path):
    save_file({"model.diffusion_model.input_blocks.1.0.time_stack.0.in_layers.0.weight": torch.zeros(4)},
              str(tmp_path / "svd_xt.safetensors"))
    save_file({"model.diffusion_model.input_blocks.1.0.in_layers.0.weight": torch.zeros(4)},
              str(tmp_path / "sd15.safetensors"))
    library = SvdLibrary([tmp_path])
    assert {entry.name: entry.format for entry in library.entries()} == {
        "svd_xt.safetensors": "single file", "sd15.safetensors": "single file"}
    with pytest.raises(UserError) as refused:
        engine(tmp_path).generate(request(model="svd_xt"), Job())
    assert refused.value.key == "svd_single_file_unsupported" and "diffusers folder" in str(refused.value)
    with pytest.raises(UserError) as not_svd:
        engine(tmp_path).generate(request(model="sd15.safetensors"), Job())
    assert not_svd.value.key == "svd_not_svd"


def test_pickled_bin_weights_are_refused(svd_dir, tmp_path):
    from diffusers import UNetSpatioTemporalConditionModel

    folder = tmp_path / "pickled"
    shutil.copytree(svd_dir / "tiny-svd", folder)
    unet = UNetSpatioTemporalConditionModel.from_pretrained(folder / "unet", local_files_only=True)
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(folder / "unet", safe_serialization=False)
    assert not list((folder / "unet").glob("*.safetensors"))
    with pytest.raises(ModelLoadError) as refused:
        engine(tmp_path).generate(request(model="pickled"), Job())
    assert refused.value.key == "svd_pickle_weights" and "unet" in str(refused.value)


@pytest.mark.parametrize("changes, key, field", [
    ({"width": 100}, "svd_bad_size", "width"),
    ({"height": 32}, "svd_bad_size", "height"),
    ({"frames": 0}, "svd_bad_value", "frames"),
    ({"frames": 10_000}, "svd_bad_value", "frames"),
    ({"steps": 0}, "svd_bad_value", "steps"),
    ({"motion_bucket_id": -1}, "svd_bad_value", "motion_bucket_id"),
    ({"fps": 0}, "svd_bad_value", "fps"),
    ({"decode_chunk_size": 0}, "svd_bad_value", "decode_chunk_size"),
    ({"image": None}, "svd_no_picture", None),
])
def test_a_bad_request_says_which_value_is_wrong(svd_dir, changes, key, field):
    with pytest.raises(UserError) as bad:
        engine(svd_dir).generate(request(**changes), Job())
    assert bad.value.key == key and bad.value.params.get("field") == field
