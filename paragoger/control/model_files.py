"""The ControlNet and T2I-Adapter models the app can offer: the files and diffusers folders in the ControlNet
folders (models/ControlNet, each --controlnet-dir, the A1111 extension's extensions/sd-webui-controlnet/models),
listed under the titles sd-webui-controlnet gives them and looked up the ways its clients name them.

A title is ``<stem> [<hash>]`` where the hash is A1111's *legacy* model hash (the sha256 of the 64 KiB at offset
1 MiB, first 8 hex digits): sd-webui-controlnet titles its models with that hash, not the file's full sha256, so
``control_v11p_sd15_canny [d14c016b]`` from an A1111 client or infotext names the same file here. Reading 64 KiB is
cheap, so titles are computed on every refresh and need no cache. (Files under 1 MiB, such as test models, all
get the hash of no bytes, as in A1111.)

Annotator weights live in models/ControlNet/annotators (paragoger.control's preprocessors read them): that folder
is not searched. Sidecar ``.yaml`` files (ControlNet 1.1 ships one per model) are not models.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from paragoger.errors import NotFoundError

MODEL_SUFFIXES = (".safetensors", ".pth", ".ckpt", ".pt", ".bin")
# annotators' weights; the CLIP image encoder an IP-Adapter release keeps beside its files (control.image_encoders)
SKIPPED_FOLDERS = ("annotators", "annotator", "image_encoder")
CONFIG_FILE = "config.json"
# A diffusers folder's weights, most preferred first (``.bin`` only through the safe unpickler).
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.fp16.safetensors.index.json",
                "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin")
_LEGACY_HASH_OFFSET, _LEGACY_HASH_LENGTH = 0x100000, 0x10000
_TITLE_HASH = re.compile(r"^(.*?)\s*\[[0-9a-fA-F]{8,10}\]$")


@dataclass(frozen=True)
class ControlModelInfo:
    """One model in a ControlNet folder. ``format``: "single" (one file) or "diffusers" (a folder)."""

    name: str     # the file's stem or the folder's name: control_v11p_sd15_canny
    path: Path    # the file, or the diffusers folder
    title: str    # what sd-webui-controlnet lists: control_v11p_sd15_canny [d14c016b]
    format: str

    @property
    def weights_path(self) -> Path | None:
        """The file the weights are read from (a diffusers folder's preferred weights file)."""
        return self.path if self.format == "single" else weights_file_of(self.path)


def legacy_model_hash(path: Path) -> str:
    """A1111's old model hash: sha256 of 64 KiB from offset 1 MiB, first 8 hex digits ("NOFILE" if unreadable)."""
    try:
        with open(path, "rb") as stream:
            stream.seek(_LEGACY_HASH_OFFSET)
            return hashlib.sha256(stream.read(_LEGACY_HASH_LENGTH)).hexdigest()[:8]
    except OSError:
        return "NOFILE"


def weights_file_of(folder: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def is_diffusers_folder(folder: Path) -> bool:
    """A folder with a config.json and a ``diffusion_pytorch_model`` weights file."""
    return (Path(folder) / CONFIG_FILE).is_file() and weights_file_of(folder) is not None


def _models_below(folder: Path):
    """``(name, path, format)`` below one folder: diffusers folders (not entered) and model files, in a stable
    order; annotator folders and hidden folders are skipped."""
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        directory = Path(directory)
        if directory != folder and is_diffusers_folder(directory):
            subdirectories.clear()
            yield directory.name, directory, "diffusers"
            continue
        subdirectories[:] = sorted(d for d in subdirectories
                                   if d.lower() not in SKIPPED_FOLDERS and not d.startswith("."))
        for file_name in sorted(files):
            path = directory / file_name
            if path.suffix.lower() in MODEL_SUFFIXES and path.stem != "None":  # "None" means no model in A1111
                yield path.stem, path, "single"


def _sort_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def _title(name: str, path: Path, layout: str) -> str:
    weights = path if layout == "single" else weights_file_of(path)
    return f"{name} [{legacy_model_hash(weights)}]"


class ControlModelLibrary:
    """The models in ``folders`` (searched recursively; the first folder wins on equal names).

    ``hash_cache`` is accepted for symmetry with the other libraries and not used: the titles' legacy hash reads
    64 KiB per file, which costs less than a cache lookup would save.
    """

    def __init__(self, folders: Sequence[Path], hash_cache=None):
        self.folders = tuple(Path(folder) for folder in folders)
        self.hash_cache = hash_cache
        self._lock = threading.Lock()
        self._entries: list[ControlModelInfo] = []
        self.refresh()

    def refresh(self) -> list[ControlModelInfo]:
        found: dict[str, ControlModelInfo] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            for name, path, layout in _models_below(folder):
                if name not in found:
                    found[name] = ControlModelInfo(name=name, path=path, title=_title(name, path, layout),
                                                   format=layout)
        with self._lock:
            self._entries = sorted(found.values(), key=lambda info: _sort_key(info.name))
        return self.entries()

    def entries(self) -> list[ControlModelInfo]:
        with self._lock:
            return list(self._entries)

    def find(self, name: str) -> ControlModelInfo:
        """The model ``name`` names: its title, its name (file stem or folder name), or its file name; a title whose
        hash differs (a client's copy of the file in another precision) finds the model by its name part, and as a
        last resort names are compared without regard to case."""
        wanted = (name or "").strip()
        entries = self.entries()
        match = _TITLE_HASH.match(wanted)
        candidates = [wanted] + ([match[1]] if match else [])
        for candidate in candidates:
            found = next((info for info in entries if candidate in (info.title, info.name, info.path.name)), None)
            if found is not None:
                return found
        lowered = {candidate.lower() for candidate in candidates}
        found = next((info for info in entries if info.name.lower() in lowered or info.path.name.lower() in lowered),
                     None)
        if found is None:
            raise NotFoundError("control_model_not_found", name=name,
                                folders=", ".join(str(folder) for folder in self.folders))
        return found
