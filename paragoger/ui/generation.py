"""What every generation tab shares: the prompt row, the sampler/size/seed controls, the output panel, and the
handler that turns the widgets into a GenerationRequest, queues it and streams progress back.

A tab adds its own controls (init image, mask, ...) as a {name: component} dict and a function that puts their
values into the request; everything else is the same code for txt2img and img2img. Handlers read every value by
name (``ui/named.py``), so adding a control never shifts another's value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import gradio as gr

from paragoger.core.jobs import CANCELLED, FAILED
from paragoger.core.payloads import GenerationJob
from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from paragoger.ui import extra_networks, named, widgets
from paragoger.ui.extensions import script_controls
from paragoger.ui.labels import label

POLL_SECONDS = 0.4


@dataclass
class GenerationPanel:
    tab: str
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    styles: gr.Dropdown
    token_counter: gr.HTML
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    sampler: gr.Dropdown
    scheduler: gr.Dropdown
    steps: gr.Slider
    width: gr.Slider
    height: gr.Slider
    batch_count: gr.Slider
    batch_size: gr.Slider
    cfg_scale: gr.Slider
    seeds: widgets.SeedWidgets
    paste: gr.Button = None
    checkpoint_dropdown: gr.Dropdown | None = None
    progress: gr.HTML = None
    gallery: gr.Gallery = None
    infotext: gr.HTML = None
    error: gr.HTML = None
    extra: dict = field(default_factory=dict)
    scripts: Any = None       # ui.extensions.ScriptControls: the Script dropdown and always-on scripts

    def common_controls(self) -> dict:
        """The controls every generation tab has, by the GenerationRequest field each one fills."""
        s = self.seeds
        return dict(prompt=self.prompt, negative_prompt=self.negative_prompt, styles=self.styles,
                    sampler_name=self.sampler, scheduler=self.scheduler, steps=self.steps, width=self.width,
                    height=self.height, n_iter=self.batch_count, batch_size=self.batch_size, cfg_scale=self.cfg_scale,
                    seed=s.seed, subseed=s.subseed, subseed_strength=s.subseed_strength,
                    seed_resize_from_w=s.seed_resize_from_w, seed_resize_from_h=s.seed_resize_from_h)


def prompt_row(context, tab: str, checkpoint_dropdown=None) -> dict:
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
            paste = gr.Button("↙️ " + label("Read generation parameters from prompt"), elem_id=f"{tab}_paste",
                              size="sm")
            styles = widgets.styles_widgets(context, tab, prompt, negative)
    extra_networks.build(context, tab, prompt, checkpoint_dropdown)
    return dict(prompt=prompt, token_counter=token_counter, negative_prompt=negative, generate=generate,
                interrupt=interrupt, skip=skip, styles=styles, paste=paste, checkpoint_dropdown=checkpoint_dropdown)


def sampling_controls(context, settings, tab: str, after_steps: Callable[[], None] | None = None, *,
                      batch_size: bool = True, scripts: bool = True) -> dict:
    """``after_steps`` builds a tab's own controls below Sampling steps (txt2img: Hires. fix, as in A1111).
    ``batch_size=False`` hides Batch size (kept at 1: a video is one batch of frames already); ``scripts=False``
    leaves out the Script dropdown and always-on scripts (the Video tab: scripts are written for pictures)."""
    samplers = [spec["name"] for spec in context.samplers.samplers()]
    schedules = [spec["label"] for spec in context.samplers.schedules()]
    with gr.Row():
        sampler = gr.Dropdown(samplers, value=settings["default_sampler"], label=label("Sampling method"),
                              elem_id=f"{tab}_sampling")
        scheduler = gr.Dropdown(schedules, value=settings["default_scheduler"], label=label("Schedule type"),
                                elem_id=f"{tab}_scheduler")
    steps = gr.Slider(1, 150, value=settings["default_steps"], step=1, label=label("Sampling steps"),
                      elem_id=f"{tab}_steps")
    if after_steps is not None:
        after_steps()
    with gr.Row():
        with gr.Column():
            width = gr.Slider(64, 2048, value=512, step=8, label=label("Width"), elem_id=f"{tab}_width")
            height = gr.Slider(64, 2048, value=512, step=8, label=label("Height"), elem_id=f"{tab}_height")
        with gr.Column():
            batch_count = gr.Slider(1, 100, value=1, step=1, label=label("Batch count"),
                                    elem_id=f"{tab}_batch_count")
            batch_size_slider = gr.Slider(1, 8, value=1, step=1, label=label("Batch size"),
                                          elem_id=f"{tab}_batch_size", visible=batch_size)
    cfg_scale = gr.Slider(1, 30, value=settings["default_cfg_scale"], step=0.5, label=label("CFG Scale"),
                          elem_id=f"{tab}_cfg_scale")
    seeds = widgets.seed_widgets(tab)
    script_widgets = script_controls(context, tab) if scripts else None  # extensions: Script dropdown, always-on
    return dict(sampler=sampler, scheduler=scheduler, steps=steps, width=width, height=height,
                batch_count=batch_count, batch_size=batch_size_slider, cfg_scale=cfg_scale, seeds=seeds,
                scripts=script_widgets)


def output_panel(panel: GenerationPanel, before_gallery: Callable[[], None] | None = None) -> None:
    """``before_gallery`` builds a tab's own outputs between the progress bar and the gallery (the Video tab's
    player and files)."""
    tab = panel.tab
    panel.progress = gr.HTML(elem_id=f"{tab}_progress")
    if before_gallery is not None:
        before_gallery()
    panel.gallery = gr.Gallery(label=label("Output"), format="png", columns=2, height=520, type="filepath",
                               object_fit="contain",
                               elem_id=f"{tab}_gallery", interactive=False)
    with gr.Row():
        panel.extra["send_to_img2img"] = gr.Button(label("Send to img2img"), elem_id=f"{tab}_send_to_img2img",
                                                   size="sm")
        panel.extra["send_to_inpaint"] = gr.Button(label("Send to inpaint"), elem_id=f"{tab}_send_to_inpaint",
                                                   size="sm")
        panel.extra["send_to_extras"] = gr.Button(label("Send to extras"), elem_id=f"{tab}_send_to_extras",
                                                  size="sm")
    panel.extra["selected"] = gr.State(0)

    def remember(evt: gr.SelectData):
        return evt.index

    panel.gallery.select(remember, inputs=None, outputs=panel.extra["selected"], api_visibility="private")
    panel.infotext = gr.HTML(elem_id=f"{tab}_html_info")
    panel.error = gr.HTML(elem_id=f"{tab}_error")


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


def run_request(context, request: GenerationRequest, *, details: bool = False):
    """Queue ``request`` and yield (job, status-html, preview) while it waits and runs; the job at the end."""
    yield from run_job(context, GenerationJob(request), details=details)


def run_job(context, payload, *, details: bool = False):
    """Queue any job ``payload`` (``core/payloads.py``) and yield (job, status-html, preview) while it waits and
    runs; the job at the end. ``details``: the progress line also shows the job's own text (a video's
    "window 2/3", "decoding")."""
    job = context.queue.submit(payload)
    last_preview = -1
    while not job.wait(POLL_SECONDS):
        position = context.queue.position(job)
        preview = None
        if job.progress.preview_id != last_preview and job.progress.preview is not None:
            last_preview, preview = job.progress.preview_id, job.progress.preview
        status = context.job_status(job, include_image=False)
        yield job, widgets.progress_html(status, position=position, running=context.queue.current,
                                         catalogue=context.translations(), details=details), preview
    yield job, "", None


def base_request(context, mode: str, values: Mapping[str, Any]) -> GenerationRequest:
    """The request from the common controls' values, by name (``GenerationPanel.common_controls``)."""
    seed, subseed = values["seed"], values["subseed"]
    return GenerationRequest(
        mode=mode, prompt=values["prompt"] or "", negative_prompt=values["negative_prompt"] or "",
        styles=list(values["styles"] or []), sampler_name=values["sampler_name"], scheduler=values["scheduler"],
        steps=int(values["steps"]), width=int(values["width"]), height=int(values["height"]),
        n_iter=int(values["n_iter"]), batch_size=int(values["batch_size"]), cfg_scale=float(values["cfg_scale"]),
        seed=int(seed if seed is not None else -1), subseed=int(subseed if subseed is not None else -1),
        subseed_strength=float(values["subseed_strength"]), seed_resize_from_w=int(values["seed_resize_from_w"]),
        seed_resize_from_h=int(values["seed_resize_from_h"]), save_images=True)  # checkpoint None: the top bar's


