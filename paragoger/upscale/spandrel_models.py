"""Model upscaler files (ESRGAN, Real-ESRGAN, SwinIR, DAT, HAT, ...) read through spandrel and run in tiles.

Reading never runs code from a file: ``.pth``/``.pt`` pickles go through torch's ``weights_only`` unpickler (the
same guarded loader as checkpoints, ``model_manager.safe_pickle``) and ``.safetensors`` through ``safetensors_file``;
spandrel only gets the resulting state dict, detects the architecture from its keys and builds the network.
(spandrel's own file loader uses a pickle allow-list of its own and TorchScript for ``.pt``; we use neither.)

Models load through the model manager (kind "upscaler"); one is kept loaded at a time (``keep``), on the app's
device in its dtype when the model supports it.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from paragoger.devices import DeviceConfig
from paragoger.errors import UserError
from paragoger.model_manager.memory import ModelManager
from paragoger.model_manager.out_of_memory import retry_once
from paragoger.upscale.tiling import run_tiled

KIND = "upscaler"
MODEL_SUFFIXES = (".pth", ".pt", ".safetensors")
MAX_PASSES = 3                        # A1111 runs a model at most three times to reach a large scale
MAX_OUTPUT_PIXELS = 64 * 1024 * 1024  # the largest picture one pass may make (as large as an input may be)


def read_state_dict(path: Path) -> dict:
    """The tensors of an upscaler file, read without running anything from it; UserError when unreadable."""
    from paragoger.errors import ModelLoadError
    from paragoger.model_manager.safe_pickle import load_ckpt

    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from paragoger.model_manager.safetensors_file import SafetensorsReadError, read_tensors

        try:
            return read_tensors(path)[0]
        except SafetensorsReadError as err:
            raise UserError("upscaler_unreadable", name=path.name, reason=str(err)) from None
    try:
        loaded = load_ckpt(path, display_name=path.name)
    except ModelLoadError as err:
        if err.key == "pickle_refused":
            raise UserError("upscaler_pickle_refused", name=path.name, what=err.params["what"]) from None
        raise UserError("upscaler_unreadable", name=path.name,
                        reason=err.params.get("reason", str(err))) from None
    if not isinstance(loaded, dict):
        raise UserError("upscaler_unreadable", name=path.name, reason="it holds no weights")
    return loaded


def build_model(state_dict: dict, name: str):
    """spandrel's descriptor for a state dict; UserError for an unknown architecture or a non-upscaler."""
    import spandrel

    state_dict = spandrel.canonicalize_state_dict(state_dict)
    try:
        model = spandrel.ModelLoader(device="cpu").load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError:
        raise UserError("upscaler_unknown_architecture", name=name) from None
    except Exception as err:  # noqa: BLE001 - keys matched an architecture, but the tensors do not fit it
        raise UserError("upscaler_unreadable", name=name, reason=_first_line(err)) from None
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.purpose not in ("SR", "Restoration"):
        raise UserError("upscaler_not_for_pictures", name=name, architecture=model.architecture.name,
                        purpose=model.purpose)
    return model.eval()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class SpandrelModels:
    """Loads upscaler files on first use and keeps the last ``keep`` of them; runs them on pictures."""

    def __init__(self, device: DeviceConfig, tile_settings: Callable[[], tuple[int, int]], *, keep: int = 1,
                 manager: ModelManager | None = None):
        self.device = device
        self.tile_settings = tile_settings     # () -> (tile, overlap), read at each use (settings can change)
        self.manager = manager if manager is not None else ModelManager(device.device)
        self.manager.limits[KIND] = max(1, keep)
        self._lock = threading.RLock()

    def load(self, path: Path):
        path = Path(path)
        try:
            stat = path.stat()
        except OSError as err:
            raise UserError("upscaler_unreadable", name=path.name, reason=err.strerror or str(err)) from None

        def read():
            model = build_model(read_state_dict(path), path.name)
            return model.to(self.device.device, dtype=self._dtype_for(model))

        return self.manager.load(KIND, (str(path), stat.st_mtime), read, name=path.name,
                                 device=self.device.device, expected_bytes=stat.st_size)

    def _dtype_for(self, model) -> torch.dtype:
        wanted = self.device.dtype
        if wanted == torch.float16 and model.supports_half or wanted == torch.bfloat16 and model.supports_bfloat16:
            return wanted
        return torch.float32

    def unload_all(self) -> None:
        self.manager.unload_where(KIND)

    def loaded_paths(self) -> list[str]:
        return [entry.key[0] for entry in self.manager.entries(KIND)]

    def upscale(self, path: Path, image: Image.Image, scale: float, *, name: str,
                on_scale: Callable[[int], None] | None = None) -> Image.Image:
        """``image`` enlarged ``scale`` times: the model runs (up to three times) until the picture is at least
        that large, then Lanczos resizes it to exactly ``round(size * scale)``. ``on_scale`` hears the model's
        native scale once it is known."""
        target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        picture = image.convert("RGB")
        # One picture at a time through the loaded model (it is shared), held while it runs.
        with self._lock, self.manager.holding():
            for done in range(MAX_PASSES):
                if done > 0 and picture.width >= target[0] and picture.height >= target[1]:
                    break
                model = self.load(path)
                if on_scale is not None:
                    on_scale(model.scale)
                out_size = (picture.width * model.scale, picture.height * model.scale)
                if out_size[0] * out_size[1] > MAX_OUTPUT_PIXELS:
                    if done == 0:
                        raise UserError("upscale_too_large", name=name, width=picture.width, height=picture.height,
                                        out_width=out_size[0], out_height=out_size[1], limit=MAX_OUTPUT_PIXELS)
                    break  # Lanczos does the rest
                picture = self._run(model, picture)
        if picture.size != target:
            picture = picture.resize(target, resample=Image.Resampling.LANCZOS)
        return picture

    def _run(self, model, picture: Image.Image) -> Image.Image:
        """One pass of ``model`` in tiles. Out of memory, the models no job uses are let go and it runs again in
        tiles half as large (a quarter of the memory); then UserError("out_of_memory_upscaling")."""
        tile, overlap = self.tile_settings()
        smaller = max(32, (tile or max(picture.size)) // 2)
        return retry_once(lambda: self._run_tiled(model, picture, tile, overlap),
                          lambda: self._run_tiled(model, picture, smaller, min(overlap, smaller // 4)),
                          manager=self.manager, device=self.device.device, message="out_of_memory_upscaling",
                          width=picture.width, height=picture.height, batch=1)

    @staticmethod
    def _run_tiled(model, picture: Image.Image, tile: int, overlap: int) -> Image.Image:
        array = np.asarray(picture, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)

        def call(window: torch.Tensor) -> torch.Tensor:
            return model(window.to(model.device, dtype=model.dtype))

        with torch.inference_mode():
            out = run_tiled(call, tensor, scale=model.scale, tile=tile, overlap=overlap)
        pixels = (out[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
        return Image.fromarray(pixels)
