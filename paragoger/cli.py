"""Command-line flags, named as AUTOMATIC1111 names them, turned into one LaunchOptions object."""
from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LaunchOptions:
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    autolaunch: bool = False
    api: bool = True
    nowebui: bool = False
    gradio_auth: tuple[tuple[str, str], ...] = ()
    api_auth: tuple[tuple[str, str], ...] = ()
    data_dir: Path | None = None
    models_dir: Path | None = None
    ckpt_dirs: tuple[Path, ...] = ()
    vae_dirs: tuple[Path, ...] = ()
    lora_dirs: tuple[Path, ...] = ()
    embeddings_dirs: tuple[Path, ...] = ()
    extensions_dirs: tuple[Path, ...] = ()
    outputs_dir: Path | None = None
    animatediff_dirs: tuple[Path, ...] = ()
    svd_dirs: tuple[Path, ...] = ()
    controlnet_dirs: tuple[Path, ...] = ()
    upscaler_dirs: tuple[tuple[str, Path], ...] = ()   # (("ESRGAN", path), ...) from --esrgan-models-path ...
    ckpt: str | None = None
    device: str | None = None
    precision: str = "autocast"
    no_half: bool = False
    no_half_vae: bool = False
    force_precision: bool = False
    medvram: bool = False
    lowvram: bool = False
    xformers: bool = False
    download_default: bool = False
    create_test_model: bool = False
    queue_size: int = 64
    cors_allow_origins: tuple[str, ...] = ()
    cors_allow_origins_regex: str | None = None
    api_max_request_mb: float = 256.0
    enable_insecure_extension_access: bool = False
    disable_all_extensions: bool = False
    disable_extra_extensions: bool = False
    extra: dict = field(default_factory=dict)


# A1111's upscaler folder flags: --esrgan-models-path, --realesrgan-models-path, ...
UPSCALER_FOLDER_FLAGS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT")


