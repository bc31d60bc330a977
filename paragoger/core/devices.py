"""Which device and dtypes a generation runs in, from the launch flags and what the machine has."""
from __future__ import annotations

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
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
