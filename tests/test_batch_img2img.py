"""Batch img2img over folders: every picture processed under its own name, a broken file reported and skipped; and,
with the app shared on the network, the batch folders of the page stay inside the data folder."""
import numpy as np
import pytest
from PIL import Image

from paragoger.core.batch import BatchRequest
from paragoger.core.payloads import Img2ImgBatchJob
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
    job = app_context.queue.run(Img2ImgBatchJob(BatchRequest(template(), source, out, masks)))
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
    job = app_context.queue.run(Img2ImgBatchJob(BatchRequest(template(), tmp_path / "nope", tmp_path / "out")))
    assert isinstance(job.error, UserError) and "does not exist" in str(job.error)


@pytest.fixture
def shared_on_the_network(data_dir, start_context, tmp_path):
    """An app started with --listen, its page built; a private folder outside the data folder holding a secret
    picture, and ``in/`` inside the data folder holding one to process. Yields (page blocks, private folder)."""
    from paragoger.ui.app import build_ui

    outside = tmp_path / "private"
    outside.mkdir()
    picture(seed=1).save(outside / "secret.png")
    (data_dir / "in").mkdir()
    picture(seed=2).save(data_dir / "in" / "mine.png")
    yield build_ui(start_context("--listen")), outside
    assert sorted(p.name for p in outside.iterdir()) == ["secret.png"]  # nothing read into or written there


OUTSIDE_TRIES = (("{outside}", "out"), ("in", "{outside}/out"), ("../../private", "out"))


def test_on_the_network_the_batch_tab_only_reaches_folders_inside_the_data_folder(shared_on_the_network,
                                                                                 data_dir):
    """With --listen a visitor types folder names into the page: outside the data folder is refused, relative
    names start in the data folder."""
    from tests.test_extensions_ui import call_handler, handler

    demo, outside = shared_on_the_network
    process = handler(demo, "process", "img2img_batch_input_dir")

    def run(input_dir, output_dir):
        folders = {"img2img_batch_input_dir": input_dir, "img2img_batch_output_dir": output_dir,
                   "img2img_steps": 2, "img2img_width": 64, "img2img_height": 64}
        return call_handler(process, folders)[-1]

    for source, target in OUTSIDE_TRIES:
        _, error, _ = run(source.format(outside=outside), target.format(outside=outside))
        assert "outside" in error and "network" in error
    _, error, report = run("in", "out")
    assert error == "" and (data_dir / "out" / "mine.png").exists()


def test_on_the_network_the_extras_batch_from_directory_stays_inside_the_data_folder(shared_on_the_network,
                                                                                    data_dir):
    from paragoger.ui.tabs.extras import FOLDER
    from tests.test_extensions_ui import call_handler, handler

    demo, outside = shared_on_the_network
    run_extras = handler(demo, "run", "extras_batch_input_dir")
    mode = next(c for c in run_extras.inputs if c.get_block_name() == "state" and c.value == "single")

    def run(input_dir, output_dir):
        return call_handler(run_extras, {"extras_batch_input_dir": input_dir, "extras_batch_output_dir": output_dir,
                                         mode: FOLDER})[-1]

    for source, target in OUTSIDE_TRIES:
        *_, error = run(source.format(outside=outside), target.format(outside=outside))
        assert "outside" in error and "network" in error
    (data_dir / "in" / "broken.png").write_bytes(b"not a picture")
    *_, info, error = run("in", "out")
    assert error == "" and [p.name for p in (data_dir / "out").iterdir()]
    assert "broken.png" in info  # reported, and the other picture was still done
