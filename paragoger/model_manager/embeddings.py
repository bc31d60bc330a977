"""Textual-inversion embeddings: the files in ``embeddings/``, which of them fit the loaded checkpoint, and their
hashes for the infotext.

An embedding is used by writing its file name (without extension) in a prompt; its vectors then take the place
of the name's tokens (``core.conditioning`` does that). File layouts read, as A1111 reads them:

* ``.pt`` written by A1111: a dict with ``string_to_param`` = ``{"*": tensor(n, width)}`` and ``name``, ``step``,
  ``sd_checkpoint``, ``sd_checkpoint_name``; read with torch's weights-only unpickler (``safe_pickle``), so a
  file that asks to run code is refused (files that store an ``nn.ParameterDict`` are refused the same way);
* ``.bin`` written by diffusers: ``{"<token>": tensor(width) or tensor(n, width)}`` (exactly one entry);
* ``.safetensors``: one tensor (``emb_params``, n x width), or SDXL's ``clip_l`` (n x 768) and ``clip_g``
  (n x 1280) for its two text encoders.

An embedding fits a checkpoint when its widths equal the widths of the checkpoint's text encoders (768 for SD 1.x,
1024 for SD 2.x, 768 + 1280 for SDXL); the others are listed but not offered. The ``TI hashes`` field is
``"name: <first 12 hex digits of the file's sha256>, ..."``, names without ``:`` and ``,``.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from paragoger.errors import ModelLoadError, UserError
from paragoger.model_manager.hashing import HashCache
from paragoger.model_manager.safe_pickle import load_ckpt
from paragoger.model_manager.safetensors_file import read_tensors
from paragoger.model_manager.scanner import files_with_suffixes, preview_beside

log = logging.getLogger(__name__)

EMBEDDING_SUFFIXES = (".pt", ".bin", ".safetensors")
TI_HASH_LENGTH = 12
# Text encoder widths of the real models -> family.
_FAMILY_BY_WIDTHS = {(768,): "sd1", (1024,): "sd2", (768, 1280): "sdxl"}


@dataclass(frozen=True, eq=False)
class Embedding:
    """One embedding. ``vectors[i]`` (count x width, float32, CPU) is for the checkpoint's i-th text encoder."""

    name: str
    path: Path
    vectors: tuple[torch.Tensor, ...]
    step: int | None = None
    checkpoint: str | None = None       # A1111's sd_checkpoint: short hash of the model it was trained on
    checkpoint_name: str | None = None  # sd_checkpoint_name

    @property
    def count(self) -> int:
        return int(self.vectors[0].shape[0])

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(int(v.shape[1]) for v in self.vectors)

    @property
    def families(self) -> tuple[str, ...]:
        family = _FAMILY_BY_WIDTHS.get(self.dims)
        return (family,) if family else ()

    def fits(self, components) -> bool:
        return self.dims == encoder_widths(components)


@dataclass(frozen=True)
class EmbeddingInfo:
    """An embedding file as the Textual Inversion tab lists it (``error`` set for files that could not be read)."""

    name: str
    path: Path
    vectors: int = 0
    dims: tuple[int, ...] = ()
    families: tuple[str, ...] = ()
    preview: Path | None = None
    step: int | None = None
    checkpoint: str | None = None
    checkpoint_name: str | None = None
    error: str | None = field(default=None, compare=False)


def encoder_widths(components) -> tuple[int, ...]:
    """The token embedding width of each text encoder of a checkpoint."""
    widths = []
    for encoder in (components.text_encoder, getattr(components, "text_encoder_2", None)):
        if encoder is not None:
            core = getattr(encoder, "text_model", encoder)
            widths.append(int(core.embeddings.token_embedding.weight.shape[1]))
    return tuple(widths)


def embedding_from_data(data, name: str, path: Path) -> Embedding:
    """An Embedding from a loaded file's content. Raises ValueError for anything that is not one."""
    if not isinstance(data, dict):
        raise ValueError("not an embedding file")
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)
        if not isinstance(params, dict) or len(params) != 1:
            raise ValueError("an A1111 embedding holds exactly one entry in string_to_param")
        vectors = (next(iter(params.values())),)
    elif "clip_l" in data and "clip_g" in data:
        vectors = (data["clip_l"], data["clip_g"])
    elif len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        vectors = (next(iter(data.values())),)
    else:
        raise ValueError("neither an A1111 embedding, an SDXL embedding nor a diffusers concept")
    out = []
    for vector in vectors:
        if not isinstance(vector, torch.Tensor) or not vector.is_floating_point():
            raise ValueError("embedding vectors must be float tensors")
        vector = vector.detach().to(device="cpu", dtype=torch.float32, copy=True)
        if vector.ndim == 1:
            vector = vector[None]
        if vector.ndim != 2 or vector.shape[0] == 0:
            raise ValueError(f"embedding vectors must be a (count, width) matrix, got {tuple(vector.shape)}")
        out.append(vector.contiguous())
    if len({v.shape[0] for v in out}) != 1:
        raise ValueError("clip_l and clip_g hold different numbers of vectors")
    step = data.get("step")
    checkpoint, checkpoint_name = data.get("sd_checkpoint"), data.get("sd_checkpoint_name")
    return Embedding(name=name, path=Path(path), vectors=tuple(out),
                     step=int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None,
                     checkpoint=checkpoint if isinstance(checkpoint, str) else None,
                     checkpoint_name=checkpoint_name if isinstance(checkpoint_name, str) else None)


