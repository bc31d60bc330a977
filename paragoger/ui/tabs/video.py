"""The Video tab: AnimateDiff (text, image or video to video) and Stable Video Diffusion. Widgets only.

Why one tab, right after img2img, with two sub-tabs ("AnimateDiff" and "Stable Video Diffusion") rather than an
AnimateDiff section inside txt2img and img2img as the A1111 extension has: a learner finds all video in one place,
and txt2img / img2img stay as simple as they are. Scripts written for the A1111 extension's API still work: its
contract on /sdapi/v1/txt2img and /img2img is kept by ``paragoger/api/video.py``.

The AnimateDiff sub-tab is the shared generation panel (``ui/generation.py``, element ids ``video_*``) with the
extension's controls; "Start from" picks the request: Text -> txt2img, Image -> img2img from the picture, Video ->
img2img from the source video's frames (``AnimateDiffOptions.video_source``).
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from paragoger.errors import UserError
from paragoger.imaging.resize import default_size_for
from paragoger.ui import generation, widgets
from paragoger.ui.labels import label
from paragoger.ui.tabs import svd
from paragoger.video.options import AnimateDiffOptions
from paragoger.video.windows import CLOSED_LOOP_CHOICES

TAB = "video"
TEXT, IMAGE, VIDEO = "Text", "Image", "Video"
NO_MOTION_MODULE = "None"  # core.video.NO_MOTION_MODULE: video to video frame by frame, as img2img
SAVE_FORMATS = ("GIF", "MP4", "WEBM", "WEBP", "PNG")
SOURCE_TYPES = [".mp4", ".webm", ".gif", ".webp", ".mov", ".mkv"]

CLOSED_LOOP_HELP = ("N: no loop. R-P: the video loops, prompt travel does not return to the first prompt. "
                    "R+P, A: it loops and prompt travel returns.")


def build(context, settings, checkpoint_dropdown=None) -> generation.GenerationPanel:
    """The Video tab's two sub-tabs; the AnimateDiff panel is returned (its gallery sends frames to img2img)."""
    with gr.Tabs(elem_id="video_tabs"):
        with gr.Tab(label("AnimateDiff"), id="video_animatediff", elem_id="video_animatediff_tab"):
            panel = build_animatediff(context, settings, checkpoint_dropdown)
        with gr.Tab(label("Stable Video Diffusion"), id="video_svd", elem_id="video_svd_tab"):
            svd.build(context)
    return panel


def motion_module_names(context, start: str = TEXT) -> list[str]:
    names = [entry.name for entry in context.motion_modules.library.entries()]
    return names + [NO_MOTION_MODULE] if start == VIDEO else names


