"""Video with a motion module (AnimateDiff): text to video, image to video and video to video on the one
denoising loop (``core.denoise``), and video to video frame by frame when no motion module is chosen.

One video per seed (batch count makes several, each with the next seed). Steps for one video:

    1. the motion UNet: the loaded checkpoint's own 2D modules plus the motion module's (no weight copied)
    2. the scheduler of the checkpoint's sampler over AnimateDiff's training betas (linear 0.00085-0.012)
    3. conditioning per frame (prompt travel interpolates key frames; otherwise every frame the same)
    4. starting latents [1, C, frames, h, w]: noise, a picture, or the source video (``video.starts``)
    5. the loop, the UNet called per context window (``video.windowed_unet``); FreeInit samples again
    6. decode frame by frame, save the video files (``video.files``) with the infotext
"""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from paragoger.core import img2img
from paragoger.core import seeds as seeding
from paragoger.core.conditioning import TextConditioning, pad_to_chunks
from paragoger.core.denoise import Guidance, ScheduledConditioning, denoise
from paragoger.core.parameters import generation_parameters
from paragoger.core.request import GeneratedImage, GenerationRequest, GenerationResult
from paragoger.errors import UserError
from paragoger.imaging import infotext as infotexts
from paragoger.imaging.resize import resize_image
from paragoger.model_manager.out_of_memory import retry_once
from paragoger.video import free_init, starts
from paragoger.video.motion_lora import apply_motion_loras
from paragoger.video.motion_unet import check_fits, motion_unet
from paragoger.video.prompt_travel import frame_weights, interpolate, parse_prompt_travel
from paragoger.video.windowed_unet import WindowedMotionUNet
from paragoger.video.windows import context_windows

# AnimateDiff's motion modules were trained with these betas; the A1111 extension samples with them too.
MOTION_BETAS = {"beta_schedule": "linear", "beta_start": 0.00085, "beta_end": 0.012}
NO_MOTION_MODULE = "None"      # video to video without a motion module: img2img frame by frame
DECODE_CHUNK = 8               # frames the VAE decodes at once


def wanted(request: GenerationRequest) -> bool:
    return request.animatediff is not None and request.animatediff.enable


def motion_scheduler_config(config: dict) -> dict:
    return {**dict(config), **MOTION_BETAS}


