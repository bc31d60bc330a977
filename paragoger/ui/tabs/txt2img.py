"""The txt2img tab: A1111's controls and element ids; the handlers build a GenerationRequest and queue it."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from paragoger.core.jobs import FAILED
from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from paragoger.ui import widgets
from paragoger.ui.labels import label

POLL_SECONDS = 0.4


@dataclass
class Txt2ImgTab:
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    gallery: gr.Gallery
    infotext: gr.HTML
    generate: gr.Button


def gallery_items(result) -> list:
    """Saved files when there are any (their PNGs carry the infotext), else the images with it in ``info``."""
    items = []
    for item in result.images:
        if item.path:
            items.append((item.path, None))
        else:
            item.image.info["parameters"] = item.infotext
            items.append((item.image, None))
    if result.grid is not None:
        items.insert(0, (result.grid_path or result.grid, None))
    return items


def run_request(context, request: GenerationRequest):
    """Queue ``request`` and yield (job, status-html, preview) while it waits and runs; the job at the end."""
    job = context.queue.submit(request)
    last_preview = -1
    while not job.wait(POLL_SECONDS):
        position = context.queue.position(job)
        preview = None
        if job.progress.preview_id != last_preview and job.progress.preview is not None:
            last_preview, preview = job.progress.preview_id, job.progress.preview
        status = context.job_status(job, include_image=False)
        yield job, widgets.progress_html(status, position=position), preview
    yield job, "", None


def build(context, settings) -> Txt2ImgTab:
    tab = "txt2img"
    samplers = [spec["name"] for spec in context.samplers.samplers()]
    schedules = [spec["label"] for spec in context.samplers.schedules()]
    with gr.Row(elem_id=f"{tab}_toprow"):
        with gr.Column(scale=6):
            prompt = gr.Textbox(label=label("Prompt"), lines=3, elem_id=f"{tab}_prompt",
                                placeholder=label("Prompt (press Ctrl+Enter to generate)"))
            token_counter = gr.HTML(widgets.token_counter_html(0, 75), elem_id=f"{tab}_token_counter")
            negative = gr.Textbox(label=label("Negative prompt"), lines=2, elem_id=f"{tab}_neg_prompt")
        with gr.Column(scale=1, min_width=160):
            generate = gr.Button(label("Generate"), variant="primary", elem_id=f"{tab}_generate")
            with gr.Row():
                interrupt = gr.Button(label("Interrupt"), elem_id=f"{tab}_interrupt", min_width=60)
                skip = gr.Button(label("Skip"), elem_id=f"{tab}_skip", min_width=60)
            styles = widgets.styles_widgets(context, tab, prompt, negative)
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                sampler = gr.Dropdown(samplers, value=settings["default_sampler"], label=label("Sampling method"),
                                      elem_id=f"{tab}_sampling")
                scheduler = gr.Dropdown(schedules, value=settings["default_scheduler"],
                                        label=label("Schedule type"), elem_id=f"{tab}_scheduler")
            steps = gr.Slider(1, 150, value=settings["default_steps"], step=1, label=label("Sampling steps"),
                              elem_id=f"{tab}_steps")
            with gr.Row():
                with gr.Column():
                    width = gr.Slider(64, 2048, value=512, step=8, label=label("Width"), elem_id=f"{tab}_width")
                    height = gr.Slider(64, 2048, value=512, step=8, label=label("Height"), elem_id=f"{tab}_height")
                with gr.Column():
                    batch_count = gr.Slider(1, 100, value=1, step=1, label=label("Batch count"),
                                            elem_id=f"{tab}_batch_count")
                    batch_size = gr.Slider(1, 8, value=1, step=1, label=label("Batch size"),
                                           elem_id=f"{tab}_batch_size")
            cfg = gr.Slider(1, 30, value=settings["default_cfg_scale"], step=0.5, label=label("CFG Scale"),
                            elem_id=f"{tab}_cfg_scale")
            seeds = widgets.seed_widgets(tab)
        with gr.Column(scale=1):
            progress = gr.HTML(elem_id=f"{tab}_progress")
            gallery = gr.Gallery(label=label("Output"), format="png", columns=2, height=520,
                                 elem_id=f"{tab}_gallery", interactive=False)
            infotext = gr.HTML(elem_id=f"{tab}_html_info")
            error = gr.HTML(elem_id=f"{tab}_error")
    job_id = gr.State(None)
    last_seed = gr.State(-1)

    def generate_images(prompt_text, negative_text, style_names, sampler_name, schedule, steps_value, w, h, batches, size,
                        cfg_value, seed, subseed, subseed_strength, resize_w, resize_h):
        request = GenerationRequest(
            mode=tab, prompt=prompt_text, negative_prompt=negative_text, styles=list(style_names or []),
            sampler_name=sampler_name,
            scheduler=schedule, steps=int(steps_value), width=int(w), height=int(h), n_iter=int(batches),
            batch_size=int(size), cfg_scale=float(cfg_value), seed=int(seed if seed is not None else -1),
            subseed=int(subseed if subseed is not None else -1), subseed_strength=float(subseed_strength),
            seed_resize_from_w=int(resize_w), seed_resize_from_h=int(resize_h),
            checkpoint=settings["sd_model_checkpoint"] or None, save_images=True)
        try:
            request.validate()
            context.samplers.resolve(request.sampler_name, request.scheduler)
            updates = run_request(context, request)
            job = None
            for job, status_html, preview in updates:
                yield (gr.update(value=[preview]) if preview is not None else gr.update(), status_html,
                       gr.update(), job.id, gr.update(), "")
        except UserError as err:
            yield gr.update(), "", gr.update(), None, gr.update(), widgets.error_html(str(err))
            return
        if job.state == FAILED:
            yield gr.update(value=[]), "", gr.update(), None, gr.update(), widgets.error_html(str(job.error))
            return
        result = job.result
        text = result.images[0].infotext if result.images else ""
        first_seed = result.images[0].seed if result.images else -1
        yield (gallery_items(result), "", widgets.infotext_html(text), None, first_seed, "")

    inputs = [prompt, negative, styles, sampler, scheduler, steps, width, height, batch_count, batch_size, cfg,
              seeds.seed, seeds.subseed, seeds.subseed_strength, seeds.seed_resize_from_w, seeds.seed_resize_from_h]
    outputs = [gallery, progress, infotext, job_id, last_seed, error]
    generate.click(generate_images, inputs=inputs, outputs=outputs, concurrency_limit=None,
                   show_progress="hidden", api_visibility="private")
    prompt.submit(generate_images, inputs=inputs, outputs=outputs, concurrency_limit=None,
                  show_progress="hidden", api_visibility="private")

    def control(action):
        def handler(current_job_id):
            job = context.queue.get(current_job_id) if current_job_id else None
            if job is not None:
                context.queue.cancel(job) if action == "interrupt" else job.skip()
        return handler

    interrupt.click(control("interrupt"), inputs=job_id, outputs=None, concurrency_limit=None,
                    show_progress="hidden", api_visibility="private")
    skip.click(control("skip"), inputs=job_id, outputs=None, concurrency_limit=None,
               show_progress="hidden", api_visibility="private")
    def count_tokens(text, steps_value):
        tokens, limit = context.token_count(text or "", int(steps_value))
        return widgets.token_counter_html(tokens, limit)

    prompt.change(count_tokens, inputs=[prompt, steps], outputs=token_counter, show_progress="hidden",
                  api_visibility="private", concurrency_limit=None, trigger_mode="always_last")
    seeds.reuse_seed.click(lambda value: value, inputs=last_seed, outputs=seeds.seed, show_progress="hidden")
    return Txt2ImgTab(prompt=prompt, negative_prompt=negative, gallery=gallery, infotext=infotext,
                      generate=generate)
