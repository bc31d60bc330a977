"""The `/sdapi/v1` routes (A1111's API). Each route turns its body into core objects and calls the core."""
from __future__ import annotations

import asyncio
import contextlib
import html
import json
import math
import time
from typing import Any, Callable

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from paragoger import messages
from paragoger.api import schemas
from paragoger.core import hires
from paragoger.core.extras import ExtrasRequest
from paragoger.core.jobs import CANCELLED, DONE, FAILED, Job
from paragoger.core.outpaint import OutpaintOptions, outpaint_request
from paragoger.core.payloads import GenerationJob
from paragoger.core.request import GenerationRequest, GenerationResult
from paragoger.errors import NotFoundError, UserError
from paragoger.ext.install import check_access
from paragoger.imaging.infotext import parse_infotext
from paragoger.api import controlnet as controlnet_api
from paragoger.api import video as video_api
from paragoger.imaging.metadata import read_metadata
from paragoger.imaging.transport import decode_image_base64, encode_png_base64

API_SAMPLER_DEFAULT = "Euler"  # what A1111's API uses when a request names no sampler


def txt2img_request(body: schemas.Txt2ImgBody) -> GenerationRequest:
    """A1111's txt2img body -> the one request object the core takes."""
    return GenerationRequest(
        mode="txt2img", prompt=body.prompt, negative_prompt=body.negative_prompt, styles=list(body.styles),
        seed=body.seed, subseed=body.subseed, subseed_strength=body.subseed_strength,
        seed_resize_from_w=max(0, body.seed_resize_from_w), seed_resize_from_h=max(0, body.seed_resize_from_h),
        sampler_name=body.sampler_name or body.sampler_index or API_SAMPLER_DEFAULT,
        scheduler=body.scheduler or "Automatic", batch_size=body.batch_size, n_iter=body.n_iter,
        steps=body.steps, cfg_scale=body.cfg_scale, width=body.width, height=body.height,
        override_settings=dict(body.override_settings or {}),
        save_images=body.save_images and not body.do_not_save_samples, send_images=body.send_images,
        do_not_save_grid=body.do_not_save_grid, script_name=body.script_name or None,
        script_args=body.script_args, alwayson_scripts=dict(body.alwayson_scripts or {}),
        denoising_strength=(hires.DEFAULT_DENOISING_STRENGTH if body.denoising_strength is None
                            else body.denoising_strength),
        enable_hr=body.enable_hr, hr_scale=body.hr_scale, hr_upscaler=body.hr_upscaler or hires.DEFAULT_UPSCALER,
        hr_second_pass_steps=body.hr_second_pass_steps, hr_resize_x=body.hr_resize_x, hr_resize_y=body.hr_resize_y,
        hr_sampler_name=body.hr_sampler_name or None, hr_scheduler=body.hr_scheduler or None,
        hr_prompt=body.hr_prompt, hr_negative_prompt=body.hr_negative_prompt, hr_cfg=body.hr_cfg,
    )


def img2img_request(body: schemas.Img2ImgBody, *, picture_optional: bool = False) -> GenerationRequest:
    """A1111's img2img body: the txt2img fields plus the pictures (plain base64 or data URLs) and mask options.
    ``picture_optional``: video to video, whose first frame is the picture when none is given."""
    if not body.init_images and not picture_optional:
        raise UserError("init_image_missing")
    images = [decode_image_base64(data, field=f"init_images[{i}]").convert("RGB")
              for i, data in enumerate(body.init_images)]
    mask = decode_image_base64(body.mask, field="mask") if body.mask else None
    depth_map = decode_image_base64(body.depth_map, field="depth_map") if body.depth_map else None
    blur = body.mask_blur if body.mask_blur is not None else body.mask_blur_x
    request = txt2img_request(body).copy(
        mode="img2img", init_images=images, mask=mask, resize_mode=body.resize_mode,
        denoising_strength=body.denoising_strength, image_cfg_scale=body.image_cfg_scale, mask_blur=blur,
        inpainting_fill=body.inpainting_fill, inpaint_full_res=body.inpaint_full_res,
        inpaint_full_res_padding=body.inpaint_full_res_padding, inpainting_mask_invert=body.inpainting_mask_invert,
        depth_map=depth_map)
    if body.outpaint:
        options = OutpaintOptions(**{k: v for k, v in body.outpaint.items()
                                     if k in ("left", "right", "top", "bottom", "fill")})
        request = outpaint_request(request, options)
    return request


