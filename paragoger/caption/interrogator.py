"""The "clip" captioner (A1111's "Interrogate CLIP"): a BLIP sentence, then the best CLIP-ranked flavours.

    "a woman sitting on a bench, an oil painting, by Claude Monet, impressionism, soft light, ..."

BLIP comes from the first folder in models/BLIP (required); the flavours only when models/CLIP holds a CLIP
folder, else the sentence alone is the answer. Models load on first use, in the job worker, through the model
manager (kind "captioner"), and stay until ``unload`` (the registry calls it unless
"interrogate_keep_models_in_memory" is on) or until the memory budgets need the room.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from PIL import Image

from paragoger.caption.blip import BlipCaptioner
from paragoger.caption.flavours import ClipRanker, load_categories
from paragoger.caption.folders import first_model_folder
from paragoger.devices import DeviceConfig
from paragoger.errors import UserError
from paragoger.model_manager.memory import ModelManager


class ClipInterrogator:
    name = "clip"
    title = "CLIP (BLIP caption and flavours)"

    def __init__(self, blip_dir: Path, clip_dir: Path, list_dirs: list[Path], device: DeviceConfig,
                 manager: ModelManager | None = None):
        self.blip_dir, self.clip_dir, self.list_dirs = Path(blip_dir), Path(clip_dir), list(list_dirs)
        self.device = device
        self.manager = manager if manager is not None else ModelManager(device.device)

    def caption(self, image: Image.Image, options: Mapping[str, Any]) -> str:
        with self.manager.holding():
            return self._caption(image, options)

    def _caption(self, image: Image.Image, options: Mapping[str, Any]) -> str:
        text = self._blip_model().describe(
            image, num_beams=options.get("interrogate_clip_num_beams", 1),
            min_length=options.get("interrogate_clip_min_length", 24),
            max_length=options.get("interrogate_clip_max_length", 48))
        ranker = self._clip_model()
        if ranker is None:
            return text
        features = ranker.image_features(image)
        with_ranks = bool(options.get("interrogate_return_ranks", False))
        parts = [text] if text else []
        for category in load_categories(self.list_dirs):
            for entry, probability in ranker.rank(features, category):
                parts.append(f"({entry}:{probability:.3f})" if with_ranks else entry)
        return ", ".join(parts)

    def _blip_model(self) -> BlipCaptioner:
        folder = first_model_folder(self.blip_dir)
        if folder is None:
            raise UserError("blip_model_missing", folder=self.blip_dir)
        return self._load("BLIP", folder, BlipCaptioner.load)

    def _clip_model(self) -> ClipRanker | None:
        folder = first_model_folder(self.clip_dir)
        if folder is None:
            self.manager.unload_where("captioner", lambda key: key[:2] == (self.name, "CLIP"))
            return None
        return self._load("CLIP", folder, ClipRanker.load)

    def _load(self, part: str, folder: Path, load):
        """The ``part`` model from ``folder``, through the manager (one folder per part stays loaded)."""
        self.manager.unload_where("captioner", lambda key: key[:2] == (self.name, part) and key[2] != str(folder))
        return self.manager.load("captioner", (self.name, part, str(folder)), lambda: load(folder, self.device),
                                 name=f"{part}: {folder.name}", device=self.device.device)

    def unload(self) -> None:
        self.manager.unload_where("captioner", lambda key: key[0] == self.name)
