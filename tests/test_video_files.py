"""Generated videos are written where and how A1111 AnimateDiff users expect them (MP4, WebM, GIF, WebP, PNG frames,
infotext inside and beside), never half-written; source videos are read back, or refused with a reason."""
import datetime
import os
import subprocess
from types import MappingProxyType

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from paragoger.errors import UserError
from paragoger.imaging.metadata import read_infotext
from paragoger.imaging.saving import save_image
from paragoger.video import files
from paragoger.video.ffmpeg_runner import FfmpegFailed, run_ffmpeg
from paragoger.video.files import VIDEO_FORMATS, read_video, save_video, video_info

DAY = datetime.date(2024, 5, 1)
FPS = 8
# Characters ffmpeg's metadata format escapes (= ; # \ newline) and non-Latin-1 text, to prove they survive.
INFOTEXT = ("a red fox; \"sunset\" = golden #1 \\ é ü 狐\nNegative prompt: blurry\n"
            "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 64x48")


def moving_gradient(count=6, width=64, height=48, seed=0):
    """Frames whose horizontal gradient slides by 16 pixels a frame, with a seeded colour per frame."""
    rng = np.random.default_rng(seed)
    columns = np.linspace(0, 255, width)
    rows = np.linspace(0, 255, height)[:, None]
    frames = []
    for index in range(count):
        red = np.broadcast_to((columns + index * 16) % 256, (height, width))
        green = np.broadcast_to(rows, (height, width))
        blue = np.full((height, width), rng.integers(0, 256))
        frames.append(Image.fromarray(np.stack([red, green, blue], axis=-1).astype(np.uint8)))
    return frames


def save(tmp_path, formats, frames=None, infotext=INFOTEXT, seed=1234, fps=FPS):
    return save_video(frames if frames is not None else moving_gradient(), outdir=tmp_path, seed=seed, fps=fps,
                      formats=formats, infotext=infotext, date=DAY)


def all_names(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def container_comment(path):
    """The "comment" tag of a video file, read with the bundled ffmpeg in its ffmetadata form (which escapes
    = ; # \\ and newlines with a backslash)."""
    output = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata",
                             "-"], capture_output=True, check=True).stdout.decode("utf-8")
    entries, current, escaped = [], "", False
    for char in output:
        if escaped:
            current, escaped = current + "\0" + char, False  # "\0" marks an escaped character
        elif char == "\\":
            escaped = True
        elif char == "\n":
            entries.append(current)
            current = ""
        else:
            current += char
    for entry in entries:
        key, _, value = entry.partition("=")
        if key.lower() == "comment":
            return value.replace("\0", "")
    return None


def mean_difference(first, second):
    return float(np.abs(np.asarray(first, dtype=float) - np.asarray(second, dtype=float)).mean())


@pytest.mark.parametrize("video_format", ["MP4", "WEBM"])
def test_mp4_and_webm_read_back_with_their_frame_count_fps_and_pictures(tmp_path, video_format):
    frames = moving_gradient(6)
    saved = save(tmp_path, [video_format], frames=frames)
    path = saved.files[video_format]
    assert path == tmp_path / "2024-05-01" / f"00000-1234.{video_format.lower()}"
    assert (saved.stem, saved.frames, saved.fps) == ("00000-1234", 6, 8.0)
    assert video_info(path) == (6, 8.0)
    source = read_video(path, max_frames=16)
    assert source.fps == 8.0
    assert len(source.frames) == 6
    assert all(frame.mode == "RGB" and frame.size == (64, 48) for frame in source.frames)
    # Each frame is its own picture, in order (lossy, so close rather than equal).
    for original, decoded in zip(frames, source.frames):
        assert mean_difference(original, decoded) < 8
    assert mean_difference(frames[0], source.frames[3]) > 20


@pytest.mark.parametrize("video_format", ["MP4", "WEBM"])
def test_mp4_and_webm_carry_the_infotext_in_their_comment_metadata(tmp_path, video_format):
    saved = save(tmp_path, [video_format])
    assert container_comment(saved.files[video_format]) == INFOTEXT


def test_a_fractional_frame_rate_is_kept(tmp_path):
    saved = save(tmp_path, ["MP4"], fps=12.5)
    count, fps = video_info(saved.files["MP4"])
    assert count == 6 and fps == pytest.approx(12.5)


def frame_durations(animation) -> list[int]:
    """Each frame's duration in ms (Pillow sets a WebP frame's duration when it loads the frame)."""
    durations = []
    for index in range(animation.n_frames):
        animation.seek(index)
        animation.load()
        durations.append(animation.info["duration"])
    return durations


def test_gif_has_every_frame_its_duration_a_loop_and_the_infotext(tmp_path):
    saved = save(tmp_path, ["GIF"], fps=10)
    with Image.open(saved.files["GIF"]) as gif:
        assert gif.n_frames == 6
        assert gif.info["loop"] == 0
        durations = frame_durations(gif)
    assert durations == [100] * 6
    assert read_infotext(saved.files["GIF"]) == INFOTEXT