def result_info(result: GenerationResult, components_info: dict[str, Any], index_of_first_image: int) -> dict:
    """The ``info`` object A1111 returns (as a JSON string) beside the images."""
    request = result.request
    first = result.images[0] if result.images else None
    return {
        "prompt": first.prompt if first else request.prompt,
        "all_prompts": [item.prompt for item in result.images],
        "negative_prompt": first.negative_prompt if first else request.negative_prompt,
        "all_negative_prompts": [item.negative_prompt for item in result.images],
        "seed": first.seed if first else request.seed,
        "all_seeds": result.seeds,
        "subseed": first.subseed if first else request.subseed,
        "all_subseeds": [item.subseed for item in result.images],
        "subseed_strength": request.subseed_strength,
        "width": request.width, "height": request.height,
        "sampler_name": request.sampler_name, "scheduler": request.scheduler,
        "cfg_scale": request.cfg_scale, "steps": request.steps, "batch_size": request.batch_size,
        "restore_faces": False, "face_restoration_model": None,
        **components_info,
        "seed_resize_from_w": request.seed_resize_from_w or -1,
        "seed_resize_from_h": request.seed_resize_from_h or -1,
        "denoising_strength": (request.denoising_strength if request.mode == "img2img" or hires.wanted(request)
                               else None),
        "extra_generation_params": dict(request.extra_params),
        "index_of_first_image": index_of_first_image,
        "infotexts": result.infotexts, "styles": list(request.styles),
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"), "clip_skip": request.clip_skip or 1,
        "is_using_inpainting_conditioning": False, "interrupted": result.interrupted,
    }


def images_response(result: GenerationResult, body: dict[str, Any], context) -> dict:
    images, first_index = [], 0
    if result.request.animatediff is not None and result.request.animatediff.enable:
        try:
            images = video_api.video_images(result) if result.request.send_images else []
        finally:
            video_api.forget_scratch(result)
    elif result.request.send_images:
        if result.grid is not None:
            images.append(encode_png_base64(result.grid, result.images[0].infotext))
            first_index = 1
        images += [encode_png_base64(item.image, item.infotext) for item in result.images]
    current = context.cache.current
    components_info = {
        "sd_model_name": current.info.model_name if current else None,
        "sd_model_hash": current.info.short_hash if current else None,
        "sd_vae_name": current.vae_name if current else None,
        "sd_vae_hash": current.vae_hash if current else None,
    }
    info = result_info(result, components_info, first_index)
    return {"images": images, "parameters": body, "info": json.dumps(info, ensure_ascii=False)}


def wants_async(body) -> bool:
    """Beyond A1111: ``"async": true`` in a txt2img/img2img body answers a job id at once."""
    return bool((body.model_extra or {}).get("async"))


# Image-info keys A1111's png-info leaves out of ``items`` (format details, not text a person wrote).
IGNORED_INFO_KEYS = {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background",
                     "timestamp", "duration", "progressive", "progression", "icc_profile", "chromaticity",
                     "photoshop", "parameters", "gamma", "aspect", "transparency", "srgb"}

# A1111's latent upscale modes (hires fix "Latent ..." upscalers), in its order.
LATENT_UPSCALE_MODES = list(hires.LATENT_UPSCALE_MODES)


