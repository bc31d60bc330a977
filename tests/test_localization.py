"""Localizations (A1111's JSON files: English -> translation) change the page's labels and the messages it
shows, from the app's own folder, the data dir and extensions, chosen with the "localization" setting."""
from __future__ import annotations

import json
import shutil

from paragoger.errors import UserError
from paragoger.ui.app import build_ui
from tests.test_extensions import EXAMPLE, extensions_dir  # noqa: F401


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


def texts_the_app_labels() -> set[str]:
    """Every English text that goes through ``label(...)`` or ``context.translate(...)``: literals in the UI code,
    setting labels and section titles, and the built-in scripts' titles and input labels."""
    import re
    from pathlib import Path

    from paragoger.scripts import builtin_scripts
    from paragoger.settings import OPTION_SPECS, SECTION_TITLES

    found = set(SECTION_TITLES.values()) | {spec.label for spec in OPTION_SPECS}
    for path in (Path(__file__).resolve().parent.parent / "paragoger" / "ui").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        found |= set(re.findall(r'(?:label|translate)\(\s*"((?:[^"\\]|\\.)*)"\s*\)', text))
        found |= set(re.findall(r"(?:label|translate)\(\s*'((?:[^'\\]|\\.)*)'\s*\)", text))
    from paragoger.caption.interrogator import ClipInterrogator
    from paragoger.caption.tagger import WdTagger

    found |= {ClipInterrogator.title, WdTagger.title}  # captioner names in the Image to text tab
    from paragoger.model_manager.memory import KINDS
    from paragoger.ui.memory import COLUMNS

    found |= set(KINDS.values()) | set(COLUMNS)  # the Memory tab's model kinds and column titles
    from paragoger.ui.tabs.video import CLOSED_LOOP_HELP

    found.add(CLOSED_LOOP_HELP)  # too long for one line of code
    from paragoger.control.preprocessors import default_preprocessors
    from paragoger.ui.controlnet import CONTROL_MODES, RESIZE_MODES

    found |= set(CONTROL_MODES) | set(RESIZE_MODES)  # the ControlNet units' radio choices
    registry = default_preprocessors(annotator_dir=Path("/nonexistent"))
    found |= {spec.label for name in registry.names() for spec in (registry.get(name).threshold_a,
              registry.get(name).threshold_b, registry.get(name).resolution) if spec}  # preprocessor sliders
    for script in builtin_scripts():
        found.add(script.title)
        for is_img2img in (False, True):
            found |= {control.label for control in script.ui(is_img2img).values()}
    return {text.replace("\\\\", "\\") for text in found}  # a literal's "\\" is one backslash


def _strings(value) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


def test_the_shipped_chinese_localization_translates_the_page_and_has_no_stale_entries(start_context):
    from paragoger import messages
    from paragoger.localization import SHIPPED_DIR

    table = json.loads((SHIPPED_DIR / "zh_CN.json").read_text(encoding="utf-8"))
    context = start_context()
    known = texts_the_app_labels()
    stale = [key for key in table if key not in messages.ENGLISH and key not in known]
    assert stale == [], stale  # every entry is a message id or a text the app labels

    assert "zh_CN" in context.languages()
    context.apply_options({"localization": "zh_CN"})
    chinese_page = _strings(build_ui(context).config)
    assert {"提示词", "迭代步数", "文生图", "图生图", "高分辨率修复 (Hires. fix)", "生成"} <= chinese_page
    assert context.describe(UserError("steps_out_of_range", high=150, steps=999)).startswith("迭代步数必须")
    assert context.translate("Settings saved.") == "设置已保存。"  # texts handlers show while running, too


def test_every_translated_message_fills_the_same_blanks_as_the_english():
    """A translated message must name exactly the values the English one does ({name}, {folder}, ...): a missing
    one loses information, an extra one cannot be filled."""
    import string

    from paragoger import messages
    from paragoger.localization import SHIPPED_DIR

    def blanks(text: str) -> set[str]:
        return {field for _, field, _, _ in string.Formatter().parse(text) if field}

    for path in SHIPPED_DIR.glob("*.json"):
        table = json.loads(path.read_text(encoding="utf-8"))
        for key, english in messages.ENGLISH.items():
            if key in table:
                assert blanks(table[key]) == blanks(english), (path.name, key)
                assert messages.render(key, table, **{name.split("!")[0]: "x" for name in blanks(english)})
