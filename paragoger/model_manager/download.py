"""Fetching the default checkpoint for a user who asks for it (``--download-default``) and is online.

Nothing else in the app downloads anything. The file is streamed to a temporary name beside its target with a
progress line, its sha256 is checked, and only then is it renamed into place: an interrupted or corrupted
download never appears in the checkpoint list.
"""
from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from paragoger.errors import ModelLoadError


@dataclass(frozen=True)
class DownloadSpec:
    url: str
    filename: str
    sha256: str


DEFAULT_CHECKPOINT = DownloadSpec(
    url="https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/resolve/main/"
        "v1-5-pruned-emaonly.safetensors",
    filename="v1-5-pruned-emaonly.safetensors",
    sha256="6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
)


def download(spec: DownloadSpec, folder: Path, *, progress=None, chunk_size: int = 1 << 20) -> Path:
    """Download ``spec`` into ``folder``; returns the final path. Raises ModelLoadError on a failure or a
    checksum mismatch (the partial file is removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / spec.filename
    if target.exists():
        return target
    partial = folder / f".{spec.filename}.download"
    digest = hashlib.sha256()
    report = progress or _print_progress
    try:
        with urllib.request.urlopen(spec.url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(chunk_size):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                report(done, total)
            out.flush()
            os.fsync(out.fileno())
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise ModelLoadError("download_failed", url=spec.url, reason=str(err)) from None
    if digest.hexdigest() != spec.sha256:
        partial.unlink(missing_ok=True)
        raise ModelLoadError("download_checksum", name=spec.filename)
    os.replace(partial, target)
    return target


def download_default_checkpoint(folder: Path) -> Path:
    return download(DEFAULT_CHECKPOINT, folder)


def _print_progress(done: int, total: int) -> None:
    if total:
        sys.stdout.write(f"\rDownloading: {done / total:6.1%} of {total / 1e9:.2f} GB")
    else:
        sys.stdout.write(f"\rDownloading: {done / 1e6:.0f} MB")
    if total and done >= total:
        sys.stdout.write("\n")
    sys.stdout.flush()
