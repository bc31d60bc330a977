"""Extensions: written by the tests into a temporary extensions folder; the app context starts and generates
with each of them, broken or not, and the bundled example works end to end."""
from __future__ import annotations

import ast
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paragoger.context import AppContext
from paragoger.core.payloads import GenerationJob
from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError
from paragoger.ext import api
from paragoger.imaging.infotext import parse_infotext
from paragoger.imaging.metadata import read_infotext

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "extensions" / "example"

GOOD_SCRIPT = '''
from diffusers import EulerDiscreteScheduler

from paragoger.ext import api


class CountingEuler(EulerDiscreteScheduler):
    pass


class Stamp(api.Script):
    title = "Good stamp"
    always_on = True

    def ui(self, is_img2img):
        return {"text": api.Textbox("Text", "good")}

    def postprocess_image(self, p, image, args):
        image.fields["Good field"] = args["text"]


def setup(ext):
    ext.register_sampler("Good Euler", CountingEuler, aliases=("good_euler",))
    ext.on_denoising_step(lambda state: None)
'''


def write_extension(root: Path, name: str, files: dict[str, str], api_version: str | None = "1.0") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    if api_version is not None:
        (folder / "extension.json").write_text(f'{{"name": "{name}", "version": "0.1", '
                                               f'"api_version": "{api_version}"}}', encoding="utf-8")
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


@pytest.fixture
def extensions_dir(data_dir):
    folder = data_dir / "extensions"
    folder.mkdir(exist_ok=True)
    return folder


def small_request(**changes) -> GenerationRequest:
    base = dict(prompt="a red boat", steps=3, width=64, height=64, seed=7, sampler_name="Euler")
    return GenerationRequest(**{**base, **changes})


def generate(context: AppContext, **changes):
    """Through the queue, as the UI and the HTTP routes do."""
    job = context.queue.run(GenerationJob(small_request(**changes)))
    if job.error is not None:
        raise job.error
    return job.result


def png_fields(result) -> dict:
    return parse_infotext(read_infotext(result.images[0].path))


def status(context, name):
    return context.extensions.get(name)


# --- loading, good and broken --------------------------------------------------------------------------------------

