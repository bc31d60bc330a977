"""The "clip" captioner (A1111's "Interrogate CLIP"): a BLIP sentence, then the best CLIP-ranked flavours.

    "a woman sitting on a bench, an oil painting, by Claude Monet, impressionism, soft light, ..."

BLIP comes from the first folder in models/BLIP (required); the flavours only when models/CLIP holds a CLIP
folder, else the sentence alone is the answer. Models load on first use, in the job worker, and stay until
``unload`` (the registry calls it unless "interrogate_keep_models_in_memory" is on).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from PIL import Image

from paragoger.caption.blip import BlipCaptioner
from paragoger.caption.flavours import ClipRanker, load_categories
from paragoger.caption.folders import first_model_folder
from paragoger.devices import DeviceConfig, free_memory
from paragoger.errors import UserError


class ClipInterrogator:
    name = "clip"
    title = "CLIP (BLIP caption and flavours)"

    def __init__(self, blip_dir: Path, clip_dir: Path, list_dirs: list[Path], device: DeviceConfig):
        self.blip_dir, self.clip_dir, self.list_dirs = Path(blip_dir), Path(clip_dir), list(list_dirs)
        self.device = device
        self._blip: tuple[Path, BlipCaptioner] | None = None
        self._clip: tuple[Path, ClipRanker] | None = None

    def caption(self, image: Image.Image, options: Mapping[str, Any]) -> str:
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
        if self._blip is None or self._blip[0] != folder:
            self._blip = (folder, BlipCaptioner.load(folder, self.device))
        return self._blip[1]

    def _clip_model(self) -> ClipRanker | None:
        folder = first_model_folder(self.clip_dir)
        if folder is None:
            self._clip = None
            return None
        if self._clip is None or self._clip[0] != folder:
            self._clip = (folder, ClipRanker.load(folder, self.device))
        return self._clip[1]

    def unload(self) -> None:
        if self._blip is not None or self._clip is not None:
            self._blip = self._clip = None
            free_memory(self.device.device)
