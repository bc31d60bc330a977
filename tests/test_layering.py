"""The shape the code promises: only ui/ imports gradio, the core never reaches into the UI or the API, and no
module keeps mutable state at module level for requests to share."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "paragoger"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules_outside(*rooms: str):
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] not in rooms:
            yield relative, path


@pytest.mark.parametrize("relative, path", list(modules_outside("ui")), ids=str)
def test_only_the_ui_imports_gradio(relative, path):
    assert not any(name == "gradio" or name.startswith("gradio.") for name in imported_modules(path))


@pytest.mark.parametrize("room", ["core", "model_manager", "samplers", "prompts", "imaging"])
def test_the_core_rooms_never_import_the_ui_the_api_or_the_server(room):
    for path in (PACKAGE / room).rglob("*.py"):
        for name in imported_modules(path):
            assert not name.startswith(("paragoger.ui", "paragoger.api", "paragoger.server", "fastapi")), \
                f"{path.relative_to(PACKAGE)} imports {name}"


def test_prompts_are_pure_text_without_torch():
    for path in (PACKAGE / "prompts").rglob("*.py"):
        assert "torch" not in imported_modules(path), path.name


def test_the_product_never_imports_the_tests():
    """Test-only files (tests/fixtures/) stay out of the app: nothing under paragoger/ imports from tests, except
    the benchmark command, which runs from a checkout and makes the tests' tiny upscaler and captioner for
    ``--memory`` (the app itself never imports bench.py)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() == "bench.py":
            continue
        for name in imported_modules(path):
            assert name != "tests" and not name.startswith("tests."), f"{path.relative_to(PACKAGE)} imports {name}"


def test_nothing_in_the_app_imports_the_benchmark():
    for path in sorted(PACKAGE.rglob("*.py")):
        if not path.name.startswith("bench"):
            assert not any(name.startswith("paragoger.bench") for name in imported_modules(path)), path.name


def test_safetensors_files_are_read_in_one_place():
    """Headers, keys, metadata and tensors of .safetensors files are read by model_manager/safetensors_file.py
    alone (writers may import save_file)."""
    readers = {"safe_open", "load_file", "load", "deserialize"}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() == "model_manager/safetensors_file.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("safetensors"):
                used = {alias.name for alias in node.names} & readers
                assert not used, f"{path.relative_to(PACKAGE)} reads safetensors itself ({', '.join(used)})"
            if isinstance(node, ast.Constant) and node.value == "__metadata__" and path.name != "full_size.py":
                raise AssertionError(f"{path.relative_to(PACKAGE)} parses a safetensors header by hand")
