"""The Extras tab (A1111's): enlarge one picture, several uploaded files, or a whole folder with one or two
upscalers. Widgets only: the ExtrasRequest goes through the job queue to paragoger.core.extras."""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from paragoger.core.extras import MAX_SCALE, MAX_TARGET_SIDE, RESIZE_BY, RESIZE_TO, ExtrasRequest
from paragoger.core.jobs import FAILED
from paragoger.errors import UserError
from paragoger.ui import named, widgets
from paragoger.ui.labels import label

SINGLE, BATCH, FOLDER = "single", "batch", "folder"
POLL_SECONDS = 0.3


@dataclass
class ExtrasPanel:
    image: gr.Image
    modes: gr.Tabs
    mode: gr.State


def _open(path: str) -> Image.Image:
    with Image.open(path) as picture:
        picture.load()
        return picture.copy()  # keeps the text chunks: the infotext travels on


def build(context) -> ExtrasPanel:
    mode = gr.State(SINGLE)
    resize_mode = gr.State(RESIZE_BY)
    names = context.upscalers.names()
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Tabs(elem_id="mode_extras") as modes:
                with gr.Tab(label("Single Image"), id=SINGLE, elem_id="extras_single_tab") as t_single:
                    image = gr.Image(type="filepath", elem_id="extras_image", label=label("Source"), height=400,
                                     sources=["upload", "clipboard"])
                with gr.Tab(label("Batch Process"), id=BATCH, elem_id="extras_batch_process_tab") as t_batch:
                    files = gr.File(file_count="multiple", file_types=["image"], type="filepath",
                                    label=label("Batch Process"), elem_id="extras_image_batch")
                with gr.Tab(label("Batch from Directory"), id=FOLDER, elem_id="extras_batch_directory_tab") as t_dir:
                    input_dir = gr.Textbox(label=label("Input directory"), elem_id="extras_batch_input_dir")
                    output_dir = gr.Textbox(label=label("Output directory"), elem_id="extras_batch_output_dir",
                                            placeholder=label("Leave blank to save to the default folder"))
                    show_results = gr.Checkbox(True, label=label("Show result images"),
                                               elem_id="extras_show_extras_results")
            for tab, name in ((t_single, SINGLE), (t_batch, BATCH), (t_dir, FOLDER)):
                tab.select(lambda n=name: n, outputs=mode, api_visibility="private")
            generate = gr.Button(label("Generate"), variant="primary", elem_id="extras_generate")
            with gr.Tabs(elem_id="extras_resize_mode"):
                with gr.Tab(label("Scale by"), id="scale_by", elem_id="extras_scale_by_tab") as t_by:
                    scale = gr.Slider(1, MAX_SCALE, value=2, step=0.05, label=label("Resize"),
                                      elem_id="extras_upscaling_resize")
                with gr.Tab(label("Scale to"), id="scale_to", elem_id="extras_scale_to_tab") as t_to:
                    with gr.Row():
                        width = gr.Number(512, precision=0, minimum=1, maximum=MAX_TARGET_SIDE,
                                          label=label("Width"), elem_id="extras_upscaling_resize_w")
                        height = gr.Number(512, precision=0, minimum=1, maximum=MAX_TARGET_SIDE,
                                           label=label("Height"), elem_id="extras_upscaling_resize_h")
                    crop = gr.Checkbox(True, label=label("Crop to fit"), elem_id="extras_upscaling_crop")
            t_by.select(lambda: RESIZE_BY, outputs=resize_mode, api_visibility="private")
            t_to.select(lambda: RESIZE_TO, outputs=resize_mode, api_visibility="private")
            with gr.Row():
                upscaler_1 = gr.Dropdown(names, value="None", label=label("Upscaler 1"), elem_id="extras_upscaler_1",
                                         scale=4)
                refresh = gr.Button("↻", elem_id="extras_refresh_upscalers", scale=0, min_width=40)
            with gr.Row():
                upscaler_2 = gr.Dropdown(names, value="None", label=label("Upscaler 2"), elem_id="extras_upscaler_2")
                visibility = gr.Slider(0, 1, value=0, step=0.001, label=label("Upscaler 2 visibility"),
                                       elem_id="extras_upscaler_2_visibility")
        with gr.Column(scale=1):
            progress = gr.HTML(elem_id="extras_progress")
            gallery = gr.Gallery(label=label("Output"), format="png", columns=2, height=520, type="filepath",
                                 object_fit="contain", elem_id="extras_gallery", interactive=False)
            info = gr.HTML(elem_id="extras_html_info")
            error = gr.HTML(elem_id="extras_error")

    # The controls by name (ExtrasRequest's field names where they fill one): the handler reads them by name.
    controls = dict(mode=mode, image=image, files=files, input_dir=input_dir, output_dir=output_dir,
                    show_extras_results=show_results, resize_mode=resize_mode, upscaling_resize=scale,
                    upscaling_resize_w=width, upscaling_resize_h=height, upscaling_crop=crop, upscaler_1=upscaler_1,
                    upscaler_2=upscaler_2, extras_upscaler_2_visibility=visibility)

    def run(data: dict):
        values = named.by_name(controls, data)
        try:
            request = ExtrasRequest(
                resize_mode=int(values["resize_mode"]), upscaling_resize=float(values["upscaling_resize"]),
                upscaling_resize_w=int(values["upscaling_resize_w"] or 0),
                upscaling_resize_h=int(values["upscaling_resize_h"] or 0),
                upscaling_crop=bool(values["upscaling_crop"]), upscaler_1=values["upscaler_1"] or "None",
                upscaler_2=values["upscaler_2"] or "None",
                extras_upscaler_2_visibility=float(values["extras_upscaler_2_visibility"]), save=True)
            folder_in, folder_out = (values["input_dir"] or "").strip(), (values["output_dir"] or "").strip()
            file_paths = values["files"] or []
            if values["mode"] == FOLDER:
                if not folder_in:
                    raise UserError("extras_no_image")
                folders = context.folders_from_page(input=Path(folder_in),
                                                    output=Path(folder_out) if folder_out else None)
                request.input_dir, request.output_dir = folders["input"], folders["output"]
                request.show_extras_results = bool(values["show_extras_results"])
            elif values["mode"] == BATCH:
                request.images = [_open(path) for path in file_paths]
                request.names = [Path(path).name for path in file_paths]
            elif values["image"]:
                request.images = [_open(values["image"])]
            job = context.submit_extras(request)
        except UserError as err:
            yield gr.update(), "", gr.update(), widgets.error_html(context.describe(err))
            return
        except OSError as err:
            yield gr.update(), "", gr.update(), widgets.error_html(
                context.text("bad_image", field=context.translate("Source"), reason=type(err).__name__))
            return
        while not job.wait(POLL_SECONDS):
            yield gr.update(), _progress_html(context, job), gr.update(), ""
        if job.state == FAILED:
            yield gr.update(value=[]), "", "", widgets.error_html(context.describe(job.error))
            return
        yield _gallery(job.result), "", _info_html(context, job.result), ""

    generate.click(run, inputs=named.inputs(controls), outputs=[gallery, progress, info, error],
                   concurrency_limit=None, show_progress="hidden", api_visibility="private")

    def refresh_upscalers(first, second):
        context.upscaler_models.refresh()
        choices = context.upscalers.names()
        return (gr.update(choices=choices, value=first if first in choices else "None"),
                gr.update(choices=choices, value=second if second in choices else "None"))

    refresh.click(refresh_upscalers, inputs=[upscaler_1, upscaler_2], outputs=[upscaler_1, upscaler_2],
                  api_visibility="private")
    return ExtrasPanel(image=image, modes=modes, mode=mode)