def extras_request(body: schemas.ExtrasBody, images: list, names: list[str]) -> ExtrasRequest:
    """A1111's extras body -> the core's ExtrasRequest (A1111's API never saves; ``save_images`` asks to)."""
    return ExtrasRequest(
        images=images, names=names, resize_mode=body.resize_mode, upscaling_resize=body.upscaling_resize,
        upscaling_resize_w=body.upscaling_resize_w, upscaling_resize_h=body.upscaling_resize_h,
        upscaling_crop=body.upscaling_crop, upscaler_1=body.upscaler_1 or "None",
        upscaler_2=body.upscaler_2 or "None", extras_upscaler_2_visibility=body.extras_upscaler_2_visibility,
        show_extras_results=body.show_extras_results, save=body.save_images,
        gfpgan_visibility=body.gfpgan_visibility, codeformer_visibility=body.codeformer_visibility,
        codeformer_weight=body.codeformer_weight, upscale_first=body.upscale_first)


def extras_html_info(result) -> str:
    """A1111's html_info: the postprocess fields as one HTML paragraph."""
    text = result.postprocess_texts[0] if result.postprocess_texts else ""
    return "<p>" + "<br>\n".join(html.escape(line) for line in text.split("\n")) + "</p>"


def png_info(image_b64: str) -> dict[str, Any]:
    """A1111's png-info: the infotext, the image's other text entries, and the infotext parsed as for paste."""
    if not image_b64 or not image_b64.strip():
        return {"info": "", "items": {}, "parameters": {}}
    image = decode_image_base64(image_b64, field="image")
    texts = read_metadata(image)
    info = texts.get("parameters") or ""
    items: dict[str, Any] = {}
    for key, value in {**image.info, **texts}.items():
        if key in IGNORED_INFO_KEYS or not isinstance(key, str):
            continue
        if isinstance(value, (str, int, float, bool)):
            items[key] = value
        elif isinstance(value, bytes):
            items[key] = value.decode("utf-8", errors="replace")
    return {"info": info, "items": items, "parameters": parse_infotext(info) if info else {}}


