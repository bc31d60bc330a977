"""requirements.txt declares what the app imports, requirements-test.txt what only the tests import; a pinned
package nothing imports says on its line why it is there. Import names are mapped to package names through the
installed packages' own metadata (PIL -> pillow, yaml -> PyYAML, cv2 -> opencv-python, ...)."""
import ast
import functools
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Installed by the launchers before the requirements (TORCH_COMMAND), so the right build for the machine is used.
FROM_TORCH_COMMAND = {"torch", "torchvision"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(file_name: str) -> dict[str, str]:
    """``{package: its comment}`` for each requirement line of a requirements file."""
    found = {}
    for line in (ROOT / file_name).read_text(encoding="utf-8").splitlines():
        requirement, _, comment = line.partition("#")
        requirement = requirement.strip()
        if requirement:
            found[normalized(re.split(r"[=<>!~;\[ ]", requirement)[0])] = comment.strip()
    return found


def top_level_imports(*paths: Path) -> set[str]:
    """Top-level names of every absolute import (module level or inside functions) and ``importorskip``."""
    names = set()
    files = [p for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*.py")))]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                names.add(str(node.args[0].value).split(".")[0])
    return names - set(sys.stdlib_module_names) - {"paragoger", "tests", "__future__"}


@functools.cache
def installed_providers() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def packages_of(import_names: set[str]) -> dict[str, set[str]]:
    """``{import name: the installed packages that provide it}``."""
    providers = installed_providers()
    return {name: {normalized(p) for p in providers.get(name, [name])} for name in import_names}


PRODUCT = top_level_imports(ROOT / "paragoger", ROOT / "app.py")
TESTS = top_level_imports(ROOT / "tests")
RUN_TIME = requirement_lines("requirements.txt")
TEST_ONLY = requirement_lines("requirements-test.txt")


@pytest.mark.parametrize("name", sorted(PRODUCT))
def test_every_import_of_the_app_is_a_run_time_requirement(name):
    packages = packages_of({name})[name]
    assert packages & (set(RUN_TIME) | FROM_TORCH_COMMAND), \
        f"paragoger imports {name} ({packages}): not in requirements.txt"


@pytest.mark.parametrize("name", sorted(TESTS - PRODUCT))
def test_every_import_of_the_tests_is_a_requirement(name):
    packages = packages_of({name})[name]
    assert packages & (set(RUN_TIME) | set(TEST_ONLY) | FROM_TORCH_COMMAND), \
        f"tests import {name} ({packages}): in neither requirements file"


@pytest.mark.parametrize("file_name, lines, imported", [("requirements.txt", RUN_TIME, PRODUCT),
                                                        ("requirements-test.txt", TEST_ONLY, TESTS)])
def test_a_package_nothing_imports_says_why_it_is_there(file_name, lines, imported):
    provided = set().union(*packages_of(imported).values())
    unexplained = [package for package, comment in lines.items() if package not in provided and not comment]
    assert not unexplained, f"{file_name}: nothing imports {unexplained}; remove them or say why on their line"


def test_test_requirements_are_not_run_time_ones():
    assert not set(RUN_TIME) & set(TEST_ONLY)


def test_the_launchers_install_the_test_requirements_for_tests_only():
    """``--test`` installs requirements-test.txt (its own stamp file, so a second run is quick); the app's start
    installs requirements.txt alone."""
    for launcher, test_branch in (("webui.sh", '== "--test" ]]; then'), ("webui.bat", "\n:test\n")):
        text = (ROOT / launcher).read_text(encoding="utf-8")
        branch = text.index(test_branch)
        run_time = text.index("install_requirements requirements.txt")
        tests_only = [m.start() for m in re.finditer("install_requirements requirements-test.txt", text)]
        assert run_time < branch and tests_only and all(at > branch for at in tests_only), launcher
        assert ".requirements-test.sha256" in text, launcher


@pytest.mark.skipif(sys.platform == "win32", reason="webui.sh is the launcher for Linux and macOS")
def test_webui_sh_installs_each_list_once_and_the_test_list_for_tests_only(tmp_path):
    """webui.sh run with a stand-in Python that records what it is asked to do (nothing is installed)."""
    import os
    import subprocess

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls.txt"
    fake = venv / "bin" / "python"
    fake.write_text(f'#!/usr/bin/env bash\necho "$*" >> "{log}"\n', encoding="utf-8")
    fake.chmod(0o755)

    def run(*args) -> list[str]:
        log.write_text("", encoding="utf-8")
        subprocess.run(["bash", str(ROOT / "webui.sh"), *args], check=True, capture_output=True, timeout=60,
                       env={**os.environ, "venv_dir": str(venv)})
        return [line for line in log.read_text(encoding="utf-8").splitlines() if not line.startswith("-c ")]

    pip = "-m pip install --disable-pip-version-check -r"
    assert run() == [f"{pip} requirements.txt", "app.py"]
    assert run("--test", "-k", "x") == [f"{pip} requirements-test.txt", "-m pytest tests -k x"]
    assert run("--test", "-k", "x") == ["-m pytest tests -k x"]  # both lists unchanged: nothing installed
    assert run("--port", "7861") == ["app.py --port 7861"]
