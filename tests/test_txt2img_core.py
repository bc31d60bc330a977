"""txt2img through the core: the same pixels as diffusers' own pipeline, seeds, batches, interrupt and skip,
saved files with A1111's infotext."""
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler, StableDiffusionPipeline
from PIL import Image

from paragoger.core.jobs import Job
from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from paragoger.imaging.metadata import read_infotext

PROMPT, NEGATIVE = "a lighthouse on a cliff, oil painting", "blurry, low quality"


def request(**changes) -> GenerationRequest:
    base = dict(prompt=PROMPT, negative_prompt=NEGATIVE, steps=4, width=64, height=64, seed=1234,
                cfg_scale=7.0, sampler_name="Euler")
    return GenerationRequest(**{**base, **changes})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


def reference_pipeline(kind_format, tiny_model_file):
    folder = tiny_model_file("sd1", "diffusers")
    if kind_format == "diffusers":
        return StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, local_files_only=True)
    return StableDiffusionPipeline.from_single_file(tiny_model_file("sd1", kind_format), config=str(folder),
                                                    safety_checker=None, local_files_only=True)


@pytest.mark.parametrize("model_format", ["safetensors", "diffusers"])
@pytest.mark.parametrize("sampler, scheduler_class", [("Euler", EulerDiscreteScheduler), ("DDIM", DDIMScheduler)])
def test_core_gives_the_same_pixels_as_diffusers_pipeline(app_context, tiny_model_file, model_format, sampler,
                                                          scheduler_class):
    model = tiny_model_file("sd1", model_format)
    app_context.paths.checkpoint_dirs[-1].joinpath("ref").symlink_to(model.parent, target_is_directory=True)
    app_context.library.refresh()
    name = f"ref/{model.name}"
    ours = app_context.engine.generate(request(sampler_name=sampler, checkpoint=name, save_images=False))

    pipe = reference_pipeline(model_format, tiny_model_file)
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    reference = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=4, guidance_scale=7.0, width=64,
                     height=64, generator=torch.Generator("cpu").manual_seed(1234)).images[0]

    ours_pixels, ref_pixels = pixels(ours.images[0].image), pixels(reference)
    assert ref_pixels.std() > 5, "the reference image is flat: the comparison would prove nothing"
    assert np.abs(ours_pixels - ref_pixels).max() <= 1


def test_same_request_twice_gives_the_same_bytes(app_context):
    first = app_context.engine.generate(request(save_images=True))
    second = app_context.engine.generate(request(save_images=True))
    with open(first.images[0].path, "rb") as a, open(second.images[0].path, "rb") as b:
        assert a.read() == b.read()
    assert first.images[0].path != second.images[0].path


def test_image_i_of_a_batch_uses_seed_plus_i(app_context):
    batch = app_context.engine.generate(request(seed=50, batch_size=2, n_iter=2, save_images=False))
    assert batch.seeds == [50, 51, 52, 53]
    alone = app_context.engine.generate(request(seed=53, save_images=False))
    assert np.abs(pixels(batch.images[3].image) - pixels(alone.images[0].image)).max() <= 1
    assert "Seed: 53," in batch.images[3].infotext


def test_random_seed_is_resolved_and_written(app_context):
    result = app_context.engine.generate(request(seed=-1, save_images=False))
    seed = result.images[0].seed
    assert 0 <= seed < 2**32 and f"Seed: {seed}," in result.images[0].infotext


def test_saved_png_carries_a1111_infotext_in_dated_folder(app_context):
    result = app_context.engine.generate(request(seed=77, clip_skip=2))
    path = result.images[0].path
    assert "/outputs/txt2img-images/" in path and path.endswith("-77.png")
    text = read_infotext(path)
    assert text.startswith(f"{PROMPT}\nNegative prompt: {NEGATIVE}\nSteps: 4, Sampler: Euler, CFG scale: 7, "
                           "Seed: 77, Size: 64x64, Model hash: ")
    assert "Model: tiny-sd1, Clip skip: 2, Version: Paragoger-" in text


def test_batch_writes_a_grid(app_context):
    result = app_context.engine.generate(request(batch_size=2))
    assert result.grid is not None and "/outputs/txt2img-grids/" in result.grid_path
    assert result.grid.size == (128, 64)


def test_clip_skip_changes_the_image(app_context):
    plain = app_context.engine.generate(request(save_images=False))
    skipped = app_context.engine.generate(request(clip_skip=2, save_images=False))
    assert np.abs(pixels(plain.images[0].image) - pixels(skipped.images[0].image)).max() > 0


def test_interrupt_stops_after_the_current_step_and_returns_what_was_made(app_context):
    class InterruptAtStep2(Job):
        def set_step(self, step, preview=None):
            super().set_step(step, preview)
            if step == 2:
                self.interrupt()

    req = request(steps=10, n_iter=3, save_images=False)
    job = InterruptAtStep2(request=req)
    result = app_context.engine.generate(req, job)
    assert result.interrupted and len(result.images) == 1
    assert job.progress.step == 2


def test_skip_ends_the_current_image_and_goes_on_with_the_batch(app_context):
    class SkipFirstImage(Job):
        def set_step(self, step, preview=None):
            super().set_step(step, preview)
            if self.progress.job_no == 0 and step == 1:
                self.skip()

    req = request(steps=6, n_iter=2, save_images=False)
    job = SkipFirstImage(request=req)
    result = app_context.engine.generate(req, job)
    assert len(result.images) == 2 and not result.interrupted
    assert job.progress.job_no == 1 and job.progress.step == 6