def _progress_html(context, job) -> str:
    position = context.queue.position(job)
    if position > 0:
        return widgets.progress_html(None, position=position, running=context.queue.current,
                                     catalogue=context.translations())
    p = job.progress
    percent = int(round(100 * p.job_no / max(1, p.job_count)))
    return (f'<div class="paragoger-progress" data-state="running" data-percent="{percent}">'
            f'<div class="paragoger-progress-bar" style="width:{percent}%"></div>'
            f'<span>{html.escape(p.textinfo or "")}</span></div>')


def _gallery(result) -> list:
    if result.paths and len(result.paths) == len(result.images):
        return [(str(path), None) for path in result.paths]
    return [(image, None) for image in result.images]


def _info_html(context, result) -> str:
    text = result.infotexts[0] if result.infotexts else ""
    if result.skipped or result.paths and not result.images:
        lines = [context.text("extras_batch_done", written=len(result.paths), folder=result.output_dir,
                              skipped=len(result.skipped))]
        lines += [f"{name}: {reason}" for name, reason in result.skipped]
        text = "\n".join(lines + ([text] if text else []))
    return widgets.infotext_html(text)


def wire_send_to(source, panel: ExtrasPanel, tabs: gr.Tabs) -> None:
    """"Send to extras" under a txt2img/img2img gallery: the chosen picture (with its infotext) goes into the
    Extras tab's Single Image, and the Extras tab opens."""

    def send(gallery, selected):
        if not gallery:
            return gr.update(), gr.update(), gr.update(), gr.update()
        path = gallery[min(int(selected or 0), len(gallery) - 1)][0]
        return gr.Tabs(selected="extras"), gr.Tabs(selected=SINGLE), SINGLE, path

    source.extra["send_to_extras"].click(send, inputs=[source.gallery, source.extra["selected"]],
                                         outputs=[tabs, panel.modes, panel.mode, panel.image],
                                         api_visibility="private")
