"""A person in a browser makes a short video in the Video tab (AnimateDiff, text to video), watches it play, finds
the MP4 among the outputs, and sends it on to video to video.

Playwright drives Debian's chromium (never Playwright's own browser download)."""
import os

import pytest

from tests.conftest import set_small_generation

MODULE = "mm_tiny_v2.safetensors"


@pytest.fixture
def video_context(data_dir, start_context):
    """The app over a data dir whose models/AnimateDiff holds a tiny v2 motion module (written before the app
    starts, so the Video tab lists it)."""
    from tests.fixtures.motion import write_motion_module

    folder = data_dir / "models" / "AnimateDiff"
    folder.mkdir(parents=True)
    write_motion_module(folder / MODULE, "v2", seed=3)
    return start_context()


def test_text_to_video_plays_in_the_page_is_saved_as_mp4_and_goes_on_to_video_to_video(video_context, open_page):
    from playwright.sync_api import expect

    page = open_page(video_context, height=1400)
    page.click("#tab_video-button")
    page.fill("#video_prompt textarea", "a paper boat on a pond")
    page.locator("#video_motion_module input").click()
    page.get_by_role("option", name=MODULE).click()
    length = page.locator("#video_length input")
    length.fill("4")
    length.press("Enter")
    set_small_generation(page, "video", steps=2, size=64)
    page.locator("#video_seed input").fill("7")
    page.click("#video_generate")

    info = page.locator("#video_html_info")
    expect(info).to_contain_text(f'AnimateDiff: "model: {MODULE}, video_length: 4', timeout=60_000)
    expect(info).to_contain_text("Seed: 7")
    expect(page.locator("#video_error")).to_have_text("")
    saved = list((video_context.paths.outputs_dir / "txt2img-videos").rglob("*-7.mp4"))
    assert len(saved) == 1

    # the player has the MP4 and plays it (autoplay, loop)
    page.wait_for_function("() => { const v = document.querySelector('#video_result video');"
                           " return v && v.currentSrc && v.readyState >= 2; }", timeout=30_000)
    page.wait_for_function("() => { const v = document.querySelector('#video_result video');"
                           " return !v.paused && v.currentTime > 0; }", timeout=30_000)
    assert page.evaluate("document.querySelector('#video_result video').currentSrc").endswith(".mp4")
    # every file written is listed, and the frames are in the gallery (so one can go to img2img)
    expect(page.locator(f"#video_files a[href$='/{saved[0].name}']")).to_have_count(1)
    expect(page.locator("#video_gallery img").first).to_be_visible()
    if os.environ.get("VIDEO_TAB_SCREENSHOT"):
        page.screenshot(path=os.environ["VIDEO_TAB_SCREENSHOT"], full_page=True)

    page.click("#video_send_to_vid2vid")
    expect(page.locator("#video_start_from input[value='Video']")).to_be_checked(timeout=30_000)
    expect(page.locator("#video_source")).to_be_visible()
    expect(page.locator(f"#video_source a[href$='/{saved[0].name}']")).to_have_count(1)
    expect(page.locator("#video_denoising_strength")).to_be_visible()
    expect(page.locator("#video_image")).to_be_hidden()