def read_embedding_file(path: Path, name: str | None = None) -> Embedding:
    """Read one embedding file. Raises UserError (unsafe pickle) or ValueError (not an embedding)."""
    path = Path(path)
    name = name or path.stem
    try:
        if path.suffix.lower() == ".safetensors":
            data, _ = read_tensors(path)  # owned memory, not a view of the mapped file; ValueError if unreadable
        else:
            data = load_ckpt(path, display_name=path.name)
    except ModelLoadError as error:
        if error.key == "pickle_refused":
            raise UserError("network_pickle_refused", name=path.name, what=error.params.get("what", "?")) from None
        raise ValueError(error.params.get("reason", str(error))) from None
    return embedding_from_data(data, name, path)  # copies the vectors (float32), letting go of the file


class EmbeddingLibrary:
    """The embeddings in ``dirs`` (searched recursively; earlier folders and files win on equal names).

    Embeddings are small (a few KB), so ``refresh`` reads every file (again only when its size or modification
    time changed). Files that cannot be read are listed with their ``error`` and never offered.
    """

    def __init__(self, dirs: Iterable[Path], hash_cache: HashCache):
        self.dirs = tuple(Path(d) for d in dirs)
        self.hash_cache = hash_cache
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[tuple, Embedding | None, str | None]] = {}
        self._infos: dict[str, EmbeddingInfo] = {}
        self._embeddings: dict[str, Embedding] = {}
        self.refresh()

    def refresh(self) -> list[EmbeddingInfo]:
        infos: dict[str, EmbeddingInfo] = {}
        embeddings: dict[str, Embedding] = {}
        loaded = {}
        for _folder, path in files_with_suffixes(self.dirs, EMBEDDING_SUFFIXES):
            name = path.stem
            if name in infos:
                log.warning("embedding %s: another file named %s was found first (%s); ignoring it",
                            path, name, infos[name].path)
                continue
            entry = self._read(path, name)
            if entry is None:
                continue
            loaded[str(path)] = entry
            _, embedding, error = entry
            if embedding is None:
                infos[name] = EmbeddingInfo(name=name, path=path, preview=preview_beside(path), error=error)
                continue
            embeddings[name] = embedding
            infos[name] = EmbeddingInfo(name=name, path=path, vectors=embedding.count, dims=embedding.dims,
                                        families=embedding.families, preview=preview_beside(path),
                                        step=embedding.step, checkpoint=embedding.checkpoint,
                                        checkpoint_name=embedding.checkpoint_name)
        with self._lock:
            self._loaded = loaded
            self._infos = dict(sorted(infos.items(), key=lambda item: _sort_key(item[0])))
            self._embeddings = embeddings
        return self.entries()

    def _read(self, path: Path, name: str):
        try:
            stat = os.stat(path)
        except OSError:
            return None
        if stat.st_size == 0:
            return None
        stamp = (stat.st_size, stat.st_mtime_ns)
        previous = self._loaded.get(str(path))
        if previous is not None and previous[0] == stamp and (previous[1] is None or previous[1].name == name):
            return previous
        try:
            return stamp, read_embedding_file(path, name), None
        except (UserError, ValueError) as error:
            log.warning("embedding %s could not be read: %s", path, error)
            return stamp, None, str(error)

    def entries(self) -> list[EmbeddingInfo]:
        with self._lock:
            return list(self._infos.values())

    def get(self, name: str) -> Embedding | None:
        with self._lock:
            return self._embeddings.get(name)

    def for_components(self, components) -> dict[str, Embedding]:
        """``{name: Embedding}`` of the embeddings that fit the checkpoint's text encoders (the ones to offer and
        to hand to ``PromptEncoder(embeddings=...)``)."""
        widths = encoder_widths(components)
        with self._lock:
            return {name: e for name, e in self._embeddings.items() if e.dims == widths}

    def skipped_for(self, components) -> list[str]:
        """Names of readable embeddings that do not fit the checkpoint (A1111's "skipped" list)."""
        widths = encoder_widths(components)
        with self._lock:
            return [name for name, e in self._embeddings.items() if e.dims != widths]

    def sha256(self, embedding: Embedding) -> str:
        return self.hash_cache.sha256(embedding.path)

    def short_hash(self, embedding: Embedding) -> str:
        return self.sha256(embedding)[:TI_HASH_LENGTH]


def _sort_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def ti_hashes_field(used, library: EmbeddingLibrary) -> str:
    """The infotext's ``TI hashes`` value, ``"name1: 0123456789ab, name2: ..."``, for the embeddings a generation
    used (``PromptEncoder.used_embeddings``: a dict name -> Embedding, or any iterable of Embeddings)."""
    items = used.values() if isinstance(used, dict) else used
    found: dict[str, str] = {}
    for embedding in items:
        name = embedding.name.replace(":", "").replace(",", "")
        if name and name not in found:
            found[name] = library.short_hash(embedding)
    return ", ".join(f"{name}: {short}" for name, short in found.items())
