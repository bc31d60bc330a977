"""AppContext: the one place that builds and owns the app's state, handed to the UI, the API and the core.

Nothing here is a module global: tests build as many contexts as they like, each with its own folders.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import psutil

from paragoger import messages
from paragoger.caption import default_captioners
from paragoger.cli import LaunchOptions, listens_beyond_localhost
from paragoger.control.image_encoders import ImageEncoders
from paragoger.control.model_files import ControlModelLibrary
from paragoger.control.models import ControlModels
from paragoger.control.preprocessors import default_preprocessors
from paragoger.control.service import ControlService
from paragoger.core.batch import run_batch
from paragoger.core.checks import RequestCheck
from paragoger.devices import DeviceConfig, choose_device, configure_allocator
from paragoger.core.engine import CHECKPOINT_NOTICE, Engine
from paragoger.core.extras import extras_output_dir, run_extras
from paragoger.core.jobs import Job, JobHandlers, JobQueue
from paragoger.core.payloads import (CaptionJob, ExtrasJob, GenerationJob, Img2ImgBatchJob, ModelSwitch, SvdJob,
                                     WorkerCall)
from paragoger.core.svd_job import run_svd
from paragoger.errors import UserError
from paragoger.ext.loader import ExtensionManager
from paragoger.ext.scripts import resolve_script_request
from paragoger.ext.services import AppServices
from paragoger.imaging.transport import encode_png_base64
from paragoger.lifecycle import ServerControl
from paragoger.model_manager.cache import ModelCache
from paragoger.model_manager.depth import DepthEstimators
from paragoger.model_manager.embeddings import EmbeddingLibrary
from paragoger.model_manager.library import ModelLibrary
from paragoger.model_manager.lora import LoraLibrary
from paragoger.model_manager.loader import load_checkpoint
from paragoger.model_manager.memory import ModelManager, configured_budgets
from paragoger.notices import Notices
from paragoger.paths import Paths
from paragoger.prompts import StyleStore
from paragoger.samplers import default_sampler_registry
from paragoger.settings import Settings
from paragoger.upscale import UpscalerRegistry
from paragoger.upscale.model_files import ModelUpscalers
from paragoger.upscale.spandrel_models import SpandrelModels
from paragoger.video.motion_modules import MotionModuleLibrary, MotionModules
from paragoger.video.svd import SvdEngine
from paragoger.video.svd_models import SvdLibrary

class AppContext:
    def __init__(self, options: LaunchOptions, *, device: DeviceConfig | None = None):
        configure_allocator()  # before any thread of ours starts (paragoger/devices.py says why)
        self.options = options
        self.paths = Paths.build(
            data_dir=options.data_dir, models_dir=options.models_dir, ckpt_dirs=options.ckpt_dirs,
            vae_dirs=options.vae_dirs, lora_dirs=options.lora_dirs, embeddings_dirs=options.embeddings_dirs,
            extensions_dirs=options.extensions_dirs, outputs_dir=options.outputs_dir,
            upscaler_dirs=dict(options.upscaler_dirs), animatediff_dirs=options.animatediff_dirs,
            svd_dirs=options.svd_dirs, controlnet_dirs=options.controlnet_dirs)
        self.paths.ensure()
        self.settings = Settings.load(self.paths.config_file)
        self.notices = Notices()  # shown on the page's model status line and in /memory; logged when given
        self.device = device or choose_device(options.device, precision=options.precision,
                                              no_half=options.no_half, no_half_vae=options.no_half_vae,
                                              force_precision=options.force_precision)
        if self.device.refused_precision:
            self.notices.give("precision", "cpu_precision_fallback", precision=self.device.refused_precision)
        self.library = ModelLibrary(self.paths)
        # One model manager for every kind of model: what is loaded where, within the memory budgets.
        self.models = ModelManager(self.device.device, budgets=lambda ram, vram: configured_budgets(
            self.settings["memory_ram_budget_mb"], self.settings["memory_vram_budget_mb"], ram, vram,
            self.device.device))
        self.cache = ModelCache(load_checkpoint, self.device, limit=self.settings["sd_checkpoints_limit"],
                                manager=self.models)
        self.samplers = default_sampler_registry()
        self.upscalers = UpscalerRegistry()
        # Model upscalers (models/ESRGAN, RealESRGAN, ...) through spandrel: listed now, each read on first use.
        self.upscaler_models = ModelUpscalers(self.upscalers, self.paths.upscaler_dirs(), SpandrelModels(
            self.device, lambda: (self.settings["ESRGAN_tile"], self.settings["ESRGAN_tile_overlap"]),
            manager=self.models))
        self.upscaler_models.refresh()
        self.captioners = default_captioners(self.paths.models_dir, self.device, self.models)
        self.styles = StyleStore(self.paths.styles_file)
        self.loras = LoraLibrary(self.paths.lora_dirs, self.library.hash_cache, manager=self.models)
        self.embeddings = EmbeddingLibrary(self.paths.embeddings_dirs, self.library.hash_cache)
        self.depth_estimators = DepthEstimators(self.paths.models_dir / "depth", self.device.device,
                                                self.models)
        # ControlNet preprocessors: annotator files in models/ControlNet/annotators; extensions may register more.
        self.preprocessors = default_preprocessors(annotator_dir=self.paths.models_dir / "ControlNet" / "annotators",
                                                   depth_estimators=self.depth_estimators,
                                                   device=self.device.device, manager=self.models)
        # ControlNets, T2I-Adapters and IP-Adapters (models/ControlNet, --controlnet-dir, the A1111 extension's
        # models folder); IP-Adapters' CLIP image encoders (models/clip_vision, or image_encoder/ beside the file)
        self.control_models = ControlModels(ControlModelLibrary(self.paths.controlnet_dirs), self.models,
                                            self.device)
        self.image_encoders = ImageEncoders([self.paths.models_dir / "clip_vision"], self.models, self.device)
        # Video: motion modules (models/AnimateDiff) for AnimateDiff, Stable Video Diffusion models (models/svd).
        self.motion_modules = MotionModules(MotionModuleLibrary(self.paths.animatediff_dirs), self.models,
                                            self.device)
        self.svd = SvdEngine(library=SvdLibrary(self.paths.svd_dirs), manager=self.models, device=self.device,
                             settings=self.settings)
        # The one check every generation request passes before it is queued (page, API, extensions) and again
        # before it starts (core/checks.py); scripts are attached once extensions are loaded.
        self.checks = RequestCheck(settings=self.settings, paths=self.paths, samplers=self.samplers,
                                   upscalers=self.upscalers, styles=self.styles, library=self.library,
                                   count_tokens=self.token_counts)
        self.engine = Engine(library=self.library, cache=self.cache, samplers=self.samplers,
                             settings=self.settings, paths=self.paths, styles=self.styles, loras=self.loras,
                             embeddings=self.embeddings, depth_estimators=self.depth_estimators,
                             upscalers=self.upscalers, checks=self.checks, notices=self.notices,
                             motion_modules=self.motion_modules,
                             control=ControlService(get_model=self.control_models.get,
                                                    preprocessors=self.preprocessors,
                                                    find_model=self.control_models.library.find,
                                                    list_models=self.control_models.library.entries,
                                                    image_encoders=self.image_encoders))
        self.checks.find_motion_module = self.motion_modules.library.find
        self.checks.check_control_unit = lambda unit: self.engine.control.check_unit(unit)
        # Extensions and scripts (paragoger/ext): loaded here, so their samplers are in every list from the start.
        self.extensions = ExtensionManager(self.paths.extensions_dirs,
                                           state_file=self.paths.data_dir / "extensions.json",
                                           samplers=self.samplers, args=options.extra.get("unknown", []),
                                           library=self.library, switched_off=_extensions_switched_off(options),
                                           upscalers=self.upscalers, captioners=self.captioners,
                                           settings=self.settings,
                                           services=AppServices(self))
        self.extensions.load_all()
        self.scripts = self.extensions.scripts
        self.checks.resolve_scripts = lambda request: resolve_script_request(self.scripts, request)
        self.extensions.engine = self.engine
        self.engine.extension_runner = self.extensions.generation
        # The worker runs each job by its payload's type (paragoger/core/payloads.py): a new kind is one line here.
        self.job_handlers = JobHandlers()
        for payload_type, handler in ((GenerationJob, self._generate), (ModelSwitch, self._switch_model),
                                      (ExtrasJob, self._extras), (Img2ImgBatchJob, self._img2img_batch),
                                      (CaptionJob, self._caption), (SvdJob, self._svd),
                                      (WorkerCall, lambda call, job: call.fn(job))):
            self.job_handlers.register(payload_type, handler)
        self.queue = JobQueue(self.job_handlers, max_waiting=options.queue_size)
        self.control = ServerControl(self.queue)  # restart / stop (paragoger/lifecycle.py); server.serve attaches uvicorn
        self._counter_tokenizer = None  # built on first use when no model is loaded yet
        self._translations: tuple[str, dict] | None = None  # (language, table), see ``translations``

    def startup(self) -> None:
        """What happens once at start: a test model or the default download when asked for and none exists,
        then the checkpoint from --ckpt, config.json or the first found is loaded (failure is reported, the app
        still starts)."""
        if not self.library.checkpoints():
            if self.options.create_test_model:
                self.create_test_model()
            elif self.options.download_default:
                from paragoger.model_manager.download import download_default_checkpoint

                download_default_checkpoint(self.paths.default_checkpoint_dir())
                self.library.refresh()
        self._load_start_model()
        self.extensions.app_started()

    def _load_start_model(self) -> None:
        if not self.library.checkpoints():
            print(messages.render("no_checkpoint", folder=self.paths.default_checkpoint_dir()), flush=True)
            return
        try:
            self.select_checkpoint(self.options.ckpt or None)  # None: the saved choice, else the first found
        except UserError as err:
            print(f"{err}", flush=True)

    def create_test_model(self):
        return self.library.create_test_model("sd1")

    # The worker: every job, from the UI or the API, runs here, one at a time (see job_handlers). ----------------
    def _generate(self, payload: GenerationJob, job: Job):
        return self.extensions.run_generation(payload.request, job)

    def _switch_model(self, payload: ModelSwitch, job: Job):
        components = self.engine.load_model(payload.checkpoint, payload.vae, self.settings)
        if payload.checkpoint or not self.settings["sd_model_checkpoint"]:
            # a checkpoint loaded instead of a missing chosen one leaves the choice saved (Engine.load_model)
            self.settings.update({"sd_model_checkpoint": components.info.title})
            self.notices.withdraw(CHECKPOINT_NOTICE)
        self.extensions.notify_model(components)
        # The checkpoint's description, never its modules: finished jobs are kept for GET /jobs/{id}, and a
        # job holding the modules kept every switched-away model in memory (issue 10).
        return components.info

    def _extras(self, payload: ExtrasJob, job: Job):
        return run_extras(payload.request, self.upscalers, output_dir=extras_output_dir(self.paths, self.settings),
                          extension=self.settings["samples_format"], jpeg_quality=self.settings["jpeg_quality"],
                          job=job)

    def _img2img_batch(self, payload: Img2ImgBatchJob, job: Job):
        batch = payload.batch
        return run_batch(self.engine, batch.template, job, input_dir=batch.input_dir, output_dir=batch.output_dir,
                         mask_dir=batch.mask_dir, control_dir=batch.control_dir)

    def _caption(self, payload: CaptionJob, job: Job):
        return self.captioners.caption(payload.captioner, payload.image, self.settings.as_dict())

    def _svd(self, payload: SvdJob, job: Job):
        return run_svd(self.svd, payload, job, self.paths.outputs_dir)

    def run_and_wait(self, payload):
        """Queue ``payload`` (paragoger/core/payloads.py) as a job, wait for it, and return its result (or raise its
        error)."""
        job = self.queue.run(payload)
        if job.error is not None:
            raise job.error
        return job.result

    def select_checkpoint(self, name: str, vae: str | None = None):
        """Load a checkpoint through the queue (so it never races a running generation) and remember it; returns
        its CheckpointInfo."""
        return self.run_and_wait(ModelSwitch(name, vae))

    def run_in_worker(self, fn):
        """``fn()`` run by the job worker, between generations (device work for extensions: model upscalers...);
        its result, or its error raised."""
        return self.run_and_wait(WorkerCall(lambda job: fn()))

    def interrogate(self, image, captioner: str | None = "clip") -> str:
        """The text captioner ``captioner`` gives ``image``, through the queue (models load on the device while no
        generation runs). Unknown names fail at once; a missing model folder fails with the folder to fill."""
        self.captioners.get(captioner)
        if image is None:
            raise UserError("caption_image_missing")
        return self.run_and_wait(CaptionJob(captioner, image))

    def check(self, request):
        """The one check of a generation request before it is queued (core/checks.py): the request to queue, or
        UserError with the reason."""
        return self.checks.check(request)

    def check_extras(self, request):
        """An ExtrasRequest checked (unknown upscaler, absurd scale, a picture over the pixel limit -> UserError
        now), carrying the pixel limit for pictures read later (batch from a folder)."""
        return request.validate(self.upscalers, check_pixels=self.checks.check_pixels)

    def submit_extras(self, request) -> Job:
        """Check an ExtrasRequest and queue it."""
        return self.queue.submit(ExtrasJob(self.check_extras(request)))

    def run_extras(self, request):
        """Upscale through the queue and wait: the ExtrasResult, or the job's error raised."""
        return self.run_and_wait(ExtrasJob(self.check_extras(request)))

    def token_count(self, prompt: str, steps: int = 20) -> tuple[int, int]:
        """What the prompt box counter shows: tokens of the longest scheduled text, and the chunk limit."""
        from paragoger.core.checks import CHARACTERS_PER_TOKEN
        from paragoger.core.prompting import prepare_prompts

        # a prompt too long for the limit is counted only as far as needed to show that (a 3 MB paste stays quick)
        prompt = prompt[:self.settings["limit_prompt_tokens"] * CHARACTERS_PER_TOKEN + 1]
        prompts = prepare_prompts(prompt, "", steps=steps, comments=self.settings["enable_prompt_comments"])
        texts = [text for part in prompts.positives for _, text in part.schedule] or [""]
        return max(self._token_counts(texts))

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the loaded model's encoder counts them (its embeddings too); a plain CLIP
        tokenizer (the same vocabulary) before any model is loaded."""
        return [tokens for tokens, _ in self._token_counts(texts)]

    def _token_counts(self, texts: list[str]) -> list[tuple[int, int]]:
        from paragoger.core.conditioning import PromptEncoder, plain_token_count

        current = self.cache.current
        if current is None:
            if self._counter_tokenizer is None:
                from paragoger.model_manager.configs import clip_tokenizer

                self._counter_tokenizer = clip_tokenizer()
            return [plain_token_count(text, self._counter_tokenizer) for text in texts]
        encoder = PromptEncoder(current, embeddings=self.embeddings.for_components(current))
        return [encoder.token_count(text) for text in texts]

    def folders_from_page(self, **folders) -> dict:
        """Folders typed into the page's batch tabs. On this machine only they are taken as typed; while the
        app is shared on the network they must be inside the data folder (UserError otherwise)."""
        if not listens_beyond_localhost(self.options):
            return folders
        return self.paths.inside_data_dir(folders)

    # Localization --------------------------------------------------------------------------------------------
    def languages(self) -> list[str]:
        """"None" (English) and every language a localization file exists for."""
        from paragoger.localization import NO_LOCALIZATION, localization_files

        return [NO_LOCALIZATION, *sorted(localization_files(self.paths.data_dir, self.extensions.localizations()))]

    def translations(self) -> dict[str, str]:
        """The chosen language's table (English text or message id -> translation); empty for English. Read
        once per language (files edited while running apply after a restart, like the page's labels)."""
        from paragoger.localization import load_table, localization_files

        language = self.settings["localization"]
        cached = self._translations
        if cached is None or cached[0] != language:
            files = localization_files(self.paths.data_dir, self.extensions.localizations())
            cached = self._translations = (language, load_table(files.get(language, [])))
        return cached[1]

    def text(self, message_id: str, **params) -> str:
        """A message (by id, see ``messages``) in the chosen language, for what handlers show while running."""
        return messages.render(message_id, self.translations(), **params)

    def translate(self, english: str) -> str:
        """A label's text in the chosen language (``ui.labels.label`` does this while the page is built)."""
        return self.translations().get(english, english)

    def describe(self, err: BaseException, catalogue: dict[str, str] | None = None) -> str:
        """An error as the page shows it: a UserError in the chosen language, anything else as it is."""
        if isinstance(err, UserError):
            return err.render(self.translations() if catalogue is None else catalogue)
        return str(err)

    # Settings as the API shows them ----------------------------------------------------------------------------
    def options_snapshot(self) -> dict[str, Any]:
        values = self.settings.as_dict()
        current = self.cache.current
        if current is not None:
            values["sd_model_checkpoint"] = current.info.title
        return values

    def apply_options(self, changes: dict[str, Any]) -> None:
        changes = dict(changes)
        # Only folders being changed: one already in config.json (set there by hand) may point anywhere.
        self.paths.check_output_settings({k: v for k, v in changes.items() if self.settings.get(k) != v})
        checkpoint = changes.pop("sd_model_checkpoint", None)
        vae = changes.pop("sd_vae", None)
        self.settings.update(self.settings.validated(changes))
        if checkpoint or vae is not None:
            if vae is not None:
                self.library.find_vae(vae)  # unknown VAE -> 4xx before anything changes
                self.settings.update({"sd_vae": vae})
            self.select_checkpoint(checkpoint or None, vae)  # None: the saved choice
        self.cache.limit = self.settings["sd_checkpoints_limit"]
        self.models.fit()  # a lower budget or limit applies now, not at the next load

    def flags_snapshot(self) -> dict[str, Any]:
        return {key: (str(value) if value is not None and not isinstance(value, (bool, int, float, str))
                      else value) for key, value in asdict(self.options).items() if key != "extra"}

    # Progress as /sdapi/v1/progress and the page show it ---------------------------------------------------------
    def job_status(self, job: Job | None, *, include_image: bool = True) -> dict[str, Any]:
        waiting = self.queue.waiting_count()
        if job is None:
            return {"progress": 0.0, "eta_relative": 0.0, "current_image": None, "textinfo": None,
                    "state": {"job_count": 0, "queue_size": waiting}}
        p = job.progress
        eta = job.eta_seconds()
        return {
            "progress": p.fraction(),
            "eta_relative": eta or 0.0,
            "state": {"skipped": job.skipped, "interrupted": job.interrupted, "job": job.id,
                      "job_count": p.job_count, "job_no": p.job_no, "sampling_step": p.step,
                      "sampling_steps": p.steps, "queue_size": waiting,
                      "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created))},
            "current_image": encode_png_base64(p.preview) if include_image and p.preview is not None else None,
            "textinfo": p.textinfo or None,
        }

    def progress_report(self, *, include_image: bool = True) -> dict[str, Any]:
        return self.job_status(self.queue.current, include_image=include_image)

    def memory_report(self) -> dict[str, Any]:
        """A1111's /sdapi/v1/memory ("ram", "cuda") and every loaded model (kind, name, device, bytes, last use,
        in use), the totals models hold and the budgets (see ``model_manager.memory``)."""
        process, system = psutil.Process(), psutil.virtual_memory()
        used = process.memory_info().rss
        report: dict[str, Any] = {"ram": {"free": system.available, "used": used, "total": system.total},
                                  **self.models.report()}
        for row in report["models"]:
            row["title"] = row["name"]  # the field this route had before it listed every kind
        report["device"] = {"device": str(self.device.device), "dtype": str(self.device.dtype).removeprefix("torch."),
                            "refused_precision": self.device.refused_precision}
        report["notices"] = self.notices.texts()
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            stats = torch.cuda.memory_stats()
            report["cuda"] = {"system": {"free": free, "total": total, "used": total - free},
                              "active": {"current": stats.get("active_bytes.all.current", 0),
                                         "peak": stats.get("active_bytes.all.peak", 0)},
                              "allocated": {"current": stats.get("allocated_bytes.all.current", 0),
                                            "peak": stats.get("allocated_bytes.all.peak", 0)},
                              "reserved": {"current": stats.get("reserved_bytes.all.current", 0),
                                           "peak": stats.get("reserved_bytes.all.peak", 0)},
                              "events": {"retries": stats.get("num_alloc_retries", 0),
                                         "oom": stats.get("num_ooms", 0)},
                              "peak": torch.cuda.max_memory_allocated()}
        return report

    def unload_model(self, kind: str, key: str) -> None:
        """Unload one loaded model (a row of the memory table); UserError while a running job uses it."""
        self.models.unload(kind, key)

    def close(self) -> None:
        self.queue.stop()


def _extensions_switched_off(options: LaunchOptions) -> str:
    """Why no extension loads this run ("" when they do): --disable-all-extensions / --disable-extra-extensions."""
    for flag, on in (("--disable-all-extensions", options.disable_all_extensions),
                     ("--disable-extra-extensions", options.disable_extra_extensions)):
        if on:
            return messages.render("extensions_switched_off", flag=flag)
    return ""
