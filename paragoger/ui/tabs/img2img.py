"""The img2img tab with A1111's sub-tabs (img2img, Sketch, Inpaint, Inpaint sketch, Inpaint upload) and
outpainting, over the shared generation panel. Widgets only: the request goes to the same core as txt2img."""
from __future__ import annotations

import gradio as gr
from PIL import Image

from paragoger.core.outpaint import OutpaintOptions, outpaint_request
from paragoger.errors import UserError
from paragoger.imaging.masks import MASKED_CONTENT, inpaint_sketch_mask
from paragoger.imaging.outpaint import OUTPAINT_FILLS
from paragoger.imaging.resize import RESIZE_MODES, default_size_for
from paragoger.ui import generation
from paragoger.ui.labels import label
from paragoger.ui.tabs import image_to_text

SOURCES = ("img2img", "sketch", "inpaint", "inpaint_sketch", "inpaint_upload")
SKETCH_COLOURS = ["#000000", "#ffffff", "#e03131", "#2f9e44", "#1971c2", "#f08c00", "#9c36b5"]


def _editor(elem_id: str, *, mask_brush: bool):
    brush = (gr.Brush(colors=["#ffffff"], default_color="#ffffff", color_mode="fixed") if mask_brush
             else gr.Brush(colors=SKETCH_COLOURS, color_mode="defaults"))
    return gr.ImageEditor(type="pil", elem_id=elem_id, brush=brush, label=None, height=480, layers=False,
                          format="png", image_mode="RGBA")


def _editor_parts(value) -> tuple:
    """(background, painted layer, composite) of an ImageEditor value; Nones when empty."""
    if not value or value.get("background") is None:
        return None, None, None
    layers = value.get("layers") or []
    return value["background"], (layers[0] if layers else None), value.get("composite")


def pictures_from(source: str, image, sketch, inpaint, inpaint_sketch, upload_image, upload_mask):
    """(init image, mask or None) for the chosen sub-tab, as A1111 reads each of them."""
    if source == "img2img":
        return image, None
    if source == "sketch":
        return _editor_parts(sketch)[2], None
    if source == "inpaint":
        background, painted, _ = _editor_parts(inpaint)
        return background, painted  # the painted layer's alpha is the mask
    if source == "inpaint_sketch":
        background, _, composite = _editor_parts(inpaint_sketch)
        if background is None:
            return None, None
        return composite, inpaint_sketch_mask(background, composite)
    return upload_image, upload_mask


