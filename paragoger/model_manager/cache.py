"""The checkpoint cache: checkpoints as the model manager holds them (``memory.ModelManager``, kind "checkpoint").

Every mode asks the cache for Components and gets the very same module objects: weights are loaded once and
never copied. At most ``limit`` checkpoints stay (the setting "Checkpoints to keep in memory"), fewer when the
memory budgets need the room; the others are dropped and their memory freed. A failed load leaves the loaded
models as they were.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from paragoger.devices import DeviceConfig
from paragoger.model_manager.components import CheckpointInfo, Components
from paragoger.model_manager.memory import ModelManager, measure

Loader = Callable[..., Components]
KIND = "checkpoint"


@dataclass(frozen=True)
class LoadedModel:
    title: str
    device: str
    dtype: str
    bytes: int


def module_bytes(components: Components) -> int:
    """Bytes the checkpoint's modules hold, each storage counted once."""
    return sum(sum(sizes.values()) for sizes in measure(components).values())


def expected_bytes(path: Path) -> int:
    """About what loading a checkpoint takes: its file's size (a diffusers folder: its weight files')."""
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.suffix in (".safetensors", ".bin"))
    return path.stat().st_size if path.exists() else 0


class ModelCache:
    def __init__(self, loader: Loader, device: DeviceConfig, *, limit: int = 1, manager: ModelManager | None = None):
        self._loader = loader
        self.device = device
        self.manager = manager if manager is not None else ModelManager(device.device)
        self.limit = limit

    @property
    def limit(self) -> int:
        return self.manager.limits[KIND]

    @limit.setter
    def limit(self, value: int) -> None:
        self.manager.limits[KIND] = max(1, int(value))

    @property
    def current(self) -> Components | None:
        """The most recently used checkpoint, or None when nothing is loaded."""
        entries = self.manager.entries(KIND)
        return entries[-1].model if entries else None

    def get(self, info: CheckpointInfo, vae_path=None, *, vae_beside: bool = True) -> Components:
        """Components for ``info`` (with ``vae_path`` replacing its VAE), loading them only when not cached.

        ``vae_beside=False`` ignores a ``<name>.vae.safetensors`` beside the checkpoint (the VAE setting "None").
        """
        key = (str(info.path), str(vae_path) if vae_path else None, vae_beside)
        return self.manager.load(KIND, key, lambda: self._load(info, vae_path, vae_beside), name=info.title,
                                 device=self.device.device, expected_bytes=expected_bytes(info.path))

    def _load(self, info: CheckpointInfo, vae_path, vae_beside: bool) -> Components:
        components = self._loader(info, device=self.device.device, dtype=self.device.dtype,
                                  vae_path=vae_path, vae_beside_checkpoint=vae_beside)
        if components.vae.dtype != self.device.vae_dtype:  # --no-half-vae, or fp32 VAE beside a bf16 UNet
            components.vae.to(self.device.vae_dtype)
        return components

    def unload_all(self) -> None:
        self.manager.unload_where(KIND)

    def loaded(self) -> list[LoadedModel]:
        models = [(entry.model, entry.placed) for entry in self.manager.entries(KIND)]
        return [LoadedModel(model.info.title, str(placed), str(self.device.dtype), module_bytes(model))
                for model, placed in models if model is not None]