def build_router(context) -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1")

    async def generation(http_request: Request, body, build: Callable, respond: Callable[[Any], dict]):
        """Queue a generation. Synchronous (A1111): wait and answer the images. ``"async": true``: answer 202
        with the job id at once; GET /jobs/{id} gives the same body later.

        A client that goes away before its job starts has it removed from the queue; a job already running
        finishes (its pictures are saved when asked), and the worker goes on with the next."""
        # the one check before queueing (core/checks.py): 4xx at once, never a job that fails later
        request = await run_in_threadpool(lambda: context.check(build(body)))
        return await wait_for(http_request, GenerationJob(request), respond, wants_async(body))

    async def wait_for(http_request: Request, payload, respond: Callable[[Any], dict], asynchronous: bool):
        """Queue ``payload``; answer 202 with the job id at once when ``asynchronous``, else wait and answer
        ``respond(result)``. A client gone before its job starts has it taken off the queue."""
        job = context.queue.submit(payload, meta={"respond": respond})
        if asynchronous:
            return JSONResponse(status_code=202, content=job_brief(job))
        finished = asyncio.Event()
        loop = asyncio.get_running_loop()
        job.add_done_callback(lambda: loop.call_soon_threadsafe(finished.set))
        while not job.is_finished:
            if await http_request.is_disconnected():
                if context.queue.position(job) > 0:
                    context.queue.cancel(job)
                return JSONResponse(status_code=499, content={})  # nobody reads this
            with contextlib.suppress(asyncio.TimeoutError):  # wakes at once when the job ends
                await asyncio.wait_for(finished.wait(), 0.5)
        if job.state == FAILED:
            raise job.error
        if job.state == CANCELLED:
            raise UserError("job_cancelled", job_id=job.id)
        return await run_in_threadpool(job_response, job)

    def job_response(job: Job) -> dict | None:
        """The finished job's body, built once (images are encoded only when asked for)."""
        if job.state != DONE or "respond" not in job.meta:
            return None
        if "response" not in job.meta:
            job.meta["response"] = job.meta["respond"](job.result)
        return job.meta["response"]

    def job_brief(job: Job) -> dict:
        return {"job_id": job.id, "state": job.state, "position": context.queue.position(job),
                "queue_size": context.queue.waiting_count()}

    video_api.add_routes(router, context, wait_for)

    @router.post("/txt2img", response_model=schemas.ImagesResponse,
                 responses={202: {"description": 'With "async": true: {"job_id": ...}; see GET /jobs/{job_id}'}})
    async def txt2img(http_request: Request, body: schemas.Txt2ImgBody):
        parameters = body.model_dump(exclude={"async"})
        return await generation(http_request, body,
                                lambda b: controlnet_api.take_controlnet(
                                    video_api.take_animatediff(txt2img_request(b), context)),
                                lambda result: images_response(result, parameters, context))

    @router.post("/img2img", response_model=schemas.ImagesResponse,
                 responses={202: {"description": 'With "async": true: {"job_id": ...}; see GET /jobs/{job_id}'}})
    async def img2img(http_request: Request, body: schemas.Img2ImgBody):
        parameters = body.model_dump(exclude={"init_images", "mask", "async"})
        if body.include_init_images:
            parameters["init_images"] = body.init_images
            parameters["mask"] = body.mask
        return await generation(http_request, body,
                                lambda b: controlnet_api.take_controlnet(video_api.take_animatediff(
                                    img2img_request(b, picture_optional=video_api.has_video_source(b.alwayson_scripts)),
                                    context)),
                                lambda result: images_response(result, parameters, context))

    def find_job(job_id: str) -> Job:
        job = context.queue.get(job_id)
        if job is None:
            raise NotFoundError("job_not_found", job_id=job_id)
        return job

    def job_report(job: Job, include_image: bool) -> dict:
        p = job.progress
        running = job.state == "running"
        report = {
            **job_brief(job), "kind": job.kind,
            "progress": 1.0 if job.state == DONE else (p.fraction() if running else 0.0),
            "eta_relative": (job.eta_seconds() or 0.0) if running else 0.0,
            "job_no": p.job_no, "job_count": p.job_count, "sampling_step": p.step, "sampling_steps": p.steps,
            "interrupted": job.interrupted, "skipped": job.skipped, "textinfo": p.textinfo or None,
            "current_image": (encode_png_base64(p.preview) if include_image and running and p.preview is not None
                              else None),
            "created": job.created, "started": job.started, "finished": job.finished,
            "result": job_response(job), "error": None,
        }
        if job.state == FAILED:
            err = job.error
            report["error"] = ({"detail": str(err), "key": err.key, "status": err.status}
                               if isinstance(err, UserError) else {"detail": f"{type(err).__name__}: {err}",
                                                                   "key": None, "status": 500})
        return report

    @router.get("/jobs/{job_id}")
    def get_job(job_id: str, skip_current_image: bool = False):
        """Beyond A1111: a job's state (queued, running, done, failed, cancelled), queue position (0 running,
        1 next, -1 finished), progress, eta, preview and, once done, the body the synchronous route answers."""
        return job_report(find_job(job_id), include_image=not skip_current_image)

    @router.delete("/jobs/{job_id}")
    def cancel_job(job_id: str):
        """A waiting job leaves the queue; a running one is interrupted (it ends after the current step)."""
        job = find_job(job_id)
        context.queue.cancel(job)
        return job_report(job, include_image=False)

    @router.get("/progress", response_model=schemas.ProgressResponse)
    def progress(skip_current_image: bool = False):
        return context.progress_report(include_image=not skip_current_image)

    @router.post("/interrupt")
    def interrupt():
        job = context.queue.current
        if job is not None:
            job.interrupt()
        return {}

    @router.post("/skip")
    def skip():
        job = context.queue.current
        if job is not None:
            job.skip()
        return {}

    @router.get("/sd-models")
    def sd_models():
        return [{"title": info.title, "model_name": info.model_name, "hash": info.short_hash,
                 "sha256": info.sha256, "filename": str(info.path), "config": None}
                for info in context.library.checkpoints()]

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints():
        context.library.refresh()
        return {}

    @router.get("/sd-vae")
    def sd_vae():
        return [{"model_name": name, "filename": str(path)} for name, path in context.library.vaes().items()]

    @router.post("/refresh-vae")
    def refresh_vae():
        context.library.refresh()
        return {}

    @router.get("/samplers")
    def samplers():
        return context.samplers.samplers()

    @router.get("/schedulers")
    def schedulers():
        return context.samplers.schedules()

    @router.get("/options")
    def get_options():
        return context.options_snapshot()

    @router.post("/options")
    def set_options(changes: dict[str, Any] = Body(...)):
        context.apply_options(changes)  # checks the output folders it changes
        return {}

    @router.get("/loras")
    def loras():
        return [{"name": info.name, "alias": info.alias, "path": str(info.path), "metadata": info.metadata}
                for info in context.loras.entries()]

    @router.post("/refresh-loras")
    def refresh_loras():
        context.loras.refresh()
        return {}

    @router.get("/embeddings")
    def embeddings():
        """A1111's shape: embeddings usable with the loaded model, and the ones skipped (other families)."""
        current = context.cache.current
        usable = set(context.embeddings.for_components(current)) if current is not None else set()
        loaded, skipped = {}, {}
        for info in context.embeddings.entries():
            entry = {"step": info.step, "sd_checkpoint": info.checkpoint, "sd_checkpoint_name": info.checkpoint_name,
                     "shape": info.dims, "vectors": info.vectors}
            (loaded if info.name in usable or current is None else skipped)[info.name] = entry
        return {"loaded": loaded, "skipped": skipped}

    @router.post("/refresh-embeddings")
    def refresh_embeddings():
        context.embeddings.refresh()
        return {}

    @router.get("/prompt-styles")
    def prompt_styles():
        return [{"name": style.name, "prompt": style.prompt, "negative_prompt": style.negative_prompt}
                for style in (context.styles.get(name) for name in context.styles.names())]

    @router.get("/cmd-flags")
    def cmd_flags():
        return context.flags_snapshot()

    @router.get("/memory")
    def memory():
        """A1111's fields ("ram", "cuda") and "models": every loaded model, of every kind, most recent first."""
        return context.memory_report()

    @router.post("/memory/unload")
    def memory_unload(body: dict = Body(...)):
        """Unload one model of /memory's list ({"kind": ..., "key": ...}); 400 while a running job uses it."""
        context.unload_model(str(body.get("kind", "")), str(body.get("key", "")))
        return context.memory_report()

    @router.post("/png-info")
    def png_info_route(body: schemas.PngInfoBody):
        return png_info(body.image)

    @router.post("/interrogate", response_model=schemas.InterrogateResponse)
    async def interrogate(body: schemas.InterrogateBody):
        """A picture -> text by captioner name; queued like a generation. Unknown captioner 404, bad picture or a
        missing model folder 400 with the reason."""
        context.captioners.get(body.model)
        image = decode_image_base64(body.image, field="image")
        return {"caption": await run_in_threadpool(context.interrogate, image, body.model)}

    @router.get("/upscalers")
    def upscalers():
        return [{"name": u.name, "model_name": u.model_name, "model_path": str(u.model_path) if u.model_path else None,
                 "model_url": None, "scale": u.scale} for u in context.upscalers.all()]

    @router.post("/refresh-upscalers")
    def refresh_upscalers():
        """Beyond A1111: look again for model files in models/ESRGAN, RealESRGAN, SwinIR, DAT and HAT."""
        context.upscaler_models.refresh()
        return {}

    @router.post("/extra-single-image", response_model=schemas.ExtrasSingleImageResponse)
    def extra_single_image(body: schemas.ExtrasSingleImageBody):
        """Upscale one picture (A1111's Extras tab), queued like a generation; the picture comes back as plain
        base64 PNG carrying its infotext plus the postprocess fields."""
        image = decode_image_base64(body.image, field="image")
        result = context.run_extras(extras_request(body, [image], [""]))
        return {"html_info": extras_html_info(result),
                "image": encode_png_base64(result.images[0], result.infotexts[0] or None)}

    @router.post("/extra-batch-images", response_model=schemas.ExtrasBatchImagesResponse)
    def extra_batch_images(body: schemas.ExtrasBatchImagesBody):
        """Upscale several pictures (``imageList``: ``{"data": base64, "name": ...}``) with the same settings."""
        images = [decode_image_base64(item.data, field=f"imageList[{i}]") for i, item in enumerate(body.imageList)]
        request = extras_request(body, images, [item.name for item in body.imageList])
        result = context.run_extras(request)
        return {"html_info": extras_html_info(result),
                "images": [encode_png_base64(image, text or None)
                           for image, text in zip(result.images, result.infotexts)]}

    @router.get("/latent-upscale-modes")
    def latent_upscale_modes():
        return [{"name": name} for name in LATENT_UPSCALE_MODES]

    @router.get("/face-restorers")
    def face_restorers():
        return []

    @router.get("/scripts")
    def scripts():
        """Script names, as A1111 lists them: with the built-in features its extensions would add (clients such as
        webuiapi look for "animatediff" there before they send its arguments)."""
        listed = context.scripts.api_list()
        built_in = (*video_api.BUILT_IN_SCRIPTS, controlnet_api.SCRIPT_TITLE)
        return {tab: names + [name for name in built_in if name not in names]
                for tab, names in listed.items()}

    @router.get("/script-info")
    def script_info():
        return context.scripts.api_info()

    @router.get("/extensions")
    def extensions():
        return context.extensions.api_list()

    @router.post("/reload-checkpoint")
    def reload_checkpoint():
        """Load the selected checkpoint again (after unload-checkpoint), through the queue."""
        context.select_checkpoint(None)
        return {}

    @router.post("/unload-checkpoint")
    def unload_checkpoint():
        """Free the loaded models, through the queue (never under a running generation); the next generation
        loads the selected checkpoint again."""
        context.run_in_worker(context.cache.unload_all)
        return {}

    # Restart / stop / kill (paragoger/lifecycle.py), refused like installing extensions (ext/install.py). The
    # server is told only after this response has been sent.
    def server_command(message_id: str, then: Callable[[], None]) -> JSONResponse:
        check_access(context.options)
        if not context.control.can_restart:
            raise UserError("restart_unavailable")
        return JSONResponse({"detail": messages.render(message_id)}, background=BackgroundTask(then))

    @router.post("/server-restart")
    def server_restart():
        return server_command("server_restarting", lambda: context.control.request("restart"))

    @router.post("/server-stop")
    def server_stop():
        return server_command("server_stopping", lambda: context.control.request("stop"))

    @router.post("/server-kill")
    def server_kill():
        return server_command("server_stopping", context.control.kill)

    return router


def json_safe(value):
    """``value`` with NaN and Infinity written as text (JSON has no such numbers; a response holding one failed
    with 500)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def install_error_handlers(app: FastAPI) -> None:
    """UserError -> 4xx with the sentence; a body that does not fit the schema -> 422 naming the fields; anything
    else -> 500 with the type, and the app keeps running."""

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_request: Request, err: RequestValidationError):
        errors = [{key: value for key, value in error.items() if key in ("type", "loc", "msg", "input")}
                  for error in err.errors()]
        where = [".".join(str(part) for part in error["loc"] if part != "body") for error in errors]
        reason = "; ".join(f"{place}: {error['msg']}" if place else error["msg"]
                           for place, error in zip(where, errors))
        return JSONResponse(status_code=422, content=jsonable_encoder(
            {"error": "RequestValidationError", "detail": json_safe(errors), "reason": reason}))

    @app.exception_handler(UserError)
    async def user_error(_request: Request, err: UserError):
        return JSONResponse(status_code=err.status, content={"error": type(err).__name__, "detail": str(err),
                                                             "key": err.key})
