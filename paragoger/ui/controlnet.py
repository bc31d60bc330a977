"""The ControlNet accordion of txt2img and img2img: units in tabs (setting "control_net_unit_count", 3), each with
sd-webui-controlnet's controls and element ids (``{tab}_controlnet_ControlNet-{i}_...``). Widgets and calls only:
the preprocessors and the guidance are in paragoger/control/.

A unit is used when "Enable" is ticked. Its picture is the control picture (in img2img a unit without one uses the
img2img picture); "Preview" runs the preprocessor and shows the map it will use.
"""
from __future__ import annotations

import gradio as gr

from paragoger.errors import UserError
from paragoger.ui import widgets
from paragoger.ui.labels import label

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
NO_MODEL = "None"
FIELDS = ("enabled", "image", "mask", "pixel_perfect", "module", "model", "weight", "guidance_start",
          "guidance_end", "processor_res", "threshold_a", "threshold_b", "control_mode", "resize_mode")
# What the ↙️ button fills from an infotext's "ControlNet N" fields (the infotext holds no picture).
PASTED = ("module", "model", "weight", "guidance_start", "guidance_end", "resize_mode", "control_mode",
          "pixel_perfect", "processor_res", "threshold_a", "threshold_b")


def model_choices(context) -> list[str]:
    return [NO_MODEL, *(info.title for info in context.control_models.library.entries())]


