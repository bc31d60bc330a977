"""Extensions in the page: the example's always-on script and sampler through the txt2img Generate handler, and
the Extensions tab listing status with the traceback."""
from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest

from paragoger.cli import parse_args
from paragoger.context import AppContext
from paragoger.imaging.infotext import parse_infotext
from paragoger.imaging.metadata import read_infotext

EXAMPLE = Path(__file__).resolve().parent.parent / "extensions" / "example"


@pytest.fixture
def context_with_example(data_dir):
    extensions = data_dir / "extensions"
    shutil.copytree(EXAMPLE, extensions / "example")
    (extensions / "broken").mkdir()
    (extensions / "broken" / "scripts").mkdir()
    (extensions / "broken" / "scripts" / "broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    context = AppContext(parse_args(["--data-dir", str(data_dir)], env={}))
    yield context
    context.close()


def handler(demo, name: str, elem_id: str):
    for fn in demo.fns.values():
        if fn.name == name and any(getattr(c, "elem_id", None) == elem_id for c in fn.inputs):
            return fn
    raise AssertionError(f"no {name} handler with input {elem_id}")


def call_handler(fn, wanted: dict) -> list:
    """Every update a page handler gives, called as Gradio calls it: each input's value from ``wanted`` (keyed by
    elem_id, or by the component itself for one without, such as a gr.State) or else its default as the handler
    receives it; one {component: value} dict when the event takes its inputs as a set (handlers reading by name)."""
    def value_of(c):
        if c in wanted or c.elem_id in wanted:
            return wanted[c] if c in wanted else wanted[c.elem_id]
        return c.preprocess(c.value) if c.get_block_name() == "radio" else c.value

    values = [value_of(c) for c in fn.inputs]
    outcome = fn.fn(dict(zip(fn.inputs, values))) if fn.inputs_as_dict else fn.fn(*values)
    return list(outcome) if inspect.isgenerator(outcome) else [outcome]


def test_generate_handler_passes_script_inputs_by_name_and_uses_the_extension_sampler(context_with_example):
    from paragoger.ui.app import build_ui

    demo = build_ui(context_with_example)
    fn = handler(demo, "generate", "txt2img_prompt")
    wanted = {"txt2img_prompt": "a green hill", "txt2img_steps": 3, "txt2img_width": 64, "txt2img_height": 64,
              "txt2img_sampling": "Example Euler", "txt2img_seed": 11,
              "txt2img_script_example_stamp_enabled": True, "txt2img_script_example_stamp_note": "from the page"}
    *_, last = call_handler(fn, wanted)
    gallery, _, infotext_html, _, seed, error = last
    assert error == "" and seed == 11
    fields = parse_infotext(read_infotext(gallery[0][0]))
    assert fields["Sampler"] == "Example Euler"
    assert fields["Example note"] == "from the page"
    assert fields["Example steps seen"] == "3"


def test_extensions_tab_lists_status_and_traceback(context_with_example):
    from paragoger.ui.extensions import extensions_table_html

    table = extensions_table_html(context_with_example)
    assert "example" in table and "loaded" in table
    assert "failed" in table and "broken on purpose" in table