def build_animatediff(context, settings, checkpoint_dropdown=None) -> generation.GenerationPanel:
    top = generation.prompt_row(context, TAB, checkpoint_dropdown)
    modules = motion_module_names(context)
    with gr.Row():
        with gr.Column(scale=1):
            start = gr.Radio([(label(name), name) for name in (TEXT, IMAGE, VIDEO)], value=TEXT,
                             label=label("Start from"), elem_id="video_start_from")
            with gr.Group(visible=False) as picture_group:
                picture = gr.Image(type="pil", label=label("Picture"), elem_id="video_image", height=320,
                                   sources=["upload", "clipboard"])
            with gr.Group(visible=False) as source_group:
                source = gr.File(label=label("Source video"), file_types=SOURCE_TYPES, file_count="single",
                                 type="filepath", elem_id="video_source", height=150)
                folder = gr.Textbox(label=label("or a folder of frames"), elem_id="video_source_folder",
                                    placeholder=label("A folder of .png / .jpg / .webp frames"))
                with gr.Accordion(label("Mask video (optional)"), open=False, elem_id="video_mask_accordion"):
                    mask = gr.File(label=label("Mask video: white = regenerate"), file_types=SOURCE_TYPES,
                                   file_count="single", type="filepath", elem_id="video_mask", height=150)
            denoising = gr.Slider(0, 1, value=0.75, step=0.01, label=label("Denoising strength"), visible=False,
                                  elem_id="video_denoising_strength")
            with gr.Row():
                motion = gr.Dropdown(modules, value=modules[0] if modules else None, label=label("Motion module"),
                                     elem_id="video_motion_module", scale=4)
                refresh = gr.Button("↻", elem_id="video_motion_module_refresh", scale=0, min_width=40)
            with gr.Row():
                length = gr.Number(16, precision=0, minimum=0, label=label("Number of frames"),
                                   info=label("0 = every frame of the source video, else the context batch size"), elem_id="video_length")
                fps = gr.Number(8, minimum=0, label=label("FPS"), info=label("0 = the source video's"),
                                elem_id="video_fps")
            formats = gr.CheckboxGroup(list(SAVE_FORMATS), value=["MP4"], label=label("Save formats"),
                                       elem_id="video_formats")
            with gr.Accordion(label("Context window and loop"), open=False, elem_id="video_context_accordion"):
                with gr.Row():
                    window = gr.Number(16, precision=0, minimum=1, maximum=64, label=label("Context batch size"),
                                       elem_id="video_context_batch_size")
                    stride = gr.Number(1, precision=0, minimum=1, maximum=8, label=label("Stride"),
                                       elem_id="video_stride")
                    overlap = gr.Number(-1, precision=0, minimum=-1, label=label("Overlap"),
                                        info=label("-1 = a quarter of the window"), elem_id="video_overlap")
                closed_loop = gr.Radio(list(CLOSED_LOOP_CHOICES), value="N", label=label("Closed loop"),
                                       info=label(CLOSED_LOOP_HELP), elem_id="video_closed_loop")
                with gr.Row():
                    freeinit = gr.Checkbox(False, label=label("FreeInit (steadier motion, N times the work)"),
                                           elem_id="video_freeinit_enable")
                    freeinit_iters = gr.Slider(1, 10, value=3, step=1, label=label("FreeInit iterations"),
                                               elem_id="video_freeinit_iters")
            controls = generation.sampling_controls(context, settings, TAB, batch_size=False, scripts=False)
        with gr.Column(scale=1):
            panel = generation.GenerationPanel(tab=TAB, **top, **controls)
            shown = {}

            def player():
                shown["video"] = gr.Video(label=label("Video"), autoplay=True, loop=True, interactive=False,
                                          elem_id="video_result", height=360)
                shown["send"] = gr.Button(label("Send to video to video"), elem_id="video_send_to_vid2vid",
                                          size="sm")
                shown["files"] = gr.File(label=label("Files"), file_count="multiple", interactive=False,
                                         elem_id="video_files")
                shown["last"] = gr.State(None)  # the video's file path, for "Send to video to video"

            generation.output_panel(panel, before_gallery=player)

    own = dict(start_from=start, picture=picture, source_video=source, source_folder=folder, mask_video=mask,
               denoising_strength=denoising, motion_module=motion, video_length=length, fps=fps,
               save_formats=formats, context_batch_size=window, stride=stride, overlap=overlap,
               closed_loop=closed_loop, freeinit_enable=freeinit, freeinit_iters=freeinit_iters)
    generation.wire(context, panel, controls=own, fill_request=lambda request, values: fill_request(
                        context, request, values),
                    result_outputs=[shown["video"], shown["files"], shown["last"]], result_values=result_values,
                    progress_details=True)
    _wire_start(context, start, picture_group, source_group, denoising, motion)
    refresh.click(lambda chosen, start_from: _refreshed(context, chosen, start_from), inputs=[motion, start],
                  outputs=motion, api_visibility="private")
    picture.upload(_size_of, inputs=picture, outputs=[panel.width, panel.height], api_visibility="private")
    targets = dict(start=start, source=source, folder=folder, picture_group=picture_group, source_group=source_group,
                   denoising=denoising, motion=motion)
    shown["send"].click(lambda path, chosen: _send_to_vid2vid(context, path, chosen, targets),
                        inputs=[shown["last"], motion], outputs=list(targets.values()), api_visibility="private")
    panel.extra.update(start_from=start, source_video=source, video_result=shown["video"], files=shown["files"])
    return panel