def build(context, settings, checkpoint_dropdown=None) -> generation.GenerationPanel:
    tab = "img2img"
    top = generation.prompt_row(context, tab, checkpoint_dropdown)
    source = gr.State("img2img")
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Tabs(elem_id="mode_img2img") as modes:
                with gr.Tab(label("img2img"), id="img2img", elem_id="img2img_img2img_tab") as t_img2img:
                    image = gr.Image(type="pil", elem_id="img2img_image", label=None, height=480,
                                     sources=["upload", "clipboard"], image_mode="RGBA")
                with gr.Tab(label("Sketch"), id="sketch", elem_id="img2img_img2img_sketch_tab") as t_sketch:
                    sketch = _editor("img2img_sketch", mask_brush=False)
                with gr.Tab(label("Inpaint"), id="inpaint", elem_id="img2img_inpaint_tab") as t_inpaint:
                    inpaint = _editor("img2maskimg", mask_brush=True)
                with gr.Tab(label("Inpaint sketch"), id="inpaint_sketch",
                            elem_id="img2img_inpaint_sketch_tab") as t_inpaint_sketch:
                    inpaint_sketch = _editor("inpaint_sketch", mask_brush=False)
                with gr.Tab(label("Inpaint upload"), id="inpaint_upload",
                            elem_id="img2img_inpaint_upload_tab") as t_upload:
                    upload_image = gr.Image(type="pil", elem_id="img_inpaint_base", label=label("Image"))
                    upload_mask = gr.Image(type="pil", elem_id="img_inpaint_mask", label=label("Mask"))
                with gr.Tab(label("Batch"), id="batch", elem_id="img2img_batch_tab"):
                    batch_input = gr.Textbox(label=label("Input directory"), elem_id="img2img_batch_input_dir")
                    batch_output = gr.Textbox(label=label("Output directory"), elem_id="img2img_batch_output_dir")
                    batch_masks = gr.Textbox(label=label("Inpaint batch mask directory (optional)"),
                                             elem_id="img2img_batch_inpaint_mask_dir")
                    batch_run = gr.Button(label("Process the folder"), variant="primary",
                                          elem_id="img2img_batch_run")
            for tab_widget, name in zip((t_img2img, t_sketch, t_inpaint, t_inpaint_sketch, t_upload), SOURCES):
                tab_widget.select(lambda n=name: n, outputs=source, api_visibility="private")
            image_to_text.interrogate_buttons(context, top["prompt"], [source, image, sketch, inpaint, inpaint_sketch,
                                                                      upload_image, upload_mask], pictures_from)
            resize_mode = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[0], type="index",
                                   label=label("Resize mode"), elem_id="resize_mode")
            with gr.Accordion(label("Inpaint options"), open=True, elem_id="img2img_inpaint_controls"):
                mask_blur = gr.Slider(0, 64, value=4, step=1, label=label("Mask blur"), elem_id="img2img_mask_blur")
                mask_modes = [label("Inpaint masked"), label("Inpaint not masked")]
                mask_mode = gr.Radio(mask_modes, type="index", value=mask_modes[0],
                                     label=label("Mask mode"), elem_id="img2img_mask_mode")
                masked_content = gr.Radio(list(MASKED_CONTENT), type="index", value=MASKED_CONTENT[1],
                                          label=label("Masked content"), elem_id="img2img_inpainting_fill")
                areas = [label("Whole picture"), label("Only masked")]
                inpaint_area = gr.Radio(areas, type="index", value=areas[0],
                                        label=label("Inpaint area"), elem_id="img2img_inpaint_full_res")
                padding = gr.Slider(0, 256, value=32, step=4, label=label("Only masked padding, pixels"),
                                    elem_id="img2img_inpaint_full_res_padding")
            with gr.Accordion(label("Outpaint"), open=False, elem_id="img2img_outpaint"):
                with gr.Row():
                    out_left = gr.Number(0, precision=0, label=label("Left"), elem_id="img2img_outpaint_left")
                    out_right = gr.Number(0, precision=0, label=label("Right"), elem_id="img2img_outpaint_right")
                    out_top = gr.Number(0, precision=0, label=label("Top"), elem_id="img2img_outpaint_top")
                    out_bottom = gr.Number(0, precision=0, label=label("Bottom"), elem_id="img2img_outpaint_bottom")
                out_fill = gr.Radio(list(OUTPAINT_FILLS), value=OUTPAINT_FILLS[0], label=label("New area"),
                                    elem_id="img2img_outpaint_fill")
            controls = generation.sampling_controls(context, settings, tab)
            denoising = gr.Slider(0, 1, value=0.75, step=0.01, label=label("Denoising strength"),
                                  elem_id="img2img_denoising_strength")
            with gr.Accordion(label("Depth and instruct-pix2pix checkpoints"), open=False,
                              elem_id="img2img_special_checkpoints"):
                image_cfg = gr.Slider(0, 3, value=1.5, step=0.05, label=label("Image CFG Scale"),
                                      elem_id="img2img_image_cfg_scale")
                depth_map = gr.Image(type="pil", label=label("Depth map (optional; else estimated)"),
                                     elem_id="img2img_depth_map", height=200)
        with gr.Column(scale=1):
            panel = generation.GenerationPanel(tab=tab, **top, **controls)
            generation.output_panel(panel)

    extra_inputs = [source, image, sketch, inpaint, inpaint_sketch, upload_image, upload_mask, resize_mode,
                    denoising, mask_blur, mask_mode, masked_content, inpaint_area, padding, out_left, out_right,
                    out_top, out_bottom, out_fill, image_cfg, depth_map]

    def fill_request(request, values):
        (source_name, *pictures), rest = values[:7], values[7:]
        (resize, strength, blur, invert, fill, only_masked, pad, left, right, top_px, bottom, fill_new,
         image_cfg_scale, depth_picture) = rest
        init, mask = pictures_from(source_name, *pictures)
        if init is None:
            raise UserError("init_image_missing")
        if mask is not None and mask.size != init.size:
            mask = mask.resize(init.size)
        request = request.copy(init_images=[init.convert("RGB")], mask=mask, resize_mode=int(resize),
                               denoising_strength=float(strength), mask_blur=int(blur),
                               inpainting_mask_invert=int(invert), inpainting_fill=int(fill),
                               inpaint_full_res=bool(only_masked), inpaint_full_res_padding=int(pad),
                               image_cfg_scale=float(image_cfg_scale), depth_map=depth_picture)
        outpaint = OutpaintOptions(int(left or 0), int(right or 0), int(top_px or 0), int(bottom or 0), fill_new)
        return outpaint_request(request, outpaint) if outpaint.any else request

    generation.wire(context, panel, extra_inputs=extra_inputs, fill_request=fill_request)
    _wire_batch(context, panel, extra_inputs, fill_request, batch_input, batch_output, batch_masks, batch_run)

    def size_of(value):
        """The generation size follows a newly uploaded picture, rounded to multiples of 8 (as A1111)."""
        picture = value
        if picture is None:
            return gr.update(), gr.update()
        width, height = default_size_for(picture)
        return width, height

    for widget in (image, upload_image):
        widget.upload(size_of, inputs=widget, outputs=[panel.width, panel.height], api_visibility="private")

    panel.extra.update(image=image, inpaint=inpaint, sketch=sketch, modes=modes, source=source)
    return panel


