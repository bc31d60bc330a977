"""The "deepdanbooru" captioner (A1111's "Interrogate DeepBooru"): booru tags from a WD tagger in timm format.

A folder models/deepbooru/<name> holds what SmilingWolf's wd-*-tagger-v3 repositories ship for timm: config.json
(the timm architecture, ``model_args`` and ``pretrained_cfg``), model.safetensors and selected_tags.csv
(``tag_id,name,category,count``; category 9 is the rating, 0 general, 4 character). The model is built by timm's
``local-dir:`` loader, so nothing is fetched. Rating tags (general, sensitive, ...) describe the picture's
audience, not its content, and are never written into the prompt.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from PIL import Image

from paragoger.caption.folders import compute_dtype, first_line, first_model_folder
from paragoger.caption.tags import TagOptions, format_tags
from paragoger.devices import DeviceConfig
from paragoger.errors import ModelLoadError, UserError
from paragoger.model_manager.memory import ModelManager

TAGS_FILE = "selected_tags.csv"
RATING_CATEGORY = 9


@dataclass(frozen=True)
class TagList:
    names: tuple[str, ...]
    categories: tuple[int, ...]


def read_tag_list(path: Path) -> TagList:
    """selected_tags.csv -> names and categories, in the model's output order."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        names = tuple(row["name"] for row in rows)
        categories = tuple(int(row.get("category") or 0) for row in rows)
    except (OSError, KeyError, ValueError, csv.Error) as error:
        raise ModelLoadError("tagger_tags_unreadable", path=path, reason=first_line(error)) from None
    return TagList(names, categories)


def square_on_white(image: Image.Image) -> Image.Image:
    """Pad to a square with white, centred: the taggers were trained on padded, not cropped, pictures."""
    side = max(image.size)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas


@dataclass
class LoadedTagger:
    model: Any
    transform: Any
    tags: TagList
    device: torch.device
    dtype: torch.dtype

    @classmethod
    def load(cls, folder: Path, device: DeviceConfig) -> "LoadedTagger":
        import timm
        from timm.data import create_transform, resolve_data_config

        tags = read_tag_list(folder / TAGS_FILE)
        try:
            model = timm.create_model(f"local-dir:{folder}", pretrained=True)
        except Exception as error:  # timm, safetensors and torch raise many kinds for a broken folder
            raise ModelLoadError("caption_model_unreadable", kind="tagger", folder=folder,
                                 reason=first_line(error)) from None
        outputs = getattr(model, "num_classes", len(tags.names))
        if outputs != len(tags.names):
            raise ModelLoadError("tagger_tags_mismatch", folder=folder, outputs=outputs, tags=len(tags.names))
        transform = create_transform(**resolve_data_config(model=model))
        dtype = compute_dtype(device)
        return cls(model.to(device.device, dtype).eval().requires_grad_(False), transform, tags, device.device,
                   dtype)

    @torch.inference_mode()
    def scores(self, image: Image.Image) -> dict[str, float]:
        """Every content tag (ratings left out) with its probability."""
        pixels = self.transform(square_on_white(image)).unsqueeze(0)
        pixels = pixels[:, [2, 1, 0]]  # the WD taggers were trained on BGR pictures
        probabilities = self.model(pixels.to(self.device, self.dtype)).float().sigmoid()[0].tolist()
        return {name: p for name, category, p in zip(self.tags.names, self.tags.categories, probabilities)
                if category != RATING_CATEGORY}


class WdTagger:
    name = "deepdanbooru"
    title = "DeepBooru (WD tagger tags)"

    def __init__(self, root: Path, device: DeviceConfig, manager: ModelManager | None = None):
        self.root = Path(root)
        self.device = device
        self.manager = manager if manager is not None else ModelManager(device.device)

    def caption(self, image: Image.Image, options: Mapping[str, Any]) -> str:
        with self.manager.holding():
            return format_tags(self._tagger().scores(image), TagOptions.from_settings(options))

    def _tagger(self) -> LoadedTagger:
        folder = first_model_folder(self.root)
        if folder is None:
            raise UserError("tagger_model_missing", folder=self.root)
        self.manager.unload_where("captioner", lambda key: key[0] == self.name and key[1] != str(folder))
        return self.manager.load("captioner", (self.name, str(folder)), lambda: LoadedTagger.load(folder, self.device),
                                 name=f"{self.title}: {folder.name}", device=self.device.device)

    def loaded(self) -> bool:
        return any(key[0] == self.name for key in (e.key for e in self.manager.entries("captioner")))

    def unload(self) -> None:
        self.manager.unload_where("captioner", lambda key: key[0] == self.name)
