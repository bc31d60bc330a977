"""txt2img's Hires. fix controls, with A1111's element ids: a "Hires. fix" checkbox that opens its options
(upscaler, hires steps, denoising strength, upscale by, resize to), the "from 512x512 to 1024x1024" line, and a
collapsed part with the hires sampler, schedule type, CFG scale and prompts. Widgets only: the work is core.hires.
"""
from __future__ import annotations

import html

import gradio as gr

from paragoger.core import hires
from paragoger.ui.labels import label


class HiresFixControls:
    """Built inside the sampling controls (``build``), then wired to the panel's size sliders (``wire``).

    The upscaler and sampler take names not in their lists (pasted from another install's infotext), so the
    generation can say which one is missing."""

    def __init__(self, context, tab: str = "txt2img"):
        self.context, self.tab = context, tab

    def build(self) -> None:
        tab = self.tab
        samplers = [spec["name"] for spec in self.context.samplers.samplers()]
        schedules = [spec["label"] for spec in self.context.samplers.schedules()]
        self.enable = gr.Checkbox(label=label("Hires. fix"), value=False, elem_id=f"{tab}_enable_hr")
        with gr.Accordion(label("Hires. fix settings"), open=False, elem_id=f"{tab}_hr") as self.accordion:
            with gr.Row():
                self.upscaler = gr.Dropdown(hires.upscaler_names(self.context.upscalers),
                                            value=hires.DEFAULT_UPSCALER, label=label("Upscaler"),
                                            elem_id=f"{tab}_hr_upscaler", allow_custom_value=True)
                self.steps = gr.Slider(0, 150, value=0, step=1, label=label("Hires steps"),
                                       elem_id=f"{tab}_hires_steps")
                self.denoising = gr.Slider(0, 1, value=hires.DEFAULT_DENOISING_STRENGTH, step=0.01,
                                           label=label("Denoising strength"), elem_id=f"{tab}_denoising_strength")
            with gr.Row():
                self.scale = gr.Slider(1, 4, value=2, step=0.05, label=label("Upscale by"), elem_id=f"{tab}_hr_scale")
                self.resize_x = gr.Slider(0, 2048, value=0, step=8, label=label("Resize width to"),
                                          elem_id=f"{tab}_hr_resize_x")
                self.resize_y = gr.Slider(0, 2048, value=0, step=8, label=label("Resize height to"),
                                          elem_id=f"{tab}_hr_resize_y")
            self.final_size = gr.HTML(final_size_html(512, 512, 2, 0, 0), elem_id=f"{tab}_hr_finalres")
            with gr.Accordion(label("Hires sampler, prompts and CFG"), open=False, elem_id=f"{tab}_hr_more"):
                with gr.Row():
                    self.sampler = gr.Dropdown([(label("Use same sampler"), hires.SAME_SAMPLER), *samplers],
                                               value=hires.SAME_SAMPLER, label=label("Hires sampling method"),
                                               elem_id=f"{tab}_hr_sampler", allow_custom_value=True)
                    self.scheduler = gr.Dropdown([(label("Use same scheduler"), hires.SAME_SCHEDULER), *schedules],
                                                 value=hires.SAME_SCHEDULER, label=label("Hires schedule type"),
                                                 elem_id=f"{tab}_hr_scheduler")
                self.cfg = gr.Slider(0, 30, value=0, step=0.5, elem_id=f"{tab}_hr_cfg", label=label("Hires CFG Scale"),
                                     info=label("0: the same as CFG Scale"))
                self.prompt = gr.Textbox(label=label("Hires prompt"), lines=2, elem_id=f"{tab}_hr_prompt",
                                         placeholder=label("Leave empty to use the same prompt as in the first pass."))
                self.negative_prompt = gr.Textbox(
                    label=label("Hires negative prompt"), lines=2, elem_id=f"{tab}_hr_negative_prompt",
                    placeholder=label("Leave empty to use the same negative prompt as in the first pass."))

    def controls(self) -> dict:
        """The controls by the GenerationRequest field each one fills."""
        return dict(enable_hr=self.enable, hr_upscaler=self.upscaler, hr_second_pass_steps=self.steps,
                    denoising_strength=self.denoising, hr_scale=self.scale, hr_resize_x=self.resize_x,
                    hr_resize_y=self.resize_y, hr_sampler_name=self.sampler, hr_scheduler=self.scheduler,
                    hr_cfg=self.cfg, hr_prompt=self.prompt, hr_negative_prompt=self.negative_prompt)

    @staticmethod
    def fill_request(request, values: dict):
        """``values``: the controls' values by name (``controls``)."""
        cfg = values["hr_cfg"]
        return request.copy(enable_hr=bool(values["enable_hr"]),
                            hr_upscaler=values["hr_upscaler"] or hires.DEFAULT_UPSCALER,
                            hr_second_pass_steps=int(values["hr_second_pass_steps"]),
                            denoising_strength=float(values["denoising_strength"]), hr_scale=float(values["hr_scale"]),
                            hr_resize_x=int(values["hr_resize_x"]), hr_resize_y=int(values["hr_resize_y"]),
                            hr_sampler_name=values["hr_sampler_name"] or None,
                            hr_scheduler=values["hr_scheduler"] or None, hr_cfg=float(cfg) if cfg else None,
                            hr_prompt=values["hr_prompt"] or "", hr_negative_prompt=values["hr_negative_prompt"] or "")

    def wire(self, panel) -> None:
        """The size line follows every size control; ticking the box opens the options; paste fills them."""
        sizes = [panel.width, panel.height, self.scale, self.resize_x, self.resize_y]
        for widget in sizes:
            widget.change(final_size_html, inputs=sizes, outputs=self.final_size, show_progress="hidden",
                          api_visibility="private", concurrency_limit=None, trigger_mode="always_last")
        self.enable.change(lambda on: gr.Accordion(open=bool(on)), inputs=self.enable, outputs=self.accordion,
                           show_progress="hidden", api_visibility="private", concurrency_limit=None)
        # Upscaler files added since the page was built (Extras' refresh, /refresh-upscalers) show up here too.
        self.accordion.expand(lambda: gr.Dropdown(choices=hires.upscaler_names(self.context.upscalers)),
                              outputs=self.upscaler, show_progress="hidden", api_visibility="private",
                              concurrency_limit=None)
        same = {"hr_sampler_name": hires.SAME_SAMPLER, "hr_scheduler": hires.SAME_SCHEDULER, "hr_cfg": 0}
        panel.extra.setdefault("paste_fields", []).extend(
            (widget, key, lambda value, key=key: same.get(key, value) if value is None else value)
            for key, widget in self.controls().items())
        panel.extra["hires"] = self


def final_size_html(width, height, scale, resize_x, resize_y) -> str:
    """A1111's "Upscaled resolution" line: from the first pass's size to the size the hires pass makes."""
    try:
        size = hires.hires_size(int(width), int(height), float(scale), int(resize_x or 0), int(resize_y or 0))
    except (TypeError, ValueError, ZeroDivisionError):
        return ""
    text = label("from {first} to {final}").format(first=f"{int(width)}x{int(height)}",
                                                   final=f"{size.width}x{size.height}")
    return f'<span class="paragoger-hr-size">{html.escape(text)}</span>'