def fill_request(context, request, values):
    """The Video tab's values (by name, see ``build_animatediff``) put into ``request``: its mode, pictures and
    ``animatediff`` options, by what the video starts from."""
    formats = [str(f).upper() for f in values["save_formats"] or []]
    if not formats:
        from paragoger.video.files import VIDEO_FORMATS

        raise UserError("video_no_formats", known=", ".join(VIDEO_FORMATS))
    options = AnimateDiffOptions(
        model=values["motion_module"] or "", video_length=int(values["video_length"] or 0),
        fps=float(values["fps"] or 0), closed_loop=values["closed_loop"] or "N",
        batch_size=int(values["context_batch_size"] or 16), stride=int(values["stride"] or 1),
        overlap=int(values["overlap"] if values["overlap"] is not None else -1), format=formats,
        freeinit_enable=bool(values["freeinit_enable"]), freeinit_iters=int(values["freeinit_iters"]))
    start = values["start_from"]
    denoising = float(values["denoising_strength"])
    if start == IMAGE:
        if values["picture"] is None:
            raise UserError("init_image_missing")
        return request.copy(mode="img2img", init_images=[values["picture"].convert("RGB")],
                            denoising_strength=denoising, animatediff=options)
    if start == VIDEO:
        limit = context.settings["limit_video_frames"]
        source = _read_source(context, values["source_video"], values["source_folder"], limit)
        options.video_source, options.video_source_fps = source.frames, source.fps
        if values["mask_video"]:
            options.mask_frames = _read(Path(values["mask_video"]), limit).frames
        return request.copy(mode="img2img", init_images=[source.frames[0]], denoising_strength=denoising,
                            animatediff=options)
    return request.copy(mode="txt2img", animatediff=options)


def _read_source(context, uploaded: str | None, folder: str | None, limit: int):
    """The source video: the uploaded file, else the folder typed (while the app is shared on the network it
    must be inside the data folder, as img2img's Batch folders)."""
    if uploaded:
        return _read(Path(uploaded), limit)
    folder = (folder or "").strip()
    if not folder:
        raise UserError("video_source_missing")
    try:
        path = context.folders_from_page(frames=Path(folder))["frames"]
    except UserError as err:
        if err.key != "batch_folder_outside":
            raise
        raise UserError("video_folder_outside", folder=folder, root=err.params.get("root", "")) from None
    return _read(Path(path), limit)


def _read(path: Path, limit: int):
    from paragoger.video.files import read_video  # imageio-ffmpeg only once a video is read

    return read_video(path, max_frames=limit, name=path.name)


def result_values(result) -> list:
    """(player, files, last video path) of a finished video generation: the first video's MP4 (else WebM) in the
    player, every video's files in the files list."""
    videos = [saved for saved in result.videos if saved is not None]
    playable = widgets.video_files(videos[0])[0] if videos else None
    files = [path for saved in videos for path in widgets.video_files(saved)[1] or []]
    return [playable, files or None, playable]


def _wire_start(context, start, picture_group, source_group, denoising, motion) -> None:
    def show(start_from, chosen):
        return _start_updates(context, start_from, chosen)

    start.change(show, inputs=[start, motion], outputs=[picture_group, source_group, denoising, motion],
                 show_progress="hidden", api_visibility="private")


def _start_updates(context, start_from: str, chosen: str | None) -> list:
    """What shows for a start: the picture (Image), the source video (Video), denoising for both; "None" among
    the motion modules for video to video only."""
    names = motion_module_names(context, start_from)
    value = chosen if chosen in names else (names[0] if names else None)
    return [gr.update(visible=start_from == IMAGE), gr.update(visible=start_from == VIDEO),
            gr.update(visible=start_from != TEXT), gr.update(choices=names, value=value)]


def _refreshed(context, chosen: str | None, start_from: str):
    context.motion_modules.library.refresh()
    names = motion_module_names(context, start_from)
    return gr.update(choices=names, value=chosen if chosen in names else (names[0] if names else None))


def _size_of(picture):
    """The video's size follows a newly uploaded picture (as img2img's), in multiples of 8."""
    if picture is None:
        return gr.update(), gr.update()
    return default_size_for(picture)


def _send_to_vid2vid(context, path: str | None, chosen: str | None, targets: dict):
    """The last video becomes the source of video to video: Start from = Video, the file in the source box (the
    folder box emptied, as the file is read first), the motion module kept."""
    if not path:
        return gr.skip()
    picture_group, source_group, denoising, motion = _start_updates(context, VIDEO, chosen)
    return {targets["start"]: VIDEO, targets["source"]: path, targets["folder"]: "",
            targets["picture_group"]: picture_group, targets["source_group"]: source_group,
            targets["denoising"]: denoising, targets["motion"]: motion}
