"""The page: a top bar (checkpoint and VAE), one tab per task, and a Settings tab. Widgets and calls only."""
from __future__ import annotations

import html
from pathlib import Path

import gradio as gr
from starlette.routing import Mount

from paragoger.errors import UserError
from paragoger.settings import SECTION_TITLES
from paragoger.ui import widgets
from paragoger.ui.extensions import build_extensions_tab
from paragoger.ui.labels import label, reset_table, use_table
from paragoger.ui.memory import build_memory_tab
from paragoger.ui.tabs import extras, img2img, txt2img, video
from paragoger.ui.tabs import image_to_text

TITLE = "Paragoger SD"


def _checkpoint_choices(context) -> list[str]:
    return [info.title for info in context.library.checkpoints()]


def _selected_checkpoint(context) -> str | None:
    current = context.cache.current
    if current is not None:
        return current.info.title
    choices = _checkpoint_choices(context)
    wanted = context.settings["sd_model_checkpoint"]
    return wanted if wanted in choices else (choices[0] if choices else None)


def _status_html(context) -> str:
    """The model status line: no checkpoint found, and the app's notices (precision not used, a checkpoint
    loaded instead of the chosen one)."""
    texts = context.notices.texts(context.translations())
    if not _checkpoint_choices(context):
        texts.insert(0, context.text("no_checkpoint", folder=context.paths.default_checkpoint_dir()))
    return "".join(f'<div class="paragoger-notice">{html.escape(text)}</div>' for text in texts)


def build_top_bar(context) -> None:
    with gr.Row(elem_id="quicksettings"):
        checkpoint = gr.Dropdown(_checkpoint_choices(context), value=_selected_checkpoint(context),
                                 label=label("Stable Diffusion checkpoint"), elem_id="setting_sd_model_checkpoint",
                                 scale=4)
        refresh = gr.Button("↻", elem_id="refresh_sd_model_checkpoint", scale=0, min_width=40)
        vae = gr.Dropdown(["Automatic", "None", *context.library.vaes()], value=context.settings["sd_vae"],
                          label=label("SD VAE"), elem_id="setting_sd_vae", scale=2)
        create_test = gr.Button(label("Create tiny test model"), elem_id="create_test_model", scale=0,
                                visible=not _checkpoint_choices(context))
    status = gr.HTML(lambda: _status_html(context), elem_id="model_status")  # as it is when the page loads

    def select(title, vae_name):
        if not title:
            return gr.update(), _status_html(context)
        try:
            context.settings.update({"sd_vae": vae_name or "Automatic"})
            info = context.select_checkpoint(title, vae_name)
        except UserError as err:
            current = context.cache.current
            return (gr.update(value=current.info.title if current else None),
                    widgets.error_html(context.describe(err)))
        return widgets.checkpoint_choice(context, info.title), _status_html(context)

    def refresh_lists():
        context.library.refresh()
        choices = _checkpoint_choices(context)
        return (gr.update(choices=choices, value=_selected_checkpoint(context)),
                gr.update(choices=["Automatic", "None", *context.library.vaes()]),
                _status_html(context), gr.update(visible=not choices))

    def create_test_model():
        context.create_test_model()
        return refresh_lists()

    checkpoint.input(select, inputs=[checkpoint, vae], outputs=[checkpoint, status], api_visibility="private")
    vae.input(select, inputs=[checkpoint, vae], outputs=[checkpoint, status], api_visibility="private")
    refresh.click(refresh_lists, outputs=[checkpoint, vae, status, create_test], api_visibility="private")
    create_test.click(create_test_model, outputs=[checkpoint, vae, status, create_test], api_visibility="private")
    return checkpoint


def build_settings_tab(context) -> None:
    widgets_by_key = {}
    sections: dict[str, list] = {}
    for spec in context.settings.specs():
        if spec.key in ("sd_model_checkpoint", "sd_vae"):
            continue  # chosen in the top bar
        sections.setdefault(spec.section, []).append(spec)
    with gr.Column():
        apply = gr.Button(label("Apply settings"), variant="primary", elem_id="settings_submit")
        result = gr.HTML(elem_id="settings_result")
        for section, specs in sections.items():
            with gr.Accordion(label(SECTION_TITLES.get(section, section)), open=True):
                for spec in specs:
                    value = context.settings[spec.key]
                    common = {"label": label(spec.label), "value": value, "elem_id": f"setting_{spec.key}"}
                    if isinstance(spec.default, bool):
                        widget = gr.Checkbox(**common)
                    elif spec.key == "localization":
                        widget = gr.Dropdown(context.languages(), **common)
                    elif spec.choices:
                        widget = gr.Dropdown(list(spec.choices), **common)
                    elif isinstance(spec.default, (int, float)):
                        widget = gr.Number(precision=0 if isinstance(spec.default, int) else None, **common)
                    else:
                        widget = gr.Textbox(**common)
                    widgets_by_key[spec.key] = widget
    keys = list(widgets_by_key)

    def save(*values):
        try:
            context.apply_options(dict(zip(keys, values)))
        except UserError as err:
            return widgets.error_html(context.describe(err))
        return context.translate("Settings saved.")

    apply.click(save, inputs=list(widgets_by_key.values()), outputs=result, api_visibility="private")


