"""What an extension can add beyond samplers and scripts: upscalers, settings, page tabs, HTTP routes and X/Y/Z
axes. Each is registered in ``setup(ext)`` with the public API, and each shows up where the app's own would."""
from __future__ import annotations

import json

import httpx
import pytest
from PIL import Image

from paragoger.ext.api import ExtensionHandle
from tests.test_extensions import (extensions_dir, generate, png_fields,  # noqa: F401
                                   write_extension)

TOOLKIT = '''
from paragoger.ext import api


def double_nearest(image, scale):
    return image.resize((image.width * 2, image.height * 2))


class Signature(api.Script):
    title = "Signature"
    always_on = True

    def ui(self, is_img2img):
        return {"name": api.Textbox("Name", "")}

    def postprocess_image(self, p, image, args):
        if args["name"]:
            image.fields["Signed"] = args["name"]
        image.fields["Toolkit strength"] = p.setting("toolkit_strength")


def setup(ext):
    ext.register_upscaler("Toolkit 2x", double_nearest, scale=2)
    ext.register_captioner("Toolkit size", lambda image, options: f"a {image.width}x{image.height} picture")
    ext.register_setting("toolkit_strength", 0.5, "Toolkit strength", minimum=0.0, maximum=1.0)
    ext.register_setting("toolkit_mode", "soft", "Toolkit mode", choices=("soft", "hard"))
    ext.register_xyz_axis("Signature", script="Signature", arg="name", labelled=False)
    ext.register_xyz_axis("Toolkit strength", setting="toolkit_strength", kind="float")

    def hello(name: str = "world"):
        return {"hello": name, "samplers": len(ext.app.sampler_names()),
                "strength": ext.app.setting("toolkit_strength")}

    ext.register_route("/hello", hello)
'''


@pytest.fixture
def toolkit(extensions_dir, start_context):
    write_extension(extensions_dir, "toolkit", {"scripts/toolkit.py": TOOLKIT})
    context = start_context()
    assert context.extensions.get("toolkit").status == "loaded", context.extensions.get("toolkit").error
    return context


def test_an_extension_upscaler_is_listed_and_used_by_name(toolkit):
    assert "Toolkit 2x" in toolkit.upscalers.names()
    bigger = toolkit.extensions.services.upscale(Image.new("RGB", (10, 6), "red"), 2, "toolkit 2x")
    assert bigger.size == (20, 12)


def test_an_extension_captioner_answers_the_page_and_the_interrogate_route(extensions_dir, start_context,
                                                                            serve_app):
    import base64
    import io

    write_extension(extensions_dir, "toolkit", {"scripts/toolkit.py": TOOLKIT})
    context = start_context()
    assert "Toolkit size" in context.captioners.names()
    assert context.extensions.services.caption(Image.new("RGB", (12, 8)), "toolkit size") == "a 12x8 picture"
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), "blue").save(buffer, format="PNG")
    answer = httpx.post(serve_app(context) + "/sdapi/v1/interrogate", timeout=60,
                        json={"image": base64.b64encode(buffer.getvalue()).decode(), "model": "Toolkit size"})
    assert answer.status_code == 200 and answer.json()["caption"] == "a 30x20 picture"


def test_extension_settings_are_listed_validated_and_kept(toolkit, data_dir, start_context):
    spec = {s.key: s for s in toolkit.settings.specs()}["toolkit_strength"]
    assert spec.section == "toolkit" and spec.label == "Toolkit strength"
    assert toolkit.options_snapshot()["toolkit_mode"] == "soft"
    with pytest.raises(Exception, match="between"):
        toolkit.apply_options({"toolkit_strength": 3})
    toolkit.apply_options({"toolkit_strength": 0.8})
    assert json.loads((data_dir / "config.json").read_text())["toolkit_strength"] == 0.8
    # a request's override applies to that generation only
    assert png_fields(generate(toolkit, override_settings={"toolkit_strength": 0.25}))["Toolkit strength"] == "0.25"
    assert png_fields(generate(toolkit))["Toolkit strength"] == "0.8"
    toolkit.close()
    assert start_context().settings["toolkit_strength"] == 0.8  # read back from config.json at the next start


