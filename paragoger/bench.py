"""The benchmark command: this app's core against plain diffusers, same model, same request, one process.

    python -m paragoger.bench                 # a tiny SD 1.x model made on the spot (quick check)
    python -m paragoger.bench --full-size     # an SD 1.5-sized model with random weights (~2 GB file)
    python -m paragoger.bench --checkpoint models/Stable-diffusion/x.safetensors
    python -m paragoger.bench --full-size --http --size 128 --steps 8   # also end to end over HTTP (SD 1.5 layout)
    python -m paragoger.bench --full-size --switch 6                    # also RSS and seconds per checkpoint switch
    python -m paragoger.bench --full-size --video --size 128 --steps 4  # only: a 16-frame AnimateDiff video
    python -m paragoger.bench --full-size --controlnet                  # only: a picture with one ControlNet unit

Both sides use the very same module objects (diffusers' pipeline is built from our loaded components), so only
the loop, conditioning and bookkeeping differ. Seconds per step are medians of per-step wall times, taken in
alternating rounds so that a noisy neighbour on the machine hurts both sides alike.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _model_file(args, workdir: Path) -> Path:
    from paragoger.model_manager import full_size, tiny_model

    if args.checkpoint:
        return Path(args.checkpoint)
    if args.full_size:
        return full_size.write_full_size_sd15(workdir / "full-size-sd15.safetensors")
    return tiny_model.write_single_file(workdir / "tiny-sd1.safetensors", "sd1")


def _per_step_times(stamps: list[float]) -> list[float]:
    return [b - a for a, b in zip(stamps, stamps[1:])]


def timed_job(request):
    """A job that notes the time of each step it is told of: (job, the list the times go to)."""
    from paragoger.core.jobs import Job

    stamps: list[float] = []

    class TimedJob(Job):
        def set_step(self, step, preview=None):
            stamps.append(time.perf_counter())
            super().set_step(step, preview)

    return TimedJob(request=request), stamps


def step_timer():
    """(the list of step times, a diffusers ``callback_on_step_end`` that notes the time of each step); the list
    starts with now."""
    stamps: list[float] = [time.perf_counter()]

    def on_step(_pipe, _index, _timestep, kwargs):
        stamps.append(time.perf_counter())
        return kwargs

    return stamps, on_step


def run(args) -> dict:
    import torch

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory(prefix="paragoger-bench-") as tmp:
        return _measure(args, Path(tmp))


def _measure(args, workdir: Path) -> dict:
    import torch
    from diffusers import StableDiffusionPipeline

    from paragoger.devices import choose_device
    from paragoger.core.engine import Engine
    from paragoger.core.payloads import GenerationJob
    from paragoger.core.request import GenerationRequest
    from paragoger.model_manager.cache import ModelCache
    from paragoger.model_manager.library import ModelLibrary
    from paragoger.model_manager.loader import load_checkpoint
    from paragoger.paths import Paths
    from paragoger.samplers import default_sampler_registry
    from paragoger.settings import Settings

    model_path = _model_file(args, workdir)
    paths = Paths.build(data_dir=workdir, ckpt_dirs=[model_path.parent])
    device = choose_device(args.device, precision=args.precision)
    library = ModelLibrary(paths)
    cache = ModelCache(load_checkpoint, device)
    settings = Settings({"live_previews_enable": args.previews, "samples_save": False, "grid_save": False})
    engine = Engine(library=library, cache=cache, samplers=default_sampler_registry(), settings=settings,
                    paths=paths)

    rss_before = peak_rss_mb()
    started = time.perf_counter()
    components = engine.load_model(str(model_path.name), None, settings)
    load_seconds = time.perf_counter() - started
    rss_after_load = peak_rss_mb()

    request = GenerationRequest(prompt="a lighthouse on a cliff at dusk, oil painting", negative_prompt="blurry",
                                sampler_name="Euler", steps=args.steps, width=args.size, height=args.size,
                                seed=1, save_images=False)
    pipe = StableDiffusionPipeline(vae=components.vae, text_encoder=components.text_encoder,
                                   tokenizer=components.tokenizer, unet=components.unet, scheduler=None,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def ours() -> list[float]:
        job, stamps = timed_job(request)
        stamps.append(time.perf_counter())
        engine.generate(request, job)
        return _per_step_times(stamps)

    def plain() -> list[float]:
        stamps, on_step = step_timer()
        pipe.scheduler = engine.samplers.create_scheduler("Euler", "Automatic", components.scheduler_config)

        pipe(request.prompt, negative_prompt=request.negative_prompt, num_inference_steps=args.steps,
             width=args.size, height=args.size, guidance_scale=request.cfg_scale,
             generator=torch.Generator("cpu").manual_seed(1), callback_on_step_end=on_step)
        return _per_step_times(stamps)

    ours_steps, plain_steps = [], []
    for _ in range(args.rounds):
        plain_steps += plain()[1:]  # the first step includes prompt encoding and set-up on both sides
        ours_steps += ours()[1:]
    ours_median, plain_median = statistics.median(ours_steps), statistics.median(plain_steps)
    modes = _three_modes(engine, request) if args.modes else {}
    return {
        "model": str(model_path.name), "device": device.label, "size": args.size, "steps": args.steps,
        "rounds": args.rounds,
        "seconds_per_step_paragoger": round(ours_median, 4),
        "seconds_per_step_diffusers": round(plain_median, 4),
        "ratio_paragoger_over_diffusers": round(ours_median / plain_median, 4),
        "load_seconds": round(load_seconds, 2),
        "peak_rss_mb_before_load": round(rss_before), "peak_rss_mb_after_load": round(rss_after_load),
        "peak_rss_mb_after_generation": round(peak_rss_mb()),
        **modes,
    }


def _three_modes(engine, request) -> dict:
    """txt2img, then img2img and inpaint on the same loaded checkpoint: peak RSS after each, and whether the UNet
    is still the one copy (its parameters' storage unchanged)."""
    from PIL import Image

    unet = engine.cache.current.unet
    pointers = [p.data_ptr() for p in unet.parameters()]
    picture = Image.effect_noise((request.width, request.height), 64).convert("RGB")
    mask = Image.new("L", picture.size, 0)
    mask.paste(255, (0, 0, request.width // 2, request.height))
    report = {}
    for mode, changes in (("txt2img", {}), ("img2img", {"mode": "img2img", "init_images": [picture]}),
                          ("inpaint", {"mode": "img2img", "init_images": [picture], "mask": mask})):
        engine.generate(request.copy(**changes))
        report[f"peak_rss_mb_after_{mode}"] = round(peak_rss_mb())
    report["one_unet_copy_across_modes"] = (engine.cache.current.unet is unet
                                            and [p.data_ptr() for p in unet.parameters()] == pointers)
    return report


def memory_by_kind(args) -> dict:
    """``--memory``: the app as it runs (one AppContext) after a txt2img, an upscale with a model upscaler and a
    caption with a tagger: the memory each kind of loaded model holds (MB), as the model manager measures it."""
    from PIL import Image

    from paragoger.cli import parse_args
    from paragoger.context import AppContext
    from paragoger.core.extras import ExtrasRequest
    from paragoger.core.request import GenerationRequest

    # The bench runs from a checkout: with no real upscaler or captioner at hand it makes the tests' tiny ones
    # (the one place outside tests/ that may use them; tests/test_layering.py names it).
    from tests.fixtures import caption as caption_fixtures
    from tests.fixtures import upscale as upscale_fixtures

    with tempfile.TemporaryDirectory(prefix="paragoger-bench-memory-") as tmp:
        data = Path(tmp)
        (data / "checkpoint").mkdir()
        model_path = _model_file(args, data / "checkpoint")
        upscale_fixtures.write_esrgan(data / "models" / "ESRGAN" / "4x-tiny-esrgan.pth", scale=4, style="old")
        caption_fixtures.write_caption_models(data / "models")
        flags = ["--data-dir", str(data), "--ckpt-dir", str(model_path.parent), "--precision", args.precision]
        context = AppContext(parse_args(flags + (["--device", args.device] if args.device else []), env={}))
        try:
            context.settings.update({"interrogate_keep_models_in_memory": True, "samples_save": False})
            context.select_checkpoint(model_path.name)
            context.run_and_wait(GenerationJob(GenerationRequest(
                prompt="a lighthouse", steps=args.steps, width=args.size, height=args.size, seed=1,
                sampler_name="Euler", save_images=False)))
            picture = Image.new("RGB", (64, 64), (200, 120, 40))
            context.run_extras(ExtrasRequest(images=[picture], upscaler_1="4x-tiny-esrgan", upscaling_resize=2))
            context.interrogate(picture, "deepdanbooru")
            report = context.memory_report()
        finally:
            context.close()
    by_kind: dict[str, float] = {}
    for row in report["models"]:
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + row["bytes"] / 2**20
    result = {f"memory_mb_{kind}": round(size, 2) for kind, size in by_kind.items()}
    result.update(memory_mb_models_in_ram=round(report["totals"]["ram"] / 2**20, 2),
                  memory_mb_models_on_gpu=round(report["totals"]["vram"] / 2**20, 2),
                  memory_mb_process_rss=round(report["ram"]["used"] / 2**20))
    return result


def end_to_end(args) -> dict:
    """``--http`` and ``--switch``: the app as a user starts it, measured from outside (paragoger/bench_http.py)."""
    from paragoger import bench_http

    report = {}
    with tempfile.TemporaryDirectory(prefix="paragoger-bench-http-") as tmp:
        workdir = Path(tmp)
        (workdir / "checkpoint").mkdir()
        model_path = _model_file(args, workdir / "checkpoint")
        if args.http:
            report.update(bench_http.measure_http(model_path, workdir, size=args.size, steps=args.steps,
                                                  rounds=args.rounds))
        for keep in (1, 2) if args.switch else ():
            report.update(bench_http.measure_switches(model_path, workdir / f"keep{keep}", switches=args.switch,
                                                      keep=keep))
    return report


def measured_alone(args, measure) -> dict:
    """``--video`` / ``--controlnet``: ``measure(args, workdir, model_path, peak_rss_mb)`` alone in this process,
    so the peak memory figures are its own."""
    import torch

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory(prefix="paragoger-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "checkpoint").mkdir()
        model_path = _model_file(args, workdir / "checkpoint")
        return measure(args, workdir, model_path, peak_rss_mb)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m paragoger.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true", help="SD 1.5-sized random weights instead of tiny")
    parser.add_argument("--checkpoint", help="a real checkpoint file to measure with")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--size", type=int, default=None, help="width and height in pixels")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="autocast", choices=["autocast", "full", "half", "bf16"])
    parser.add_argument("--previews", action="store_true", help="include live previews in our timing")
    parser.add_argument("--modes", action="store_true",
                        help="also run txt2img, img2img and inpaint and report peak RSS after each")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--memory", action="store_true",
                        help="also run txt2img, an upscale and a caption in the app and report memory per model kind")
    parser.add_argument("--http", action="store_true",
                        help="also end to end: app.py over HTTP against diffusers' from_single_file, each in its "
                             "own process, alternated (bench_http.py)")
    parser.add_argument("--switch", type=int, default=0, metavar="N",
                        help="also switch checkpoints N times over HTTP (two files, keep 1 and keep 2): the app's "
                             "RSS and seconds per switch")
    parser.add_argument("--video", action="store_true",
                        help="instead: a video of --frames frames with a motion module, against diffusers' "
                             "AnimateDiffPipeline, and peak memory of a video job over a picture job (bench_video.py)")
    parser.add_argument("--frames", type=int, default=16, help="frames of the --video bench")
    parser.add_argument("--controlnet", action="store_true",
                        help="instead: a picture with one ControlNet unit against diffusers' ControlNet pipeline, and "
                             "peak memory over a plain picture (bench_controlnet.py)")
    args = parser.parse_args(argv)
    if args.http and not (args.full_size or args.checkpoint):
        parser.error("--http compares with diffusers' SD 1.5 pipeline: give --full-size or an SD 1.5 --checkpoint")
    big = args.full_size or args.checkpoint
    args.steps = args.steps or (6 if big else 20)
    args.size = args.size or (256 if big else 64)
    if args.video:
        from paragoger.bench_video import measure_video

        report = measured_alone(args, measure_video)
    elif args.controlnet:
        from paragoger.bench_controlnet import measure_controlnet

        report = measured_alone(args, measure_controlnet)
    else:
        report = run(args)
    if args.memory:
        report.update(memory_by_kind(args))
    if args.http or args.switch:
        report.update(end_to_end(args))
    if args.json:
        print(json.dumps(report))
        return
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