class VideoGeneration:
    """One video request, run by ``Engine`` once the checkpoint, prompts and LoRAs are ready."""

    def __init__(self, engine, motion_modules):
        self.engine = engine
        self.motion_modules = motion_modules

    def generate(self, request, job, run, *, settings, components, encoder, prompts, sampler, schedule,
                 network_parameters: dict, motion_loras=()) -> GenerationResult:
        options = request.animatediff
        module = self._module(options, components)
        first_seed = seeding.resolve_seed(request.seed)
        items, videos, scratch = [], [], []
        for index in range(request.n_iter):
            if job.interrupted:
                break
            seed = first_seed + index
            with apply_motion_loras(module, motion_loras) if module and motion_loras else contextlib.nullcontext():
                frames = (self._frames_with_module(request, options, module, job, run, settings, components, encoder,
                                                   prompts, sampler, schedule, seed, index)
                          if module else self._frames_one_by_one(request, options, job, run, settings, components,
                                                                 encoder, prompts, sampler, schedule, seed))
            if not frames:
                break
            params = generation_parameters(
                request, seed=seed, subseed=seed, components=components, sampler=sampler.name,
                schedule=schedule.label, clip_skip=encoder.clip_skip, rng=settings["randn_source"],
                extra={**network_parameters,
                       "AnimateDiff": replace(options, model=module.info.name if module else NO_MOTION_MODULE)
                       .infotext_value()})
            text = infotexts.format_infotext(prompts.prompt, prompts.negative_prompt, params)
            items += [GeneratedImage(image=frame, seed=seed, subseed=seed, prompt=prompts.prompt,
                                     negative_prompt=prompts.negative_prompt, infotext=text) for frame in frames]
            videos.append(self._save(request, options, frames, seed, text, settings, scratch))
        return GenerationResult(request=request, images=items, interrupted=job.interrupted, videos=videos,
                                scratch_dirs=scratch)

    # 1. The motion module ---------------------------------------------------------------------------------------
    def _module(self, options, components):
        if options.model == NO_MOTION_MODULE:
            if not options.video_source:
                raise UserError("motion_module_needed")
            return None
        if not options.model and not self.motion_modules.library.entries():
            if options.video_source:
                return None  # nothing installed: video to video frame by frame
            raise UserError("motion_module_needed")
        if components.variant != "base":  # an inpainting, depth or pix2pix UNet takes more than the latents
            raise UserError("motion_module_needs_base_checkpoint", checkpoint=components.info.name,
                            variant=components.variant)
        module = self.motion_modules.get(options.model or self.motion_modules.library.entries()[0].name)
        check_fits(components.unet, module, family=components.family)  # before any sampling: a clear 400
        return module

    # 2-5. Frames with a motion module -------------------------------------------------------------------------------
    def _frames_with_module(self, request, options, module, job, run, settings, components, encoder, prompts,
                            sampler, schedule, seed: int, index: int) -> list:
        engine = self.engine
        device, dtype = engine.cache.device.device, engine.cache.device.dtype
        frames = options.frames_asked
        factor = components.vae_scale_factor
        shape = (components.latent_channels, frames, request.height // factor, request.width // factor)
        guidance = self._guidance(encoder, prompts, request, options, frames)
        windows = context_windows(frames, min(options.batch_size, module.spec.max_frames), stride=options.stride,
                                  overlap=options.overlap, closed_loop=options.is_closed_loop)
        unet = WindowedMotionUNet(motion_unet(components.unet, module, family=components.family), windows, frames,
                                  on_window=lambda n, count: _say_window(job, n, count))
        added_time_ids = engine._sdxl_time_ids(request, components, frames)
        iterations = options.freeinit_iters if options.freeinit_enable and not self._has_source(request, options) else 1
        model_hooks = run.model_hooks().merged(self._control_hooks(request, options, components, frames))
        noise = _TextToVideoNoise(shape, seed, settings["randn_source"].lower(), device, dtype, options)
        latents = None
        for iteration in range(iterations):
            scheduler = self._scheduler(sampler, schedule, components, seed, request.steps, device)
            start = self._start(request, options, components, scheduler, seed, frames, device, dtype)
            if start is None:  # text to video: noise (FreeInit: the last result's low frequencies)
                latents = noise.first(scheduler) if iteration == 0 else noise.again(latents, scheduler)
                timesteps, steps, generators = None, request.steps, noise.generators
            else:
                latents, timesteps, steps, generators = start.latents, start.timesteps, start.steps, start.generators
            hooks = [*run.step_hooks(), engine._progress_hook(job, components, settings, iteration * steps,
                                                               pick=_first_frame)]
            if start is not None and start.latent_mask is not None:
                hooks.insert(0, img2img.blend_hook(start, scheduler))
            job.set_steps(index, request.n_iter, steps * iterations)
            job.set_step(iteration * steps)
            step_kwargs = engine._step_kwargs(sampler, scheduler, request, components, None, settings, generators)

            def sample(latents=latents, scheduler=scheduler, timesteps=timesteps, steps=steps, hooks=hooks,
                       step_kwargs=step_kwargs):
                with torch.inference_mode():
                    return denoise(unet=unet, scheduler=scheduler, latents=latents, guidance=guidance, steps=steps,
                                   step_kwargs=step_kwargs, timesteps=timesteps, added_time_ids=added_time_ids,
                                   hooks=tuple(hooks), model_hooks=model_hooks)

            # Out of memory: the models no job uses are let go and the pass runs once more, then a clear message.
            latents = retry_once(sample, sample, manager=engine.cache.manager, device=device,
                                 message="out_of_memory_sampling", width=request.width, height=request.height,
                                 batch=frames)
            if job.interrupted:
                break
        job.progress.textinfo = "decoding"
        frames_latents = latents[0].permute(1, 0, 2, 3)  # [frames, C, h, w]
        return [image for i in range(0, frames, DECODE_CHUNK)
                for image in engine._decode(components, frames_latents[i:i + DECODE_CHUNK])]

    def _control_hooks(self, request, options, components, frames: int):
        """ControlNet units: those without a picture of their own get one map per frame of the source video (or
        the img2img picture for every frame); their residuals are per frame (the windowed UNet slices them)."""
        picture = (list(options.video_source[:frames]) if options.video_source else
                   request.init_images[0] if request.mode == "img2img" and request.init_images else None)
        return self.engine._control_hooks(request, components, picture=picture, video=True)

    def _scheduler(self, sampler, schedule, components, seed: int, steps: int, device):
        scheduler = self.engine.samplers.create_scheduler(
            sampler.name, schedule.name, motion_scheduler_config(components.scheduler_config), noise_seeds=[seed])
        try:
            scheduler.set_timesteps(steps, device=device)
        except ValueError as err:
            raise UserError("sampler_config_invalid", sampler=sampler.name, schedule=schedule.label,
                            reason=str(err)) from err
        return scheduler

    def _guidance(self, encoder, prompts, request, options, frames: int) -> Guidance:
        """Each copy's conditioning with one row per frame. A travel prompt's key frames are encoded once each
        (with the negative, all padded to one length) and interpolated per frame."""
        travel = parse_prompt_travel(prompts.prompt, frames)
        if travel is None:
            return self.engine._guidance(encoder, prompts, request.cfg_scale, frames)
        texts = [prompts.negative_prompt, *travel.prompts]
        encoded = [encoder.encode(text) for text in texts]
        chunks = max(c.chunks for c in encoded)
        padded = [TextConditioning(embeds=pad_to_chunks(c.embeds, chunks, encoder.empty_chunk().embeds)
                                   if c.chunks < chunks else c.embeds, pooled=c.pooled) for c in encoded]
        negative = padded[0]
        negative = TextConditioning(embeds=negative.embeds.expand(frames, -1, -1),
                                    pooled=None if negative.pooled is None else negative.pooled.expand(frames, -1))
        weights = frame_weights(travel, frames, closed_loop=options.closed_loop in ("R+P", "A"))
        positive = interpolate(padded[1:], weights)
        return Guidance(negative=ScheduledConditioning([(request.steps, negative)]),
                        positives=[(1.0, ScheduledConditioning([(request.steps, positive)]))],
                        cfg_scale=request.cfg_scale)

    @staticmethod
    def _has_source(request, options) -> bool:
        return bool(options.video_source) or (request.mode == "img2img" and bool(request.init_images))

    def _start(self, request, options, components, scheduler, seed, frames, device, dtype):
        if options.video_source:
            pictures = [resize_image(frame.convert("RGB"), request.width, request.height, request.resize_mode)
                        for frame in options.video_source[:frames]]
            mask = None
            if options.mask_frames:
                masks = [resize_image(m.convert("L"), request.width, request.height, request.resize_mode)
                         for m in options.mask_frames[:frames]]
                mask = img2img.mask_to_tensor(masks)
            return starts.from_video(components.vae, scheduler, pixels=starts.frames_to_pixels(pictures), seed=seed,
                                     steps=request.steps, strength=request.denoising_strength, device=device,
                                     dtype=dtype, mask=mask)
        if request.mode == "img2img" and request.init_images:
            picture = resize_image(request.init_images[0].convert("RGB"), request.width, request.height,
                                   request.resize_mode)
            return starts.from_picture(components.vae, scheduler, pixels=starts.frames_to_pixels([picture]),
                                       frames=frames, seed=seed, steps=request.steps,
                                       strength=request.denoising_strength, latent_power=options.latent_power,
                                       latent_scale=options.latent_scale, device=device, dtype=dtype)
        return None

    # Video to video without a motion module --------------------------------------------------------------------------
    def _frames_one_by_one(self, request, options, job, run, settings, components, encoder, prompts, sampler,
                           schedule, seed: int) -> list:
        """img2img of each frame with the same seed (the A1111 habit for video without AnimateDiff); an interrupt
        keeps the frames made so far."""
        frames = []
        count = options.frames_asked
        masks = options.mask_frames or []
        for i, frame in enumerate(options.video_source[:count]):
            if job.interrupted:
                break
            one = request.copy(mode="img2img", init_images=[frame.convert("RGB")], seed=seed, n_iter=1,
                               batch_size=1, animatediff=None, save_images=False,
                               mask=masks[i].convert("L").resize(frame.size) if i < len(masks) else None)
            job.progress.textinfo = f"frame {i + 1}/{count}"
            made = self.engine._generate_batches(one, job, settings, components, encoder, prompts, sampler,
                                                 schedule, [], run)
            frames += [item.image for item in made]
        return frames

    # 6. Save ------------------------------------------------------------------------------------------------------
    def _save(self, request, options, frames, seed: int, infotext: str, settings, scratch: list):
        return write_video(self.engine.paths.outputs_dir, request.mode, frames, seed=seed, fps=options.output_fps,
                           formats=options.format, infotext=infotext, loop=options.loop_number,
                           save=request.save_images and settings["samples_save"], scratch=scratch)


def write_video(outputs_dir: Path, mode: str, frames, *, seed: int, fps: float, formats, infotext: str,
                loop: int = 0, save: bool = True, scratch: list | None = None):
    """The video files of one video under outputs/<mode>-videos (AnimateDiff's txt2img / img2img, SVD's svd). A
    request that does not save (the API's default) still gets its files, in a scratch folder (appended to
    ``scratch``) that the answer removes once it has sent them."""
    from paragoger.video import files  # imageio-ffmpeg is only needed once a video is written

    if save:
        outdir = outputs_dir / f"{mode}-videos"
    else:
        outdir = Path(tempfile.mkdtemp(prefix="paragoger-video-"))
        if scratch is not None:
            scratch.append(outdir)
    return files.save_video(frames, outdir=outdir, seed=seed, fps=fps, formats=formats, infotext=infotext,
                            loop=loop)


class _TextToVideoNoise:
    """A text to video's starting noise, drawn as a picture's (``seeds.make_noise``) with frames as one more
    dimension; the generator that continues it gives the sampler's step noise and FreeInit's fresh noise, in the
    order diffusers' AnimateDiffPipeline draws them from one generator."""

    def __init__(self, shape, seed: int, source: str, device, dtype, options):
        self.shape, self.device, self.dtype, self.options = shape, device, dtype, options
        self.initial = seeding.make_noise(shape, [seed], device=device, dtype=dtype, source=source)
        self.generators = seeding.step_generators([seed], shape, source=source, device=device)

    def first(self, scheduler) -> torch.Tensor:
        return self.initial * scheduler.init_noise_sigma

    def again(self, result: torch.Tensor, scheduler) -> torch.Tensor:
        generator = self.generators[0]
        fresh = torch.randn((1, *self.shape), generator=generator, device=generator.device, dtype=torch.float32)
        return free_init.reinitialise(result, self.initial, fresh.to(device=self.device, dtype=self.dtype),
                                      alphas_cumprod=scheduler.alphas_cumprod,
                                      init_noise_sigma=float(scheduler.init_noise_sigma),
                                      method=self.options.freeinit_filter, ds=self.options.freeinit_ds,
                                      dt=self.options.freeinit_dt)


def _first_frame(latents: torch.Tensor) -> torch.Tensor:
    """What the live preview shows of a video's latents: the first frame."""
    return latents[0:1, :, 0]


def _say_window(job, number: int, count: int) -> None:
    if count > 1:
        job.progress.textinfo = f"window {number}/{count}"

