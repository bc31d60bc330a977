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
    # diffusers 0.42 schedulers call np.array(tensor, copy=False), which numpy 2 warns about on every step.
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword")
    # gradio 6.31's queue uses pandas options that pandas 3 deprecates; nothing for us to act on.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:gradio")
    config.addinivalue_line("filterwarnings", "ignore:.*no_silent_downcasting.*")
    config.addinivalue_line("filterwarnings", "ignore:The copy keyword is deprecated")


# ================================================================================================================
# model_manager: tiny model files, written once per test session (read-only: copy them before changing them)
# ================================================================================================================
# tiny_model_file(kind, fmt) -> Path
#   kind: "sd1", "sd1-inpaint", "sd1-pix2pix", "sd2" (epsilon), "sd2-v", "sd2-depth", "sdxl"
#         (see paragoger/model_manager/tiny_model.py and tests/fixtures/checkpoints.py; tiny depth
#         estimators: tests/fixtures/depth.py)
#   fmt:  "safetensors"  original single file, fp32
#         "fp16"         original single file, fp16, with EMA keys, alphas_cumprod, position_ids like real files
#         "ckpt"         2022 Lightning pickle (state_dict, numpy global_step, ModelCheckpoint callback)
#         "diffusers"    diffusers folder (also usable as `config=` for diffusers' from_single_file)
# Weights are the same in every format of a kind (seed 0); `tiny_model.tiny_model(kind)` rebuilds the originals.


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    import torch

    from paragoger.model_manager import tiny_model
    from tests.fixtures import checkpoints

    root = tmp_path_factory.mktemp("tiny-models")
    made: dict[tuple[str, str], object] = {}

    def make(kind: str = "sd1", fmt: str = "safetensors"):
        key = (kind, fmt)
        if key not in made:
            if fmt == "safetensors":
                made[key] = tiny_model.write_single_file(root / f"{kind}.safetensors", kind)
            elif fmt == "fp16":
                made[key] = checkpoints.write_single_file_as_downloaded(root / f"{kind}-fp16.safetensors", kind,
                                                                        dtype=torch.float16)
            elif fmt == "ckpt":
                made[key] = checkpoints.write_ckpt(root / f"{kind}.ckpt", kind)
            elif fmt == "diffusers":
                made[key] = checkpoints.write_diffusers_folder(root / f"{kind}-diffusers", kind)
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

# ================================================================================================================
# core and app: an AppContext over a temporary data dir holding the tiny SD 1.x checkpoint, and a live server
# ================================================================================================================


@pytest.fixture
def data_dir(tmp_path, tiny_sd1_file):
    """A fresh A1111-layout data dir whose models/Stable-diffusion holds a copy of the tiny SD 1.x model."""
    import shutil

    folder = tmp_path / "data" / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    shutil.copyfile(tiny_sd1_file, folder / "tiny-sd1.safetensors")
    return tmp_path / "data"


@pytest.fixture
def app_context(data_dir):
    from paragoger.cli import parse_args
    from paragoger.context import AppContext

    context = AppContext(parse_args(["--data-dir", str(data_dir)], env={}))
    yield context
    context.close()


@pytest.fixture
def start_context(data_dir):
    """``start_context(*flags) -> AppContext`` on ``data_dir``, as app.py would build it with those flags (no
    model loaded yet); every context made is closed after the test."""
    from paragoger.cli import parse_args
    from paragoger.context import AppContext

    contexts = []

    def start(*flags: str):
        context = AppContext(parse_args(["--data-dir", str(data_dir), *flags], env={}))
        contexts.append(context)
        return context

    yield start
    for context in contexts:
        context.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve_app():
    """Start the real server (uvicorn, API + page) for a context on a free loopback port; returns its base URL."""
    import threading
    import time

    import uvicorn

    from paragoger.server import build_app

    servers = []

    def start(context) -> str:
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(build_app(context), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline and not server.started:
            time.sleep(0.05)
        assert server.started, "server did not start"
        servers.append((server, thread))
        return url

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def api(app_context, serve_app):
    """An HTTP client on the real server's ``/sdapi/v1`` for ``app_context``."""
    import httpx

    url = serve_app(app_context)
    with httpx.Client(base_url=url + "/sdapi/v1", timeout=120) as client:
        yield client


# Browser tests: Playwright drives Debian's chromium (never Playwright's own browser download).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def open_page(serve_app):
    """``open_page(context) -> page``: the app started as app.py starts it (first checkpoint loaded), served on
    loopback, and opened in headless chromium; closed after the test."""
    import contextlib
    import shutil

    playwright_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not shutil.which(chromium):
        pytest.fail("Debian's chromium is needed for browser tests: apt-get install chromium")
    stack = contextlib.ExitStack()

    def open_for(context, *, height: int = 1100):
        context.startup()
        url = serve_app(context)
        playwright = stack.enter_context(playwright_api.sync_playwright())
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        stack.callback(browser.close)
        page = browser.new_page(viewport={"width": 1400, "height": height})
        page.goto(url + "/")
        page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
        page.wait_for_timeout(500)  # Gradio finishes wiring its components just after the first paint
        return page

    with stack:
        yield open_for


def set_slider(page, elem_id: str, value: int) -> None:
    """Type a value into a Gradio slider's number box."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def set_small_generation(page, tab: str, steps: int = 3, size: int = 64) -> None:
    """A quick generation on the page: ``steps`` sampling steps at ``size`` x ``size`` pixels in ``tab``."""
    for slider, value in ((f"{tab}_steps", steps), (f"{tab}_width", size), (f"{tab}_height", size)):
        set_slider(page, slider, value)

# ================================================================================================================
# end of core and app block
# ================================================================================================================

# ================================================================================================================
# upscale: tiny upscaler model files (tests/fixtures/upscale.py) in the data dir's A1111 folders
# ================================================================================================================
# upscaler_files -> {"esrgan": models/ESRGAN/4x-tiny-esrgan.pth (old ESRGAN keys, 4x),
#                    "realesrgan": models/RealESRGAN/RealESRGAN_x4plus.pth (BasicSR keys in params_ema, 4x,
#                                  listed as "R-ESRGAN 4x+"),
#                    "compact": models/RealESRGAN/2x-tiny-compact.safetensors (SRVGGNetCompact, 2x)}
# Written before the app_context is built, so the context lists them.


@pytest.fixture
def upscaler_files(data_dir):
    from tests.fixtures import upscale

    models = data_dir / "models"
    return {
        "esrgan": upscale.write_esrgan(models / "ESRGAN" / "4x-tiny-esrgan.pth", scale=4, style="old"),
        "realesrgan": upscale.write_esrgan(models / "RealESRGAN" / "RealESRGAN_x4plus.pth", scale=4, style="new",
                                           seed=1),
        "compact": upscale.write_compact(models / "RealESRGAN" / "2x-tiny-compact.safetensors", scale=2),
    }

# ================================================================================================================
# end of upscale block
# ================================================================================================================

# ================================================================================================================
# caption: tiny captioning models (tests/fixtures/caption.py), written once per session in A1111's layout
# ================================================================================================================


@pytest.fixture(scope="session")
def caption_models(tmp_path_factory):
    """A models folder with BLIP/tiny-blip, CLIP/tiny-clip and deepbooru/tiny-wd-tagger (read-only: copy it, e.g.
    ``shutil.copytree(caption_models, data_dir / "models", dirs_exist_ok=True)``)."""
    from tests.fixtures.caption import write_caption_models

    models = tmp_path_factory.mktemp("caption-models") / "models"
    write_caption_models(models)
    return models

# ================================================================================================================
# end of caption block
# ================================================================================================================
