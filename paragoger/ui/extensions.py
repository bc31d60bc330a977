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

from paragoger.errors import UserError
from paragoger.ext import git, install
from paragoger.ext.api import Control
from paragoger.ui import widgets
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
    # (title, always_on, {argument name: widget}), one per script
    layout: list = field(default_factory=list)
    inputs: list = field(default_factory=list)

    def all_inputs(self) -> list:
        return ([self.dropdown] if self.dropdown is not None else []) + self.inputs

    def fill(self, request, data):
        """Put the widgets' values (a handler's {component: value}) into ``request``: arguments by name."""
        chosen = data[self.dropdown] if self.dropdown is not None else NO_SCRIPT
        alwayson = {}
        for title, always_on, widgets_by_name in self.layout:
            args = {name: data[widget] for name, widget in widgets_by_name.items()}
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
    widgets_by_name = {}
    for name, control in inputs.items():
        widgets_by_name[name] = make_widget(name, control, f"{tab}_script_{_slug(entry.title)}_{_slug(name)}")
        controls.inputs.append(widgets_by_name[name])
    controls.layout.append((entry.title, always_on, widgets_by_name))


# --- the Extensions tab -----------------------------------------------------------------------------------------

def _git_cell(ext) -> str:
    checkout = git.info(ext.path)
    if checkout is None:
        return "-"
    where = html.escape(checkout.remote or label("no remote"))
    branch = f" ({html.escape(checkout.branch)})" if checkout.branch else ""
    return f'{where}{branch}<br><code title="{html.escape(checkout.commit)}">{html.escape(checkout.short)}</code>'


def extensions_table_html(context) -> str:
    rows = []
    for ext in context.extensions.extensions:
        error = (f'<details><summary>{label("details")}</summary><pre>{html.escape(ext.error)}</pre></details>'
                 if ext.error else "")
        note = f'<div class="ext-note">{html.escape(ext.note)}</div>' if ext.note else ""
        rows.append(f"<tr><td>{html.escape(ext.name)}</td><td>{html.escape(ext.version)}</td>"
                    f"<td>{html.escape(str(ext.api_version or '-'))}</td>"
                    f"<td class=\"ext-status-{_slug(ext.status)}\">{html.escape(ext.status)}{error}{note}</td>"
                    f"<td>{_git_cell(ext)}</td><td>{html.escape(str(ext.path))}</td></tr>")
    if not rows:
        folders = ", ".join(html.escape(str(d)) for d in context.extensions.dirs)
        return f"<p>{label('No extensions found in')} {folders}.</p>"
    head = "".join(f"<th>{label(h)}</th>" for h in ("Extension", "Version", "API", "Status", "Git", "Folder"))
    return f'<table id="extensions_table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _lines_html(lines: list[str], *, error: bool = False) -> str:
    css = "paragoger-error" if error else "paragoger-note"
    return "".join(f'<div class="{css}">{html.escape(line)}</div>' for line in lines)


