"""Stable Video Diffusion: one picture in, the frames of a short video out, through the one denoising loop.

What SVD adds to the loop is carried by a small UNet call (``SvdUNetCall``) and one guidance hook, so
``core.denoise`` runs it unchanged:

- conditioning: the picture's CLIP image embedding takes the text embedding's place (the negative is zeros), its
  VAE latents (without the scaling factor, with a little noise added first: "noise augmentation") are concatenated
  to every frame's latents on the channel axis (dim 2 of [batch, frames, channels, h, w]); zeros for the negative
  copy. Three numbers, fps - 1, the motion bucket id and the augmentation, go in as ``added_time_ids`` (SVD was
  trained on fps - 1, as diffusers and Stability's own script pass it).
- guidance: a per-frame scale rising linearly from the min to the max guidance, set at every UNet call
  (``ModelCallState.cfg_scale``); ``Guidance.combine`` broadcasts it over the frames.
- the scheduler: the model's own EulerDiscreteScheduler config (Karras sigmas 0.002-700, v-prediction).

The picture is made RGB and brought to width x height by "crop and resize" (scaled to cover, centre cut), as Forge
and ComfyUI do, and both the image encoder and the VAE see that picture (Stability's own sampling script does the
same); any size or mode of picture works, down to one pixel. One seed per video: a CPU generator seeded with it
draws the augmentation noise, then the starting latents (``svd_noise``): a diffusers StableVideoDiffusionPipeline
given that generator and those latents makes the same frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import PIL.Image
import torch

from paragoger.core.conditioning import TextConditioning
from paragoger.core.denoise import Guidance, ModelCallState, ModelHooks, ScheduledConditioning, StepState, denoise
from paragoger.core.img2img import pil_to_tensor
from paragoger.core.jobs import Job
from paragoger.core.seeds import resolve_seed
from paragoger.devices import DeviceConfig
from paragoger.errors import UserError
from paragoger.imaging import preview as previews
from paragoger.imaging.resize import CROP_AND_RESIZE, flatten, resize_image
from paragoger.model_manager.out_of_memory import retry_once
from paragoger.video.svd_models import DIFFUSERS, SvdEntry, SvdLibrary, SvdModel, check_single_file, \
    expected_bytes, load_svd_folder

KIND = "video"            # the model manager's kind for SVD models
SIZE_MULTIPLE = 8         # the VAE's factor; the UNet pads odd latent sizes itself (diffusers checks 8 too)
SIZES = (64, 2048)
MAX_FRAMES = 128
MAX_STEPS = 150
PREVIEW_FAMILY = "sd1"    # SVD's VAE encoder is SD's, so its latents share SD's latent -> RGB factors


@dataclass
class SvdRequest:
    image: PIL.Image.Image
    model: str | None = None          # a name from SvdLibrary; None: the first found
    width: int = 1024
    height: int = 576
    frames: int | None = None         # None: the model's own (14 svd, 25 svd_xt)
    steps: int = 25
    min_guidance_scale: float = 1.0
    max_guidance_scale: float = 3.0
    fps: int = 6                      # the fps conditioning (the model sees fps - 1, as it was trained)
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    decode_chunk_size: int = 8
    seed: int = -1

    def validate(self) -> "SvdRequest":
        """This request, checked: UserError naming the field and its allowed values."""
        if not isinstance(self.image, PIL.Image.Image):
            raise UserError("svd_no_picture")
        for name, value in (("width", self.width), ("height", self.height)):
            if not SIZES[0] <= value <= SIZES[1] or value % SIZE_MULTIPLE:
                raise UserError("svd_bad_size", field=name, value=value, low=SIZES[0], high=SIZES[1],
                                multiple=SIZE_MULTIPLE)
        ranges = [("frames", self.frames, 1, MAX_FRAMES), ("steps", self.steps, 1, MAX_STEPS),
                  ("min_guidance_scale", self.min_guidance_scale, 0.0, 30.0),
                  ("max_guidance_scale", self.max_guidance_scale, 0.0, 30.0), ("fps", self.fps, 1, 60),
                  ("motion_bucket_id", self.motion_bucket_id, 0, 1023),
                  ("noise_aug_strength", self.noise_aug_strength, 0.0, 10.0),
                  ("decode_chunk_size", self.decode_chunk_size, 1, MAX_FRAMES)]
        for name, value, low, high in ranges:
            if value is not None and not low <= value <= high:
                raise UserError("svd_bad_value", field=name, value=value, low=low, high=high)
        if self.seed is not None and self.seed < -1:
            raise UserError("svd_bad_value", field="seed", value=self.seed, low=-1, high=2**32 - 1)
        return self


@dataclass
class SvdResult:
    frames: list[PIL.Image.Image]
    seed: int
    parameters: dict[str, object] = field(default_factory=dict)  # the infotext's fields, A1111/Forge names
    interrupted: bool = False


def svd_noise(seed: int, picture_shape, latent_shape) -> tuple[torch.Tensor, torch.Tensor]:
    """(augmentation noise, starting latents' noise) for one video, float32 on the CPU, drawn in this order from
    one CPU generator seeded with ``seed`` (diffusers' pipeline draws the augmentation noise first, too)."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    augmentation = torch.randn(tuple(picture_shape), generator=generator, dtype=torch.float32)
    return augmentation, torch.randn(tuple(latent_shape), generator=generator, dtype=torch.float32)


def fit_picture(image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
    """Any picture as RGB at width x height: transparency over white, scaled to cover, the centre cut."""
    return flatten(resize_image(image, width, height, CROP_AND_RESIZE))


class SvdUNetCall:
    """The UNet as ``core.denoise`` calls it: adds the picture latents on the channel axis (dim 2) and the added
    time ids for every copy of the latents (``picture_latents`` and ``time_ids`` already hold one row per copy)."""

    def __init__(self, unet, picture_latents: torch.Tensor, time_ids: torch.Tensor):
        self.unet, self.picture_latents, self.time_ids = unet, picture_latents, time_ids

    def __call__(self, sample, timestep, *, encoder_hidden_states, added_cond_kwargs=None, return_dict=False,
                 **unet_kwargs):
        # added_cond_kwargs is SDXL's; SVD's extra conditioning is the time ids
        sample = torch.cat([sample, self.picture_latents], dim=2)
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                         added_time_ids=self.time_ids, return_dict=return_dict, **unet_kwargs)


def guidance_ramp(request: SvdRequest, frames: int, *, device, dtype) -> torch.Tensor:
    """The per-frame guidance scale, [1, frames, 1, 1, 1], from the min (first frame) to the max (last frame)."""
    ramp = torch.linspace(request.min_guidance_scale, request.max_guidance_scale, frames).unsqueeze(0)
    return ramp.to(device, dtype)[:, :, None, None, None]


class SvdEngine:
    def __init__(self, *, library: SvdLibrary, manager, device: DeviceConfig, settings=None):
        self.library = library
        self.manager = manager
        self.device = device
        self.settings = settings   # live preview settings; None: no previews

    def load(self, entry: SvdEntry) -> SvdModel:
        """The model of ``entry``, loaded once through the model manager (kind "video")."""
        if entry.format != DIFFUSERS:
            check_single_file(entry, self.library.folders[0] if self.library.folders else entry.path.parent)
        return self.manager.load(KIND, (str(entry.path), str(self.device.dtype)),
                                 lambda: load_svd_folder(entry, self.device), name=entry.name,
                                 device=self.device.device, expected_bytes=expected_bytes(entry.path))

    def generate(self, request: SvdRequest, job: Job) -> SvdResult:
        request = request.validate()
        entry = self.library.find(request.model)
        job.progress.textinfo = "loading"
        with self.manager.holding():  # the model is never let go while this video is made
            model = self.load(entry)
            request = replace(request, frames=request.frames or model.num_frames, seed=resolve_seed(request.seed))
            picture = fit_picture(request.image, request.width, request.height)
            job.set_steps(0, 1, request.steps)
            sample = lambda: self._sample(model, request, picture, job)  # noqa: E731
            latents = retry_once(sample, sample, manager=self.manager, device=self.device.device,
                                 message="svd_out_of_memory", width=request.width, height=request.height,
                                 batch=request.frames)
            frames = retry_once(lambda: self._decode(model, latents, request.decode_chunk_size),
                                lambda: self._decode(model, latents, 1), manager=self.manager,
                                device=self.device.device, message="svd_out_of_memory", width=request.width,
                                height=request.height, batch=request.frames)
        job.progress.textinfo = "done"
        return SvdResult(frames=frames, seed=request.seed, parameters=self.parameters(request, entry),
                         interrupted=job.interrupted)

    @staticmethod
    def parameters(request: SvdRequest, entry: SvdEntry) -> dict[str, object]:
        return {"Steps": request.steps, "Sampler": "Euler", "Schedule type": "Karras",
                "Min CFG": request.min_guidance_scale, "Max CFG": request.max_guidance_scale, "Seed": request.seed,
                "Size": f"{request.width}x{request.height}", "Model": entry.name, "Frames": request.frames,
                "Motion bucket id": request.motion_bucket_id, "FPS": request.fps,
                "Augmentation level": request.noise_aug_strength, "Decode chunk size": request.decode_chunk_size}

    # sampling ---------------------------------------------------------------------------------------------------
    def _sample(self, model: SvdModel, request: SvdRequest, picture: PIL.Image.Image, job: Job) -> torch.Tensor:
        from diffusers import EulerDiscreteScheduler

        device, dtype = self.device.device, self.device.dtype
        scheduler = EulerDiscreteScheduler.from_config(model.scheduler_config)
        scheduler.set_timesteps(request.steps, device=device)
        guided = max(request.min_guidance_scale, request.max_guidance_scale) > 1.0
        factor, frames = model.vae_scale_factor, request.frames
        latent_shape = (1, frames, model.vae.config.latent_channels, request.height // factor,
                        request.width // factor)
        with torch.inference_mode():
            pixels = pil_to_tensor([picture])
            augmentation, noise = svd_noise(request.seed, pixels.shape, latent_shape)
            embeds = self._image_embeds(model, pixels).to(dtype)
            picture_latents = self._picture_latents(model, pixels + request.noise_aug_strength * augmentation)
            picture_latents = picture_latents.to(dtype).unsqueeze(1).repeat(1, frames, 1, 1, 1)
            time_ids = torch.tensor([[request.fps - 1, request.motion_bucket_id, request.noise_aug_strength]],
                                    dtype=dtype, device=device)
            if guided:  # [negative, positive], as Guidance orders the copies
                picture_latents = torch.cat([torch.zeros_like(picture_latents), picture_latents])
                time_ids = torch.cat([time_ids, time_ids])
            guidance = Guidance(negative=_constant(torch.zeros_like(embeds), request.steps),
                                positives=[(1.0, _constant(embeds, request.steps))],
                                cfg_scale=max(request.min_guidance_scale, request.max_guidance_scale))
            ramp = guidance_ramp(request, frames, device=device, dtype=dtype)

            def per_frame_guidance(call: ModelCallState) -> None:
                call.cfg_scale = ramp

            return denoise(unet=SvdUNetCall(model.unet, picture_latents, time_ids), scheduler=scheduler,
                           latents=noise.to(device, dtype) * scheduler.init_noise_sigma, guidance=guidance,
                           steps=request.steps, step_kwargs={}, hooks=(self._progress_hook(job, factor),),
                           model_hooks=ModelHooks(before=(per_frame_guidance,)))

    @staticmethod
    def _image_embeds(model: SvdModel, pixels: torch.Tensor) -> torch.Tensor:
        """The picture's CLIP image embedding, [1, 1, dim]: scaled down to the encoder's size with antialiasing in
        -1..1 (as the model was trained; diffusers' own resize is used), then normalised by the image processor."""
        from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import \
            _resize_with_antialiasing

        encoder = model.image_encoder
        size = int(encoder.config.image_size)
        small = (_resize_with_antialiasing(pixels, (size, size)) + 1.0) / 2.0
        values = model.feature_extractor(images=small, do_normalize=True, do_center_crop=False, do_resize=False,
                                         do_rescale=False, return_tensors="pt").pixel_values
        parameter = next(encoder.parameters())
        return encoder(values.to(parameter.device, parameter.dtype)).image_embeds.unsqueeze(1)

    @staticmethod
    def _picture_latents(model: SvdModel, pixels: torch.Tensor) -> torch.Tensor:
        """The VAE's most likely latents of the picture, unscaled (what SVD was trained to see); a half-precision
        VAE that overflows into NaN is moved to fp32 for good, as the image engine does."""
        vae = model.vae
        device = next(vae.parameters()).device
        latents = vae.encode(pixels.to(device, vae.dtype)).latent_dist.mode()
        if vae.dtype != torch.float32 and torch.isnan(latents).any():
            vae.to(torch.float32)
            latents = vae.encode(pixels.to(device, torch.float32)).latent_dist.mode()
        return latents

    def _progress_hook(self, job: Job, factor: int):
        settings = self.settings
        previews_on = bool(settings is not None and settings["live_previews_enable"])
        every = settings["show_progress_every_n_steps"] if previews_on else 0

        def hook(state: StepState) -> None:
            done = state.step + 1
            preview = None
            if previews_on and done % every == 0 and done < state.steps:
                preview = previews.latents_to_preview(state.latents[0, 0], PREVIEW_FAMILY, scale=factor)
            job.set_step(done, preview)
            if job.interrupted or job.take_skip():
                state.stop = True  # the frames made so far are decoded and kept

        return hook

    # decoding ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _decode(model: SvdModel, latents: torch.Tensor, chunk_size: int) -> list[PIL.Image.Image]:
        """[1, frames, c, h, w] latents -> frames, ``chunk_size`` frames per temporal-decoder call (each call sees
        its chunk as one clip: ``num_frames``); retried in fp32 when a half-precision VAE gives NaN."""
        vae = model.vae
        scaled = latents.flatten(0, 1) / vae.config.scaling_factor

        def decode(z: torch.Tensor) -> torch.Tensor:
            parts = [vae.decode(z[i:i + chunk_size], num_frames=z[i:i + chunk_size].shape[0]).sample
                     for i in range(0, z.shape[0], chunk_size)]
            return torch.cat(parts)

        with torch.inference_mode():
            decoded = decode(scaled.to(vae.dtype))
            if vae.dtype != torch.float32 and torch.isnan(decoded).any():
                vae.to(torch.float32)
                decoded = decode(scaled.float())
        return previews.tensor_to_pil(decoded.float())  # float32 first, as diffusers does for video


def _constant(embeds: torch.Tensor, steps: int) -> ScheduledConditioning:
    return ScheduledConditioning([(steps, TextConditioning(embeds=embeds))])
