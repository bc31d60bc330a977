"""Image to text: captioners by name ("clip": BLIP caption and CLIP-ranked flavours; "deepdanbooru": WD tagger
booru tags), read offline from the models folder, and those extensions register. No Gradio here."""
from __future__ import annotations

from pathlib import Path

from paragoger.caption.interrogator import ClipInterrogator
from paragoger.caption.registry import Captioner, CaptionerRegistry, flatten_rgb
from paragoger.caption.tagger import WdTagger
from paragoger.devices import DeviceConfig
from paragoger.model_manager.memory import ModelManager
from paragoger.paths import CONFIGS_DIR

BLIP_FOLDER, CLIP_FOLDER, TAGGER_FOLDER, LISTS_FOLDER = "BLIP", "CLIP", "deepbooru", "interrogate"


def default_captioners(models_dir: Path, device: DeviceConfig, manager: ModelManager | None = None
                       ) -> CaptionerRegistry:
    """The built-in captioners over A1111's folders: models/BLIP, models/CLIP, models/deepbooru; word lists from
    configs/interrogate, replaced file by file by models/interrogate. Their models load through ``manager``."""
    models_dir = Path(models_dir)
    manager = manager if manager is not None else ModelManager(device.device)
    return CaptionerRegistry([
        ClipInterrogator(models_dir / BLIP_FOLDER, models_dir / CLIP_FOLDER,
                         [CONFIGS_DIR / LISTS_FOLDER, models_dir / LISTS_FOLDER], device, manager),
        WdTagger(models_dir / TAGGER_FOLDER, device, manager),
    ])


__all__ = ["Captioner", "CaptionerRegistry", "ClipInterrogator", "WdTagger", "default_captioners", "flatten_rgb"]