class ControlNetControls:
    def __init__(self, context, tab: str):
        self.context, self.tab = context, tab
        self.units: list[dict] = []   # per unit: {field: component} plus "preview", "preview_button", "refresh"

    def build(self) -> None:
        tab, context = self.tab, self.context
        modules = context.preprocessors.names()
        with gr.Accordion(label("ControlNet"), open=False, elem_id=f"{tab}_controlnet"):
            with gr.Tabs(elem_id=f"{tab}_controlnet_tabs"):
                for index in range(int(context.settings["control_net_unit_count"])):
                    ids = f"{tab}_controlnet_ControlNet-{index}"
                    with gr.Tab(label("ControlNet Unit {index}").format(index=index), elem_id=f"{ids}_tab"):
                        unit = {}
                        with gr.Row():
                            unit["image"] = gr.Image(label=label("Control picture"), type="pil",
                                                     sources=["upload", "clipboard"], height=256,
                                                     elem_id=f"{ids}_input_image")
                            unit["preview"] = gr.Image(label=label("Preprocessor preview"), type="pil",
                                                       interactive=False, height=256,
                                                       elem_id=f"{ids}_generated_image")
                        with gr.Accordion(label("Mask (optional): white = the area the unit controls"),
                                          open=False):
                            unit["mask"] = gr.Image(label=label("Mask"), type="pil", image_mode="L",
                                                    sources=["upload", "clipboard"], height=200,
                                                    elem_id=f"{ids}_mask_image")
                        with gr.Row():
                            unit["enabled"] = gr.Checkbox(label=label("Enable"), value=False,
                                                          elem_id=f"{ids}_enable_checkbox")
                            unit["pixel_perfect"] = gr.Checkbox(label=label("Pixel Perfect"), value=False,
                                                                elem_id=f"{ids}_pixel_perfect_checkbox")
                        with gr.Row():
                            unit["module"] = gr.Dropdown(modules, value="none", label=label("Preprocessor"),
                                                         elem_id=f"{ids}_preprocessor_dropdown", scale=3)
                            unit["preview_button"] = gr.Button("💥 " + label("Preview"), scale=1, min_width=80,
                                                               elem_id=f"{ids}_trigger_preprocessor")
                            unit["model"] = gr.Dropdown(model_choices(context), value=NO_MODEL, label=label("Model"),
                                                        elem_id=f"{ids}_model_dropdown", scale=3,
                                                        allow_custom_value=True)
                            unit["refresh"] = gr.Button("↻", scale=0, min_width=40,
                                                        elem_id=f"{ids}_refresh_models")
                        with gr.Row():
                            unit["weight"] = gr.Slider(0, 2, value=1, step=0.05, label=label("Control Weight"),
                                                       elem_id=f"{ids}_control_weight_slider")
                            unit["guidance_start"] = gr.Slider(0, 1, value=0, step=0.01,
                                                               label=label("Starting Control Step"),
                                                               elem_id=f"{ids}_start_control_step_slider")
                            unit["guidance_end"] = gr.Slider(0, 1, value=1, step=0.01,
                                                             label=label("Ending Control Step"),
                                                             elem_id=f"{ids}_ending_control_step_slider")
                        with gr.Row():
                            unit["processor_res"] = gr.Slider(64, 2048, value=512, step=1,
                                                              label=label("Preprocessor Resolution"),
                                                              elem_id=f"{ids}_preprocessor_resolution_slider")
                            unit["threshold_a"] = gr.Slider(0, 255, value=100, step=1, label=label("Threshold A"),
                                                            visible=False, elem_id=f"{ids}_threshold_A_slider")
                            unit["threshold_b"] = gr.Slider(0, 255, value=200, step=1, label=label("Threshold B"),
                                                            visible=False, elem_id=f"{ids}_threshold_B_slider")
                        unit["control_mode"] = gr.Radio([(label(m), m) for m in CONTROL_MODES], value="Balanced",
                                                        label=label("Control Mode"),
                                                        elem_id=f"{ids}_control_mode_radio")
                        unit["resize_mode"] = gr.Radio([(label(m), m) for m in RESIZE_MODES],
                                                       value="Crop and Resize", label=label("Resize Mode"),
                                                       elem_id=f"{ids}_resize_mode_radio")
                        self.units.append(unit)

    def controls(self) -> dict:
        """Every unit's controls by name (``cn0_weight`` ...): what the Generate handler reads."""
        return {f"cn{index}_{field}": unit[field] for index, unit in enumerate(self.units) for field in FIELDS}

    def fill_request(self, request, values: dict):
        from paragoger.control.units import ControlUnit

        units = []
        for index in range(len(self.units)):
            value = {field: values[f"cn{index}_{field}"] for field in FIELDS}
            if not value["enabled"]:
                continue
            units.append(ControlUnit(
                enabled=True, module=value["module"] or "none", model=value["model"] or NO_MODEL,
                weight=float(value["weight"]), image=value["image"], mask=value["mask"],
                resize_mode=value["resize_mode"], processor_res=int(value["processor_res"]),
                threshold_a=float(value["threshold_a"]), threshold_b=float(value["threshold_b"]),
                guidance_start=float(value["guidance_start"]), guidance_end=float(value["guidance_end"]),
                control_mode=value["control_mode"], pixel_perfect=bool(value["pixel_perfect"])).validate())
        return request.copy(controlnet_units=units) if units else request

    def wire(self, panel) -> None:
        """Threshold sliders follow the module a person picks; refresh re-reads the model folders; Preview runs
        the preprocessor on the unit's picture (at the generation's size when Pixel Perfect is ticked); the ↙️
        button fills the units an infotext names and ticks their Enable."""
        for unit in self.units:
            # .input, not .change: a pasted module must not reset the pasted thresholds to the module's defaults
            unit["module"].input(self._sliders_for, inputs=unit["module"],
                                  outputs=[unit["threshold_a"], unit["threshold_b"], unit["processor_res"]],
                                  show_progress="hidden", api_visibility="private", concurrency_limit=None)
            unit["refresh"].click(self._refreshed_models, outputs=unit["model"], show_progress="hidden",
                                  api_visibility="private", concurrency_limit=None)
            inputs = [unit["image"], unit["mask"], unit["module"], unit["processor_res"], unit["threshold_a"],
                      unit["threshold_b"], unit["pixel_perfect"], unit["resize_mode"], panel.width, panel.height]
            unit["preview_button"].click(self._preview, inputs=inputs, outputs=[unit["preview"], panel.error],
                                         show_progress="minimal", api_visibility="private")
        panel.extra.setdefault("paste_fields", []).extend(self._paste_fields())
        panel.extra["controlnet"] = self

    def _paste_fields(self) -> list:
        """(widget, "controlnet_units", pasted units -> widget value) for every unit's pasted controls; units the
        infotext does not name are left as they are."""
        fields = []
        for index, unit in enumerate(self.units):
            fields.append((unit["enabled"], "controlnet_units",
                           lambda units, index=index: True if index in units else gr.update()))
            fields += [(unit[name], "controlnet_units",
                        lambda units, index=index, name=name: self._pasted(units.get(index), name))
                       for name in PASTED]
        return fields

    def _pasted(self, unit: dict | None, name: str):
        """One control's value from a pasted unit: the model as this app titles it, the module by its name here,
        the sliders shown as the pasted module has them."""
        if unit is None:
            return gr.update()
        value = unit.get(name)
        if name == "model" and value:
            try:
                return self.context.control_models.library.find(value).title
            except UserError:
                return value   # not here: shown as pasted, and Generate says so
        if name == "module" and value:
            try:
                return self.context.preprocessors.get(value).name
            except UserError:
                return value
        if name in ("threshold_a", "threshold_b", "processor_res"):
            try:
                preprocessor = self.context.preprocessors.get(unit.get("module", "none"))
            except UserError:
                return gr.update() if value is None else value
            spec = getattr(preprocessor, "resolution" if name == "processor_res" else name)
            return _slider(spec, value) if name != "processor_res" else gr.Slider(
                visible=spec is not None, **({} if value is None else {"value": value}))
        if value is None or (name == "resize_mode" and value not in RESIZE_MODES) or (
                name == "control_mode" and value not in CONTROL_MODES):
            return gr.update()
        return value

    def _sliders_for(self, module: str):
        try:
            preprocessor = self.context.preprocessors.get(module)
        except UserError:
            return gr.update(), gr.update(), gr.update()
        resolution = preprocessor.resolution
        return (_slider(preprocessor.threshold_a), _slider(preprocessor.threshold_b),
                gr.Slider(visible=resolution is not None))

    def _refreshed_models(self):
        self.context.control_models.library.refresh()
        return gr.Dropdown(choices=model_choices(self.context))

    def _preview(self, image, mask, module, resolution, threshold_a, threshold_b, pixel_perfect, resize_mode,
                 width, height):
        from paragoger.control.preprocessors import pixel_perfect_resolution

        context = self.context
        if image is None:
            return None, widgets.error_html(context.describe(UserError("control_preview_needs_picture")))
        if pixel_perfect:
            resolution = pixel_perfect_resolution(image.size, (int(width), int(height)), resize_mode)
        try:
            detected = context.run_in_worker(lambda: context.preprocessors.detect(
                module, image, resolution=int(resolution), threshold_a=threshold_a, threshold_b=threshold_b,
                mask=mask))
        except UserError as err:
            return None, widgets.error_html(context.describe(err))
        return detected, ""


def _slider(spec, value=None):
    """A threshold slider as module setting ``spec`` has it (hidden and -1 without one), at ``value`` or the
    setting's default."""
    if spec is None:
        return gr.Slider(visible=False, value=-1)
    return gr.Slider(visible=True, label=label(spec.label), minimum=spec.minimum, maximum=spec.maximum,
                     step=spec.step, value=spec.default if value is None else value)
