"""A real-size SD 1.5 file (2 GB, random weights) loads, runs, and fits in modest memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paragoger.model_manager.full_size import write_full_size_sd15

REPO = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter so its peak memory is this load's alone.
LOAD_AND_RUN = """
import json, resource, sys, time
from pathlib import Path
import torch
from paragoger.model_manager.components import CheckpointInfo
from paragoger.model_manager.loader import load_checkpoint

path = Path(sys.argv[1])
start = time.perf_counter()
c = load_checkpoint(CheckpointInfo(path=path, name=path.name, model_name=path.stem), dtype=torch.float16)
seconds = time.perf_counter() - start
with torch.no_grad():
    ids = c.tokenizer("a photo of a cat", padding="max_length", return_tensors="pt").input_ids
    context = c.text_encoder(ids).last_hidden_state
    out = c.unet(torch.randn(1, 4, 8, 8, dtype=torch.float16), torch.tensor([500]), encoder_hidden_states=context)
print(json.dumps({
    "family": c.family, "variant": c.variant, "prediction_type": c.prediction_type,
    "sizes": {k: sum(p.numel() for p in m.parameters()) for k, m in c.modules().items()},
    "dtypes": sorted({str(p.dtype) for m in c.modules().values() for p in m.parameters()}),
    "finite": bool(torch.isfinite(out.sample).all()), "load_seconds": seconds,
    "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
}))
"""


@pytest.mark.slow
def test_full_size_sd15_file_loads(tmp_path):
    start = time.perf_counter()
    path = write_full_size_sd15(tmp_path / "v1-5-random.safetensors")
    assert time.perf_counter() - start < 60, "writing the 2 GB fixture should be I/O bound"
    assert 2.0e9 < path.stat().st_size < 2.3e9

    done = subprocess.run([sys.executable, "-c", LOAD_AND_RUN, str(path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert (report["family"], report["variant"], report["prediction_type"]) == ("sd1", "base", "epsilon")
    assert report["sizes"] == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    assert report["dtypes"] == ["torch.float16"]
    assert report["finite"]
    assert report["peak_rss_gb"] < 8
