"""sha256 of model files, computed once and remembered across restarts.

Hashing a 2-7 GB checkpoint takes seconds, so, like AUTOMATIC1111, results are stored in a JSON file and reused
while the file's size and modification time are unchanged. The short hash shown in titles and infotexts is the
first 10 hex digits. The cache file may hold other sections (written by other parts of the app); only our own
section is rewritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from paragoger.errors import ModelLoadError

SHORT_HASH_LENGTH = 10
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def short_hash(sha256: str) -> str:
    return sha256[:SHORT_HASH_LENGTH]


class HashCache:
    """``sha256(path)`` computed at most once per file version; entries keyed by absolute path."""

    def __init__(self, cache_file: Path, section: str = "paragoger-sha256", digest=None):
        """``digest(path) -> hex`` is the hash to cache (default: the file's sha256; LoRAs also keep A1111's
        "addnet" hash, of the tensors only, in a section of their own)."""
        self.cache_file = Path(cache_file)
        self.section = section
        self._digest = digest or sha256_of
        self._lock = threading.Lock()  # the UI and the API may ask for hashes at the same time
        self._entries: dict[str, dict] = self._read_all().get(section, {})

    def _read_all(self) -> dict:
        try:
            loaded = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    @staticmethod
    def _key(path: Path) -> str:
        return str(Path(path).resolve())

    @staticmethod
    def _stamp(path: Path) -> tuple[int, float]:
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime

    def cached(self, path: Path) -> str | None:
        """The stored sha256 if it is still valid for the file as it is now, without hashing anything."""
        entry = self._entries.get(self._key(path))
        try:
            size, mtime = self._stamp(path)
        except OSError:
            return None
        if entry and entry.get("size") == size and entry.get("mtime") == mtime:
            return entry.get("sha256")
        return None

    def sha256(self, path: Path) -> str:
        """The file's sha256, from the cache when the file is unchanged, else computed and stored."""
        with self._lock:
            found = self.cached(path)
            if found:
                return found
            try:
                size, mtime = self._stamp(path)
                digest = self._digest(path)
            except (OSError, ValueError) as error:  # ValueError: a safetensors file its digest cannot read
                raise ModelLoadError("hash_lookup_failed", name=Path(path).name, reason=str(error)) from None
            self._entries[self._key(path)] = {"size": size, "mtime": mtime, "sha256": digest}
            self._write()
            return digest

    def short(self, path: Path) -> str:
        return short_hash(self.sha256(path))

    def _write(self) -> None:
        everything = self._read_all()
        everything[self.section] = self._entries
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.cache_file.with_name(self.cache_file.name + ".tmp")
        temporary.write_text(json.dumps(everything, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.cache_file)  # never leave a half-written cache behind
