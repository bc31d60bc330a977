"""Switching checkpoints back and forth never grows the app's memory (issue 10: every switch used to keep the
previous model until the system killed the app). Two full-size SD 1.5 files, the app started as a user starts it
(app.py in its own process), switched over HTTP six times with a txt2img after each."""
from __future__ import annotations

import pytest

from paragoger.bench_http import measure_switches
from paragoger.model_manager.full_size import write_full_size_sd15

SWITCHES = 6


@pytest.fixture(scope="module")
def full_size_file(tmp_path_factory):
    return write_full_size_sd15(tmp_path_factory.mktemp("full-size") / "v1-5-random.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("keep", [1, 2])
def test_switching_between_two_full_size_checkpoints_keeps_memory_flat(full_size_file, tmp_path, keep):
    report = measure_switches(full_size_file, tmp_path, switches=SWITCHES, keep=keep)
    rss = report[f"switch_keep{keep}_rss_mb"]
    print(f"keep {keep}: RSS per switch {rss} MB, seconds {report[f'switch_keep{keep}_seconds']}")
    assert len(rss) == SWITCHES
    assert rss[-1] <= rss[1] * 1.15, f"memory grew with each switch: {rss} MB"
    # one SD 1.5 model in fp32 is about 4.3 GB: "keep 2" holds two, never a third
    assert report[f"switch_keep{keep}_checkpoints_loaded"] == keep
    assert rss[-1] < 1100 + keep * 4500, f"more than {keep} model(s) in memory: {rss} MB"