def test_gif_durations_are_1000_over_fps_to_the_hundredth_of_a_second_gif_stores(tmp_path):
    saved = save(tmp_path, ["GIF"], fps=8)  # round(1000 / 8) = 125 ms, stored in hundredths
    with Image.open(saved.files["GIF"]) as gif:
        gif.seek(gif.n_frames - 1)
        assert abs(gif.info["duration"] - 125) <= 10


def test_webp_is_animated_with_its_durations_and_the_infotext(tmp_path):
    saved = save(tmp_path, ["WEBP"])
    with Image.open(saved.files["WEBP"]) as webp:
        assert webp.n_frames == 6
        assert webp.info["loop"] == 0
        durations = frame_durations(webp)
    assert durations == [125] * 6
    assert read_infotext(saved.files["WEBP"]) == INFOTEXT
    assert video_info(saved.files["WEBP"]) == (6, 8.0)


def test_png_frames_fill_a_folder_each_with_the_infotext(tmp_path):
    frames = moving_gradient(3)
    saved = save(tmp_path, ["PNG"], frames=frames)
    folder = saved.files["PNG"]
    assert folder == tmp_path / "2024-05-01" / "00000-1234"
    assert sorted(os.listdir(folder)) == ["00000.png", "00001.png", "00002.png"]
    for index, original in enumerate(frames):
        path = folder / f"{index:05}.png"
        assert read_infotext(path) == INFOTEXT
        with Image.open(path) as frame:
            assert np.array_equal(np.asarray(frame), np.asarray(original))


def test_the_infotext_is_also_written_beside_the_video_as_txt(tmp_path):
    saved = save(tmp_path, ["MP4"])
    assert saved.files["TXT"] == tmp_path / "2024-05-01" / "00000-1234.txt"
    assert saved.files["TXT"].read_text(encoding="utf-8") == INFOTEXT
    assert all_names(tmp_path / "2024-05-01") == ["00000-1234.mp4", "00000-1234.txt"]


def test_txt_alone_writes_only_the_infotext_file(tmp_path):
    saved = save(tmp_path, ["TXT"])
    assert set(saved.files) == {"TXT"}
    assert all_names(tmp_path / "2024-05-01") == ["00000-1234.txt"]


def test_all_formats_of_one_video_share_one_number_and_format_names_ignore_case(tmp_path):
    saved = save(tmp_path, ["mp4", "WebM", "gif", "webp", "png", "MP4"])
    assert list(saved.files) == ["MP4", "WEBM", "GIF", "WEBP", "PNG", "TXT"]
    assert all_names(tmp_path / "2024-05-01")[:7] == [
        "00000-1234", "00000-1234.gif", "00000-1234.mp4", "00000-1234.txt", "00000-1234.webm", "00000-1234.webp",
        "00000-1234/00000.png"]


def test_videos_and_pictures_in_one_folder_never_share_a_number(tmp_path):
    picture = save_image(Image.new("RGB", (8, 8)), "x", outdir=tmp_path, seed=1, date=DAY)
    first_video = save(tmp_path, ["GIF", "PNG"], seed=2)
    second_picture = save_image(Image.new("RGB", (8, 8)), "x", outdir=tmp_path, seed=3, date=DAY)
    second_video = save(tmp_path, ["GIF"], seed=4)
    assert picture.name == "00000-1.png"
    assert first_video.stem == "00001-2"
    assert second_picture.name == "00002-3.png"
    assert second_video.stem == "00003-4"


def test_an_odd_size_is_padded_by_repeating_the_edge_in_mp4_and_kept_as_is_elsewhere(tmp_path):
    frames = moving_gradient(3, width=65, height=47)
    saved = save(tmp_path, ["MP4", "WEBM", "GIF", "WEBP"], frames=frames)
    mp4 = read_video(saved.files["MP4"], max_frames=8).frames
    assert mp4[0].size == (66, 48)  # H.264 in yuv420p needs even sides
    original = np.asarray(frames[1], dtype=float)
    decoded = np.asarray(mp4[1], dtype=float)
    assert np.abs(decoded[:47, :65] - original).mean() < 8  # not rescaled: the picture sits where it was
    assert np.abs(decoded[:47, 65] - original[:, 64]).mean() < 8  # the extra column repeats the last one
    for video_format in ("WEBM", "GIF", "WEBP"):
        assert read_video(saved.files[video_format], max_frames=8).frames[0].size == (65, 47), video_format


def test_one_frame_is_a_video_and_no_frames_is_refused(tmp_path):
    saved = save(tmp_path, ["MP4", "WEBM", "GIF", "WEBP"], frames=moving_gradient(1))
    for video_format in ("MP4", "WEBM", "GIF", "WEBP"):
        assert video_info(saved.files[video_format])[0] == 1, video_format
    with pytest.raises(UserError, match="no frames"):
        save(tmp_path, ["MP4"], frames=[])


def test_unknown_format_is_refused_naming_it_and_the_known_ones(tmp_path):
    with pytest.raises(UserError) as raised:
        save(tmp_path, ["MP4", "AVI"])
    assert raised.value.key == "video_format_unknown"
    assert "AVI" in str(raised.value) and all(name in str(raised.value) for name in VIDEO_FORMATS)
    assert all_names(tmp_path) == []  # checked before anything touches the disk


