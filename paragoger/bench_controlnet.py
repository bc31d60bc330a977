"""``python -m paragoger.bench --controlnet``: a picture with one ControlNet unit through the app's core against
diffusers' StableDiffusionControlNetPipeline in the same process, and the memory a ControlNet adds.

The ControlNet is made on the spot with random weights (SD 1.5-sized, 361M values, with ``--full-size``), written
as a single file in diffusers' key names before the app starts, and loaded by the app like any file in
models/ControlNet. Both sides use Euler, the same seed and the same map (module none).
Peak memory is measured first (a plain picture, then one with the unit) before diffusers' pipeline exists.
"""
from __future__ import annotations

import statistics
from pathlib import Path


def control_map(size: int):
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (size, size), "black")
    draw = ImageDraw.Draw(picture)
    draw.rectangle((size // 6, size // 5, size * 5 // 6, size * 4 // 5), outline="white", width=max(1, size // 64))
    draw.ellipse((size // 3, size // 3, size * 2 // 3, size * 2 // 3), outline="white", width=max(1, size // 64))
    return picture


def write_random_controlnet(path: Path, *, full_size: bool, model_path: Path) -> Path:
    """A ControlNet with random weights for the checkpoint's family, as a single file in diffusers' key names:
    SD 1.5-sized (361M values), or shaped after the tiny model's UNet."""
    import torch
    from diffusers import ControlNetModel

    from paragoger.model_manager.tiny_model import file_tensors, save_single_file, tiny_configs

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if full_size:
            made = ControlNetModel(cross_attention_dim=768)  # diffusers' defaults are SD 1.5's
        else:
            unet = tiny_configs("sd1")["unet"]
            made = ControlNetModel(block_out_channels=unet["block_out_channels"],
                                   layers_per_block=unet["layers_per_block"],
                                   cross_attention_dim=unet["cross_attention_dim"],
                                   down_block_types=unet["down_block_types"],
                                   conditioning_embedding_out_channels=(16, 32, 32, 32))
    return save_single_file(path, file_tensors(made.state_dict(), torch.float16))


def measure_controlnet(args, workdir: Path, model_path: Path, peak_rss_mb) -> dict:
    import torch
    from diffusers import StableDiffusionControlNetPipeline

    from paragoger.bench import step_timer, timed_job
    from paragoger.cli import parse_args
    from paragoger.context import AppContext
    from paragoger.control.units import ControlUnit
    from paragoger.core.request import GenerationRequest

    data = workdir / "controlnet-app"
    # The ControlNet file first: making it takes memory that must not count as the app's.
    control_path = write_random_controlnet(data / "models" / "ControlNet" / "control_bench_sd15.safetensors",
                                           full_size=bool(args.full_size or args.checkpoint), model_path=model_path)
    flags = ["--data-dir", str(data), "--ckpt-dir", str(model_path.parent), "--precision", args.precision]
    context = AppContext(parse_args(flags + (["--device", args.device] if args.device else []), env={}))
    try:
        context.settings.update({"samples_save": False, "live_previews_enable": args.previews})
        context.select_checkpoint(model_path.name)
        components = context.cache.current
        plain = GenerationRequest(prompt="a lighthouse on a cliff at dusk", negative_prompt="blurry",
                                  sampler_name="Euler", steps=args.steps, width=args.size, height=args.size, seed=1,
                                  save_images=False)
        picture = control_map(args.size)
        unit = ControlUnit(module="none", model=control_path.stem, image=picture, resize_mode="Just Resize")
        controlled = plain.copy(controlnet_units=[unit])
        context.engine.generate(plain)
        rss_after_plain = peak_rss_mb()
        context.engine.generate(controlled)
        rss_after_control = peak_rss_mb()
        controlnet = context.control_models.get(control_path.stem).module
        control_mb = sum(t.numel() * t.element_size() for t in controlnet.state_dict().values()) / 2**20
        pipe = StableDiffusionControlNetPipeline(
            vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
            unet=components.unet, controlnet=controlnet, scheduler=None, safety_checker=None,
            feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)

        def ours() -> list[float]:
            job, stamps = timed_job(controlled)
            context.engine.generate(controlled, job)
            return [b - a for a, b in zip(stamps, stamps[1:])]

        def reference() -> list[float]:
            stamps, on_step = step_timer()
            pipe.scheduler = context.samplers.create_scheduler("Euler", "Automatic", components.scheduler_config)
            pipe(plain.prompt, image=picture, negative_prompt=plain.negative_prompt, num_inference_steps=args.steps,
                 width=args.size, height=args.size, guidance_scale=plain.cfg_scale, output_type="latent",
                 generator=torch.Generator("cpu").manual_seed(1), callback_on_step_end=on_step)
            return [b - a for a, b in zip(stamps, stamps[1:])]

        ours_steps, reference_steps = [], []
        for _ in range(args.rounds):
            reference_steps += reference()[1:]
            ours_steps += ours()[1:]
    finally:
        context.close()
    ours_median, reference_median = statistics.median(ours_steps), statistics.median(reference_steps)
    return {
        "controlnet_size": args.size, "controlnet_steps": args.steps,
        "controlnet_seconds_per_step_paragoger": round(ours_median, 4),
        "controlnet_seconds_per_step_diffusers": round(reference_median, 4),
        "controlnet_ratio_paragoger_over_diffusers": round(ours_median / reference_median, 4),
        "controlnet_model_mb": round(control_mb),
        "controlnet_peak_rss_mb_after_plain_picture": round(rss_after_plain),
        "controlnet_peak_rss_mb_after_controlled_picture": round(rss_after_control),
        "controlnet_peak_rss_mb_controlled_over_plain": round(rss_after_control - rss_after_plain),
    }