def test_good_extension_loads_and_its_sampler_is_listed_and_used(extensions_dir, start_context, monkeypatch):
    write_extension(extensions_dir, "good", {"scripts/good.py": GOOD_SCRIPT})
    context = start_context()
    ext = status(context, "good")
    assert ext.status == "loaded", ext.error
    assert "Good Euler" in [s["name"] for s in context.samplers.samplers()]
    assert ext.samplers == ["Good Euler"] and ext.scripts == ["Good stamp"]

    cls = context.samplers.sampler("good_euler").scheduler_class
    calls = []
    original = cls.step
    monkeypatch.setattr(cls, "step", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    result = generate(context, sampler_name="Good Euler")
    assert len(calls) == 3
    fields = png_fields(result)
    assert fields["Sampler"] == "Good Euler"
    assert fields["Good field"] == "good"


def test_import_error_disables_only_that_extension(extensions_dir, start_context):
    write_extension(extensions_dir, "a_broken", {"scripts/broken.py": "import does_not_exist_anywhere\n"})
    write_extension(extensions_dir, "good", {"scripts/good.py": GOOD_SCRIPT})
    context = start_context()
    broken = status(context, "a_broken")
    assert broken.status == "failed"
    assert "does_not_exist_anywhere" in broken.error and "Traceback" in broken.error
    assert status(context, "good").status == "loaded"
    assert png_fields(generate(context))["Good field"] == "good"


def test_extension_failing_halfway_leaves_nothing_registered(extensions_dir, start_context):
    write_extension(extensions_dir, "half", {"scripts/half.py": '''
        from diffusers import EulerDiscreteScheduler

        def setup(ext):
            ext.register_sampler("Half Euler", EulerDiscreteScheduler)
            raise RuntimeError("setup broke")
    '''})
    context = start_context()
    assert status(context, "half").status == "failed"
    assert "Half Euler" not in [s["name"] for s in context.samplers.samplers()]
    assert generate(context).images


def test_incompatible_api_version_is_reported_and_not_imported(extensions_dir, start_context, tmp_path):
    marker = tmp_path / "imported"
    write_extension(extensions_dir, "future", {"scripts/future.py": f'open({str(marker)!r}, "w").close()\n'},
                    api_version="2.0")
    context = start_context()
    ext = status(context, "future")
    assert ext.status == "incompatible" and "2.0" in ext.error
    assert not marker.exists()
    assert generate(context).images


def test_api_version_rule():
    assert api.is_compatible("1.0") and api.is_compatible("1") and api.is_compatible(None)
    assert not api.is_compatible("2.0") and not api.is_compatible("0.9") and not api.is_compatible("x")
    assert api.is_compatible("1.0", "1.3") and not api.is_compatible("1.4", "1.3")


def test_raising_step_callback_disables_its_extension_and_the_generation_finishes(extensions_dir,
                                                                                 start_context):
    write_extension(extensions_dir, "raiser", {"scripts/raiser.py": '''
        def setup(ext):
            def boom(state):
                raise ValueError("step callback broke")
            ext.on_denoising_step(boom)
    '''})
    write_extension(extensions_dir, "watcher", {"scripts/watcher.py": '''
        from paragoger.ext import api

        class Watch(api.Script):
            title = "Watcher"
            always_on = True

            def before_process(self, p, args):
                p.on_denoising_step(lambda state: p.extra_params.__setitem__(
                    "Watched", p.extra_params.get("Watched", 0) + 1))
    '''})
    context = start_context()
    result = generate(context)
    raiser = status(context, "raiser")
    assert raiser.status == "failed" and "step callback broke" in raiser.error
    assert png_fields(result)["Watched"] == "3"  # the other extension saw every step
    assert png_fields(generate(context))["Watched"] == "3"
    assert context.extensions.callbacks.registered("denoising_step") == []  # scoped ones went with each job


def test_raising_script_hook_is_reported_and_generation_goes_on(extensions_dir, start_context):
    write_extension(extensions_dir, "badscript", {"scripts/bad.py": '''
        from paragoger.ext import api

        class Bad(api.Script):
            title = "Bad"
            always_on = True

            def postprocess_image(self, p, image, args):
                raise KeyError("hook broke")
    '''})
    context = start_context()
    assert generate(context).images
    assert status(context, "badscript").status == "failed"
    assert context.scripts.find("Bad") is None


def test_install_failure_is_reported_with_its_output(extensions_dir, start_context):
    write_extension(extensions_dir, "needs", {
        "install.py": 'import sys\nprint("pip says no")\nsys.exit(3)\n',
        "scripts/needs.py": GOOD_SCRIPT,
    })
    context = start_context()
    ext = status(context, "needs")
    assert ext.status == "install failed"
    assert "pip says no" in ext.error and "3" in ext.error
    assert "Good Euler" not in [s["name"] for s in context.samplers.samplers()]
    assert generate(context).images


def test_install_runs_once_until_its_requirements_change(extensions_dir, start_context, tmp_path):
    runs = tmp_path / "runs.txt"
    folder = write_extension(extensions_dir, "installer", {
        "install.py": f'open({str(runs)!r}, "a").write("x")\n',
        "requirements.txt": "nothing==1\n",
    })
    start_context().close()
    start_context().close()
    assert runs.read_text() == "x"
    (folder / "requirements.txt").write_text("nothing==2\n")
    assert start_context().extensions.get("installer").status == "loaded"
    assert runs.read_text() == "xx"


def test_preload_adds_command_line_flags(extensions_dir, start_context):
    write_extension(extensions_dir, "flags", {
        "preload.py": '''
            def preload(parser):
                parser.add_argument("--flag-level", type=int, default=1)
        ''',
        "scripts/flags.py": '''
            seen = []

            def setup(ext):
                seen.append(ext.flags.flag_level)
        ''',
    })
    context = start_context("--flag-level", "5")
    ext = status(context, "flags")
    assert ext.status == "loaded", ext.error
    assert ext.flags.flag_level == 5
    assert "--flag-level" not in context.extensions.unused_args


def test_disabled_state_is_persisted_and_applied_at_next_start(extensions_dir, start_context):
    write_extension(extensions_dir, "good", {"scripts/good.py": GOOD_SCRIPT})
    first = start_context()
    first.extensions.set_enabled({"good": False})
    assert first.extensions.get("good").status == "loaded"  # applies on restart
    first.close()
    second = start_context()
    assert second.extensions.get("good").status == "disabled"
    assert "Good Euler" not in [s["name"] for s in second.samplers.samplers()]
    second.extensions.set_enabled({"good": True})
    assert start_context().extensions.get("good").status == "loaded"


def test_page_gets_javascript_css_and_localizations_of_loaded_extensions(extensions_dir, start_context):
    write_extension(extensions_dir, "looks", {"javascript/a.js": "window.looksLoaded = 1;",
                                              "style.css": "#x { color: red }",
                                              "localizations/fr.json": '{"Prompt": "Invite"}'})
    write_extension(extensions_dir, "off", {"javascript/b.js": "window.offLoaded = 1;"}, api_version="9.0")
    context = start_context()
    head = context.extensions.page_head()
    assert "window.looksLoaded = 1;" in head and "#x { color: red }" in head
    assert "offLoaded" not in head
    assert [p.name for p in context.extensions.localizations()["fr"]] == ["fr.json"]


# --- scripts: arguments by name --------------------------------------------------------------------------------------

def test_script_arguments_from_list_dict_and_defaults(extensions_dir, start_context):
    from paragoger.ext.scripts import resolve_script_request

    write_extension(extensions_dir, "good", {"scripts/good.py": GOOD_SCRIPT})
    context = start_context()
    by_dict = resolve_script_request(context.scripts, small_request(alwayson_scripts={"good stamp": {"args": {
        "text": "dict"}}}))
    assert [(e.title, args) for e, args in by_dict.always_on if e.title == "Good stamp"] == \
           [("Good stamp", {"text": "dict"})]
    by_list = resolve_script_request(context.scripts, small_request(alwayson_scripts={"Good stamp": {"args": [
        "list"]}}))
    assert dict((e.title, a) for e, a in by_list.always_on)["Good stamp"] == {"text": "list"}
    default = resolve_script_request(context.scripts, small_request())
    assert dict((e.title, a) for e, a in default.always_on)["Good stamp"] == {"text": "good"}
    with pytest.raises(UserError, match="no argument 'nope'"):
        resolve_script_request(context.scripts, small_request(alwayson_scripts={"Good stamp": {"args": {
            "nope": 1}}}))
    with pytest.raises(UserError, match="takes 1 arguments"):
        resolve_script_request(context.scripts, small_request(alwayson_scripts={"Good stamp": {"args": [1, 2]}}))
    with pytest.raises(UserError, match="not found"):
        resolve_script_request(context.scripts, small_request(script_name="no such script"))
    assert png_fields(generate(context, alwayson_scripts={"Good stamp": {"args": ["from api"]}}))["Good field"] \
        == "from api"


def test_selected_script_that_takes_over_makes_its_own_generations(extensions_dir, start_context):
    write_extension(extensions_dir, "twice", {"scripts/twice.py": '''
        from paragoger.ext import api

        class Twice(api.Script):
            title = "Twice"

            def ui(self, is_img2img):
                return {"seed_step": api.Number("Seed step", 10)}

            def run(self, p, args):
                first = p.generate()
                second = p.generate(seed=p.request.seed + int(args["seed_step"]))
                first.images += second.images
                return first
    '''})
    context = start_context()
    assert "twice" in context.scripts.api_list()["txt2img"]
    result = generate(context, script_name="Twice", script_args={"seed_step": 5})
    assert [item.seed for item in result.images] == [7, 12]


# --- the bundled example -----------------------------------------------------------------------------------------

def test_example_extension_sampler_and_always_on_script_end_to_end(extensions_dir, start_context, monkeypatch):
    shutil.copytree(EXAMPLE, extensions_dir / "example")
    context = start_context("--example-note", "from the command line")
    ext = status(context, "example")
    assert ext.status == "loaded", ext.error
    assert "Example Euler" in [s["name"] for s in context.samplers.samplers()]

    cls = context.samplers.sampler("Example Euler").scheduler_class
    steps = []
    original = cls.step
    monkeypatch.setattr(cls, "step", lambda self, *a, **k: steps.append(1) or original(self, *a, **k))
    result = generate(context, sampler_name="Example Euler", steps=4,
                      alwayson_scripts={"Example stamp": {"args": {"enabled": True}}})
    assert len(steps) == 4
    fields = png_fields(result)
    assert fields["Sampler"] == "Example Euler"
    assert fields["Example note"] == "from the command line"
    assert fields["Example steps seen"] == "4"
    # off by default: nothing added
    assert "Example note" not in png_fields(generate(context))


def _paragoger_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "paragoger"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "paragoger":
            found |= {f"{node.module}.{alias.name}" if node.module == "paragoger.ext" else node.module
                      for alias in node.names}
    return found


@pytest.mark.parametrize("path", sorted((REPO / "extensions").rglob("*.py")), ids=lambda p: p.name)
def test_bundled_extensions_import_only_the_public_api(path):
    assert _paragoger_imports(path) <= {"paragoger.ext.api"}, path


def test_builtin_scripts_import_only_the_public_api():
    """Built-in scripts are written as extensions are: the public API, and each other (one package)."""
    for path in (REPO / "paragoger" / "scripts").rglob("*.py"):
        imports = {name for name in _paragoger_imports(path) if not name.startswith("paragoger.scripts")}
        assert imports <= {"paragoger.ext.api"}, path


def test_example_step_function_sampler_matches_the_built_in_euler_a(extensions_dir, start_context):
    """A sampler written as a step function over the denoiser runs in the same loop, draws its noise from the
    image seeds like the built-in samplers, and so ancestral Euler written in five lines gives Euler a's pixels."""
    shutil.copytree(EXAMPLE, extensions_dir / "example")
    context = start_context()
    assert "Example Euler a (step function)" in [s["name"] for s in context.samplers.samplers()]
    by_step_function = generate(context, sampler_name="example_euler_a", steps=4, batch_size=2)
    built_in = generate(context, sampler_name="Euler a", steps=4, batch_size=2)
    for ours, theirs in zip(by_step_function.images, built_in.images):
        a = np.asarray(Image.open(ours.path), dtype=np.int16)
        b = np.asarray(Image.open(theirs.path), dtype=np.int16)
        assert np.abs(a - b).max() <= 1
    assert png_fields(by_step_function)["Sampler"] == "Example Euler a (step function)"


def test_a_step_function_sampler_sees_the_denoised_latents_at_every_sigma(extensions_dir, start_context,
                                                                           tmp_path):
    log = tmp_path / "sigmas.txt"
    write_extension(extensions_dir, "euler-fn", {"scripts/euler_fn.py": f'''
        def euler(x, denoised, sigma, sigma_next, info):
            with open({str(log)!r}, "a") as out:
                out.write(f"{{info.index}} {{float(sigma):.4f}} {{float(sigma_next):.4f}}\\n")
            return x + (x - denoised) / sigma * (sigma_next - sigma)

        def setup(ext):
            ext.register_step_sampler("Euler by function", euler)
    '''})
    context = start_context()
    ours = generate(context, sampler_name="Euler by function", scheduler="Karras", steps=3)
    theirs = generate(context, sampler_name="Euler", scheduler="Karras", steps=3)
    assert np.array_equal(np.asarray(Image.open(ours.images[0].path)), np.asarray(Image.open(theirs.images[0].path)))
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [int(index) for index, _, _ in lines] == [0, 1, 2]
    assert float(lines[-1][2]) == 0.0 and float(lines[0][1]) > float(lines[1][1]) > float(lines[2][1])
