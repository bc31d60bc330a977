"""Which device and dtypes models run in, and freeing memory: a leaf that every room may import (it imports
nothing of the app)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceConfig:
    device: torch.device
    dtype: torch.dtype        # UNet and text encoders
    vae_dtype: torch.dtype

    @property
    def label(self) -> str:
        return f"{self.device} ({str(self.dtype).removeprefix('torch.')})"


def choose_device(requested: str | None = None, *, precision: str = "autocast", no_half: bool = False,
                  no_half_vae: bool = False) -> DeviceConfig:
    """CUDA when present (fp16, or bf16 with --precision bf16), then Apple MPS (fp16), else the CPU in fp32."""
    if requested:
        device = torch.device(requested)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if device.type == "cpu":
        # Half precision on the CPU is slow or unsupported for many ops; bf16 only when asked for.
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    elif no_half or precision == "full":
        dtype = torch.float32
    elif precision == "bf16":
        dtype = torch.bfloat16
    else:
        dtype = torch.float16
    vae_dtype = torch.float32 if no_half_vae or device.type == "cpu" and dtype != torch.bfloat16 else dtype
    return DeviceConfig(device=device, dtype=dtype, vae_dtype=vae_dtype)


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's out-of-memory error, or a failed RAM allocation (torch's CPU allocator says "can't allocate")."""
    text = str(err).lower()
    return (isinstance(err, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in text
            or "can't allocate memory" in text)


def free_memory(device: torch.device) -> None:
    """After a model is released: collect what only cycles still reach, hand the CUDA cache back, and ask the C
    allocator to return freed heap pages to the system (glibc keeps them otherwise: a few hundred MB per
    checkpoint switch that the process never gives back)."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    release_heap()


# glibc's mallopt parameter and values (malloc.h): allocations from the threshold up get their own mmap.
_M_MMAP_THRESHOLD = -3
_SMALL_MMAP_THRESHOLD = 128 * 1024          # glibc's own starting value
_LARGE_MMAP_THRESHOLD = 32 * 1024 * 1024    # the highest value glibc's own adjustment reaches on 64-bit


@contextlib.contextmanager
def weights_outside_heap():
    """Model weights allocated inside this block each get their own mapping, so freeing a model returns all of
    its memory to the system.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after which most weight
    tensors of a model loaded later land in the heap, interleaved with other allocations: switching between two
    SD 1.5 checkpoints then kept about 2 GB more with every switch (issue 10). Outside the block the threshold
    is fixed at glibc's own high value, so sampling's temporary tensors keep reusing heap memory as before.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _SMALL_MMAP_THRESHOLD)
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, _LARGE_MMAP_THRESHOLD)


def _glibc():
    """The C library when it is glibc (Linux), else None: musl, macOS and Windows have neither call."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (both must exist)
    except (OSError, AttributeError):
        return None
    return libc


def release_heap() -> None:
    """glibc's malloc_trim(0) where the C library is glibc; nothing elsewhere."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
