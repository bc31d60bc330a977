"""Widget groups every generation tab shares (A1111's element ids, prefixed by the tab), and the progress view.

This module only builds widgets and formats what the core reports; it holds no generation logic.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from paragoger import messages
from paragoger.ui.labels import label


@dataclass
class SeedWidgets:
    seed: gr.Number
    random_seed: gr.Button
    reuse_seed: gr.Button
    subseed: gr.Number
    subseed_strength: gr.Slider
    seed_resize_from_w: gr.Slider
    seed_resize_from_h: gr.Slider


def seed_widgets(tab: str) -> SeedWidgets:
    with gr.Row(elem_id=f"{tab}_seed_row"):
        seed = gr.Number(label=label("Seed"), value=-1, precision=0, elem_id=f"{tab}_seed", scale=4)
        random_seed = gr.Button("⚄", elem_id=f"{tab}_random_seed", scale=0, min_width=40)
        reuse_seed = gr.Button("♻", elem_id=f"{tab}_reuse_seed", scale=0, min_width=40)
    with gr.Accordion(label("Variation seed"), open=False, elem_id=f"{tab}_subseed_accordion"):
        with gr.Row():
            subseed = gr.Number(label=label("Variation seed"), value=-1, precision=0, elem_id=f"{tab}_subseed")
            subseed_strength = gr.Slider(label=label("Variation strength"), minimum=0, maximum=1, step=0.01,
                                         value=0, elem_id=f"{tab}_subseed_strength")
        with gr.Row():
            resize_w = gr.Slider(label=label("Resize seed from width"), minimum=0, maximum=2048, step=8, value=0,
                                 elem_id=f"{tab}_seed_resize_from_w")
            resize_h = gr.Slider(label=label("Resize seed from height"), minimum=0, maximum=2048, step=8, value=0,
                                 elem_id=f"{tab}_seed_resize_from_h")
    random_seed.click(fn=lambda: -1, outputs=seed, show_progress="hidden")
    return SeedWidgets(seed, random_seed, reuse_seed, subseed, subseed_strength, resize_w, resize_h)


def styles_widgets(context, tab: str, prompt, negative):
    """The styles dropdown (applied at generation, several at once) and saving the prompts as a new style."""
    from paragoger.errors import UserError
    from paragoger.prompts import PromptStyle

    styles = gr.Dropdown(context.styles.names(), value=[], multiselect=True, label=label("Styles"),
                         elem_id=f"{tab}_styles")
    with gr.Accordion(label("Save prompts as a style"), open=False, elem_id=f"{tab}_style_save_box"):
        name = gr.Textbox(label=label("Style name"), elem_id=f"{tab}_style_name")
        save = gr.Button(label("Save style"), elem_id=f"{tab}_style_create")
        message = gr.HTML(elem_id=f"{tab}_style_message")

    def save_style(style_name, prompt_text, negative_text, selected):
        if not (style_name or "").strip():
            return gr.update(), error_html(UserError("style_needs_name").render())
        context.styles.save_style(PromptStyle(style_name.strip(), prompt_text or "", negative_text or ""))
        return gr.update(choices=context.styles.names(), value=selected), ""

    save.click(save_style, inputs=[name, prompt, negative, styles], outputs=[styles, message],
               api_visibility="private")
    return styles


def token_counter_html(tokens: int, limit: int) -> str:
    return f'<div class="paragoger-token-counter" title="tokens / limit">{tokens}/{limit}</div>'


def progress_html(status: dict | None, *, position: int | None = None, running=None,
                  catalogue: dict | None = None, details: bool = False) -> str:
    """The progress bar: queue position (and the job running meanwhile, ``running``: a Job) while waiting, then
    step, ETA and a bar while sampling. ``catalogue``: the translation table in use. ``details``: the job's own
    text (``textinfo``: a video's "window 2/3") comes first."""
    if position is not None and position > 0:
        text = messages.render("progress_queued", catalogue, position=position)
        if running is not None:
            text += " · " + messages.render("progress_running_other", catalogue, kind=running.kind,
                                            step=running.progress.step, total=running.progress.steps)
        return f'<div class="paragoger-progress" data-state="queued"><span>{html.escape(text)}</span></div>'
    if not status:
        return ""
    state = status.get("state", {})
    percent = int(round(100 * status.get("progress", 0.0)))
    parts = [messages.render("progress_step", catalogue, step=state.get("sampling_step", 0),
                             total=state.get("sampling_steps", 0))]
    if details and status.get("textinfo"):
        parts.insert(0, str(status["textinfo"]))
    if state.get("job_count", 1) > 1:
        parts.insert(0, f"{state.get('job_no', 0) + 1}/{state.get('job_count', 1)}")
    if status.get("eta_relative"):
        parts.append(messages.render("progress_eta", catalogue, eta=f"{status['eta_relative']:.0f}s"))
    text = html.escape(" · ".join(parts))
    return (f'<div class="paragoger-progress" data-state="running" data-percent="{percent}">'
            f'<div class="paragoger-progress-bar" style="width:{percent}%"></div><span>{text}</span></div>')


def error_html(message: str) -> str:
    return f'<div class="paragoger-error" role="alert">{html.escape(message)}</div>'


def video_files(saved) -> tuple:
    """(the MP4, else WebM, for the page's player; every file written, a PNG folder as its frames, for the files
    list) of a ``video.files.SavedVideo``; (None, None) for none."""
    from pathlib import Path

    if saved is None:
        return None, None
    playable = next((str(saved.files[fmt]) for fmt in ("MP4", "WEBM") if fmt in saved.files), None)
    written = []
    for path in map(Path, saved.files.values()):
        written += sorted(str(p) for p in path.iterdir() if p.is_file()) if path.is_dir() else [str(path)]
    return playable, written or None


def infotext_html(infotext: str) -> str:
    return f'<div class="paragoger-infotext"><p>{html.escape(infotext).replace(chr(10), "<br>")}</p></div>'


CSS = """
.paragoger-progress { position: relative; height: 1.8em; border-radius: 6px; background: var(--block-background-fill);
  border: 1px solid var(--border-color-primary); overflow: hidden; }
.paragoger-progress-bar { position: absolute; left: 0; top: 0; bottom: 0; background: var(--color-accent-soft); }
.paragoger-progress span { position: relative; padding: 0 .6em; line-height: 1.8em; }
.paragoger-error { color: var(--error-text-color); background: var(--error-background-fill);
  border: 1px solid var(--error-border-color); border-radius: 6px; padding: .5em .8em; }
.paragoger-note { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: .5em .8em;
  margin-bottom: .3em; white-space: pre-wrap; }
.ext-note { font-size: 0.85em; opacity: .8; }
.paragoger-token-counter { text-align: right; font-size: 0.8em; opacity: .75; margin-top: -0.4em; }
.paragoger-infotext p { font-family: var(--font-mono); font-size: 0.85em; white-space: normal; word-break: break-word; }
.memory-table { width: 100%; table-layout: fixed; margin: 0; }
.memory-table td, .memory-table th { width: 12%; padding: .2em .4em; word-break: break-word; }
.memory-table td:nth-child(2), .memory-table th:nth-child(2), .memory-table td:nth-child(5),
.memory-table th:nth-child(5) { width: 20%; }
"""


def checkpoint_choice(context, title: str):
    """The checkpoint dropdown after ``title`` was loaded: its choices read again as well, since a checkpoint
    listed before it was ever hashed ("b.safetensors") is titled with its hash once loaded ("b.safetensors
    [2b9556ce0b]"), and a value missing from the choices showed as an empty box."""
    return gr.update(choices=[info.title for info in context.library.checkpoints()], value=title)

