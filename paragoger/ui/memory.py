"""The Memory tab: every loaded model (kind, name, device, size, parts, last use, whether a job uses it) with an
Unload button per row, and what loaded models hold against the budgets. Widgets only: the numbers come from
``AppContext.memory_report`` (the same as GET /sdapi/v1/memory)."""
from __future__ import annotations

import html
import time

import gradio as gr

from paragoger.errors import UserError
from paragoger.model_manager.memory import KINDS, MIB
from paragoger.ui import widgets
from paragoger.ui.labels import label

COLUMNS = ("Kind", "Name", "Device", "Size", "Parts", "Last use", "Status")


def megabytes(size: int | None) -> str:
    return "-" if size is None else f"{size / MIB:,.1f} MB"


def totals_html(context, report: dict) -> str:
    totals, budgets = report["totals"], report["budgets"]
    ram = context.text("memory_totals_ram", used=megabytes(totals["ram"]), budget=megabytes(budgets["ram"]),
                       count=len(report["models"]))
    if budgets["vram"] is not None:
        ram += " " + context.text("memory_totals_vram", used=megabytes(totals["vram"]),
                                  budget=megabytes(budgets["vram"]))
    return f'<div id="memory_totals_text">{html.escape(ram)}</div>'


def _cells(context, row: dict) -> list[str]:
    parts = ", ".join(f"{part} {megabytes(size)}" for part, size in row["parts"].items())
    status = [context.translate("in use by a running job") if row["in_use"] else "",
              context.translate("offloaded to RAM") if row["offloaded"] else "",
              context.translate("unloaded first when memory is needed") if row["next_to_unload"] else ""]
    status = "; ".join(text for text in status if text)
    return [context.translate(KINDS.get(row["kind"], row["kind"])), row["name"], row["device"],
            megabytes(row["bytes"]), parts, time.strftime("%H:%M:%S", time.localtime(row["last_use"])), status]


def row_html(context, row: dict, *, header: bool = False) -> str:
    """One model as a table row (the column titles above it for the first row, so the columns line up)."""
    titles = "".join(f"<th>{html.escape(context.translate(text))}</th>" for text in COLUMNS)
    cells = "".join(f"<td>{html.escape(cell)}</td>" for cell in _cells(context, row))
    kind = html.escape(row["kind"])
    return (f'<table class="memory-table">{f"<tr>{titles}</tr>" if header else ""}'
            f'<tr class="memory-row" data-kind="{kind}">{cells}</tr></table>')


def build_memory_tab(context, tab) -> None:
    version = gr.State(0)  # changes after an unload, so the table is drawn again
    with gr.Row():
        refresh = gr.Button(label("Refresh"), elem_id="memory_refresh", scale=0, min_width=120)
    message = gr.HTML(elem_id="memory_message")

    def unload(kind: str, key: str, seen: int):
        try:
            context.unload_model(kind, key)
        except UserError as err:
            return seen + 1, widgets.error_html(context.describe(err))
        return seen + 1, ""

    @gr.render(inputs=[version], triggers=[tab.select, refresh.click, version.change], concurrency_limit=None)
    def table(_seen):
        report = context.memory_report()
        with gr.Column(elem_id="memory_table"):
            gr.HTML(totals_html(context, report), elem_id="memory_totals")
            if not report["models"]:
                gr.HTML(html.escape(context.translate("No model is loaded.")))
                return
            for index, row in enumerate(report["models"]):
                with gr.Row(elem_classes="memory-entry", key=f"memory-{index}"):
                    gr.HTML(row_html(context, row, header=index == 0), scale=8)
                    button = gr.Button(context.translate("Unload"), size="sm", scale=0, min_width=90,
                                       elem_classes="memory-unload")
                    button.click(lambda seen, kind=row["kind"], key=row["key"]: unload(kind, key, seen),
                                 inputs=version, outputs=[version, message], api_visibility="private",
                                 concurrency_limit=None)