def wire_send_to(source: generation.GenerationPanel, target: generation.GenerationPanel, tabs: gr.Tabs) -> None:
    """"Send to img2img" / "Send to inpaint" under a gallery: the chosen picture and its parameters move to the
    img2img tab (the prompt, seed, size and sampler come from the picture's own infotext)."""
    from PIL import Image

    from paragoger.core.paste import parameters_from_infotext
    from paragoger.imaging.metadata import read_infotext

    fields = ["sampler_name", "scheduler", "steps", "cfg_scale", "seed", "width", "height"]
    field_widgets = [target.sampler, target.scheduler, target.steps, target.cfg_scale, target.seeds.seed,
                     target.width, target.height]

    def send(destination: str):
        def handler(gallery, selected):
            if not gallery:
                return [gr.update()] * (7 + len(fields))
            path = gallery[min(int(selected or 0), len(gallery) - 1)][0]
            picture = Image.open(path)
            picture.load()
            pasted = parameters_from_infotext(read_infotext(path) or "")
            editor_value = {"background": picture.convert("RGBA"), "layers": [], "composite": None}
            values = [pasted.fields.get(name, gr.update()) for name in fields]
            sent_image = picture if destination == "img2img" else gr.update()
            sent_editor = editor_value if destination == "inpaint" else gr.update()
            return [gr.Tabs(selected="img2img"), gr.Tabs(selected=destination), destination, sent_image,
                    sent_editor, pasted.prompt, pasted.negative_prompt, *values]
        return handler

    outputs = [tabs, target.extra["modes"], target.extra["source"], target.extra["image"], target.extra["inpaint"], target.prompt,
               target.negative_prompt, *field_widgets]
    for destination in ("img2img", "inpaint"):
        source.extra[f"send_to_{destination}"].click(
            send(destination), inputs=[source.gallery, source.extra["selected"]], outputs=outputs,
            api_visibility="private")


def _wire_batch(context, panel, extra_inputs, fill_request, input_dir, output_dir, mask_dir, run) -> None:
    """"Process the folder": the tab's settings applied to every picture in a folder, with progress and a report."""
    from pathlib import Path

    from paragoger.context import IMG2IMG_BATCH
    from paragoger.core.batch import BatchRequest
    from paragoger.core.jobs import FAILED
    from paragoger.ui import widgets

    common = panel.common_inputs()
    placeholder = Image.new("RGB", (8, 8))

    def process(*values):
        folders, values = values[-3:], values[:-3]
        source_in, source_out, source_masks = (str(v or "").strip() for v in folders)
        try:
            request = generation.base_request(context, panel.tab, list(values[:len(common)]))
            settings_only = list(values[len(common):])
            settings_only[0] = "img2img"
            settings_only[1] = placeholder  # the folder supplies the pictures; validate the rest now
            request = context.check(fill_request(request, settings_only).copy(init_images=[placeholder]))
            folders = context.folders_from_page(input=Path(source_in), output=Path(source_out or source_in + "-out"),
                                                mask=Path(source_masks) if source_masks else None)
            batch = BatchRequest(request, folders["input"], folders["output"], folders["mask"])
            job = context.queue.submit(batch, kind=IMG2IMG_BATCH)
        except UserError as err:
            yield "", widgets.error_html(context.describe(err)), gr.update()
            return
        while not job.wait(generation.POLL_SECONDS):
            status = widgets.progress_html(context.job_status(job, include_image=False),
                                           position=context.queue.position(job), running=context.queue.current,
                                           catalogue=context.translations())
            yield status, "", gr.update()
        if job.state == FAILED:
            yield "", widgets.error_html(context.describe(job.error)), gr.update()
            return
        report = job.result
        lines = [context.text("batch_done", written=len(report.written), folder=batch.output_dir,
                                 skipped=len(report.skipped))]
        lines += [f"{name}: {reason}" for name, reason in report.skipped]
        yield "", "", widgets.infotext_html("\n".join(lines))

    run.click(process, inputs=[*common, *extra_inputs, input_dir, output_dir, mask_dir],
              outputs=[panel.progress, panel.error, panel.infotext], concurrency_limit=None,
              api_visibility="private")
