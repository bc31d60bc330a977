"""The Video tab's Generate handler: "Start from" picks the request (text, image or video to video), a folder of
frames typed into the page stays inside the data folder while the app is shared on the network, and the progress
line says which context window is being sampled."""
from __future__ import annotations

import html

import pytest
from PIL import Image

from paragoger.ui.app import build_ui
from tests.test_extensions_ui import call_handler, handler


def frames_folder(folder, count: int = 3):
    folder.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (64, 64), (40 * index, 90, 160)).save(folder / f"{index:03d}.png")
    return folder


def run_video_tab(context, wanted: dict) -> list:
    """Every update of the Video tab's Generate handler, called as Gradio calls it with ``wanted`` (elem_id ->
    value); the last update's last value is the error box."""
    generate = handler(build_ui(context), "generate", "video_prompt")
    return call_handler(generate, {"video_prompt": "a quiet river", "video_steps": 2, "video_width": 64,
                                   "video_height": 64, **wanted})


def test_a_folder_of_frames_outside_the_data_folder_is_refused_while_shared_on_the_network(start_context, tmp_path):
    outside = frames_folder(tmp_path / "private")
    context = start_context("--listen")
    *_, last = run_video_tab(context, {"video_start_from": "Video", "video_source_folder": str(outside),
                                       "video_motion_module": "None"})
    error = last[-1]
    assert "private" in error and "outside" in error and "network" in error
    assert context.queue.finished() == []  # refused before anything was queued


def test_video_to_video_from_a_folder_of_frames_in_the_data_folder_makes_one_frame_per_source_frame(
        start_context, data_dir):
    frames_folder(data_dir / "clips" / "river")
    context = start_context("--listen")
    updates = run_video_tab(context, {"video_start_from": "Video", "video_source_folder": "clips/river",
                                      "video_motion_module": "None", "video_length": 0, "video_fps": 0,
                                      "video_denoising_strength": 0.5, "video_formats": ["GIF"]})
    gallery, _, infotext, _, _, player, files, last_video, error = updates[-1]
    assert error == ""
    [job] = context.queue.finished()
    request = job.payload.request
    assert (request.mode, request.denoising_strength) == ("img2img", 0.5)
    assert len(request.animatediff.video_source) == 3 and request.animatediff.video_source_fps == 8.0
    assert len(gallery) == 3 and 'AnimateDiff: "model: None, video_length: 3, fps: 8' in html.unescape(infotext)
    assert player is None and last_video is None  # a GIF alone does not go into the player
    assert sorted(path.rsplit(".", 1)[-1] for path in files) == ["gif", "txt"]  # the infotext beside it


def test_text_to_video_without_a_motion_module_says_where_to_put_one(app_context):
    *_, last = run_video_tab(app_context, {"video_start_from": "Text", "video_length": 4})
    assert "models/AnimateDiff" in last[-1]


def test_image_to_video_needs_a_picture(app_context):
    *_, last = run_video_tab(app_context, {"video_start_from": "Image"})
    assert last[-1] and app_context.queue.finished() == []


def test_the_progress_line_names_the_context_window_with_step_and_eta():
    from paragoger.ui.widgets import progress_html

    status = {"progress": 0.4, "eta_relative": 12.0, "textinfo": "window 2/3",
              "state": {"sampling_step": 3, "sampling_steps": 8, "job_count": 1}}
    shown = progress_html(status, details=True)
    assert "window 2/3 · Step 3/8 · ETA 12s" in shown
    assert "window" not in progress_html(status)  # picture tabs show steps only, as before


@pytest.mark.parametrize("start, visible", [("Text", (False, False, False)), ("Image", (True, False, True)),
                                            ("Video", (False, True, True))])
def test_start_from_shows_the_inputs_that_start_needs(app_context, start, visible):
    from paragoger.ui.tabs.video import _start_updates

    picture, source, denoising, motion = _start_updates(app_context, start, None)
    assert (picture["visible"], source["visible"], denoising["visible"]) == visible
    assert ("None" in motion["choices"]) == (start == "Video")


def run_svd_tab(context, wanted: dict) -> list:
    generate = handler(build_ui(context), "generate_svd", "svd_image")
    return call_handler(generate, wanted)


def test_the_svd_sub_tab_makes_a_video_from_a_picture_and_shows_it_with_its_files(app_context):
    from tests.fixtures.svd import write_svd_folder

    write_svd_folder(app_context.paths.svd_dirs[-1] / "svd-tiny", frames=3)
    picture = Image.new("RGB", (80, 48), (200, 120, 40))
    *_, (progress, player, files, infotext, _, error) = run_svd_tab(app_context, {
        "svd_image": picture, "svd_model": "svd-tiny", "svd_width": 64, "svd_height": 64, "svd_steps": 2,
        "svd_seed": 5, "svd_formats": ["MP4", "GIF"]})
    assert error == "" and progress == ""
    [job] = app_context.queue.finished()
    assert job.kind == "svd" and job.payload.request.seed == 5 and job.payload.formats == ("MP4", "GIF")
    assert player.endswith(".mp4") and "svd-videos" in player
    assert sorted(path.rsplit(".", 1)[-1] for path in files) == ["gif", "mp4", "txt"]
    assert "Seed: 5" in infotext


def test_the_svd_sub_tab_without_a_picture_says_so_before_queueing(app_context):
    *_, last = run_svd_tab(app_context, {"svd_image": None})
    assert "picture" in last[-1] and app_context.queue.finished() == []