def test_live_preview_is_published_every_n_steps(app_context):
    previews = []

    class Recording(Job):
        def set_step(self, step, preview=None):
            super().set_step(step, preview)
            if preview is not None:
                previews.append((step, preview.size))

    req = request(steps=6, save_images=False)
    app_context.engine.generate(req, Recording(request=req))
    assert previews == [(2, (64, 64)), (4, (64, 64))]


@pytest.mark.parametrize("changes, message", [
    ({"width": 100}, "multiples of 8"),
    ({"steps": 0}, "Steps must be"),
    ({"sampler_name": "Nope"}, "Unknown sampler 'Nope'"),
    ({"checkpoint": "missing.safetensors"}, "not in the checkpoint list"),
])
def test_bad_requests_are_refused_with_a_reason(app_context, changes, message):
    with pytest.raises(UserError, match=message):
        app_context.engine.generate(request(**changes))


def test_sampler_with_old_combined_name_runs_and_writes_both_fields(app_context):
    result = app_context.engine.generate(request(sampler_name="DPM++ 2M Karras", save_images=False))
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in result.images[0].infotext


def test_long_prompt_is_encoded_in_75_token_chunks(app_context):
    from paragoger.core.conditioning import PromptEncoder

    components = app_context.engine.load_model(None, None, app_context.settings)
    encoder = PromptEncoder(components)
    long_prompt = ", ".join(["red apple"] * 50)
    assert encoder.token_count(long_prompt) == (149, 150)
    assert encoder.encode(long_prompt).embeds.shape[1] == 2 * 77
    assert encoder.encode("a cat").embeds.shape[1] == 77
    result = app_context.engine.generate(request(prompt=long_prompt, save_images=False))
    assert result.images[0].image.size == (64, 64)


@pytest.mark.parametrize("kind", ["sdxl", "sd2-v", "sd1-inpaint"])
def test_every_model_family_generates_through_the_same_core(app_context, tiny_model_file, kind):
    import shutil

    target = app_context.paths.default_checkpoint_dir() / f"{kind}.safetensors"
    shutil.copyfile(tiny_model_file(kind, "safetensors"), target)
    app_context.library.refresh()
    result = app_context.engine.generate(request(checkpoint=kind, batch_size=2, save_images=False))
    assert [item.image.size for item in result.images] == [(64, 64), (64, 64)]
    assert f"Model: {kind}," in result.images[0].infotext


def test_jpeg_output_keeps_the_infotext(app_context):
    app_context.settings.update({"samples_format": "jpg"})
    result = app_context.engine.generate(request(seed=9))
    assert result.images[0].path.endswith("-9.jpg")
    assert "Seed: 9," in read_infotext(result.images[0].path)


def test_switching_checkpoints_keeps_only_as_many_as_the_setting_allows(app_context, tiny_sd1_file):
    import shutil

    shutil.copyfile(tiny_sd1_file, app_context.paths.default_checkpoint_dir() / "other.safetensors")
    app_context.library.refresh()
    app_context.select_checkpoint("tiny-sd1")
    app_context.select_checkpoint("other")
    assert [m.title.split(" ")[0] for m in app_context.cache.loaded()] == ["other.safetensors"]
    app_context.apply_options({"sd_checkpoints_limit": 2})
    app_context.select_checkpoint("tiny-sd1")
    assert sorted(m.title.split(" ")[0] for m in app_context.cache.loaded()) == ["other.safetensors",
                                                                               "tiny-sd1.safetensors"]


def test_full_vae_preview_when_the_setting_asks_for_it(app_context):
    previews = []

    class Recording(Job):
        def set_step(self, step, preview=None):
            super().set_step(step, preview)
            if preview is not None:
                previews.append(preview)

    app_context.settings.update({"show_progress_type": "Full", "show_progress_every_n_steps": 3})
    req = request(steps=4, save_images=False)
    result = app_context.engine.generate(req, Recording(request=req))
    assert len(previews) == 1 and previews[0].size == result.images[0].image.size


def test_vae_from_the_vae_folder_replaces_the_checkpoints_own_and_is_written(app_context):
    from tests.fixtures.checkpoints import write_vae

    write_vae(app_context.paths.vae_dirs[-1] / "other.vae.safetensors", seed=5)
    app_context.library.refresh()
    own = app_context.engine.generate(request(save_images=False))
    swapped = app_context.engine.generate(request(vae="other.vae.safetensors", save_images=False))
    assert np.abs(pixels(own.images[0].image) - pixels(swapped.images[0].image)).max() > 0
    text = swapped.images[0].infotext
    assert ", VAE hash: " in text and ", VAE: other.vae.safetensors," in text
    assert "VAE" not in own.images[0].infotext


def test_vae_beside_the_checkpoint_is_used_unless_the_setting_says_none(app_context):
    from tests.fixtures.checkpoints import write_vae

    write_vae(app_context.paths.default_checkpoint_dir() / "tiny-sd1.vae.safetensors", seed=5)
    beside = app_context.engine.generate(request(save_images=False))
    none = app_context.engine.generate(request(vae="None", save_images=False))
    assert "VAE: tiny-sd1.vae.safetensors" in beside.images[0].infotext
    assert "VAE" not in none.images[0].infotext