def build_extension_tab(context, tab) -> None:
    """An extension's own tab: its ``build()`` makes the components; if it raises, the tab says so and the
    extension is reported as failed (the rest of the page is built as usual)."""
    try:
        with gr.Column():
            tab.build()
    except Exception as err:
        context.extensions.report_error(tab.owner, err)
        gr.HTML(widgets.error_html(context.text("extension_tab_failed", name=tab.owner, reason=err)))


def build_ui(context, *, translations: dict[str, str] | None = None) -> gr.Blocks:
    token = use_table(context.translations() if translations is None else translations)
    try:
        with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
            checkpoint = build_top_bar(context)
            with gr.Tabs(elem_id="tabs") as tabs:
                with gr.Tab(label("txt2img"), id="txt2img", elem_id="tab_txt2img"):
                    txt2img_panel = txt2img.build(context, context.settings, checkpoint)
                with gr.Tab(label("img2img"), id="img2img", elem_id="tab_img2img"):
                    img2img_panel = img2img.build(context, context.settings, checkpoint)
                with gr.Tab(label("Video"), id="video", elem_id="tab_video"):
                    video_panel = video.build(context, context.settings, checkpoint)
                with gr.Tab(label("Extras"), id="extras", elem_id="tab_extras"):
                    extras_panel = extras.build(context)
                with gr.Tab(label("Image to text"), id="image_to_text", elem_id="tab_image_to_text"):
                    image_to_text.build(context, txt2img_panel, img2img_panel, tabs)
                for tab in context.extensions.tabs:
                    with gr.Tab(label(tab.title), elem_id=tab.elem_id):
                        build_extension_tab(context, tab)
                with gr.Tab(label("Extensions"), id="extensions", elem_id="tab_extensions"):
                    build_extensions_tab(context)
                with gr.Tab(label("Memory"), id="memory", elem_id="tab_memory") as memory_tab:
                    build_memory_tab(context, memory_tab)
                with gr.Tab(label("Settings"), id="settings", elem_id="tab_settings"):
                    build_settings_tab(context)
            for source in (txt2img_panel, img2img_panel, video_panel):  # a video's frames are pictures too
                img2img.wire_send_to(source, img2img_panel, tabs)
                extras.wire_send_to(source, extras_panel, tabs)
        return demo
    finally:
        reset_table(token)


def mount_ui(app, context):
    """Mount the page at "/" of ``app`` (after the API routes, which a mount at "/" would otherwise shadow)."""
    demo = build_ui(context)
    demo.queue(default_concurrency_limit=1)
    # The outputs folder may be anywhere (--outdir, --data-dir): the page shows saved pictures and videos from it.
    # Gradio serves only the working folder and the temp folder unless told; the page's users see these files
    # anyway (behind --gradio-auth when set).
    app = gr.mount_gradio_app(app, demo, path="/", auth=list(context.options.gradio_auth) or None,
                              css=widgets.CSS, head=page_scripts() + context.extensions.page_head(),
                              footer_links=["api"], allowed_paths=[str(context.paths.outputs_dir)])
    # On restart or stop, end the page's heartbeat streams at once (Gradio's own stop signal) instead of
    # letting the server wait for them.
    for route in app.routes:
        if isinstance(route, Mount) and hasattr(route.app, "stop_event"):
            context.control.on_shutdown(route.app.stop_event.set)
    return app


def page_scripts() -> str:
    """The page's own scripts (javascript/*.js), put into the page head."""
    folder = Path(__file__).parent / "javascript"
    return "".join(f"<script>{path.read_text(encoding='utf-8')}</script>" for path in sorted(folder.glob("*.js")))


def start_share_tunnel(port: int) -> str | None:
    """Gradio's public tunnel (``--share``) needs the internet; when it fails the app keeps running locally."""
    try:
        import secrets

        from gradio.networking import setup_tunnel

        share_url = setup_tunnel("127.0.0.1", port, secrets.token_urlsafe(32), None, None)
    except Exception as err:  # offline, blocked, or the tunnel helper could not be fetched
        print(f"Could not create a share link ({type(err).__name__}: {err}); the app keeps running locally.",
              flush=True)
        return None
    print(f"Running on public URL: {share_url}", flush=True)
    return share_url
