"""Batch img2img over folders: every picture processed under its own name, a broken file reported and skipped."""
import numpy as np
from PIL import Image

from paragoger.context import IMG2IMG_BATCH
from paragoger.core.batch import BatchRequest
from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from tests.test_img2img_core import picture, square_mask


def template() -> GenerationRequest:
    return GenerationRequest(mode="img2img", prompt="ink drawing", steps=3, width=64, height=64, seed=5,
                             sampler_name="Euler", denoising_strength=0.6, init_images=[picture()], mask_blur=0)


def test_every_picture_is_processed_and_a_broken_file_is_skipped(app_context, tmp_path):
    source, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    source.mkdir(), masks.mkdir()
    picture(seed=1).save(source / "a.png")
    picture(seed=2).save(source / "b.jpg")
    (source / "broken.png").write_bytes(b"\x89PNG not really")
    square_mask().save(masks / "b.png")
    job = app_context.queue.run(BatchRequest(template(), source, out, masks), kind=IMG2IMG_BATCH)
    report = job.result
    assert sorted(path.name for path in report.written) == ["a.png", "b.png"]
    assert [name for name, _ in report.skipped] == ["broken.png"]
    # b.jpg was inpainted under its mask: outside it the picture (as read from the JPEG) is unchanged.
    outside = np.asarray(square_mask()) < 128
    b_in = np.asarray(Image.open(source / "b.jpg").convert("RGB")).astype(int)
    b_out = np.asarray(Image.open(out / "b.png").convert("RGB")).astype(int)
    assert np.array_equal(b_out[outside], b_in[outside]) and not np.array_equal(b_out, b_in)
    assert "Denoising strength: 0.6" in Image.open(out / "a.png").info["parameters"]


def test_a_missing_input_folder_is_a_clear_error(app_context, tmp_path):
    job = app_context.queue.run(BatchRequest(template(), tmp_path / "nope", tmp_path / "out"), kind=IMG2IMG_BATCH)
    assert isinstance(job.error, UserError) and "does not exist" in str(job.error)
