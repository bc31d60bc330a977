"""The "Image to text" tab (a picture, a captioner, the text, and buttons that put the text into a prompt) and
the img2img tab's "Interrogate CLIP" / "Interrogate DeepBooru" buttons. Widgets only: the text comes from
``context.interrogate``, which queues the captioner like a generation."""
from __future__ import annotations

from typing import Callable

import gradio as gr

from paragoger.errors import UserError
from paragoger.ui import named, widgets
from paragoger.ui.labels import label

DEFAULT_CAPTIONER = "clip"


def _choices(context) -> list[tuple[str, str]]:
    """(what the dropdown shows, captioner name) for every registered captioner."""
    return [(label(getattr(context.captioners.get(name), "title", "") or name), name)
            for name in context.captioners.names()]


def _describe(context, picture, captioner: str):
    """(text, error html): the caption, or the reason there is none."""
    try:
        return context.interrogate(picture, captioner), ""
    except UserError as err:
        return gr.update(), widgets.error_html(context.describe(err))


def build(context, txt2img_panel, img2img_panel, tabs: gr.Tabs) -> None:
    names = context.captioners.names()
    with gr.Row():
        with gr.Column(scale=1):
            picture = gr.Image(type="pil", label=label("Picture"), elem_id="image_to_text_image", height=420,
                               sources=["upload", "clipboard"], image_mode="RGBA")
        with gr.Column(scale=1):
            captioner = gr.Dropdown(_choices(context), label=label("Captioner"), elem_id="image_to_text_captioner",
                                    value=DEFAULT_CAPTIONER if DEFAULT_CAPTIONER in names else names[0])
            run = gr.Button(label("Get text"), variant="primary", elem_id="image_to_text_run")
            error = gr.HTML(elem_id="image_to_text_error")
            text = gr.Textbox(label=label("Text"), lines=5, elem_id="image_to_text_result", buttons=["copy"])
            with gr.Row():
                to_txt2img = gr.Button(label("Send to txt2img prompt"), elem_id="image_to_text_send_to_txt2img",
                                       size="sm")
                to_img2img = gr.Button(label("Send to img2img prompt"), elem_id="image_to_text_send_to_img2img",
                                       size="sm")
    run.click(lambda image, name: _describe(context, image, name), inputs=[picture, captioner],
              outputs=[text, error], api_visibility="private")
    for button, panel, tab_id in ((to_txt2img, txt2img_panel, "txt2img"), (to_img2img, img2img_panel, "img2img")):
        button.click(_send_to(tab_id), inputs=text, outputs=[panel.prompt, tabs], api_visibility="private")


def _send_to(tab_id: str):
    def send(value):
        return value, gr.Tabs(selected=tab_id)
    return send


def interrogate_buttons(context, prompt: gr.Textbox, picture_controls: dict,
                        picture_of: Callable[[dict], tuple]) -> None:
    """A1111's two buttons under the img2img picture: the current picture's text replaces the prompt.
    ``picture_of(values)`` gives (picture, mask) for the chosen img2img sub-tab from ``picture_controls``' values by
    name."""
    with gr.Row(elem_id="img2img_interrogate_row"):
        clip = gr.Button(label("Interrogate CLIP"), elem_id="interrogate", size="sm")
        booru = gr.Button(label("Interrogate DeepBooru"), elem_id="deepbooru", size="sm")
    error = gr.HTML(elem_id="img2img_interrogate_error")
    def interrogate_with(captioner: str):
        def interrogate(data: dict):
            return _describe(context, picture_of(named.by_name(picture_controls, data))[0], captioner)
        return interrogate

    for button, name in ((clip, "clip"), (booru, "deepdanbooru")):
        button.click(interrogate_with(name), inputs=named.inputs(picture_controls), outputs=[prompt, error],
                     api_visibility="private")
