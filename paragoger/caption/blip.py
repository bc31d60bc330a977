"""BLIP image captioning through transformers, from a Hugging-Face-layout folder (models/BLIP/<name>), offline.

A folder is what ``save_pretrained`` writes for ``BlipForConditionalGeneration`` and its ``BlipProcessor``:
config.json, model.safetensors, the preprocessor config and the BERT tokenizer files, e.g. a copy of
Salesforce/blip-image-captioning-base or -large. Everything loads with ``local_files_only=True``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from paragoger.caption.folders import load_pretrained
from paragoger.devices import DeviceConfig


@dataclass
class BlipCaptioner:
    model: Any       # BlipForConditionalGeneration
    processor: Any   # BlipProcessor: image processor + tokenizer
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def load(cls, folder: Path, device: DeviceConfig) -> "BlipCaptioner":
        from transformers import BlipForConditionalGeneration, BlipProcessor

        model, processor, dtype = load_pretrained(BlipForConditionalGeneration, BlipProcessor, folder, device,
                                                  kind="BLIP")
        return cls(model, processor, device.device, dtype)

    @torch.inference_mode()
    def describe(self, image: Image.Image, *, num_beams: int = 1, min_length: int = 24,
                 max_length: int = 48) -> str:
        """One sentence about ``image`` (greedy or beam search; lengths in tokens, as A1111's settings)."""
        max_length = max(2, int(max_length))
        min_length = min(max(0, int(min_length)), max_length)
        pixels = self.processor(images=image, return_tensors="pt").pixel_values.to(self.device, self.dtype)
        ids = self.model.generate(pixel_values=pixels, num_beams=max(1, int(num_beams)), do_sample=False,
                                  min_length=min_length, max_length=max_length)
        return " ".join(self.processor.decode(ids[0], skip_special_tokens=True).split())