def wire(context, panel: GenerationPanel, *, controls: Mapping[str, Any] | None = None,
         fill_request: Callable[[GenerationRequest, dict], GenerationRequest] | None = None,
         result_outputs: Sequence[Any] = (), result_values: Callable[[Any], list] | None = None,
         progress_details: bool = False) -> None:
    """Connect Generate (and Enter in the prompt), Interrupt, Skip, reuse seed and the token counter.
    ``controls``: the tab's own {name: component}; ``fill_request(request, values)`` puts their values (read by
    name, with the common ones) into the request. ``result_outputs``: the tab's own result components besides the
    gallery (the Video tab's player and files), filled from the GenerationResult by ``result_values(result)`` (one
    value per component, in order) and left as they are by every other update. ``progress_details``: the
    progress line shows the job's own text too ("window 2/3")."""
    job_id = gr.State(None)
    unchanged = [gr.update() for _ in result_outputs]
    last_seed = gr.State(-1)
    controls = named.merged(panel.common_controls(), controls or {})
    script_inputs = panel.scripts.all_inputs() if panel.scripts is not None else []

    def generate(data: dict):
        try:
            values = named.by_name(controls, data)
            request = base_request(context, panel.tab, values)
            if fill_request is not None:
                request = fill_request(request, values)
            if panel.scripts is not None:
                request = panel.scripts.fill(request, data)
            request = context.check(request)  # the one check before queueing (core/checks.py)
            job = None
            for job, status_html, preview in run_request(context, request, details=progress_details):
                yield (gr.update(value=[preview]) if preview is not None else gr.update(), status_html,
                       gr.update(), job.id, gr.update(), *unchanged, "")
        except UserError as err:
            yield (gr.update(), "", gr.update(), None, gr.update(), *unchanged,
                   widgets.error_html(context.describe(err)))
            return
        if job.state == FAILED:
            yield (gr.update(value=[]), "", gr.update(), None, gr.update(), *unchanged,
                   widgets.error_html(context.describe(job.error)))
            return
        if job.state == CANCELLED:  # interrupted while it still waited in the queue: nothing was made
            yield gr.update(), "", gr.update(), None, gr.update(), *unchanged, ""
            return
        result = job.result
        text = result.images[0].infotext if result.images else ""
        first_seed = result.images[0].seed if result.images else -1
        own = list(result_values(result)) if result_values is not None else []
        yield gallery_items(result), "", widgets.infotext_html(text), None, first_seed, *own, ""

    # the error box stays last and the job id fourth, whatever a tab adds (tests and tabs read them there)
    outputs = [panel.gallery, panel.progress, panel.infotext, job_id, last_seed, *result_outputs, panel.error]
    for trigger in (panel.generate.click, panel.prompt.submit):
        trigger(generate, inputs=named.inputs(controls, script_inputs), outputs=outputs, concurrency_limit=None,
                show_progress="hidden", api_visibility="private")

    def control(action):
        def handler(current_job_id):
            job = context.queue.get(current_job_id) if current_job_id else None
            if job is not None:
                context.queue.cancel(job) if action == "interrupt" else job.skip()
        return handler

    for button, action in ((panel.interrupt, "interrupt"), (panel.skip, "skip")):
        button.click(control(action), inputs=job_id, outputs=None, concurrency_limit=None,
                     show_progress="hidden", api_visibility="private")

    def count_tokens(text, steps_value):
        tokens, limit = context.token_count(text or "", int(steps_value))
        return widgets.token_counter_html(tokens, limit)

    panel.prompt.change(count_tokens, inputs=[panel.prompt, panel.steps], outputs=panel.token_counter,
                        show_progress="hidden", api_visibility="private", concurrency_limit=None,
                        trigger_mode="always_last")
    wire_paste(context, panel)
    panel.seeds.reuse_seed.click(lambda value: value, inputs=last_seed, outputs=panel.seeds.seed,
                                 show_progress="hidden")


