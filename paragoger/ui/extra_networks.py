"""The card browser under the prompt boxes: Checkpoints, Lora and Textual Inversion as cards with their preview
pictures (or a card with the name), a search box, and a click that inserts the tag (or loads the checkpoint)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import gradio as gr
from PIL import Image, ImageDraw

from paragoger.imaging.grid import load_label_font
from paragoger.model_manager.scanner import preview_beside
from paragoger.ui import widgets
from paragoger.ui.labels import label

CARD_SIZE = (192, 256)


@dataclass(frozen=True)
class Card:
    name: str          # what the card shows
    insert: str        # the text a click adds to the prompt ("" for checkpoints)
    preview: str | None


@lru_cache(maxsize=512)
def placeholder_card(name: str) -> Image.Image:
    """A plain card with the network's name, for files without a preview picture."""
    card = Image.new("RGB", CARD_SIZE, "#3b3f4a")
    draw = ImageDraw.Draw(card)
    font = load_label_font(18)
    words, lines, line = name.replace("_", " ").split(), [], ""
    for word in words:
        if line and draw.textlength(f"{line} {word}", font=font) > CARD_SIZE[0] - 20:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    y = CARD_SIZE[1] - 16 - 24 * len(lines)
    for text in lines:
        draw.text((10, y), text, fill="#ffffff", font=font)
        y += 24
    return card


def _cards(context, kind: str) -> list[Card]:
    if kind == "checkpoints":
        return [Card(info.title, "", _text(preview_beside(info.path))) for info in context.library.checkpoints()]
    if kind == "lora":
        return [Card(info.name, f"<lora:{info.name}:1>", _text(info.preview)) for info in context.loras.entries()]
    return [Card(info.name, info.name, _text(info.preview)) for info in context.embeddings.entries() if not info.error]


def _text(path) -> str | None:
    return str(path) if path else None


def _gallery_value(cards: list[Card]) -> list:
    return [(card.preview or placeholder_card(card.name), card.name) for card in cards]


def insert_into_prompt(prompt: str, text: str) -> str:
    """A1111 adds the tag at the end of the prompt after a space (its default separator)."""
    prompt = (prompt or "").rstrip()
    return f"{prompt} {text}" if prompt else text


def build(context, tab: str, prompt: gr.Textbox, checkpoint_dropdown: gr.Dropdown | None = None) -> None:
    with gr.Accordion(label("Extra networks"), open=False, elem_id=f"{tab}_extra_networks"):
        with gr.Row():
            search = gr.Textbox(label=label("Search"), elem_id=f"{tab}_extra_search", scale=4)
            refresh = gr.Button(label("Refresh"), elem_id=f"{tab}_extra_refresh", scale=0, min_width=80)
        status = gr.HTML(elem_id=f"{tab}_extra_status")
        galleries = {}
        with gr.Tabs(elem_id=f"{tab}_extra_tabs"):
            for kind, title in (("checkpoints", "Checkpoints"), ("lora", "Lora"),
                                ("textual_inversion", "Textual Inversion")):
                with gr.Tab(label(title), id=f"{tab}_{kind}", elem_id=f"{tab}_{kind}_cards_tab"):
                    cards = _cards(context, kind)
                    shown = gr.State(cards)
                    gallery = gr.Gallery(_gallery_value(cards), columns=6, height=300, allow_preview=False,
                                         show_label=False, elem_id=f"{tab}_{kind}_cards", interactive=False)
                    galleries[kind] = (gallery, shown)

    def listing(query: str):
        out = []
        for kind in galleries:
            cards = [card for card in _cards(context, kind) if (query or "").lower() in card.name.lower()]
            out += [_gallery_value(cards), cards]
        return out

    def refresh_all(query):
        context.library.refresh()
        context.loras.refresh()
        context.embeddings.refresh()
        return listing(query)

    outputs = [component for pair in galleries.values() for component in pair]
    search.change(listing, inputs=search, outputs=outputs, show_progress="hidden", api_visibility="private")
    refresh.click(refresh_all, inputs=search, outputs=outputs, api_visibility="private")

    for kind, (gallery, shown) in galleries.items():
        if kind == "checkpoints":
            def choose_checkpoint(cards, evt: gr.SelectData):
                from paragoger.errors import UserError

                try:
                    info = context.select_checkpoint(cards[evt.index].name)
                except UserError as err:
                    return gr.update(), widgets.error_html(context.describe(err))
                return widgets.checkpoint_choice(context, info.title), ""

            targets = [checkpoint_dropdown or gr.State(), status]
            gallery.select(choose_checkpoint, inputs=shown, outputs=targets, api_visibility="private")
        else:
            def add_tag(prompt_text, cards, evt: gr.SelectData):
                return insert_into_prompt(prompt_text, cards[evt.index].insert)

            gallery.select(add_tag, inputs=[prompt, shown], outputs=prompt, api_visibility="private")
