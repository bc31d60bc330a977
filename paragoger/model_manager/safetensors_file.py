"""Reading ``.safetensors`` files: the one place the app does, always through the safetensors library.

``read_header``: each tensor's shape and dtype and the ``__metadata__`` strings, without reading any tensor data.
``read_tensors``: the tensors (and the metadata), read into the process's own memory with the library's ``pread``
backend, in file order; nothing is memory-mapped, so a loaded tensor neither changes nor crashes when its file is
overwritten or cut, and memory holds each weight once. ``keep`` leaves tensors unread (a checkpoint's EMA copies).
``data_start``: where the tensor bytes begin (the "addnet" LoRA hash covers only those).

The library validates a file when it is opened (header size, JSON, dtypes, offsets covering the file exactly), so
a truncated or foreign file fails there. Every failure is a ``SafetensorsReadError`` (a ValueError) whose text is
one line saying why; the callers turn it into their own message (checkpoint, LoRA, embedding, upscaler).

Writing stays with the writers (``safetensors.torch.save_file``; ``full_size`` streams a 2 GB file by hand).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

# The format's own fixed prefix: the header's length as a little-endian 64-bit number (the library keeps it to
# itself; only data_start needs it, after the library has accepted the file).
_LENGTH_PREFIX = 8


class SafetensorsReadError(ValueError):
    """A file the safetensors library cannot read; ``str()`` is one line saying why."""


@dataclass(frozen=True)
class SafetensorsHeader:
    """What a file's header says: ``shapes[key]``, ``dtypes[key]`` (the format's codes: ``F16``, ``BF16``, ...)
    and the ``__metadata__`` strings. Keys are in file order."""

    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    metadata: dict[str, str]

    @property
    def keys(self) -> list[str]:
        return list(self.shapes)


def _reason(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _open(path: Path):
    return safe_open(str(path), framework="pt", device="cpu", backend="pread")


def read_header(path: Path) -> SafetensorsHeader:
    """Shapes, dtypes and metadata of a safetensors file, no tensor data read."""
    try:
        with _open(path) as handle:
            shapes, dtypes = {}, {}
            for key in handle.offset_keys():
                tensor_slice = handle.get_slice(key)
                shapes[key] = tuple(tensor_slice.get_shape())
                dtypes[key] = tensor_slice.get_dtype()
            return SafetensorsHeader(shapes, dtypes, dict(handle.metadata() or {}))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise SafetensorsReadError(_reason(error)) from None


def read_tensors(path: Path, *, keep: Callable[[str], bool] | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file, each tensor in freshly allocated memory (see the module
    notes); keys ``keep`` refuses are never read."""
    try:
        with _open(path) as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.offset_keys() if keep is None or keep(key)}
        return tensors, metadata
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise SafetensorsReadError(_reason(error)) from None


def data_start(path: Path) -> int:
    """The offset of the first tensor byte: everything after it is tensor data, everything before it the header."""
    try:
        with _open(path):  # the library vouches for the file before its length prefix is trusted
            pass
        with open(path, "rb") as stream:
            prefix = stream.read(_LENGTH_PREFIX)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise SafetensorsReadError(_reason(error)) from None
    return _LENGTH_PREFIX + int.from_bytes(prefix, "little")
