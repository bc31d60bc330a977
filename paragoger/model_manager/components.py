"""What a loaded checkpoint is made of: the modules every generation mode shares."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint on disk, as the checkpoint list shows it.

    ``title`` is what A1111 shows and what `sd_model_checkpoint` takes: ``"name.safetensors [abcdef0123]"``.
    ``name`` is the path relative to its checkpoint folder (``sub/model.safetensors``); ``model_name`` the stem,
    written as ``Model:`` in the infotext. ``short_hash`` is the first 10 hex digits of the file's sha256
    (None until computed; diffusers folders have none).
    """

    path: Path
    name: str
    model_name: str
    short_hash: str | None = None
    sha256: str | None = None
    is_diffusers_folder: bool = False

    @property
    def title(self) -> str:
        return f"{self.name} [{self.short_hash}]" if self.short_hash else self.name


@dataclass
class Components:
    """One loaded checkpoint. Every mode (txt2img, img2img, inpaint, ...) uses these same module objects.

    family: "sd1" | "sd2" | "sdxl"
    variant: "base" (4-channel UNet), "inpaint" (9), "depth" (5), "instruct-pix2pix" (8)
    prediction_type: "epsilon" | "v_prediction"
    scheduler_config: the family's diffusers scheduler config (plain dict), with prediction_type set.
    """

    family: str
    variant: str
    prediction_type: str
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    info: CheckpointInfo
    text_encoder_2: Any = None
    tokenizer_2: Any = None
    vae_name: str | None = None
    vae_hash: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_sdxl(self) -> bool:
        return self.family == "sdxl"

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    def modules(self) -> dict[str, Any]:
        found = {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder,
                 "text_encoder_2": self.text_encoder_2}
        return {k: v for k, v in found.items() if v is not None}
