"""Shared pytest setup. Each part of the app keeps its fixtures in its own clearly marked block below."""
from __future__ import annotations

import os

# Nothing may come from a model hub while testing; set before any test imports huggingface_hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402


def pytest_configure(config):
    # Slow tests still run by default; `-m "not slow"` skips them for a quick check.
    config.addinivalue_line("markers", "slow: takes more than a few seconds (still part of the default run)")


# ================================================================================================================
# model_manager: tiny model files, written once per test session (read-only: copy them before changing them)
# ================================================================================================================
# tiny_model_file(kind, fmt) -> Path
#   kind: "sd1", "sd1-inpaint", "sd2" (epsilon), "sd2-v", "sdxl"   (see paragoger/model_manager/fixtures.py)
#   fmt:  "safetensors"  original single file, fp32
#         "fp16"         original single file, fp16, with EMA keys, alphas_cumprod, position_ids like real files
#         "ckpt"         2022 Lightning pickle (state_dict, numpy global_step, ModelCheckpoint callback)
#         "diffusers"    diffusers folder (also usable as `config=` for diffusers' from_single_file)
# Weights are the same in every format of a kind (seed 0); `fixtures.tiny_model(kind)` rebuilds the originals.


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    import torch

    from paragoger.model_manager import fixtures

    root = tmp_path_factory.mktemp("tiny-models")
    made: dict[tuple[str, str], object] = {}

    def make(kind: str = "sd1", fmt: str = "safetensors"):
        key = (kind, fmt)
        if key not in made:
            if fmt == "safetensors":
                made[key] = fixtures.write_single_file(root / f"{kind}.safetensors", kind)
            elif fmt == "fp16":
                made[key] = fixtures.write_single_file(root / f"{kind}-fp16.safetensors", kind,
                                                       dtype=torch.float16, extras=True)
            elif fmt == "ckpt":
                made[key] = fixtures.write_ckpt(root / f"{kind}.ckpt", kind)
            elif fmt == "diffusers":
                made[key] = fixtures.write_diffusers_folder(root / f"{kind}-diffusers", kind)
            else:
                raise ValueError(f"unknown tiny model format {fmt!r}")
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_sd1_file(tiny_model_file):
    """A tiny SD 1.x original single-file checkpoint (.safetensors)."""
    return tiny_model_file("sd1", "safetensors")


@pytest.fixture(scope="session")
def tiny_sdxl_file(tiny_model_file):
    """A tiny SDXL original single-file checkpoint (.safetensors)."""
    return tiny_model_file("sdxl", "safetensors")


@pytest.fixture(scope="session")
def tiny_sd1_diffusers(tiny_model_file):
    """A tiny SD 1.x diffusers folder with the same weights as ``tiny_sd1_file``."""
    return tiny_model_file("sd1", "diffusers")


@pytest.fixture
def tiny_checkpoint_dir(tmp_path, tiny_sd1_file):
    """A fresh checkpoint folder holding a copy of the tiny SD 1.x file (safe to change)."""
    import shutil

    folder = tmp_path / "Stable-diffusion"
    folder.mkdir()
    shutil.copyfile(tiny_sd1_file, folder / "tiny-sd1.safetensors")
    return folder

# ================================================================================================================
# end of model_manager block
# ================================================================================================================
