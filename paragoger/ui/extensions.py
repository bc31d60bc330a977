"""Extensions in the page: the Script dropdown and always-on section under a tab's controls, and the Extensions tab.

Scripts describe their inputs with ``paragoger.ext.api`` controls (or give Gradio components); here they become
widgets, and their values go back into the request by name (``script_name``, ``script_args``,
``alwayson_scripts``), the same fields the HTTP API fills.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import gradio as gr

from paragoger.ext.api import Control
from paragoger.ui.labels import label

NO_SCRIPT = "None"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def make_widget(name: str, control, elem_id: str):
    """A Gradio component for an api.Control; a Gradio component a script made is placed as it is."""
    if not isinstance(control, Control):
        if isinstance(control, gr.components.Component):
            if not control.is_rendered:
                control.render()
            return control
        raise TypeError(f"script input '{name}' is neither an api control nor a Gradio component: {control!r}")
    common = {"label": label(control.label), "value": control.value, "elem_id": elem_id}
    opts = control.options
    if control.kind == "checkbox":
        return gr.Checkbox(**common)
    if control.kind == "slider":
        return gr.Slider(opts["minimum"], opts["maximum"], step=opts.get("step", 1), **common)
    if control.kind == "number":
        return gr.Number(precision=opts.get("precision"), **common)
    if control.kind == "dropdown":
        return gr.Dropdown(opts.get("choices", []), multiselect=opts.get("multiselect", False), **common)
    return gr.Textbox(lines=opts.get("lines", 1), **common)


@dataclass
class ScriptControls:
    """The widgets of a tab's scripts and how their values become request fields."""

    dropdown: gr.Dropdown | None = None
    # (title, always_on, [argument names]) in the order of ``inputs`` after the dropdown
    layout: list = field(default_factory=list)
    inputs: list = field(default_factory=list)

    def all_inputs(self) -> list:
        return ([self.dropdown] if self.dropdown is not None else []) + self.inputs

    def fill(self, request, values: list):
        """Put the widget values (in ``all_inputs`` order) into ``request``: arguments by name."""
        values = list(values)
        chosen = values.pop(0) if self.dropdown is not None else NO_SCRIPT
        alwayson, position = {}, 0
        for title, always_on, names in self.layout:
            args = dict(zip(names, values[position:position + len(names)]))
            position += len(names)
            if always_on:
                alwayson[title] = {"args": args}
            elif title == chosen:
                request.script_name, request.script_args = title, args
        request.alwayson_scripts = {**alwayson, **(request.alwayson_scripts or {})}
        return request


def script_controls(context, tab: str) -> ScriptControls:
    """The Script dropdown with each script's inputs (shown when picked) and a collapsible section per always-on
    script. A script whose ``ui`` raises is reported and left out of the page."""
    is_img2img = tab == "img2img"
    controls = ScriptControls()
    selectable = context.scripts.selectable(is_img2img)
    always_on = context.scripts.always_on(is_img2img)
    groups = []
    if always_on:
        with gr.Accordion(label("Always-on scripts"), open=False, elem_id=f"{tab}_script_container_alwayson"):
            for entry in always_on:
                with gr.Accordion(label(entry.title), open=False,
                                  elem_id=f"{tab}_script_alwayson_{_slug(entry.title)}"):
                    _add_script(context, controls, entry, tab, True)
    if selectable:
        controls.dropdown = gr.Dropdown([NO_SCRIPT, *[e.title for e in selectable]], value=NO_SCRIPT,
                                        label=label("Script"), elem_id=f"{tab}_script")
        for entry in selectable:
            with gr.Group(visible=False, elem_id=f"{tab}_script_{_slug(entry.title)}") as group:
                _add_script(context, controls, entry, tab, False)
            groups.append((entry.title, group))

        def show(chosen):
            return [gr.update(visible=title == chosen) for title, _ in groups]

        controls.dropdown.change(show, inputs=controls.dropdown, outputs=[g for _, g in groups],
                                 show_progress="hidden", api_visibility="private")
    return controls


def _add_script(context, controls: ScriptControls, entry, tab: str, always_on: bool) -> None:
    try:
        inputs = entry.controls(tab == "img2img")
    except Exception as err:  # an extension's ui() must not break the page
        if entry.owner != "builtin":
            context.extensions.report_error(entry.owner, err)
        gr.HTML(f'<div class="paragoger-error">{html.escape(entry.title)}: {html.escape(str(err))}</div>')
        return
    names = []
    for name, control in inputs.items():
        controls.inputs.append(make_widget(name, control, f"{tab}_script_{_slug(entry.title)}_{_slug(name)}"))
        names.append(name)
    controls.layout.append((entry.title, always_on, names))


# --- the Extensions tab -----------------------------------------------------------------------------------------

def extensions_table_html(context) -> str:
    rows = []
    for ext in context.extensions.extensions:
        error = (f'<details><summary>{label("details")}</summary><pre>{html.escape(ext.error)}</pre></details>'
                 if ext.error else "")
        rows.append(f"<tr><td>{html.escape(ext.name)}</td><td>{html.escape(ext.version)}</td>"
                    f"<td>{html.escape(str(ext.api_version or '-'))}</td>"
                    f"<td class=\"ext-status-{_slug(ext.status)}\">{html.escape(ext.status)}{error}</td>"
                    f"<td>{html.escape(str(ext.path))}</td></tr>")
    if not rows:
        folders = ", ".join(html.escape(str(d)) for d in context.extensions.dirs)
        return f"<p>{label('No extensions found in')} {folders}.</p>"
    head = "".join(f"<th>{label(h)}</th>" for h in ("Extension", "Version", "API", "Status", "Folder"))
    return f'<table id="extensions_table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def build_extensions_tab(context) -> None:
    manager = context.extensions
    names = [ext.name for ext in manager.extensions]
    gr.HTML(extensions_table_html(context), elem_id="extensions_installed")
    enabled = gr.CheckboxGroup(names, value=[ext.name for ext in manager.extensions if ext.enabled],
                               label=label("Enabled extensions (applied at the next start)"),
                               elem_id="extensions_enabled")
    apply = gr.Button(label("Apply (restart the app to take effect)"), variant="primary",
                      elem_id="extensions_apply")
    result = gr.HTML(elem_id="extensions_result")

    def save(chosen):
        chosen = set(chosen or [])
        manager.set_enabled({name: name in chosen for name in names})
        return label("Saved. Restart the app to apply.")

    apply.click(save, inputs=enabled, outputs=result, api_visibility="private")
