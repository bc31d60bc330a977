"""The txt2img tab: A1111's controls and element ids (``txt2img_*``) over the shared generation panel."""
from __future__ import annotations

import gradio as gr

from paragoger.ui import generation
from paragoger.ui.controlnet import ControlNetControls
from paragoger.ui.hires import HiresFixControls


def build(context, settings, checkpoint_dropdown=None) -> generation.GenerationPanel:
    tab = "txt2img"
    top = generation.prompt_row(context, tab, checkpoint_dropdown)
    with gr.Row():
        with gr.Column(scale=1):
            hires_fix = HiresFixControls(context, tab)
            controls = generation.sampling_controls(context, settings, tab, after_steps=hires_fix.build)
            controlnet = ControlNetControls(context, tab)
            controlnet.build()
        with gr.Column(scale=1):
            panel = generation.GenerationPanel(tab=tab, **top, **controls)
            generation.output_panel(panel)
    hires_fix.wire(panel)
    controlnet.wire(panel)
    generation.wire(context, panel, controls={**hires_fix.controls(), **controlnet.controls()},
                    fill_request=lambda request, values: controlnet.fill_request(
                        hires_fix.fill_request(request, values), values))
    return panel
