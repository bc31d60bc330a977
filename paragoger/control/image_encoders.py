"""The CLIP image encoders IP-Adapters need (the extension's ``ip-adapter_clip_sd15`` preprocessor: CLIP ViT-H/14).

Where they are looked for: a folder named ``image_encoder`` beside the adapter file (how the IP-Adapter release
lays them out), else the folders of ``models/clip_vision`` (A1111's / ComfyUI's folder). An encoder is a
transformers ``CLIPVisionModelWithProjection`` folder (``config.json`` + ``model.safetensors``); a single-file
``clip_vision`` checkpoint has no config to build the model from, so it is not used: the folder is needed. Of
several encoders, the first (by folder name) whose width fits the adapter is taken (ViT-H/14 for the SD 1.5
adapters, ViT-bigG for some SDXL ones).
Loaded through the model manager (kind "controlnet", as the adapters it serves), on the app's device in its UNet
dtype. Pictures are prepared as diffusers' IP-Adapter pipelines prepare them: the folder's
``preprocessor_config.json`` when there is one, else ``CLIPImageProcessor`` at the encoder's ``image_size``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from paragoger.errors import ModelLoadError, UserError

MANAGER_KIND = "controlnet"
BESIDE = "image_encoder"
WEIGHTS, CONFIG, PROCESSOR_CONFIG = "model.safetensors", "config.json", "preprocessor_config.json"


def is_encoder_folder(folder: Path) -> bool:
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def encoder_width(folder: Path, hidden_states: bool) -> int | None:
    """The width of what the encoder gives an adapter: its hidden states' or its projected embedding's."""
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = config.get("vision_config", config)
    return config.get("hidden_size" if hidden_states else "projection_dim")


class ImageEncoder:
    """A loaded encoder and how its pictures are prepared."""

    def __init__(self, folder: Path, *, device, dtype):
        self.folder = folder
        try:
            self.model = CLIPVisionModelWithProjection.from_pretrained(
                folder, local_files_only=True, use_safetensors=True, torch_dtype=dtype).to(device).eval()
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError("ip_adapter_image_encoder_unreadable", folder=str(folder),
                                 reason=str(error).splitlines()[0][:200]) from None
        self.model.requires_grad_(False)
        size = self.model.config.image_size
        self.processor = (CLIPImageProcessor.from_pretrained(folder) if (folder / PROCESSOR_CONFIG).is_file()
                          else CLIPImageProcessor(size=size, crop_size=size))

    @torch.inference_mode()
    def embeddings(self, picture, *, hidden_states: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(positive, negative)`` as diffusers' ``encode_image`` + ``prepare_ip_adapter_image_embeds`` make them
        for one picture: the projected embedding [1, 1, D] and zeros, or (Plus adapters) the penultimate hidden
        states [1, 1, tokens, width] of the picture and of an all-zero picture."""
        parameter = next(self.model.parameters())
        pixels = self.processor(picture.convert("RGB"), return_tensors="pt").pixel_values
        pixels = pixels.to(device=parameter.device, dtype=parameter.dtype)
        if hidden_states:
            positive = self.model(pixels, output_hidden_states=True).hidden_states[-2]
            negative = self.model(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
        else:
            positive = self.model(pixels).image_embeds
            negative = torch.zeros_like(positive)
        return positive[None], negative[None]


class ImageEncoders:
    """Finds and loads the encoder of an adapter file; ``folders``: the clip_vision folders."""

    def __init__(self, folders: Sequence[Path], manager, device_config):
        self.folders = [Path(folder) for folder in folders]
        self.manager = manager
        self.device_config = device_config

    def find(self, adapter_path: Path, *, width: int | None = None, hidden_states: bool = False) -> Path:
        """The encoder for an adapter file that needs ``width`` (hidden states' width with ``hidden_states``)."""
        beside = Path(adapter_path).parent / BESIDE
        candidates = [beside]
        for folder in self.folders:
            candidates.append(folder)
            if folder.is_dir():
                candidates += sorted(child for child in folder.iterdir() if child.is_dir())
        for folder in candidates:
            if is_encoder_folder(folder) and (width is None or encoder_width(folder, hidden_states) == width):
                return folder
        raise UserError("ip_adapter_no_image_encoder", name=Path(adapter_path).name,
                        folders=", ".join(str(folder) for folder in [*self.folders, beside]))

    def for_adapter(self, adapter_path: Path, *, width: int | None = None, hidden_states: bool = False
                    ) -> ImageEncoder:
        folder = self.find(adapter_path, width=width, hidden_states=hidden_states)
        device, dtype = self.device_config.device, self.device_config.dtype
        size = (folder / WEIGHTS).stat().st_size
        return self.manager.load(MANAGER_KIND, str(folder), lambda: ImageEncoder(folder, device=device, dtype=dtype),
                                 name=f"{folder.name} (image encoder)", device=device, expected_bytes=size)
