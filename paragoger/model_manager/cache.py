"""The model cache: which checkpoints are loaded, on which device, and how much memory they hold.

Every mode asks the cache for Components and gets the very same module objects: weights are loaded once and
never copied. Switching checkpoints keeps at most ``limit`` of them (the setting "Checkpoints to keep in
memory"); the others are dropped and their memory freed. A failed load leaves the loaded models as they were.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from paragoger.devices import DeviceConfig, free_memory, weights_outside_heap
from paragoger.model_manager.components import CheckpointInfo, Components

Loader = Callable[..., Components]


@dataclass(frozen=True)
class LoadedModel:
    title: str
    device: str
    dtype: str
    bytes: int


def module_bytes(components: Components) -> int:
    seen, total = set(), 0
    for module in components.modules().values():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.data_ptr() not in seen and tensor.device.type != "meta":
                seen.add(tensor.data_ptr())
                total += tensor.numel() * tensor.element_size()
    return total


class ModelCache:
    def __init__(self, loader: Loader, device: DeviceConfig, *, limit: int = 1,
                 on_loaded: Callable[[Components], None] | None = None):
        self._loader = loader
        self.device = device
        self.limit = max(1, limit)
        self._loaded: OrderedDict[tuple, Components] = OrderedDict()
        self._lock = threading.RLock()
        self._on_loaded = on_loaded

    @property
    def current(self) -> Components | None:
        """The most recently used checkpoint, or None when nothing is loaded."""
        with self._lock:
            return next(reversed(self._loaded.values()), None)

    def get(self, info: CheckpointInfo, vae_path=None, *, vae_beside: bool = True) -> Components:
        """Components for ``info`` (with ``vae_path`` replacing its VAE), loading them only when not cached.

        ``vae_beside=False`` ignores a ``<name>.vae.safetensors`` beside the checkpoint (the VAE setting "None").
        """
        key = (str(info.path), str(vae_path) if vae_path else None, vae_beside)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            # Make room before loading, so two large models never need to fit at once; the model in use is
            # only dropped once the new one has loaded (a corrupt file must leave it in place).
            while len(self._loaded) > self.limit - 1 and len(self._loaded) > 1:
                self._drop(next(iter(self._loaded)))
            with weights_outside_heap():
                components = self._loader(info, device=self.device.device, dtype=self.device.dtype,
                                          vae_path=vae_path, vae_beside_checkpoint=vae_beside)
            if components.vae.dtype != self.device.vae_dtype:  # --no-half-vae, or fp32 VAE beside a bf16 UNet
                components.vae.to(self.device.vae_dtype)
            while len(self._loaded) >= self.limit:
                self._drop(next(iter(self._loaded)))
            self._loaded[key] = components
        if self._on_loaded is not None:
            self._on_loaded(components)
        return components

    def unload_all(self) -> None:
        with self._lock:
            for key in list(self._loaded):
                self._drop(key)

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return [LoadedModel(c.info.title, str(self.device.device), str(self.device.dtype), module_bytes(c))
                    for c in self._loaded.values()]

    def _drop(self, key) -> None:
        components = self._loaded.pop(key)
        del components
        free_memory(self.device.device)

