"""``python -m paragoger.bench --video``: a 16-frame AnimateDiff video through the app's core against diffusers'
AnimateDiffPipeline in the same process, and the memory a video job takes on top of a picture job.

The motion module is made on the spot with random weights: an mm_sd_v15_v2-sized one (453M values) with
``--full-size``, else a tiny one for the tiny checkpoint. Both sides sample with DDIM on AnimateDiff's betas from
the same seed. Peak memory is measured first (picture, then video) before diffusers' pipeline exists: the
pipeline builds its own motion UNet and copies the UNet's weights into it, which would hide ours.
"""
from __future__ import annotations

import statistics
from pathlib import Path


def write_random_motion_module(path: Path, *, full_size: bool, block_out_channels=(32, 64)) -> Path:
    """A v2-layout motion module with random weights under its original key names."""
    import torch
    from diffusers import MotionAdapter

    from paragoger.model_manager.tiny_model import save_single_file
    from paragoger.video.motion_module_keys import to_original_keys

    channels = (320, 640, 1280, 1280) if full_size else tuple(block_out_channels)
    layers = 2 if full_size else 1
    torch.manual_seed(0)
    adapter = MotionAdapter(block_out_channels=channels, motion_layers_per_block=layers, use_motion_mid_block=True,
                            motion_max_seq_length=32, motion_num_attention_heads=8)
    state = {name: tensor.detach().to(torch.float16).contiguous()
             for key, tensor in adapter.state_dict().items() for name in to_original_keys(key)}
    return save_single_file(path, state)


def measure_video(args, workdir: Path, model_path: Path, peak_rss_mb) -> dict:
    import torch
    from diffusers import AnimateDiffPipeline

    from paragoger.cli import parse_args
    from paragoger.context import AppContext
    from paragoger.bench import step_timer, timed_job
    from paragoger.core.request import GenerationRequest
    from paragoger.core.video import motion_scheduler_config
    from paragoger.video.options import AnimateDiffOptions

    frames = args.frames
    data = workdir / "video-app"
    module_path = write_random_motion_module(data / "models" / "AnimateDiff" / "mm_bench_v2.safetensors",
                                             full_size=bool(args.full_size or args.checkpoint))
    flags = ["--data-dir", str(data), "--ckpt-dir", str(model_path.parent), "--precision", args.precision]
    context = AppContext(parse_args(flags + (["--device", args.device] if args.device else []), env={}))
    try:
        context.settings.update({"samples_save": False, "live_previews_enable": args.previews})
        context.select_checkpoint(model_path.name)
        picture = GenerationRequest(prompt="a paper boat on a river", negative_prompt="blurry", sampler_name="DDIM",
                                    steps=args.steps, width=args.size, height=args.size, seed=1, save_images=False)
        video = picture.copy(animatediff=AnimateDiffOptions(model=module_path.name, video_length=frames,
                                                            batch_size=frames, format=["MP4"]))
        context.engine.generate(picture)
        rss_after_picture = peak_rss_mb()
        context.engine.generate(video)
        rss_after_video = peak_rss_mb()
        module = context.motion_modules.get(module_path.name)
        module_mb = sum(t.numel() * t.element_size() for t in module.adapter.state_dict().values()) / 2**20
        components = context.cache.current
        pipe = AnimateDiffPipeline(vae=components.vae, text_encoder=components.text_encoder,
                                   tokenizer=components.tokenizer, unet=components.unet,
                                   motion_adapter=module.adapter, scheduler=None)
        pipe.set_progress_bar_config(disable=True)

        def ours() -> list[float]:
            job, stamps = timed_job(video)
            context.engine.generate(video, job)
            return [b - a for a, b in zip(stamps, stamps[1:])]

        def plain() -> list[float]:
            stamps, on_step = step_timer()
            pipe.scheduler = context.samplers.create_scheduler(
                "DDIM", "Automatic", motion_scheduler_config(components.scheduler_config))
            pipe(video.prompt, negative_prompt=video.negative_prompt, num_frames=frames, num_inference_steps=args.steps,
                 width=args.size, height=args.size, guidance_scale=video.cfg_scale, output_type="latent",
                 generator=torch.Generator("cpu").manual_seed(1), callback_on_step_end=on_step)
            return [b - a for a, b in zip(stamps, stamps[1:])]

        ours_steps, plain_steps = [], []
        for _ in range(args.rounds):
            plain_steps += plain()[1:]
            ours_steps += ours()[1:]
    finally:
        context.close()
    ours_median, plain_median = statistics.median(ours_steps), statistics.median(plain_steps)
    return {
        "video_frames": frames, "video_size": args.size, "video_steps": args.steps,
        "video_seconds_per_frame_step_paragoger": round(ours_median / frames, 4),
        "video_seconds_per_frame_step_diffusers": round(plain_median / frames, 4),
        "video_ratio_paragoger_over_diffusers": round(ours_median / plain_median, 4),
        "video_motion_module_mb": round(module_mb),
        "video_peak_rss_mb_after_picture_job": round(rss_after_picture),
        "video_peak_rss_mb_after_video_job": round(rss_after_video),
        "video_peak_rss_mb_video_over_picture": round(rss_after_video - rss_after_picture),
    }
