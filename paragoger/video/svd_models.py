"""Stable Video Diffusion models on disk: which ones the SVD folders hold, and loading one.

A model is the diffusers folder Stability publishes (``stable-video-diffusion-img2vid``: 14 frames,
``-img2vid-xt``: 25): ``model_index.json`` naming ``StableVideoDiffusionPipeline`` and the folders ``unet``
(UNetSpatioTemporalConditionModel), ``vae`` (AutoencoderKLTemporalDecoder), ``image_encoder``
(CLIPVisionModelWithProjection), ``feature_extractor`` (CLIPImageProcessor) and ``scheduler``
(EulerDiscreteScheduler). A folder that holds only the ``.fp16.safetensors`` files is read as that variant.
Everything is read offline (``local_files_only``) and only from .safetensors files: ``.bin`` weights are pickles,
which may run code, so a folder holding only those is refused with a message saying so.

Single files (``svd.safetensors``, ``svd_xt.safetensors``: Stability's original layout) are listed, so a person
sees them, but diffusers cannot load them: choosing one says to use the diffusers folder instead.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from paragoger.devices import DeviceConfig
from paragoger.errors import ModelLoadError, NotFoundError, UserError
from paragoger.model_manager.safetensors_file import SafetensorsReadError, read_header

PIPELINE_CLASS = "StableVideoDiffusionPipeline"
DIFFUSERS, SINGLE_FILE = "diffusers", "single file"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
# Keys that only an SVD single file has: the UNet's temporal layers.
SINGLE_FILE_MARK = ("model.diffusion_model.", ".time_stack.")
PARTS = ("unet", "vae", "image_encoder")


@dataclass(frozen=True)
class SvdEntry:
    """One model in the SVD folders: ``name`` as the list shows it, ``path`` (folder or file), ``format``."""

    name: str
    path: Path
    format: str = DIFFUSERS


@dataclass
class SvdModel:
    """A loaded SVD model: the three networks (the model manager measures and moves these), the image processor
    and the scheduler's config (a fresh scheduler is made from it for every video, as schedulers keep state)."""

    name: str
    unet: torch.nn.Module
    vae: torch.nn.Module
    image_encoder: torch.nn.Module
    feature_extractor: Any
    scheduler_config: dict

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def num_frames(self) -> int:
        """The number of frames the model was trained to make (14 svd, 25 svd_xt)."""
        return int(self.unet.config.num_frames)


def _pipeline_class(folder: Path) -> str | None:
    """The ``_class_name`` of a folder's model_index.json; None without one; "" when it cannot be read."""
    index = folder / "model_index.json"
    if not index.is_file():
        return None
    try:
        return str(json.loads(index.read_text(encoding="utf-8")).get("_class_name", ""))
    except (OSError, ValueError, AttributeError):
        return ""


class SvdLibrary:
    """The SVD models in ``folders`` (``Paths.svd_dirs``: models/svd and each --svd-dir), read afresh on every
    call so a model put there shows without a restart. A folder may also be a model itself."""

    def __init__(self, folders):
        self.folders = tuple(Path(folder) for folder in folders)

    def _candidates(self) -> list[tuple[str, Path]]:
        found = []
        for folder in self.folders:
            if (folder / "model_index.json").is_file():
                found.append((folder.name, folder))
            elif folder.is_dir():
                found += [(path.name, path) for path in sorted(folder.iterdir())
                          if path.is_dir() or path.suffix.lower() in SINGLE_FILE_SUFFIXES]
        return found

    def entries(self) -> list[SvdEntry]:
        """Every SVD model found: diffusers folders, then single files, each by its folder or file name."""
        entries, seen = [], set()
        for name, path in self._candidates():
            if name in seen:
                continue
            if path.is_dir() and _pipeline_class(path) == PIPELINE_CLASS:
                entries.append(SvdEntry(name, path, DIFFUSERS))
            elif path.is_file():
                entries.append(SvdEntry(name, path, SINGLE_FILE))
            else:
                continue
            seen.add(name)
        return sorted(entries, key=lambda entry: entry.format != DIFFUSERS)

    def names(self) -> list[str]:
        return [entry.name for entry in self.entries()]

    def find(self, name: str | None = None) -> SvdEntry:
        """The model called ``name`` (also without its file extension); None: the first found. NotFoundError when
        there is none; UserError when ``name`` is a folder or file here that is not an SVD model."""
        entries = self.entries()
        if not entries and not name:
            raise NotFoundError("svd_no_models", folders=", ".join(str(f) for f in self.folders))
        if not name:
            return entries[0]
        for entry in entries:
            if name in (entry.name, entry.path.stem if entry.format == SINGLE_FILE else entry.name):
                return entry
        for candidate, path in self._candidates():
            if name == candidate:
                raise UserError("svd_not_svd", name=name, reason=self._why_not_svd(path))
        raise NotFoundError("svd_model_not_found", name=name,
                            known=", ".join(entry.name for entry in entries) or "none")

    @staticmethod
    def _why_not_svd(folder: Path) -> str:
        found = _pipeline_class(folder)
        if found is None:
            return "the folder has no model_index.json"
        if not found:
            return "its model_index.json cannot be read"
        return f"its model_index.json names {found}, not {PIPELINE_CLASS}"


