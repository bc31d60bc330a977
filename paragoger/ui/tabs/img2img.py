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
from paragoger.ui.controlnet import ControlNetControls
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


def pictures_from(values) -> tuple:
    """(init image, mask or None) for the chosen sub-tab (``values["source"]``), as A1111 reads each of them;
    ``values``: the picture controls' values by name (``source``, ``image``, ``sketch``, ``inpaint``,
    ``inpaint_sketch``, ``upload_image``, ``upload_mask``)."""
    source = values["source"]
    if source == "img2img":
        return values["image"], None
    if source == "sketch":
        return _editor_parts(values["sketch"])[2], None
    if source == "inpaint":
        background, painted, _ = _editor_parts(values["inpaint"])
        return background, painted  # the painted layer's alpha is the mask
    if source == "inpaint_sketch":
        background, _, composite = _editor_parts(values["inpaint_sketch"])
        if background is None:
            return None, None
        return composite, inpaint_sketch_mask(background, composite)
    return values["upload_image"], values["upload_mask"]


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
                    # its picture named as an input picture becomes the first enabled unit's picture for that input
                    batch_control = gr.Textbox(label=label("ControlNet input directory (optional)"),
                                               elem_id="img2img_batch_controlnet_input_dir")
                    batch_run = gr.Button(label("Process the folder"), variant="primary",
                                          elem_id="img2img_batch_run")
            for tab_widget, name in zip((t_img2img, t_sketch, t_inpaint, t_inpaint_sketch, t_upload), SOURCES):
                tab_widget.select(lambda n=name: n, outputs=source, api_visibility="private")
            pictures = dict(source=source, image=image, sketch=sketch, inpaint=inpaint, inpaint_sketch=inpaint_sketch,
                            upload_image=upload_image, upload_mask=upload_mask)
            image_to_text.interrogate_buttons(context, top["prompt"], pictures, pictures_from)
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
            controlnet = ControlNetControls(context, tab)
            controlnet.build()
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

    # The tab's own controls, by the GenerationRequest field (or outpaint option) each one fills.
    controls = dict(pictures, resize_mode=resize_mode, denoising_strength=denoising, mask_blur=mask_blur,
                    inpainting_mask_invert=mask_mode, inpainting_fill=masked_content, inpaint_full_res=inpaint_area,
                    inpaint_full_res_padding=padding, outpaint_left=out_left, outpaint_right=out_right,
                    outpaint_top=out_top, outpaint_bottom=out_bottom, outpaint_fill=out_fill,
                    image_cfg_scale=image_cfg, depth_map=depth_map)
    controlnet.wire(panel)
    generation.wire(context, panel, controls={**controls, **controlnet.controls()},
                    fill_request=lambda request, values: controlnet.fill_request(fill_request(request, values),
                                                                                 values))
    _wire_batch(context, panel, controls, dict(input=batch_input, output=batch_output, mask=batch_masks,
                                               control=batch_control), batch_run)

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


def fill_request(request, values):
    """The img2img controls' values (by name, see ``build``) put into ``request``."""
    init, mask = pictures_from(values)
    if init is None:
        raise UserError("init_image_missing")
    if mask is not None and mask.size != init.size:
        mask = mask.resize(init.size)
    request = request.copy(init_images=[init.convert("RGB")], mask=mask, resize_mode=int(values["resize_mode"]),
                           denoising_strength=float(values["denoising_strength"]), mask_blur=int(values["mask_blur"]),
                           inpainting_mask_invert=int(values["inpainting_mask_invert"]),
                           inpainting_fill=int(values["inpainting_fill"]),
                           inpaint_full_res=bool(values["inpaint_full_res"]),
                           inpaint_full_res_padding=int(values["inpaint_full_res_padding"]),
                           image_cfg_scale=float(values["image_cfg_scale"]), depth_map=values["depth_map"])
    outpaint = OutpaintOptions(*(int(values[f"outpaint_{side}"] or 0) for side in ("left", "right", "top", "bottom")),
                               values["outpaint_fill"])
    return outpaint_request(request, outpaint) if outpaint.any else request


def wire_send_to(source: generation.GenerationPanel, target: generation.GenerationPanel, tabs: gr.Tabs) -> None:
    """"Send to img2img" / "Send to inpaint" under a gallery: the chosen picture and its parameters move to the
    img2img tab (the prompt, seed, size and sampler come from the picture's own infotext)."""
    from PIL import Image

    from paragoger.core.paste import parameters_from_infotext
    from paragoger.imaging.metadata import read_infotext

    common = target.common_controls()
    sent = {key: common[key] for key in ("sampler_name", "scheduler", "steps", "cfg_scale", "seed", "width",
                                         "height")}

    def send(destination: str):
        def handler(gallery, selected):
            """{component: new value}: the img2img tab opens on ``destination`` with the picture and the fields
            its infotext names."""
            if not gallery:
                return gr.skip()
            path = gallery[min(int(selected or 0), len(gallery) - 1)][0]
            picture = Image.open(path)
            picture.load()
            pasted = parameters_from_infotext(read_infotext(path) or "")
            updates = {tabs: gr.Tabs(selected="img2img"), target.extra["modes"]: gr.Tabs(selected=destination),
                       target.extra["source"]: destination, target.prompt: pasted.prompt,
                       target.negative_prompt: pasted.negative_prompt}
            if destination == "img2img":
                updates[target.extra["image"]] = picture
            else:
                updates[target.extra["inpaint"]] = {"background": picture.convert("RGBA"), "layers": [],
                                                    "composite": None}
            updates.update({widget: pasted.fields[key] for key, widget in sent.items() if key in pasted.fields})
            return updates
        return handler

    outputs = [tabs, target.extra["modes"], target.extra["source"], target.extra["image"], target.extra["inpaint"],
               target.prompt, target.negative_prompt, *sent.values()]
    for destination in ("img2img", "inpaint"):
        source.extra[f"send_to_{destination}"].click(
            send(destination), inputs=[source.gallery, source.extra["selected"]], outputs=outputs,
            api_visibility="private")


def _wire_batch(context, panel, controls: dict, folders: dict, run) -> None:
    """"Process the folder": the tab's settings applied to every picture in a folder, with progress and a report.
    ``folders``: the input, output and mask folder boxes by name."""
    from pathlib import Path

    from paragoger.core.batch import BatchRequest
    from paragoger.core.jobs import FAILED
    from paragoger.core.payloads import Img2ImgBatchJob
    from paragoger.ui import named, widgets

    controls = named.merged(panel.common_controls(), controls)
    placeholder = Image.new("RGB", (8, 8))

    def process(data: dict):
        source_in, source_out, source_masks, source_control = (str(data[folders[name]] or "").strip()
                                                               for name in ("input", "output", "mask", "control"))
        try:
            values = named.by_name(controls, data)
            request = generation.base_request(context, panel.tab, values)
            # the folder supplies the pictures; check the rest now
            values.update(source="img2img", image=placeholder)
            request = context.check(fill_request(request, values).copy(init_images=[placeholder]))
            chosen = context.folders_from_page(input=Path(source_in), output=Path(source_out or source_in + "-out"),
                                               mask=Path(source_masks) if source_masks else None,
                                               control=Path(source_control) if source_control else None)
            batch = BatchRequest(request, chosen["input"], chosen["output"], chosen["mask"], chosen["control"])
            job = context.queue.submit(Img2ImgBatchJob(batch))
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

    run.click(process, inputs=named.inputs(controls, folders),
              outputs=[panel.progress, panel.error, panel.infotext], concurrency_limit=None,
              api_visibility="private")
