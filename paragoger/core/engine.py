"""Engine.generate: one request in, saved images out. Each numbered step is one method below.

    1. resolve the model       ModelLibrary + ModelCache -> Components shared by every mode
    2. prompts                 styles -> conditioning per distinct text (encoded once per generation)
    3. seeds and latents       txt2img: seeded noise * the scheduler's initial sigma
    4. denoising loop          core.denoise, with progress, preview, interrupt and skip hooks
                               (txt2img's Hires. fix: a second, img2img pass at the hires size, core.hires)
    5. decode                  the VAE (retried in fp32 when half precision gives NaN, in tiles when out of memory)
    6. save                    infotext + atomic write; a grid when there are several images
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch

from paragoger.core import hires, img2img, video
from paragoger.core.checks import RequestCheck
from paragoger.core import seeds as seeding
from paragoger.core.conditioning import PromptEncoder, TextConditioning, pad_to_chunks
from paragoger.core.depth import depth_conditioning
from paragoger.core.denoise import Guidance, ModelHooks, ScheduledConditioning, StepState, denoise
from paragoger.core.jobs import Job
from paragoger.core.parameters import generation_parameters
from paragoger.core.pictures import PreparedPictures, prepare_pictures
from paragoger.core.prompting import PreparedPrompts, prepare_prompts
from paragoger.core.request import GeneratedImage, GenerationRequest, GenerationResult
from paragoger.imaging import grid as grids
from paragoger.imaging import infotext as infotexts
from paragoger.imaging import preview as previews
from paragoger.imaging import saving
from paragoger.errors import NotFoundError, UserError
from paragoger.model_manager.components import Components
from paragoger.model_manager.embeddings import ti_hashes_field
from paragoger.model_manager.lora import lora_hashes_field
from paragoger.model_manager.out_of_memory import retry_once, tiled_decode
from paragoger.notices import Notices
from paragoger.upscale import UpscalerRegistry
from paragoger.video.motion_lora import split_motion_loras


CHECKPOINT_NOTICE = "checkpoint"  # the Notices key of "the chosen checkpoint is missing, another is used"


class GenerationHooks:
    """Extension points during one generation (scripts and extension callbacks). This base does nothing; the
    extension runtime (``paragoger.ext.scripts.GenerationRun``) overrides them. ``request`` is the request to run
    (scripts may have changed a copy of it before the generation starts)."""

    def __init__(self, request: GenerationRequest):
        self.request = request

    def step_hooks(self) -> list:
        return []

    def model_hooks(self) -> ModelHooks:
        return ModelHooks()

    def model_ready(self, components) -> None:
        pass

    def process_batch(self, batch_index: int, seeds: list[int]) -> None:
        pass

    def postprocess_image(self, image, *, seed: int, subseed: int, batch_index: int, index: int):
        """-> (image, extra infotext fields) for one decoded image."""
        return image, {}

    def before_image_saved(self, item: GeneratedImage) -> None:
        pass

    def image_saved(self, item: GeneratedImage) -> None:
        pass

    def postprocess(self, result: GenerationResult) -> None:
        pass


@dataclass
class _Batch:
    """One batch (one of ``n_iter``) of ``batch_size`` images."""

    index: int
    seeds: list[int]
    subseeds: list[int]


class Engine:
    def __init__(self, *, library, cache, samplers, settings, paths, styles=None, loras=None, embeddings=None,
                 depth_estimators=None, upscalers=None, checks: RequestCheck | None = None,
                 notices: Notices | None = None, motion_modules=None, control=None):
        self.library = library
        self.upscalers = upscalers if upscalers is not None else UpscalerRegistry()  # the hires fix's pictures
        # the check every request passed before it was queued, run again before it starts (scripts change requests)
        self.checks = checks or RequestCheck(settings=settings, paths=paths, samplers=samplers,
                                             upscalers=self.upscalers, styles=styles, library=library)
        self.notices = notices or Notices()
        self.depth_estimators = depth_estimators  # for depth checkpoints (model_manager.depth.DepthEstimators)
        self.loras = loras
        self.embeddings = embeddings
        self.cache = cache
        self.samplers = samplers
        self.settings = settings
        self.paths = paths
        self.styles = styles
        self.videos = video.VideoGeneration(self, motion_modules)  # AnimateDiff (core.video)
        # ControlNet / T2I-Adapter units (control.service.ControlService): .prepare(request, width=, height=,
        # picture=, mask=, family=, stage=, video=) -> ModelHooks or None; None: units are refused
        self.control = control
        # (request, job) -> context manager giving GenerationHooks; set by the extension runtime (paragoger.ext)
        self.extension_runner = None

    # 1. Model -------------------------------------------------------------------------------------------------
    def load_model(self, checkpoint: str | None, vae: str | None, settings) -> Components:
        info = self.checkpoint_to_load(checkpoint, settings)
        vae_setting = vae if vae is not None else settings["sd_vae"]
        vae_path = self.library.find_vae(vae_setting)
        return self.cache.get(info, vae_path, vae_beside=vae_setting != "None")

    def checkpoint_to_load(self, checkpoint: str | None, settings):
        """The checkpoint a request asks for; without one, the chosen one (setting sd_model_checkpoint), else the
        loaded one, else the first found. A chosen checkpoint that is no longer in the model folders is not an
        error (A1111 loads the first it finds): the loaded or first one is used, a notice says so, and the choice
        stays saved, to be used again once the file is back."""
        current = self.cache.current
        if checkpoint:
            return self.library.find_checkpoint(checkpoint)
        chosen = settings["sd_model_checkpoint"]
        if chosen:
            try:
                info = self.library.find_checkpoint(chosen)
            except NotFoundError as err:
                if err.key != "checkpoint_not_found":
                    raise
            else:
                self.notices.withdraw(CHECKPOINT_NOTICE)
                return info
        info = self.library.find_checkpoint(current.info.title if current else None)
        if chosen:
            self.notices.give(CHECKPOINT_NOTICE, "checkpoint_fallback", saved=chosen, loaded=info.title)
        return info

    # The whole generation ---------------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, job: Job | None = None) -> GenerationResult:
        job = job or Job(request=request)
        runner = self.extension_runner
        # Every model this generation loads or uses is held (never unloaded) until it ends.
        with self.cache.manager.holding(), \
                (runner(request, job) if runner else contextlib.nullcontext(GenerationHooks(request))) as run:
            result = self._generate(run.request, job, run)
            run.postprocess(result)
        return result

    def _generate(self, request: GenerationRequest, job: Job, run: GenerationHooks) -> GenerationResult:
        request = self.checks.check(request)
        settings = self.settings.with_overrides(request.override_settings)
        sampler, schedule = self.samplers.resolve(request.sampler_name, request.scheduler)
        job.progress.textinfo = "loading"
        components = self.load_model(request.checkpoint, request.vae, settings)
        run.model_ready(components)
        prompts = prepare_prompts(request.prompt, request.negative_prompt, steps=request.steps,
                                  styles=self.styles, style_names=request.styles,
                                  comments=settings["enable_prompt_comments"])
        encoder = PromptEncoder(components, clip_skip=self._clip_skip(request, settings),
                                emphasis=settings["emphasis"],
                                embeddings=self.embeddings.for_components(components) if self.embeddings else None)
        lora_calls = self.loras.resolve(prompts.extra_networks)[0] if self.loras else []
        motion_loras = []
        if video.wanted(request) and lora_calls:  # motion LoRAs change the motion module, not the checkpoint
            lora_calls, motion_loras = split_motion_loras(self.loras, lora_calls)
        with self._networks(components, lora_calls) as applied_loras:
            if video.wanted(request):
                result = self.videos.generate(
                    request, job, run, settings=settings, components=components, encoder=encoder, prompts=prompts,
                    sampler=sampler, schedule=schedule, motion_loras=motion_loras,
                    network_parameters={**self._network_parameters(encoder, applied_loras, settings),
                                        **self._control_parameters(request)})
                job.progress.textinfo = "done"
                return result
            images = self._generate_batches(request, job, settings, components, encoder, prompts, sampler,
                                            schedule, applied_loras, run)
        result = GenerationResult(request=request, images=images, interrupted=job.interrupted)
        self._save_grid(request, result, settings)
        job.progress.textinfo = "done"
        return result

    def _generate_batches(self, request, job, settings, components, encoder, prompts, sampler, schedule,
                          applied_loras, run: GenerationHooks | None = None) -> list[GeneratedImage]:
        run = run or GenerationHooks(request)
        prompt, negative = prompts.prompt, prompts.negative_prompt
        pictures = (prepare_pictures(request, keep_size=self._latent_upscale(request, components))
                    if request.mode == "img2img" else None)
        first_seed = seeding.resolve_seed(request.seed)
        first_subseed = seeding.resolve_seed(request.subseed)
        hires_fix = (hires.HiresFix(self, request, settings, sampler=sampler, schedule=schedule)
                     if hires.wanted(request) else None)
        images: list[GeneratedImage] = []
        for batch in self._batches(request, first_seed, first_subseed):
            if job.interrupted:
                break
            job.set_steps(batch.index, request.n_iter, hires_fix.total_steps if hires_fix else request.steps)
            run.process_batch(batch.index, batch.seeds)
            if pictures is not None and request.denoising_strength == 0:
                decoded = [pictures.for_image(i)[0] for i in range(len(batch.seeds))]  # nothing to denoise
            else:
                latents = self._sample(request, components, encoder, prompts, batch, sampler, schedule, settings,
                                       job, pictures, run=run,
                                       progress=hires_fix.first_pass_progress if hires_fix else None,
                                       stage="first" if hires_fix else "only")
                decoded = (hires_fix.run(components=components, encoder=encoder, batch=batch, latents=latents,
                                         job=job, run=run) if hires_fix else self._decode(components, latents))
            if pictures is not None:
                decoded = [pictures.finish(i, image) for i, image in enumerate(decoded)]
            for index, (image, seed, subseed) in enumerate(zip(decoded, batch.seeds, batch.subseeds)):
                image, script_fields = run.postprocess_image(image, seed=seed, subseed=subseed,
                                                             batch_index=batch.index, index=index)
                params = generation_parameters(
                    request, seed=seed, subseed=subseed, components=components, sampler=sampler.name,
                    schedule=schedule.label, clip_skip=encoder.clip_skip, rng=settings["randn_source"],
                    extra={**(hires_fix.parameters(prompts) if hires_fix else {}),
                           **self._network_parameters(encoder, applied_loras, settings),
                           **self._control_parameters(request), **script_fields})
                text = infotexts.format_infotext(prompt, negative, params)
                item = GeneratedImage(image=image, seed=seed, subseed=subseed, prompt=prompt,
                                      negative_prompt=negative, infotext=text)
                if hires_fix:
                    hires_fix.save_first_pass(index, item)
                self._save_image(request, item, settings, run)
                images.append(item)
        return images

    def _network_parameters(self, encoder, applied_loras, settings) -> dict:
        return {
            "Lora hashes": lora_hashes_field(applied_loras) or None,
            "TI hashes": (ti_hashes_field(encoder.used_embeddings, self.embeddings) or None) if self.embeddings
            else None,
            "Emphasis": settings["emphasis"] if settings["emphasis"] != "Original" else None,
        }

    def _control_parameters(self, request) -> dict:
        """The ``ControlNet N`` infotext fields of the request's enabled units."""
        if self.control is None or not request.controlnet_units:
            return {}
        return self.control.infotext_fields(request)

    @contextlib.contextmanager
    def _networks(self, components, lora_calls):
        """LoRAs are merged into the shared weights for this generation only and always taken out again."""
        if not lora_calls:
            yield []
            return
        with self.loras.apply(components, lora_calls) as applied:
            yield applied

    # 2. Prompts -------------------------------------------------------------------------------------------------
    @staticmethod
    def _clip_skip(request: GenerationRequest, settings) -> int:
        return request.clip_skip if request.clip_skip else settings["CLIP_stop_at_last_layers"]

    @staticmethod
    def _guidance(encoder: PromptEncoder, prompts: PreparedPrompts, cfg_scale: float, batch_size: int,
                  image_cfg_scale: float | None = None) -> Guidance:
        """Each distinct text encoded once, all padded to the same number of chunks, expanded to the batch."""
        encoded = {text: encoder.encode(text) for text in prompts.texts()}
        chunks = max(conditioning.chunks for conditioning in encoded.values())
        batched = {}
        for text, conditioning in encoded.items():
            embeds = conditioning.embeds
            if conditioning.chunks < chunks:
                embeds = pad_to_chunks(embeds, chunks, encoder.empty_chunk().embeds)
            pooled = conditioning.pooled
            batched[text] = TextConditioning(embeds=embeds.expand(batch_size, -1, -1),
                                             pooled=None if pooled is None else pooled.expand(batch_size, -1))

        def scheduled(part) -> ScheduledConditioning:
            return ScheduledConditioning([(end_step, batched[text]) for end_step, text in part.schedule])

        return Guidance(negative=scheduled(prompts.negative),
                        positives=[(part.weight, scheduled(part)) for part in prompts.positives],
                        cfg_scale=cfg_scale, image_cfg_scale=image_cfg_scale)

    # 3. Seeds --------------------------------------------------------------------------------------------------
    @staticmethod
    def _batches(request: GenerationRequest, first_seed: int, first_subseed: int):
        for index in range(request.n_iter):
            offset = index * request.batch_size
            yield _Batch(index=index,
                         seeds=seeding.batch_seeds(first_seed + offset, request.batch_size),
                         subseeds=seeding.batch_seeds(first_subseed + offset, request.batch_size))

    def _latent_shape(self, request, components: Components) -> tuple[int, int, int]:
        factor = components.vae_scale_factor
        return (components.latent_channels, request.height // factor, request.width // factor)

    def _initial_noise(self, request, components: Components, batch: _Batch, settings) -> torch.Tensor:
        resize_from = None
        if request.seed_resize_from_w > 0 and request.seed_resize_from_h > 0:
            resize_from = (request.seed_resize_from_h, request.seed_resize_from_w)
        return seeding.make_noise(
            self._latent_shape(request, components), batch.seeds, subseeds=batch.subseeds,
            subseed_strength=request.subseed_strength, seed_resize_from=resize_from,
            latent_scale=components.vae_scale_factor, device=self.cache.device.device,
            dtype=self.cache.device.dtype, source=settings["randn_source"].lower())

    # 4. Denoising ----------------------------------------------------------------------------------------------
    def _sample(self, request, components, encoder, prompts, batch, sampler, schedule, settings, job: Job,
                pictures: PreparedPictures | None = None, run: GenerationHooks | None = None,
                start_from=None, progress: tuple[int, int] | None = None, stage: str = "only") -> torch.Tensor:
        """``start_from(scheduler) -> img2img.StartLatents`` starts from given latents (the hires fix's second pass);
        ``progress`` (steps done before, steps in all) counts this pass as a part of a longer job; ``stage`` says
        which pass of a Hires. fix this is ("first", "hires"; "only" without one), for ControlNet units. Out of
        memory, the models no job uses are let go and the pass runs once more; then
        UserError("out_of_memory_sampling")."""
        def once():
            return self._sample_once(request, components, encoder, prompts, batch, sampler, schedule, settings,
                                     job, pictures, run, start_from, progress, stage)

        return retry_once(once, once, manager=self.cache.manager, device=self.cache.device.device,
                          message="out_of_memory_sampling", width=request.width, height=request.height,
                          batch=len(batch.seeds))

    def _sample_once(self, request, components, encoder, prompts, batch, sampler, schedule, settings, job: Job,
                     pictures: PreparedPictures | None, run: GenerationHooks | None, start_from,
                     progress: tuple[int, int] | None, stage: str = "only") -> torch.Tensor:
        offset, total = progress or (0, None)
        device, dtype = self.cache.device.device, self.cache.device.dtype
        scheduler = self.samplers.create_scheduler(sampler.name, schedule.name, components.scheduler_config,
                                                   noise_seeds=batch.seeds)
        try:
            scheduler.set_timesteps(request.steps, device=device)
        except ValueError as err:  # e.g. LCM refuses more steps than it was distilled for
            raise UserError("sampler_config_invalid", sampler=sampler.name, schedule=schedule.label,
                            reason=str(err)) from err
        guidance = self._guidance(encoder, prompts, request.cfg_scale, len(batch.seeds),
                                  image_cfg_scale=img2img.image_cfg_scale_for(request, components))
        added_time_ids = self._sdxl_time_ids(request, components, len(batch.seeds))
        hooks = [*(run.step_hooks() if run else ()), self._progress_hook(job, components, settings, offset)]
        model_hooks = (run.model_hooks() if run else ModelHooks()).merged(
            self._control_hooks(request, components, pictures, stage))
        with torch.inference_mode():
            if pictures is None and start_from is None:
                latents = self._initial_noise(request, components, batch, settings) * scheduler.init_noise_sigma
                timesteps, steps, generators = None, request.steps, None
                image_conditioning = self._txt2img_image_conditioning(components, latents)
            else:
                start = (start_from(scheduler) if start_from is not None else
                         self._start_from_pictures(request, components, scheduler, pictures, batch, device, dtype))
                latents, timesteps, steps = start.latents, start.timesteps, start.steps
                generators, image_conditioning = start.generators, start.image_conditioning
                if start.latent_mask is not None:
                    hooks.insert(0, img2img.blend_hook(start, scheduler))
            job.set_steps(batch.index, request.n_iter, total or steps)
            job.set_step(offset)
            step_kwargs = self._step_kwargs(sampler, scheduler, request, components, batch, settings, generators)
            return denoise(unet=components.unet, scheduler=scheduler, latents=latents, guidance=guidance,
                           steps=steps, step_kwargs=step_kwargs, timesteps=timesteps, added_time_ids=added_time_ids,
                           image_conditioning=image_conditioning, hooks=tuple(hooks), model_hooks=model_hooks)

    def _control_hooks(self, request, components: Components, pictures: PreparedPictures | None = None,
                       stage: str = "only", *, picture=None, mask=None, video: bool = False) -> ModelHooks | None:
        """The ControlNet units' hooks for a pass at the request's size (None without enabled units). Units
        without a picture of their own take the img2img picture (the first of the batch), with its inpaint mask."""
        if not any(unit.enabled for unit in request.controlnet_units):
            return None
        if self.control is None:
            raise UserError("controlnet_unavailable")
        if pictures is not None and picture is None:
            picture, mask = pictures.for_image(0)
        return self.control.prepare(request, width=request.width, height=request.height, picture=picture, mask=mask,
                                    family=components.family, stage=stage, video=video)

    @staticmethod
    def _latent_upscale(request, components) -> bool:
        """A1111's "Just resize (latent upscale)", for ordinary checkpoints without a mask (others resize pixels)."""
        return request.resize_mode == 3 and request.mask is None and components.variant == "base"

    def _start_from_pictures(self, request, components, scheduler, pictures: PreparedPictures, batch: _Batch,
                             device, dtype) -> img2img.StartLatents:
        chosen = [pictures.for_image(i) for i in range(len(batch.seeds))]
        masks = [mask for _, mask in chosen if mask is not None]
        images = [image for image, _ in chosen]
        depth = None
        if components.variant == "depth":
            factor, (width, height) = components.vae_scale_factor, images[0].size
            depth = depth_conditioning(images, depth_map=request.depth_map, estimators=self.depth_estimators,
                                       resize_mode=request.resize_mode, latent_size=(height // factor, width // factor),
                                       device=device, dtype=dtype, checkpoint=components.info.name,
                                       own_estimator=components.extra.get("depth_estimator"))
        return img2img.prepare_start(
            components, scheduler, pixels=img2img.pil_to_tensor(images), seeds=batch.seeds,
            steps=request.steps, strength=request.denoising_strength, device=device, dtype=dtype,
            mask=img2img.mask_to_tensor(masks) if masks else None, masked_content=request.inpainting_fill,
            latent_size=(request.height // components.vae_scale_factor, request.width // components.vae_scale_factor),
            depth=depth)

    def _txt2img_image_conditioning(self, components: Components, latents: torch.Tensor) -> torch.Tensor | None:
        """Inpainting models also take a mask and a masked image: for txt2img, as A1111 does, the whole picture
        is masked and the "image" is plain grey (0 in the VAE's -1..1 range)."""
        if components.variant in ("depth", "instruct-pix2pix"):
            # These models only make sense from a picture (its depth, or the picture being edited).
            raise UserError("checkpoint_needs_picture", name=components.info.name)
        if components.variant != "inpaint":
            return None
        vae = components.vae
        factor = components.vae_scale_factor
        grey = torch.zeros(1, 3, latents.shape[-2] * factor, latents.shape[-1] * factor, dtype=vae.dtype,
                           device=latents.device)
        grey_latents = vae.encode(grey).latent_dist.mode() * vae.config.scaling_factor
        mask = torch.ones(1, 1, *latents.shape[-2:], dtype=latents.dtype, device=latents.device)
        conditioning = torch.cat([mask, grey_latents.to(latents.dtype)], dim=1)
        return conditioning.expand(latents.shape[0], -1, -1, -1)

    def _step_kwargs(self, sampler, scheduler, request, components: Components, batch: _Batch, settings,
                     generators: list | None = None) -> dict:
        """Per-image generators for samplers that add noise each step (img2img continues the generators that
        drew its starting noise), and ``eta`` for DDIM."""
        if sampler.needs_generator and generators is None:
            generators = seeding.step_generators(
                batch.seeds, self._latent_shape(request, components), source=settings["randn_source"].lower(),
                device=self.cache.device.device)
        kwargs = sampler.step_kwargs(generators if sampler.needs_generator else None)
        if "eta" in inspect.signature(scheduler.step).parameters:
            kwargs["eta"] = settings["eta_ddim"]
        return kwargs

    def _sdxl_time_ids(self, request, components: Components, batch_size: int) -> torch.Tensor | None:
        if not components.is_sdxl:
            return None
        size = (request.height, request.width)
        ids = torch.tensor([[*size, 0, 0, *size]], dtype=self.cache.device.dtype, device=self.cache.device.device)
        return ids.expand(batch_size, -1)

    def _progress_hook(self, job: Job, components: Components, settings, offset: int = 0, pick=None):
        """Progress, live previews (of the latents ``pick`` chooses: the first image, or a video's first frame),
        interrupt and skip after each step."""
        pick = pick or (lambda latents: latents[0:1])
        every = settings["show_progress_every_n_steps"]
        previews_on = settings["live_previews_enable"]
        full_decode = settings["show_progress_type"] == "Full"

        def hook(state: StepState) -> None:
            done = state.step + 1
            preview = None
            if previews_on and (done % every == 0) and done < state.steps:
                if full_decode:
                    preview = self._decode(components, pick(state.latents))[0]
                else:
                    preview = previews.latents_to_preview(pick(state.latents), components.family)
            job.set_step(offset + done, preview)
            if job.interrupted or job.take_skip():
                state.stop = True

        return hook

    # 5. Decode -------------------------------------------------------------------------------------------------
    def _decode(self, components: Components, latents: torch.Tensor) -> list:
        """Latents -> pictures. Out of memory, the models no job uses are let go and it decodes again in tiles."""
        factor = components.vae_scale_factor
        decoded = retry_once(lambda: self._decode_once(components, latents, tiled=False),
                             lambda: self._decode_once(components, latents, tiled=True),
                             manager=self.cache.manager, device=self.cache.device.device,
                             message="out_of_memory_decoding", width=latents.shape[-1] * factor,
                             height=latents.shape[-2] * factor, batch=latents.shape[0])
        return previews.tensor_to_pil(decoded)

    @staticmethod
    def _decode_once(components: Components, latents: torch.Tensor, *, tiled: bool) -> torch.Tensor:
        vae = components.vae

        def decode(z: torch.Tensor) -> torch.Tensor:
            z = z / vae.config.scaling_factor
            return tiled_decode(vae, z) if tiled else vae.decode(z, return_dict=False)[0]

        with torch.inference_mode():
            decoded = decode(latents.to(vae.dtype))
            if vae.dtype != torch.float32 and torch.isnan(decoded).any():
                # Half-precision VAEs (notably SDXL's) overflow into NaN: decode this model in fp32 from now on.
                vae.to(torch.float32)
                decoded = decode(latents.float())
        return decoded

    # 6. Save ---------------------------------------------------------------------------------------------------
    def _output_dir(self, settings, key: str) -> Path:
        """A setting's folder: relative names live under the outputs folder, as in A1111."""
        return self.paths.outputs_dir / (settings["outdir_samples"] or settings[key])

    def _save_image(self, request: GenerationRequest, item: GeneratedImage, settings,
                    run: GenerationHooks | None = None) -> None:
        if not (request.save_images and settings["samples_save"]):
            return
        run = run or GenerationHooks(request)
        run.before_image_saved(item)
        outdir = self._output_dir(settings, f"outdir_{request.mode}_samples")
        item.path = str(saving.save_image(item.image, item.infotext, outdir=outdir, seed=item.seed,
                                          extension=settings["samples_format"],
                                          jpeg_quality=settings["jpeg_quality"]))
        run.image_saved(item)

    def _save_grid(self, request: GenerationRequest, result: GenerationResult, settings) -> None:
        if len(result.images) < 2:
            return
        result.grid = grids.make_grid([item.image for item in result.images])
        if request.save_images and settings["grid_save"] and not request.do_not_save_grid:
            outdir = self._output_dir(settings, f"outdir_{request.mode}_grids")
            result.grid_path = str(saving.save_grid(result.grid, result.images[0].infotext, outdir=outdir,
                                                    extension=settings["grid_format"],
                                                    jpeg_quality=settings["jpeg_quality"]))

