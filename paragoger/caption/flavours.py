"""CLIP ranking of "flavours": which medium, artist, movement and style words fit a picture best.

The word lists are text files, one entry per line: configs/interrogate/*.txt ship with the app, and a file of the
same name in models/interrogate replaces it (A1111 keeps its lists there too). ``flavors.top3.txt`` contributes
its best 3 entries, any other file its best one. The ranking model is a transformers ``CLIPModel`` folder under
models/CLIP (e.g. a copy of openai/clip-vit-large-patch14, the CLIP A1111's interrogator uses), read offline.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from paragoger.caption.folders import load_pretrained
from paragoger.devices import DeviceConfig

# Lists in this order first (as A1111 writes them), any others after, by name.
CATEGORY_ORDER = ("mediums", "artists", "movements", "trending", "flavors")
_FILE_NAME = re.compile(r"^(?P<name>.+?)(?:\.top(?P<top>\d+))?$")
TEXT_BATCH = 64


@dataclass(frozen=True)
class Category:
    name: str
    items: tuple[str, ...]
    top_count: int = 1


def load_categories(folders: list[Path]) -> list[Category]:
    """The word lists in ``folders``; a later folder's file replaces an earlier one of the same list name."""
    found: dict[str, Category] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.txt")) if Path(folder).is_dir() else []:
            match = _FILE_NAME.match(path.stem)
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            items = tuple(dict.fromkeys(line.strip() for line in lines if line.strip()))
            if items:
                found[match["name"]] = Category(match["name"], items, int(match["top"] or 1))

    def order(category: Category):
        known = category.name in CATEGORY_ORDER
        return (0, CATEGORY_ORDER.index(category.name)) if known else (1, category.name)
    return sorted(found.values(), key=order)


@dataclass
class ClipRanker:
    model: Any        # transformers CLIPModel
    processor: Any    # CLIPProcessor: image processor + tokenizer
    device: torch.device
    dtype: torch.dtype
    _text_cache: dict = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path, device: DeviceConfig) -> "ClipRanker":
        from transformers import CLIPModel, CLIPProcessor

        model, processor, dtype = load_pretrained(CLIPModel, CLIPProcessor, folder, device, kind="CLIP")
        return cls(model, processor, device.device, dtype)

    @torch.inference_mode()
    def image_features(self, image: Image.Image) -> torch.Tensor:
        pixels = self.processor(images=image, return_tensors="pt").pixel_values.to(self.device, self.dtype)
        return _unit(_features(self.model.get_image_features(pixel_values=pixels)))

    @torch.inference_mode()
    def text_features(self, texts: tuple[str, ...]) -> torch.Tensor:
        """Unit vectors of ``texts``, computed once per list while the model is loaded."""
        if texts not in self._text_cache:
            chunks = []
            for start in range(0, len(texts), TEXT_BATCH):
                tokens = self.processor.tokenizer(list(texts[start:start + TEXT_BATCH]), padding=True,
                                                  truncation=True, return_tensors="pt").to(self.device)
                chunks.append(_unit(_features(self.model.get_text_features(**tokens))))
            self._text_cache[texts] = torch.cat(chunks)
        return self._text_cache[texts]

    @torch.inference_mode()
    def rank(self, image_features: torch.Tensor, category: Category) -> list[tuple[str, float]]:
        """The category's best ``top_count`` entries with their share of the softmax over the whole list."""
        similarity = image_features @ self.text_features(category.items).T
        probabilities = (self.model.logit_scale.exp() * similarity).float().softmax(dim=-1)[0]
        best = probabilities.topk(min(category.top_count, len(category.items)))
        return [(category.items[i], float(p)) for p, i in zip(best.values.tolist(), best.indices.tolist())]


def _features(output) -> torch.Tensor:
    """transformers 5 answers a model output whose pooled part is the projection; older ones a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=-1, keepdim=True)