def _auth_pairs(text: str | None) -> tuple[tuple[str, str], ...]:
    """``user:pass,user2:pass2`` -> ((user, pass), ...); a password may itself contain ':'."""
    pairs = []
    for item in (text or "").replace("\n", ",").split(","):
        item = item.strip()
        if item:
            user, _, password = item.partition(":")
            pairs.append((user, password))
    return tuple(pairs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app.py", description="Paragoger SD: offline Stable Diffusion studio")
    add = p.add_argument
    add("--listen", action="store_true", help="listen on 0.0.0.0 so other machines on the network can connect")
    add("--server-name", default=None, help="address to listen on (overrides --listen)")
    add("--port", type=int, default=None, help="port (default 7860)")
    add("--share", action="store_true", help="ask Gradio for a public share link (needs internet)")
    add("--autolaunch", action="store_true", help="open the page in the default browser")
    add("--api", action="store_true", help="accepted for A1111 compatibility: the API is always served")
    add("--nowebui", action="store_true", help="serve the HTTP API only")
    add("--gradio-auth", default=None, help="user:pass[,user2:pass2] protecting the page")
    add("--gradio-auth-path", default=None, help="file with user:pass lines")
    add("--api-auth", default=None, help="user:pass[,user2:pass2] protecting the API (HTTP Basic)")
    add("--data-dir", type=Path, default=None, help="base folder for models, outputs, config (A1111 layout)")
    add("--models-dir", type=Path, default=None, help="folder holding Stable-diffusion, VAE, Lora, ...")
    add("--ckpt-dir", type=Path, action="append", default=[], help="extra checkpoint folder (repeatable)")
    add("--vae-dir", type=Path, action="append", default=[], help="extra VAE folder")
    add("--lora-dir", type=Path, action="append", default=[], help="extra LoRA folder")
    add("--embeddings-dir", type=Path, action="append", default=[], help="extra embeddings folder")
    add("--extensions-dir", type=Path, action="append", default=[], help="extra extensions folder")
    add("--animatediff-dir", type=Path, action="append", default=[],
        help="extra motion module folder (AnimateDiff; models/AnimateDiff is always read)")
    add("--svd-dir", type=Path, action="append", default=[], help="extra Stable Video Diffusion model folder")
    add("--controlnet-dir", type=Path, action="append", default=[],
        help="extra ControlNet / T2I-Adapter folder (repeatable; models/ControlNet is always read)")
    add("--outdir", type=Path, default=None, help="outputs folder")
    for kind in UPSCALER_FOLDER_FLAGS:
        add(f"--{kind.lower()}-models-path", type=Path, default=None, dest=f"{kind.lower()}_models_path",
            help=f"folder of {kind} upscaler models (replaces models/{kind})")
    add("--ckpt", default=None, help="checkpoint to load at start (name, title or path)")
    add("--device", default=None, help="cuda, cuda:1, mps or cpu (default: best available)")
    add("--precision", choices=["autocast", "full", "half", "bf16"], default="autocast")
    add("--no-half", action="store_true", help="keep the model in fp32 on the GPU")
    add("--no-half-vae", action="store_true", help="keep the VAE in fp32")
    add("--force-precision", action="store_true",
        help="use --precision bf16/half on a CPU even without native support (else fp32: emulated bf16/fp16 "
             "is many times slower)")
    add("--medvram", action="store_true", help="move parts of the model to the CPU when idle")
    add("--lowvram", action="store_true", help="keep only the running part of the model on the GPU")
    add("--xformers", action="store_true", help="use xformers attention when it is installed and works")
    add("--skip-torch-cuda-test", action="store_true", help="accepted for A1111 compatibility")
    add("--download-default", action="store_true", help="download SD 1.5 when no checkpoint is present (online)")
    add("--create-test-model", action="store_true",
        help="create a tiny random test model (its images are noise) when no checkpoint is present")
    add("--queue-size", type=int, default=64, help="most jobs waiting at once; more get 'queue full'")
    add("--cors-allow-origins", default=None,
        help="comma-separated origins whose web pages may call the API (e.g. http://localhost:3000)")
    add("--cors-allow-origins-regex", default=None, help="regular expression of origins that may call the API")
    add("--api-max-request-mb", type=float, default=256.0,
        help="largest request body the server reads, in MB (larger ones get 413)")
    add("--enable-insecure-extension-access", action="store_true",
        help="allow installing and updating extensions and restarting from the page and the API even when "
             "the app listens beyond this machine (--listen, --share, --server-name)")
    add("--disable-all-extensions", action="store_true", help="load no extension from the extensions folders")
    add("--disable-extra-extensions", action="store_true",
        help="load no extension from the extensions folders (this app bundles no built-in extensions, so this "
             "is the same as --disable-all-extensions)")
    return p


def parse_args(argv: list[str] | None = None, env: dict | None = None) -> LaunchOptions:
    """Flags from ``argv`` after those in ``COMMANDLINE_ARGS`` (as A1111's webui-user files set it)."""
    env = os.environ if env is None else env
    args = shlex.split(env.get("COMMANDLINE_ARGS", "")) + list(argv or [])
    ns, unknown = build_parser().parse_known_args(args)
    gradio_auth = _auth_pairs(ns.gradio_auth)
    if ns.gradio_auth_path:
        gradio_auth += _auth_pairs(Path(ns.gradio_auth_path).read_text(encoding="utf-8"))
    host = ns.server_name or ("0.0.0.0" if ns.listen else "127.0.0.1")
    precision = "full" if ns.no_half else ns.precision
    return LaunchOptions(
        host=host, port=ns.port or 7860, share=ns.share, autolaunch=ns.autolaunch, api=True,
        nowebui=ns.nowebui, gradio_auth=gradio_auth, api_auth=_auth_pairs(ns.api_auth),
        data_dir=ns.data_dir, models_dir=ns.models_dir, ckpt_dirs=tuple(ns.ckpt_dir),
        vae_dirs=tuple(ns.vae_dir), lora_dirs=tuple(ns.lora_dir), embeddings_dirs=tuple(ns.embeddings_dir),
        extensions_dirs=tuple(ns.extensions_dir), outputs_dir=ns.outdir,
        animatediff_dirs=tuple(ns.animatediff_dir), svd_dirs=tuple(ns.svd_dir),
        controlnet_dirs=tuple(ns.controlnet_dir), ckpt=ns.ckpt, device=ns.device,
        upscaler_dirs=tuple((kind, getattr(ns, f"{kind.lower()}_models_path")) for kind in UPSCALER_FOLDER_FLAGS
                            if getattr(ns, f"{kind.lower()}_models_path") is not None),
        precision=precision, no_half=ns.no_half, no_half_vae=ns.no_half_vae, force_precision=ns.force_precision, medvram=ns.medvram,
        lowvram=ns.lowvram, xformers=ns.xformers, download_default=ns.download_default,
        create_test_model=ns.create_test_model, queue_size=ns.queue_size,
        cors_allow_origins=tuple(o.strip() for o in (ns.cors_allow_origins or "").split(",") if o.strip()),
        cors_allow_origins_regex=ns.cors_allow_origins_regex or None, api_max_request_mb=ns.api_max_request_mb,
        enable_insecure_extension_access=ns.enable_insecure_extension_access,
        disable_all_extensions=ns.disable_all_extensions, disable_extra_extensions=ns.disable_extra_extensions,
        extra={"unknown": unknown},
    )


def listens_beyond_localhost(options) -> bool:
    """--listen, --share, or a --server-name that is not a loopback address or "localhost"."""
    if options.share:
        return True
    host = (options.host or "").strip("[]")
    if host.lower() == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: it may well be reachable from elsewhere
