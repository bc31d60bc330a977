"""Model upscaler files in A1111's folders (models/ESRGAN, RealESRGAN, SwinIR, DAT, HAT), one Upscaler each.

Names are what A1111 shows: the file stem, except the well-known files A1111 names itself ("R-ESRGAN 4x+" for
RealESRGAN_x4plus.pth, ...), so infotexts such as "Hires upscaler: R-ESRGAN 4x+ Anime6B" find the same file
here. Scanning only lists files; a model is read on first use. Until then its scale is read from the name
("4x-UltraSharp", "RealESRGAN_x2plus"; 4 when the name says nothing) and corrected once the model is loaded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from paragoger.upscale.registry import Upscaler, UpscalerRegistry
from paragoger.upscale.spandrel_models import MODEL_SUFFIXES, SpandrelModels

MODEL_SOURCE = "model"

# A1111's own names for the files its upscalers download (modules/realesrgan_model.py, dat_model.py, ...).
A1111_NAMES = {
    "RealESRGAN_x4plus": "R-ESRGAN 4x+",
    "RealESRGAN_x4plus_anime_6B": "R-ESRGAN 4x+ Anime6B",
    "RealESRGAN_x2plus": "R-ESRGAN 2x+",
    "realesr-general-x4v3": "R-ESRGAN General 4xV3",
    "realesr-general-wdn-x4v3": "R-ESRGAN General WDN 4xV3",
    "realesr-animevideov3": "R-ESRGAN AnimeVideo",
    "DAT_x2": "DAT x2",
    "DAT_x3": "DAT x3",
    "DAT_x4": "DAT x4",
    "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN": "SwinIR 4x",
}

_SCALE_IN_NAME = re.compile(r"(?i)(?<![0-9])([1-8])x|x([1-8])(?![0-9])")


@dataclass(frozen=True)
class UpscalerFile:
    name: str
    path: Path
    family: str         # the folder it was found in: ESRGAN, RealESRGAN, SwinIR, DAT, HAT
    scale: int          # read from the name until the model is loaded


def scale_from_name(stem: str, default: int = 4) -> int:
    found = _SCALE_IN_NAME.search(stem)
    return int(found.group(1) or found.group(2)) if found else default


def scan_upscaler_files(folders: dict[str, Path], taken: set[str] = frozenset()) -> list[UpscalerFile]:
    """Every model file in the folders (sub-folders too), in folder then file name order. A name already
    ``taken`` (a built-in, an earlier file) gets the family in brackets: "Lanczos (ESRGAN)"."""
    found: list[UpscalerFile] = []
    names = {name.lower() for name in taken}
    for family, folder in folders.items():
        if not Path(folder).is_dir():
            continue
        files = sorted((p for p in Path(folder).rglob("*") if p.suffix.lower() in MODEL_SUFFIXES and p.is_file()),
                       key=lambda p: str(p).lower())
        for path in files:
            name = A1111_NAMES.get(path.stem, path.stem)
            if name.lower() in names:
                name = f"{name} ({family})"
            if name.lower() in names:
                continue  # the same file reached twice (a folder given twice)
            names.add(name.lower())
            found.append(UpscalerFile(name, path, family, scale_from_name(path.stem)))
    return found


class ModelUpscalers:
    """Keeps the registry's model upscalers in step with the folders: ``refresh`` rescans them."""

    def __init__(self, registry: UpscalerRegistry, folders: dict[str, Path], models: SpandrelModels):
        self.registry = registry
        self.folders = dict(folders)
        self.models = models

    def refresh(self) -> list[Upscaler]:
        others = {u.name for u in self.registry.all() if u.source != MODEL_SOURCE}
        upscalers = [self._upscaler(entry) for entry in scan_upscaler_files(self.folders, others)]
        self.registry.replace_source(MODEL_SOURCE, upscalers)
        self.models.unload_all()  # a file may have changed under the same name
        return upscalers

    def _upscaler(self, entry: UpscalerFile) -> Upscaler:
        upscaler = Upscaler(entry.name, lambda image, scale: image, scale=float(entry.scale), model_path=entry.path,
                            source=MODEL_SOURCE, model_name=entry.family)

        def learn_scale(native: int) -> None:
            upscaler.scale = float(native)

        def upscale(image, scale):
            return self.models.upscale(entry.path, image, scale, name=entry.name, on_scale=learn_scale)

        upscaler.upscale_fn = upscale
        return upscaler
