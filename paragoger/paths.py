"""Where things live on disk, with AUTOMATIC1111's folder names so an existing install can be pointed at."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = PROJECT_ROOT / "configs"


@dataclass(frozen=True)
class Paths:
    """Every folder the app reads or writes. Built once from the launch flags and handed down."""

    data_dir: Path
    models_dir: Path
    checkpoint_dirs: tuple[Path, ...]
    vae_dirs: tuple[Path, ...]
    lora_dirs: tuple[Path, ...]
    embeddings_dirs: tuple[Path, ...]
    esrgan_dir: Path
    realesrgan_dir: Path
    swinir_dir: Path
    dat_dir: Path
    hat_dir: Path
    animatediff_dirs: tuple[Path, ...]   # motion modules and motion LoRAs (paragoger.video)
    svd_dirs: tuple[Path, ...]           # Stable Video Diffusion models (diffusers folders, single files)
    controlnet_dirs: tuple[Path, ...]    # ControlNets and T2I-Adapters (paragoger.control)
    extensions_dirs: tuple[Path, ...]
    outputs_dir: Path
    config_file: Path
    styles_file: Path
    hash_cache_file: Path
    extra: dict = field(default_factory=dict)

    @classmethod
    def build(cls, *, data_dir: Path | None = None, models_dir: Path | None = None,
              ckpt_dirs: list[Path] = (), vae_dirs: list[Path] = (), lora_dirs: list[Path] = (),
              embeddings_dirs: list[Path] = (), extensions_dirs: list[Path] = (),
              outputs_dir: Path | None = None, upscaler_dirs: dict[str, Path | None] | None = None,
              animatediff_dirs: list[Path] = (), svd_dirs: list[Path] = (),
              controlnet_dirs: list[Path] = ()) -> "Paths":
        """A1111's layout under ``data_dir``; each ``--*-dir`` flag adds a folder searched before the default.
        ``upscaler_dirs`` (``{"ESRGAN": path, ...}``, from ``--esrgan-models-path`` and friends) replaces an
        upscaler folder, as A1111's flags do. Motion modules are also read from the A1111 AnimateDiff extension's
        own folder when that extension is installed (``extensions/sd-webui-animatediff/model``), and ControlNets
        from the A1111 ControlNet extension's (``extensions/sd-webui-controlnet/models``)."""
        data = Path(data_dir or PROJECT_ROOT).resolve()
        models = Path(models_dir or data / "models").resolve()
        chosen = {kind: Path(path).resolve() for kind, path in (upscaler_dirs or {}).items() if path}

        def folders(extra, default):
            return tuple(dict.fromkeys([*(Path(p).resolve() for p in extra), default]))

        return cls(
            data_dir=data,
            models_dir=models,
            checkpoint_dirs=folders(ckpt_dirs, models / "Stable-diffusion"),
            vae_dirs=folders(vae_dirs, models / "VAE"),
            lora_dirs=folders(lora_dirs, models / "Lora"),
            embeddings_dirs=folders(embeddings_dirs, data / "embeddings"),
            esrgan_dir=chosen.get("ESRGAN", models / "ESRGAN"),
            realesrgan_dir=chosen.get("RealESRGAN", models / "RealESRGAN"),
            swinir_dir=chosen.get("SwinIR", models / "SwinIR"),
            dat_dir=chosen.get("DAT", models / "DAT"),
            hat_dir=chosen.get("HAT", models / "HAT"),
            animatediff_dirs=tuple(dict.fromkeys([
                *(Path(p).resolve() for p in animatediff_dirs), models / "AnimateDiff",
                data / "extensions" / "sd-webui-animatediff" / "model"])),
            svd_dirs=folders(svd_dirs, models / "svd"),
            controlnet_dirs=tuple(dict.fromkeys([
                *(Path(p).resolve() for p in controlnet_dirs), models / "ControlNet",
                data / "extensions" / "sd-webui-controlnet" / "models"])),
            extensions_dirs=folders(extensions_dirs, data / "extensions"),
            outputs_dir=Path(outputs_dir or data / "outputs").resolve(),
            config_file=data / "config.json",
            styles_file=data / "styles.csv",
            hash_cache_file=data / "cache.json",
        )

    def default_checkpoint_dir(self) -> Path:
        """Where a new user is told to put a checkpoint (the last entry: the data dir's own folder)."""
        return self.checkpoint_dirs[-1]

    def upscaler_dirs(self) -> dict[str, Path]:
        """Model upscaler folders by A1111's folder name (the name is also the upscaler family)."""
        return {"ESRGAN": self.esrgan_dir, "RealESRGAN": self.realesrgan_dir, "SwinIR": self.swinir_dir,
                "DAT": self.dat_dir, "HAT": self.hat_dir}

    def output_dir_for(self, kind: str) -> Path:
        """``txt2img-images``, ``txt2img-grids``, ``img2img-images``, ``extras-images`` ... under outputs."""
        return self.outputs_dir / kind

    def ensure(self) -> None:
        for folder in (*self.checkpoint_dirs[-1:], *self.vae_dirs[-1:], *self.lora_dirs[-1:],
                       *self.embeddings_dirs[-1:], self.animatediff_dirs[-2], self.svd_dirs[-1],
                       self.controlnet_dirs[-2],
                       self.outputs_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def check_output_settings(self, changes: dict | None) -> None:
        """Output folder settings (``outdir_*``) given from the page or a request must stay inside the outputs
        folder: ``../``, absolute paths elsewhere and symlinks leading out raise UserError. (Folders written into
        config.json by hand, or ``--outputs-dir``, are the owner's choice and not checked.)"""
        from paragoger.errors import UserError

        root = self.outputs_dir.resolve()
        for key, value in (changes or {}).items():
            if not str(key).startswith("outdir_") or value in (None, ""):
                continue
            target = (root / str(value)).resolve()
            if target != root and root not in target.parents:
                raise UserError("path_outside_folder", key=key, value=value, folder=str(root))

    def inside_data_dir(self, folders: dict[str, Path | None]) -> dict[str, Path | None]:
        """Folders a visitor typed into the page (``{"input": ..., "output": ...}``), for an app shared on the
        network: each must be inside the data folder (relative names start there), else UserError; returned
        resolved against the data folder."""
        from paragoger.errors import UserError

        root = self.data_dir.resolve()
        inside = {}
        for what, folder in folders.items():
            if folder is None:
                inside[what] = None
                continue
            target = (root / Path(folder)).resolve()
            if target != root and root not in target.parents:
                raise UserError("batch_folder_outside", what=what, folder=str(folder), root=str(root))
            inside[what] = target
        return inside
