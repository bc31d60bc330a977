"""The checkpoints and VAEs the app can offer: listed from the model folders, looked up by what users type.

One instance per app (held by the context); ``refresh`` rescans the folders, as the UI's refresh button and
``/sdapi/v1/refresh-checkpoints`` do. Hashes are computed when a checkpoint is looked up for loading (once per
file version, thanks to the hash cache), so titles gain their ``[hash]`` as models are used, as in A1111.
"""
from __future__ import annotations

import threading
from pathlib import Path

from paragoger.errors import NotFoundError
from paragoger.model_manager import scanner
from paragoger.model_manager.components import CheckpointInfo
from paragoger.model_manager.hashing import HashCache

# What the VAE setting may hold besides a VAE's name (A1111's choices).
VAE_AUTOMATIC, VAE_NONE = "Automatic", "None"
TEST_MODEL_NAME = "paragoger-tiny-{kind}.safetensors"


class ModelLibrary:
    def __init__(self, paths):
        self.paths = paths
        self.hash_cache = HashCache(paths.hash_cache_file)
        self._lock = threading.Lock()
        self._checkpoints: list[CheckpointInfo] = []
        self._vaes: list[scanner.VaeInfo] = []
        self.refresh()

    def refresh(self) -> None:
        checkpoints = scanner.list_checkpoints(self.paths.checkpoint_dirs, self.hash_cache)
        vaes = scanner.list_vaes(self.paths.vae_dirs, self.paths.checkpoint_dirs)
        with self._lock:
            self._checkpoints, self._vaes = checkpoints, vaes

    def checkpoints(self) -> list[CheckpointInfo]:
        with self._lock:
            return list(self._checkpoints)

    def vaes(self) -> dict[str, Path]:
        """VAE name -> file, in dropdown order."""
        with self._lock:
            return {vae.name: vae.path for vae in self._vaes}

    def find_checkpoint(self, query: str | None) -> CheckpointInfo:
        """The checkpoint ``query`` names (title, name, stem or hash), with its hash; None: the first one.

        Raises NotFoundError("no_checkpoint") when there are none, ("checkpoint_not_found") for unknown names.
        """
        found = self.lookup_checkpoint(query)
        hashed = scanner.with_hash(found, self.hash_cache)
        with self._lock:
            self._checkpoints = [hashed if c.path == found.path else c for c in self._checkpoints]
        return hashed

    def lookup_checkpoint(self, query: str | None) -> CheckpointInfo:
        """The checkpoint ``query`` names, without hashing it (cheap: for checks before queueing); the same
        NotFoundErrors as ``find_checkpoint``."""
        checkpoints = self.checkpoints()
        if not checkpoints:
            raise NotFoundError("no_checkpoint", folder=str(self.paths.default_checkpoint_dir()))
        found = checkpoints[0] if not query else scanner.find_checkpoint(checkpoints, query)
        if found is None:
            raise NotFoundError("checkpoint_not_found", name=query)
        return found

    def find_vae(self, name: str | None) -> Path | None:
        """The VAE file the setting ``name`` selects; None for "Automatic"/"None"/empty (the loader then uses
        ``<checkpoint>.vae.safetensors`` when present, else the checkpoint's own VAE).
        """
        if not name or name in (VAE_AUTOMATIC, VAE_NONE):
            return None
        with self._lock:
            found = scanner.find_vae(self._vaes, name)
        if found is None:
            raise NotFoundError("vae_not_found", name=name)
        return found.path

    def create_test_model(self, kind: str = "sd1") -> CheckpointInfo:
        """Write a tiny random model (its images are noise) into the default checkpoint folder and list it."""
        from paragoger.model_manager import tiny_model  # builds models: only imported when asked for one

        path = self.paths.default_checkpoint_dir() / TEST_MODEL_NAME.format(kind=kind)
        if not path.exists():
            tiny_model.write_single_file(path, kind)
        self.refresh()
        return next(c for c in self.checkpoints() if c.path == path)