def test_frames_of_differing_sizes_are_refused(tmp_path):
    frames = moving_gradient(2) + moving_gradient(1, width=32, height=32)
    with pytest.raises(UserError, match="frame 2 is 32x32, the first is 64x48"):
        save(tmp_path, ["GIF"], frames=frames)


def test_a_failure_while_writing_leaves_no_file_and_no_temporary_behind(tmp_path, monkeypatch):
    def disk_full(frames, temporary, **_):
        temporary.write_bytes(b"\x1a\x45\xdf\xa3 half a webm")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "WRITERS", MappingProxyType({**files.WRITERS, "WEBM": disk_full}))
    with pytest.raises(OSError, match="No space left"):
        save(tmp_path, ["MP4", "PNG", "WEBM", "GIF"])
    assert all_names(tmp_path / "2024-05-01") == []
    monkeypatch.undo()
    assert save(tmp_path, ["GIF"]).stem == "00000-1234"  # the number was given back


def test_read_video_reads_a_gif_with_its_fps(tmp_path):
    saved = save(tmp_path, ["GIF"], fps=10)
    source = read_video(saved.files["GIF"], max_frames=16)
    assert len(source.frames) == 6 and source.fps == 10.0
    assert all(frame.mode == "RGB" and frame.size == (64, 48) for frame in source.frames)


def test_read_video_reads_a_folder_of_frames_in_natural_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = moving_gradient(11)
    for number, frame in enumerate(frames):
        frame.save(folder / f"{number}.png")  # 0.png ... 10.png: "10" must come after "9", not after "1"
    (folder / "notes.txt").write_text("not a frame")
    source = read_video(folder, max_frames=16)
    assert source.fps == 8.0
    assert [np.asarray(frame).tobytes() for frame in source.frames] == [np.asarray(f).tobytes() for f in frames]


def test_read_video_reads_uploaded_bytes_of_mp4_and_gif(tmp_path):
    saved = save(tmp_path, ["MP4", "GIF"])
    for video_format in ("MP4", "GIF"):
        source = read_video(saved.files[video_format].read_bytes(), max_frames=16, name="upload")
        assert len(source.frames) == 6, video_format
        assert source.frames[0].size == (64, 48)


def test_a_text_file_named_mp4_is_refused_with_the_reason(tmp_path):
    fake = tmp_path / "holiday.mp4"
    fake.write_text("this is not a video\n" * 20)
    with pytest.raises(UserError) as raised:
        read_video(fake, max_frames=16, name="holiday.mp4")
    assert raised.value.key == "video_unreadable"
    assert "holiday.mp4 could not be read as a video: Invalid data found" in str(raised.value)
    with pytest.raises(UserError, match="Invalid data found"):
        read_video(fake.read_bytes(), max_frames=16, name="holiday.mp4")


def test_a_truncated_video_is_refused_with_the_reason(tmp_path):
    saved = save(tmp_path, ["MP4", "WEBM"], frames=moving_gradient(12))
    for video_format in ("MP4", "WEBM"):
        data = saved.files[video_format].read_bytes()
        with pytest.raises(UserError, match="could not be read as a video: the file is cut short"):
            read_video(data[:len(data) // 2], max_frames=16, name=video_format)


def test_a_playlist_or_another_container_is_not_opened(tmp_path):
    """ffmpeg would follow a concat playlist to the files it names (the check is that it does not), and AVI is
    not among the containers read here."""
    real = save(tmp_path, ["MP4"]).files["MP4"]
    playlist = real.parent / "playlist.mp4"
    playlist.write_text(f"ffconcat version 1.0\nfile '{real.name}'\n")
    avi = real.parent / "clip.avi"
    run_ffmpeg(["-v", "error", "-i", str(real), "-c", "copy", str(avi)], timeout_s=30)
    for path in (playlist, avi):
        with pytest.raises(UserError, match="could not be read as a video: its format is not one of those read"):
            read_video(path, max_frames=16)


@pytest.mark.parametrize("video_format", ["MP4", "GIF", "PNG"])
def test_more_frames_than_allowed_are_refused_saying_how_many(tmp_path, video_format):
    saved = save(tmp_path, [video_format], frames=moving_gradient(5))
    with pytest.raises(UserError) as raised:
        read_video(saved.files[video_format], max_frames=4, name="source")
    assert str(raised.value) == "source has 5 frames; at most 4 are allowed."


def test_an_empty_folder_or_a_missing_file_is_refused(tmp_path):
    with pytest.raises(UserError, match="holds no frames"):
        read_video(tmp_path, max_frames=16)
    with pytest.raises(UserError, match="no such file"):
        read_video(tmp_path / "missing.mp4", max_frames=16)


def test_ffmpeg_that_does_not_finish_is_stopped_at_its_time_limit():
    with pytest.raises(FfmpegFailed) as raised:  # an endless test pattern stands in for a file ffmpeg chokes on
        run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=64x48", "-f", "null", "-"], timeout_s=0.5)
    assert raised.value.timed_out
