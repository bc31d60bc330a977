"""Saved images land where A1111 users expect them, numbered like A1111, and never half-written or doubled."""
import datetime
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paragoger.imaging.metadata import read_infotext
from paragoger.imaging.saving import next_sequence_number, save_grid, save_image

DAY = datetime.date(2024, 5, 1)
INFOTEXT = "a cat\nSteps: 20, Sampler: Euler a, Seed: 1234, Size: 32x32"
REPO_ROOT = Path(__file__).resolve().parents[1]


def small_image(color="teal"):
    return Image.new("RGB", (32, 32), color)


def save(outdir, seed=1234, **options):
    return save_image(small_image(), INFOTEXT, outdir=outdir, seed=seed, date=DAY, **options)


def test_image_goes_to_dated_folder_as_number_dash_seed(tmp_path):
    outdir = tmp_path / "outputs" / "txt2img-images"
    first = save(outdir, seed=1234)
    second = save(outdir, seed=1235)
    assert first == outdir / "2024-05-01" / "00000-1234.png"
    assert second == outdir / "2024-05-01" / "00001-1235.png"
    assert read_infotext(first) == INFOTEXT


def test_date_defaults_to_today(tmp_path):
    path = save_image(small_image(), INFOTEXT, outdir=tmp_path, seed=7)
    assert path.parent.name == datetime.date.today().strftime("%Y-%m-%d")


def test_numbering_continues_after_existing_files(tmp_path):
    folder = tmp_path / "2024-05-01"
    folder.mkdir()
    for name in ["00000-1.png", "00007-5.png", "00003.jpg", "notes.txt", "grid-0042.png", "99999x.png"]:
        (folder / name).write_bytes(b"")
    assert next_sequence_number(folder) == 8
    assert save(tmp_path, seed=9).name == "00008-9.png"


def test_gaps_in_numbering_are_not_reused(tmp_path):
    save(tmp_path)
    middle = save(tmp_path)
    save(tmp_path)
    middle.unlink()
    assert save(tmp_path).name.startswith("00003-")


def test_jpeg_and_webp_saves_keep_infotext(tmp_path):
    jpeg = save(tmp_path, extension="jpg", jpeg_quality=90)
    webp = save(tmp_path, extension="webp")
    assert jpeg.name == "00000-1234.jpg" and webp.name == "00001-1234.webp"
    assert read_infotext(jpeg) == INFOTEXT and read_infotext(webp) == INFOTEXT


def test_filename_pattern_is_made_safe_for_every_os(tmp_path):
    path = save(tmp_path, seed=5, filename_pattern='[seed] a/b:c*?"<>|[date]. ')
    assert path.name == "00000-5 a_b_c______2024-05-01.png"
    assert path.parent == tmp_path / "2024-05-01"


def test_empty_pattern_gives_the_number_alone(tmp_path):
    assert save(tmp_path, filename_pattern="").name == "00000.png"


def test_unknown_extension_is_refused_before_touching_the_disk(tmp_path):
    with pytest.raises(ValueError):
        save(tmp_path, extension="tiff")
    assert not (tmp_path / "2024-05-01").exists()


def test_grid_is_named_like_a1111(tmp_path):
    outdir = tmp_path / "outputs" / "txt2img-grids"
    first = save_grid(small_image(), INFOTEXT, outdir=outdir, date=DAY)
    second = save_grid(small_image(), INFOTEXT, outdir=outdir, date=DAY)
    assert first == outdir / "2024-05-01" / "grid-0000.png"
    assert second.name == "grid-0001.png"
    assert read_infotext(second) == INFOTEXT


def test_grids_and_images_in_one_folder_keep_separate_numbers(tmp_path):
    save_grid(small_image(), INFOTEXT, outdir=tmp_path, date=DAY)
    assert save(tmp_path).name == "00000-1234.png"
    assert save_grid(small_image(), INFOTEXT, outdir=tmp_path, date=DAY).name == "grid-0001.png"


def test_failed_write_leaves_no_partial_file(tmp_path):
    unsavable = Image.new("F", (32, 32))  # PNG has no 32-bit float mode: Pillow raises while writing
    with pytest.raises(OSError):
        save_image(unsavable, INFOTEXT, outdir=tmp_path, seed=1, date=DAY)
    assert os.listdir(tmp_path / "2024-05-01") == []
    assert save(tmp_path).name == "00000-1234.png"  # the number was released


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses RLIMIT_FSIZE to fail a write mid-way")
def test_write_failing_mid_file_leaves_no_partial_file(tmp_path):
    # A real mid-write failure (like a full disk): the process may not write more than 20 KB per file, and the
    # image needs ~200 KB. Run in a child process so the limit cannot affect the test runner.
    script = textwrap.dedent(f"""
        import datetime, resource, signal, sys
        import numpy as np
        from PIL import Image
        from paragoger.imaging.saving import save_image
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        try:
            save_image(noise, "x", outdir={str(tmp_path)!r}, seed=1, date=datetime.date(2024, 5, 1))
        except OSError as error:
            print("failed:", error.errno)
            sys.exit(0)
        sys.exit("the write did not fail")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "failed: 27" in result.stdout  # EFBIG
    assert os.listdir(tmp_path / "2024-05-01") == []


def test_stale_reservation_from_a_crash_is_skipped_not_overwritten(tmp_path):
    folder = tmp_path / "2024-05-01"
    folder.mkdir()
    (folder / ".00004.partial").write_bytes(b"half an image")
    assert save(tmp_path).name == "00005-1234.png"
    assert (folder / ".00004.partial").read_bytes() == b"half an image"


def test_concurrent_saves_get_distinct_numbers(tmp_path):
    threads_count, saves_each = 8, 6
    start = threading.Barrier(threads_count)
    paths, errors = [], []

    def worker(worker_id):
        start.wait()
        try:
            for index in range(saves_each):
                image = Image.fromarray(np.full((24, 24, 3), worker_id * 20 + index, dtype=np.uint8))
                paths.append(save_image(image, f"w{worker_id} i{index}\nSteps: 1, Seed: 2, Size: 24x24",
                                        outdir=tmp_path, seed=worker_id, date=DAY))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(worker_id,)) for worker_id in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    numbers = sorted(int(path.name.split("-")[0]) for path in paths)
    assert numbers == list(range(threads_count * saves_each))
    folder = tmp_path / "2024-05-01"
    assert sorted(os.listdir(folder)) == sorted(path.name for path in paths)  # no reservation left behind
    for path in paths:  # every file is complete and carries its own infotext
        assert read_infotext(path).startswith(f"w{path.name.split('-')[1].split('.')[0]} ")