# What the ↙️ button fills from an infotext besides the prompts, by the request field each control fills.
PASTED_FIELDS = ("sampler_name", "scheduler", "steps", "width", "height", "cfg_scale", "seed", "subseed",
                 "subseed_strength", "seed_resize_from_w", "seed_resize_from_h")


def wire_paste(context, panel: GenerationPanel) -> None:
    """The ↙️ button (and a PNG dropped on the prompt box, through javascript/drop_png.js): the infotext in the
    prompt box fills the fields, and the checkpoint it names is loaded when it is here."""
    from paragoger.core.paste import parameters_from_infotext

    common = panel.common_controls()
    targets = {key: common[key] for key in PASTED_FIELDS}
    # a tab's own fields: (widget, request field, value -> widget value), e.g. txt2img's Hires. fix
    tab_fields = list(panel.extra.get("paste_fields", ()))
    outputs = [panel.prompt, panel.negative_prompt, *targets.values(), *(widget for widget, _, _ in tab_fields),
               panel.error] + ([panel.checkpoint_dropdown] if panel.checkpoint_dropdown else [])

    def paste(text):
        """{component: new value}: only the fields the infotext names change."""
        pasted = parameters_from_infotext(text or "")
        context.extensions.infotext_pasted(text or "", pasted.fields)
        updates = {panel.prompt: pasted.prompt, panel.negative_prompt: pasted.negative_prompt, panel.error: ""}
        updates.update({widget: pasted.fields[key] for key, widget in targets.items() if key in pasted.fields})
        updates.update({widget: convert(pasted.fields[key]) for widget, key, convert in tab_fields
                        if key in pasted.fields})
        if pasted.checkpoint_query:
            try:
                title = context.select_checkpoint(pasted.checkpoint_query).title
                if panel.checkpoint_dropdown:
                    updates[panel.checkpoint_dropdown] = widgets.checkpoint_choice(context, title)
            except UserError as err:
                updates[panel.error] = widgets.error_html(context.describe(err))
        return updates

    panel.paste.click(paste, inputs=panel.prompt, outputs=outputs, api_visibility="private")