def check_single_file(entry: SvdEntry, folder: Path) -> None:
    """Always raises: a single file is refused, saying whether it even is an SVD checkpoint."""
    try:
        keys = read_header(entry.path).keys if entry.path.suffix.lower() == ".safetensors" else None
    except SafetensorsReadError as error:
        raise ModelLoadError("svd_model_unreadable", name=entry.name, reason=str(error)) from None
    if keys is not None and not any(key.startswith(SINGLE_FILE_MARK[0]) and SINGLE_FILE_MARK[1] in key
                                    for key in keys):
        raise UserError("svd_not_svd", name=entry.name,
                        reason="the file has no temporal UNet layers (model.diffusion_model.*.time_stack)")
    raise UserError("svd_single_file_unsupported", name=entry.name, folder=str(folder))


# ----------------------------------------------------------------------------------------------------- loading
def weight_variant(part: Path) -> tuple[str | None, list[Path]]:
    """(the variant to load, its .safetensors files) of one part's folder: plain files when there are any, else
    the fp16 (or another) variant. ModelLoadError when the part has no .safetensors weights."""
    files = sorted(part.glob("*.safetensors"))
    plain = [path for path in files if path.name.count(".") == 1]
    if plain:
        return None, plain
    variants = sorted({path.name.split(".")[-2] for path in files}, key=lambda v: v != "fp16")
    if variants:
        return variants[0], [path for path in files if path.name.split(".")[-2] == variants[0]]
    if any(part.glob("*.bin")):
        raise ModelLoadError("svd_pickle_weights", name=part.parent.name, part=part.name)
    raise ModelLoadError("svd_model_unreadable", name=part.parent.name, reason=f"{part.name}/ has no weights")


def expected_bytes(folder: Path) -> int:
    """The bytes of the weight files a load reads (what the manager makes room for)."""
    total = 0
    for part in PARTS:
        if (folder / part).is_dir():
            total += sum(path.stat().st_size for path in weight_variant(folder / part)[1])
    return total


def load_svd_folder(entry: SvdEntry, device: DeviceConfig) -> SvdModel:
    """Every part of a diffusers SVD folder, offline, from .safetensors only, on ``device`` in its dtypes (the
    VAE in ``vae_dtype``)."""
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    folder = entry.path
    missing = [part for part in (*PARTS, "feature_extractor", "scheduler") if not (folder / part).is_dir()]
    if missing:
        raise ModelLoadError("svd_model_unreadable", name=entry.name,
                             reason="the folder lacks " + ", ".join(f"{part}/" for part in missing))
    variants = {part: weight_variant(folder / part)[0] for part in PARTS}
    offline = {"local_files_only": True, "use_safetensors": True}
    try:
        unet = UNetSpatioTemporalConditionModel.from_pretrained(
            folder, subfolder="unet", variant=variants["unet"], torch_dtype=device.dtype, **offline)
        vae = AutoencoderKLTemporalDecoder.from_pretrained(
            folder, subfolder="vae", variant=variants["vae"], torch_dtype=device.vae_dtype, **offline)
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            folder / "image_encoder", variant=variants["image_encoder"], dtype=device.dtype, **offline)
        feature_extractor = CLIPImageProcessor.from_pretrained(folder / "feature_extractor", local_files_only=True)
        scheduler_config = dict(EulerDiscreteScheduler.load_config(folder / "scheduler", local_files_only=True))
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as error:
        reason = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
        raise ModelLoadError("svd_model_unreadable", name=entry.name, reason=reason) from None
    return SvdModel(name=entry.name, unet=_ready(unet, device.device), vae=_ready(vae, device.device),
                    image_encoder=_ready(image_encoder, device.device), feature_extractor=feature_extractor,
                    scheduler_config=scheduler_config)


def _ready(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return module.to(device).eval().requires_grad_(False)