def build_extensions_tab(context) -> None:
    manager = context.extensions
    refusal = install.access_refusal(context.options)
    allowed = not refusal
    if refusal:
        gr.HTML(widgets.error_html(refusal), elem_id="extensions_refused")
    if manager.switched_off:
        gr.HTML(_lines_html([manager.switched_off]), elem_id="extensions_switched_off")
    with gr.Tabs(elem_id="extensions_tabs"):
        with gr.Tab(label("Installed"), id="extensions_installed_tab", elem_id="extensions_installed_tab"):
            table = gr.HTML(extensions_table_html(context), elem_id="extensions_installed")
            enabled = gr.CheckboxGroup(_names(manager), value=_enabled(manager),
                                       label=label("Enabled extensions (applied at the next start)"),
                                       elem_id="extensions_enabled")
            with gr.Row():
                apply = gr.Button(label("Apply (takes effect at the next start)"), elem_id="extensions_apply")
                restart = gr.Button(label("Apply and restart"), variant="primary", interactive=allowed,
                                    elem_id="extensions_apply_restart")
            with gr.Row():
                to_update = gr.CheckboxGroup(_checkouts(manager), value=[], label=label(
                    "Git checkouts to update (the new version is active after a restart)"),
                    elem_id="extensions_to_update")
                check = gr.Button(label("Check for updates"), interactive=allowed, elem_id="extensions_check")
                update = gr.Button(label("Update"), interactive=allowed, elem_id="extensions_update")
            result = gr.HTML(elem_id="extensions_result")
        with gr.Tab(label("Install from URL"), id="extensions_install_tab", elem_id="extensions_install_tab"):
            url = gr.Textbox(label=label("URL of the extension's git repository"),
                             placeholder="https://github.com/owner/extension.git", elem_id="extension_install_url")
            with gr.Row():
                branch = gr.Textbox(label=label("Branch (optional)"), elem_id="extension_install_branch")
                folder = gr.Textbox(label=label("Folder name (optional; taken from the URL)"),
                                    elem_id="extension_install_name")
            install_button = gr.Button(label("Install"), variant="primary", interactive=allowed,
                                       elem_id="extension_install_button")
            installed = gr.HTML(elem_id="extension_install_result")

    def lists():
        return (extensions_table_html(context), gr.update(choices=_names(manager), value=_enabled(manager)),
                gr.update(choices=_checkouts(manager)))

    def save(chosen):
        chosen = set(chosen or [])
        manager.set_enabled({name: name in chosen for name in _names(manager)})
        return _lines_html([context.translate("Saved. Restart the app to apply.")])

    def save_and_restart(chosen):
        try:
            install.check_access(context.options)
            save(chosen)
            context.control.request("restart")
        except UserError as err:
            return widgets.error_html(context.describe(err)), False
        return _lines_html([context.text("server_restarting")]), True

    def check_for_updates():
        try:
            found = install.check_updates(manager, context.options)
        except UserError as err:
            return widgets.error_html(context.describe(err)), gr.update()
        lines = [c.message() for c in found] or [context.text("extensions_no_checkouts")]
        return _lines_html(lines), gr.update(choices=_checkouts(manager), value=[c.name for c in found if c.behind])

    def update_chosen(chosen):
        done, failed = [], []
        for name in chosen or []:
            try:
                done.append(install.update(manager, context.options, name).message())
            except UserError as err:
                failed.append(f"{name}: {err}")
        return (_lines_html(done) + _lines_html(failed, error=True), extensions_table_html(context),
                gr.update(value=[]))

    def install_from_url(url_text, branch_text, folder_text):
        try:
            done = install.install(manager, context.options, url_text, branch=branch_text, name=folder_text)
        except UserError as err:
            return (widgets.error_html(context.describe(err)), *lists())
        return (_lines_html([done.message()], error=bool(done.error)), *lists())

    private = {"api_visibility": "private"}
    apply.click(save, inputs=enabled, outputs=result, **private)
    go = gr.Checkbox(False, visible=False, elem_id="extensions_restarting")  # read by the page's script below
    restart.click(save_and_restart, inputs=enabled, outputs=[result, go], **private).then(
        None, inputs=go, js="(go) => { if (go) window.paragogerAwaitRestart(); }", **private)
    check.click(check_for_updates, outputs=[result, to_update], **private)
    update.click(update_chosen, inputs=to_update, outputs=[result, table, to_update], **private)
    install_button.click(install_from_url, inputs=[url, branch, folder],
                         outputs=[installed, table, enabled, to_update], **private)


def _names(manager) -> list[str]:
    return [ext.name for ext in manager.extensions]


def _enabled(manager) -> list[str]:
    return [ext.name for ext in manager.extensions if ext.enabled]


def _checkouts(manager) -> list[str]:
    return [ext.name for ext in install.checkouts(manager)]
