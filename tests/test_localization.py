"""Localizations (A1111's JSON files: English -> translation) change the page's labels and the messages it
shows, from the app's own folder, the data dir and extensions, chosen with the "localization" setting."""
from __future__ import annotations

import json
import shutil

from paragoger.errors import UserError
from paragoger.ui.app import build_ui
from tests.test_extensions import EXAMPLE, extensions_dir, start_context  # noqa: F401


def labels_on_page(context) -> set[str]:
    demo = build_ui(context)
    return {component["props"].get("label") for component in demo.config["components"]} - {None}


def test_chosen_language_translates_labels_from_the_app_and_from_extensions(extensions_dir, start_context,
                                                                           data_dir):
    shutil.copytree(EXAMPLE, extensions_dir / "example")
    folder = data_dir / "localizations"
    folder.mkdir()
    (folder / "de.json").write_text(json.dumps({"Sampling steps": "Schritte", "Seed": "Startwert"}),
                                    encoding="utf-8")
    context = start_context()
    assert "de" in context.languages() and context.languages()[0] == "None"
    english = labels_on_page(context)
    assert {"Sampling steps", "Note"} <= english and "Schritte" not in english

    context.apply_options({"localization": "de"})
    german = labels_on_page(context)
    assert {"Schritte", "Startwert", "Notiz"} <= german       # data dir file and the example extension's
    assert "Sampling steps" not in german and "CFG Scale" in german  # untranslated labels stay English


def test_messages_are_translated_by_id_and_a_broken_file_is_skipped(start_context, data_dir):
    folder = data_dir / "localizations"
    folder.mkdir()
    (folder / "xx.json").write_text(json.dumps({"steps_out_of_range": "Schritte: 1 bis {high}, nicht {steps}."}),
                                    encoding="utf-8")
    (folder / "broken.json").write_text("{ not json", encoding="utf-8")
    context = start_context()
    error = UserError("steps_out_of_range", high=150, steps=999)
    assert context.describe(error) == str(error)  # English by default
    context.apply_options({"localization": "xx"})
    assert context.describe(error) == "Schritte: 1 bis 150, nicht 999."
    context.apply_options({"localization": "broken"})
    assert context.describe(error) == str(error)
    assert "Sampling steps" in labels_on_page(context)  # the page still builds
