"""The Video tab's "Stable Video Diffusion" sub-tab: one picture in, a short video out (``video.svd`` through the
queue as an ``SvdJob``). Forge's SVD tab's controls and defaults; element ids ``svd_*``. Widgets only."""
from __future__ import annotations

import gradio as gr

from paragoger.core.jobs import CANCELLED, FAILED
from paragoger.core.payloads import SvdJob
from paragoger.errors import UserError
from paragoger.ui import generation, named, widgets
from paragoger.ui.labels import label

SAVE_FORMATS = ("GIF", "MP4", "WEBM", "WEBP", "PNG")


def model_names(context) -> list[str]:
    return [entry.name for entry in context.svd.library.entries()]


def build(context) -> dict:
    names = model_names(context)
    with gr.Row():
        with gr.Column(scale=1):
            picture = gr.Image(type="pil", label=label("Picture"), elem_id="svd_image", height=320,
                               sources=["upload", "clipboard"])
            with gr.Row():
                model = gr.Dropdown(names, value=names[0] if names else None, label=label("SVD model"),
                                    elem_id="svd_model", scale=4)
                refresh = gr.Button("↻", elem_id="svd_model_refresh", scale=0, min_width=40)
            with gr.Row():
                width = gr.Slider(64, 2048, value=1024, step=8, label=label("Width"), elem_id="svd_width")
                height = gr.Slider(64, 2048, value=576, step=8, label=label("Height"), elem_id="svd_height")
            with gr.Row():
                frames = gr.Number(0, precision=0, minimum=0, label=label("Video frames"),
                                   info=label("0 = the model's own (14 or 25)"), elem_id="svd_frames")
                steps = gr.Slider(1, 150, value=25, step=1, label=label("Sampling steps"), elem_id="svd_steps")
            with gr.Row():
                min_cfg = gr.Slider(0, 30, value=1.0, step=0.1, label=label("Min CFG (first frame)"),
                                    elem_id="svd_min_cfg")
                max_cfg = gr.Slider(0, 30, value=2.5, step=0.1, label=label("CFG (last frame)"), elem_id="svd_cfg")
            with gr.Row():
                fps = gr.Slider(1, 60, value=6, step=1, label=label("FPS"),
                                info=label("what the model is told, and the written video's"), elem_id="svd_fps")
                motion_bucket = gr.Slider(0, 1023, value=127, step=1, label=label("Motion bucket id"),
                                          info=label("more = more motion"), elem_id="svd_motion_bucket_id")
            with gr.Row():
                augmentation = gr.Slider(0, 1, value=0.02, step=0.01, label=label("Augmentation level"),
                                         info=label("noise added to the picture: more = farther from it"),
                                         elem_id="svd_augmentation_level")
                chunk = gr.Slider(1, 32, value=8, step=1, label=label("Decode chunk size"),
                                  info=label("frames decoded at once: less = less memory"),
                                  elem_id="svd_decode_chunk_size")
            seed = gr.Number(-1, precision=0, label=label("Seed"), elem_id="svd_seed")
            formats = gr.CheckboxGroup(list(SAVE_FORMATS), value=["MP4"], label=label("Save formats"),
                                       elem_id="svd_formats")
        with gr.Column(scale=1):
            with gr.Row():
                generate = gr.Button(label("Generate"), variant="primary", elem_id="svd_generate")
                interrupt = gr.Button(label("Interrupt"), elem_id="svd_interrupt")
            progress = gr.HTML(elem_id="svd_progress")
            video = gr.Video(label=label("Video"), autoplay=True, loop=True, interactive=False,
                             elem_id="svd_video_result", height=360)
            files = gr.File(label=label("Files"), file_count="multiple", interactive=False, elem_id="svd_files")
            infotext = gr.HTML(elem_id="svd_html_info")
            error = gr.HTML(elem_id="svd_error")
    controls = dict(image=picture, model=model, width=width, height=height, frames=frames, steps=steps,
                    min_guidance_scale=min_cfg, max_guidance_scale=max_cfg, fps=fps, motion_bucket_id=motion_bucket,
                    noise_aug_strength=augmentation, decode_chunk_size=chunk, seed=seed, formats=formats)
    job_id = gr.State(None)

    def generate_svd(data: dict):
        try:
            payload = svd_job(context, named.by_name(controls, data))
            job = None
            for job, status_html, _ in generation.run_job(context, payload, details=True):
                yield status_html, gr.update(), gr.update(), gr.update(), job.id, ""
        except UserError as err:
            yield "", gr.update(), gr.update(), gr.update(), None, widgets.error_html(context.describe(err))
            return
        if job.state == FAILED:
            yield "", None, None, "", None, widgets.error_html(context.describe(job.error))
            return
        if job.state == CANCELLED or job.result is None:
            yield "", gr.update(), gr.update(), gr.update(), None, ""
            return
        output = job.result
        playable, written = widgets.video_files(output.video)
        yield "", playable, written, widgets.infotext_html(output.infotext), None, ""

    generate.click(generate_svd, inputs=named.inputs(controls), outputs=[progress, video, files, infotext, job_id,
                                                                         error],
                   concurrency_limit=None, show_progress="hidden", api_visibility="private")

    def stop(current):
        job = context.queue.get(current) if current else None
        if job is not None:
            context.queue.cancel(job)

    interrupt.click(stop, inputs=job_id, outputs=None, concurrency_limit=None, show_progress="hidden",
                    api_visibility="private")

    def refreshed(chosen):
        choices = model_names(context)
        return gr.update(choices=choices, value=chosen if chosen in choices else (choices[0] if choices else None))

    refresh.click(refreshed, inputs=model, outputs=model, api_visibility="private")
    return dict(controls, generate=generate, video=video, files=files, error=error)


def svd_job(context, values: dict) -> SvdJob:
    """The checked job of the sub-tab's values (by name, see ``build``); UserError naming what is wrong."""
    from paragoger.video.files import VIDEO_FORMATS
    from paragoger.video.svd import SvdRequest

    if values["image"] is None:
        raise UserError("svd_no_picture")
    formats = tuple(str(f).upper() for f in values["formats"] or [])
    if not formats:
        raise UserError("video_no_formats", known=", ".join(VIDEO_FORMATS))
    frames = int(values["frames"] or 0) or None
    limit = context.settings["limit_video_frames"]
    if frames is not None and frames > limit:
        raise UserError("video_frames_out_of_range", frames=frames, high=limit)
    seed = values["seed"]
    request = SvdRequest(
        image=values["image"].convert("RGB"), model=values["model"] or None, width=int(values["width"]),
        height=int(values["height"]), frames=frames, steps=int(values["steps"]),
        min_guidance_scale=float(values["min_guidance_scale"]), max_guidance_scale=float(values["max_guidance_scale"]),
        fps=int(values["fps"]), motion_bucket_id=int(values["motion_bucket_id"]),
        noise_aug_strength=float(values["noise_aug_strength"]), decode_chunk_size=int(values["decode_chunk_size"]),
        seed=int(seed if seed is not None else -1)).validate()
    context.svd.library.find(request.model)  # a missing or wrong model is said now, not after waiting in the queue
    return SvdJob(request=request, formats=formats, fps=float(request.fps), save=True)

