"""Finding checkpoints and VAEs on disk, and looking a checkpoint up the ways A1111 users refer to one.

Checkpoint folders are searched recursively (symlinked folders followed, as in A1111) for ``.safetensors`` and
``.ckpt`` files and for diffusers folders (a folder with ``model_index.json``, not searched further). A
checkpoint's name is its path relative to the folder it was found in, with ``/`` separators. Files named
``<x>.vae.safetensors``/``.vae.ckpt``/``.vae.pt`` are VAEs that belong to a checkpoint, not checkpoints.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from paragoger.model_manager.components import CheckpointInfo
from paragoger.model_manager.hashing import HashCache, short_hash  # noqa: F401  (HashCache is part of the API)

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
VAE_SUFFIXES = (".safetensors", ".ckpt", ".pt")
SIDECAR_VAE_SUFFIXES = (".vae.safetensors", ".vae.ckpt", ".vae.pt")


@dataclass(frozen=True)
class VaeInfo:
    path: Path
    name: str  # relative to its folder, as the VAE dropdown shows it


def _sort_key(name: str) -> list:
    """Case-insensitive natural order: ``model2`` before ``model10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def _walk(folder: Path):
    """``(directory, subdirectories, files)`` under ``folder``; diffusers folders are yielded, not entered."""
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories.sort()
        yield Path(directory), subdirectories, files


def files_with_suffixes(folders, suffixes: tuple[str, ...]):
    """``(folder, path)`` for every file below each existing folder whose suffix is one of ``suffixes``, in a
    stable order (folders as given, then sorted names); LoRA and embedding lists are built from this."""
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for directory, _subdirectories, files in _walk(folder):
            for file_name in sorted(files):
                if Path(file_name).suffix.lower() in suffixes:
                    yield folder, directory / file_name


PREVIEW_SUFFIXES = (".png", ".preview.png", ".jpg", ".preview.jpg", ".jpeg", ".preview.jpeg", ".webp",
                    ".preview.webp")


def preview_beside(path: Path) -> Path | None:
    """The card picture A1111 shows for a model file: ``<stem>.png`` or ``<stem>.preview.png`` (or jpg/webp)."""
    stem = Path(path).with_suffix("")
    for suffix in PREVIEW_SUFFIXES:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def _is_sidecar_vae(file_name: str) -> bool:
    return file_name.lower().endswith(SIDECAR_VAE_SUFFIXES)


def list_checkpoints(folders, hash_cache: HashCache | None = None) -> list[CheckpointInfo]:
    """Every checkpoint in ``folders`` (earlier folders win on equal names), sorted by name.

    Hashes are filled in only where ``hash_cache`` already knows them: listing never reads whole files.
    """
    found: dict[str, CheckpointInfo] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for directory, subdirectories, files in _walk(folder):
            if (directory / "model_index.json").is_file() and directory != folder:
                name = directory.relative_to(folder).as_posix()
                found.setdefault(name, CheckpointInfo(path=directory, name=name, model_name=directory.name,
                                                      is_diffusers_folder=True))
                subdirectories.clear()
                continue
            for file_name in files:
                if not file_name.lower().endswith(CHECKPOINT_SUFFIXES) or _is_sidecar_vae(file_name):
                    continue
                path = directory / file_name
                name = path.relative_to(folder).as_posix()
                sha = hash_cache.cached(path) if hash_cache else None
                found.setdefault(name, CheckpointInfo(path=path, name=name, model_name=path.stem, sha256=sha,
                                                      short_hash=short_hash(sha) if sha else None))
    return sorted(found.values(), key=lambda info: _sort_key(info.name))


def with_hash(info: CheckpointInfo, hash_cache: HashCache) -> CheckpointInfo:
    """``info`` with its sha256 and short hash (computed once, then cached). Diffusers folders have none."""
    if info.is_diffusers_folder or info.sha256:
        return info
    sha = hash_cache.sha256(info.path)
    return replace(info, sha256=sha, short_hash=short_hash(sha))


def find_checkpoint(checkpoints, query: str) -> CheckpointInfo | None:
    """The checkpoint ``query`` names, trying what ``sd_model_checkpoint`` accepts in A1111, in order:
    title (``name [hash]``), name, name without extension, stem (``model_name``), short hash, full sha256;
    then a title whose name part matches (its hash may be stale); then the shortest title containing ``query``.
    """
    query = query.strip()
    checkpoints = list(checkpoints)
    exact = (
        lambda c: c.title == query,
        lambda c: c.name == query,
        lambda c: os.path.splitext(c.name)[0] == query,
        lambda c: c.model_name == query,
        lambda c: bool(c.short_hash) and c.short_hash == query.lower(),
        lambda c: bool(c.sha256) and c.sha256 == query.lower(),
    )
    for matches in exact:
        for checkpoint in checkpoints:
            if matches(checkpoint):
                return checkpoint
    name_part = re.sub(r"\s*\[[0-9a-fA-F]+\]$", "", query)
    if name_part != query:
        return find_checkpoint(checkpoints, name_part)
    containing = [c for c in checkpoints if query and query in c.title]
    return min(containing, key=lambda c: len(c.title)) if containing else None


def list_vaes(vae_folders, checkpoint_folders=()) -> list[VaeInfo]:
    """VAE files in the VAE folders (recursive) and ``<name>.vae.*`` files beside checkpoints, sorted by name."""
    found: dict[str, VaeInfo] = {}
    for folder, sidecars_only in [*((f, False) for f in vae_folders), *((f, True) for f in checkpoint_folders)]:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        wanted = _is_sidecar_vae if sidecars_only else (lambda file_name: file_name.lower().endswith(VAE_SUFFIXES))
        for directory, _, files in _walk(folder):
            for file_name in files:
                if wanted(file_name):
                    path = directory / file_name
                    name = path.relative_to(folder).as_posix()
                    found.setdefault(name, VaeInfo(path=path, name=name))
    return sorted(found.values(), key=lambda vae: _sort_key(vae.name))


def find_vae(vaes, query: str) -> VaeInfo | None:
    """A VAE by name, by name without extension, or by file name."""
    for matches in (lambda v: v.name == query, lambda v: os.path.splitext(v.name)[0] == query,
                    lambda v: v.path.name == query):
        for vae in vaes:
            if matches(vae):
                return vae
    return None
