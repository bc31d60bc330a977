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
    refused_precision: str | None = None   # "bf16"/"half" asked for on a CPU without native support: fp32 used

    @property
    def label(self) -> str:
        return f"{self.device} ({str(self.dtype).removeprefix('torch.')})"


def choose_device(requested: str | None = None, *, precision: str = "autocast", no_half: bool = False,
                  no_half_vae: bool = False, force_precision: bool = False,
                  cpu_flags: set[str] | None = None) -> DeviceConfig:
    """CUDA when present (fp16, or bf16 with --precision bf16), then Apple MPS (fp16), else the CPU in fp32 (bf16 or
    fp16 only where the CPU computes them natively, or when ``force_precision``; see ``cpu_dtype``)."""
    if requested:
        device = torch.device(requested)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    refused = None
    if device.type == "cpu":
        flags = read_cpu_flags() if cpu_flags is None else cpu_flags
        dtype, refused = cpu_dtype(precision, native_cpu_precisions(flags, torch.backends.cpu.get_cpu_capability()),
                                   force=force_precision)
    elif no_half or precision == "full":
        dtype = torch.float32
    elif precision == "bf16":
        dtype = torch.bfloat16
    else:
        dtype = torch.float16
    vae_dtype = torch.float32 if no_half_vae or device.type == "cpu" and dtype != torch.bfloat16 else dtype
    return DeviceConfig(device=device, dtype=dtype, vae_dtype=vae_dtype, refused_precision=refused)


# /proc/cpuinfo flags that mean the CPU computes bf16 / fp16 itself (x86: AVX-512 BF16/FP16, AMX; Arm: BF16, FP16).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
NATIVE_FP16_FLAGS = frozenset({"avx512_fp16", "amx_fp16", "fphp", "asimdhp"})


def read_cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (Linux: "flags" on x86, "Features" on Arm); None elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        return None
    return set()


def native_cpu_precisions(flags: set[str] | None, capability: str = "") -> set[str]:
    """Which of "bf16" and "half" the CPU computes natively. With no flags to read (not Linux), torch's CPU
    capability decides: "AVX2"/"DEFAULT" CPUs have neither; others cannot be told apart and are trusted."""
    if flags is None:
        return set() if capability.upper() in ("AVX2", "DEFAULT", "NO AVX") else {"bf16", "half"}
    native = set()
    if flags & NATIVE_BF16_FLAGS:
        native.add("bf16")
    if flags & NATIVE_FP16_FLAGS:
        native.add("half")
    return native


def cpu_dtype(precision: str, native: set[str], *, force: bool = False) -> tuple[torch.dtype, str | None]:
    """(dtype, the precision refused or None) on the CPU. "bf16" and "half" run in that precision when the CPU
    computes it natively or ``force`` insists; elsewhere they are emulated (one 512x512 picture of 3 steps took more
    than 10 minutes on an AVX2 CPU, issue 10), so fp32 is used and the refused precision returned."""
    wanted = {"bf16": torch.bfloat16, "half": torch.float16}.get(precision)
    if wanted is None:
        return torch.float32, None
    if precision in native or force:
        return wanted, None
    return torch.float32, precision


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
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_SMALL_MMAP_THRESHOLD = 128 * 1024          # glibc's own starting value
# Outside model loads: temporaries up to this size reuse heap memory. glibc's own adjustment stops at 32 MB, but
# each UNet call makes larger temporaries (oneDNN's reordered copies of the big convolution weights, 59-118 MB in
# SD 1.5 and SDXL): mapped and unmapped anew at every call, their pages were faulted in again each time, 1.8 GB
# per call at 128x128, a third of the step's time on the CPU (issue 10).
_LARGE_MMAP_THRESHOLD = 512 * 1024 * 1024


def configure_allocator() -> None:
    """Once, before the job worker starts: every thread allocates from the one main heap, and temporaries up to
    the large threshold reuse it.

    glibc gives other threads their own arenas, whose heaps cannot grow past 64 MB: there a weight-sized temporary
    is mapped and unmapped at every UNet call whatever the threshold, so the same generation ran in the job worker
    with 670,000 page faults that the main thread did not have (issue 10: the app slower than diffusers).
    Threads that already have an arena keep it; the worker, started after this, shares the main heap.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_ARENA_MAX, 1)
        _keep_temporaries_in_heap(libc)


def _keep_temporaries_in_heap(libc) -> None:
    # Fixing one threshold stops glibc adjusting the other: keep as much free heap as one temporary may take, or
    # every step's temporaries fault their pages in anew (free_memory trims it after an unload).
    libc.mallopt(_M_MMAP_THRESHOLD, _LARGE_MMAP_THRESHOLD)
    libc.mallopt(_M_TRIM_THRESHOLD, _LARGE_MMAP_THRESHOLD)


@contextlib.contextmanager
def weights_outside_heap():
    """Model weights allocated inside this block each get their own mapping, so freeing a model returns all of
    its memory to the system.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MB), after which most weight
    tensors of a model loaded later land in the heap, interleaved with other allocations: switching between two
    SD 1.5 checkpoints then kept about 2 GB more with every switch (issue 10). Outside the block the threshold
    is fixed high, so sampling's temporary tensors, even weight-sized ones, keep reusing heap memory.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, _SMALL_MMAP_THRESHOLD)
    try:
        yield
    finally:
        if libc is not None:
            _keep_temporaries_in_heap(libc)


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