def test_an_xyz_axis_from_an_extension_sets_a_script_argument_per_cell(toolkit):
    result = generate(toolkit, script_name="X/Y/Z plot",
                      script_args={"x_type": "Signature", "x_values": "Ann, Bo",
                                   "y_type": "Toolkit strength", "y_values": "0.1, 0.9",
                                   "include_lone_images": True})
    grid, *cells = result.images
    assert grid.image.width > 2 * 64 and grid.image.height > 2 * 64  # two columns, two rows, with legends
    fields = [png_fields_of(item) for item in cells]
    assert [(f["Signed"], f["Toolkit strength"]) for f in fields] == [("Ann", "0.1"), ("Bo", "0.1"),
                                                                      ("Ann", "0.9"), ("Bo", "0.9")]


def png_fields_of(item):
    from paragoger.imaging.infotext import parse_infotext

    return parse_infotext(item.infotext)


def test_an_extension_route_is_served_under_its_name_with_the_api_auth(extensions_dir, start_context, serve_app):
    write_extension(extensions_dir, "toolkit", {"scripts/toolkit.py": TOOLKIT})
    url = serve_app(start_context())
    answer = httpx.get(url + "/ext/toolkit/hello", params={"name": "Mei"}).json()
    assert answer["hello"] == "Mei" and answer["samplers"] > 10 and answer["strength"] == 0.5

    locked = serve_app(start_context("--api-auth", "ann:secret"))
    assert httpx.get(locked + "/ext/toolkit/hello").status_code == 401
    assert httpx.get(locked + "/ext/toolkit/hello", auth=("ann", "secret")).json()["hello"] == "world"


def test_names_already_taken_fail_the_extension_and_leave_nothing_behind(extensions_dir, start_context):
    write_extension(extensions_dir, "clash", {"scripts/clash.py": '''
        from diffusers import EulerDiscreteScheduler

        def setup(ext):
            ext.register_sampler("Clash Euler", EulerDiscreteScheduler)
            ext.register_setting("clash_ok", 1, "Fine")
            ext.register_upscaler("Lanczos", lambda image, scale: image)
    '''})
    context = start_context()
    clash = context.extensions.get("clash")
    assert clash.status == "failed" and "Lanczos" in clash.error
    assert "clash_ok" not in context.options_snapshot()
    assert "Clash Euler" not in [s["name"] for s in context.samplers.samplers()]
    assert generate(context).images


def test_an_axis_sets_exactly_one_thing():
    handle = ExtensionHandle("x", ".", None, None)
    with pytest.raises(ValueError):
        handle.register_xyz_axis("Bad", field="seed", setting="eta_ddim")
    with pytest.raises(ValueError):
        handle.register_xyz_axis("Bad", script="Signature")  # which argument?


TAB_EXTENSION = '''
import gradio as gr


def setup(ext):
    def build():
        gr.Markdown("Hello from the tab extension", elem_id="tabext_hello")
        box = gr.Textbox(label="Upscalers", elem_id="tabext_upscalers")
        button = gr.Button("List upscalers", elem_id="tabext_list")
        button.click(lambda: ", ".join(ext.app.upscaler_names()), outputs=box)

    ext.register_tab("Tab ext", build)
'''


def test_an_extension_tab_is_on_the_page_and_calls_the_app(extensions_dir, start_context, open_page):
    write_extension(extensions_dir, "tabext", {"scripts/tabext.py": TAB_EXTENSION})
    write_extension(extensions_dir, "badtab", {"scripts/badtab.py": '''
        def setup(ext):
            def build():
                raise RuntimeError("this tab cannot be built")
            ext.register_tab("Bad tab", build)
    '''})
    context = start_context()
    page = open_page(context)
    page.click("#tab_ext_tabext_tab_ext-button")
    page.wait_for_selector("#tabext_hello")
    assert "Hello from the tab extension" in page.inner_text("#tabext_hello")
    page.click("#tabext_list")
    page.wait_for_function("document.querySelector('#tabext_upscalers textarea').value.includes('Lanczos')")
    page.click("#tab_ext_badtab_bad_tab-button")
    page.wait_for_selector("text=could not be built")
    assert context.extensions.get("badtab").status == "failed"
    assert context.extensions.get("tabext").status == "loaded"
