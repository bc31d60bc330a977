"""Installing extensions from a git URL, updating them, and restarting: each test makes a real git repository of a
small extension in a temporary folder and installs it through a file:// URL, as a person would from GitHub."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from paragoger.cli import parse_args
from paragoger.errors import AccessRefusedError, UserError
from paragoger.ext import install

REPO = Path(__file__).resolve().parent.parent

SCRIPT = '''
from paragoger.ext import api


class Hello(api.Script):
    title = "{title}"      # picked from the Script dropdown: listed by /sdapi/v1/scripts
'''


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", *args],
                          cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit_files(repo: Path, files: dict[str, str], message: str) -> str:
    for relative, text in files.items():
        path = repo / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def source_repo(tmp_path):
    """A git repository holding an extension (manifest, a script, an install.py leaving a marker)."""
    repo = tmp_path / "sources" / "hello-ext"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    commit_files(repo, {
        "extension.json": json.dumps({"name": "hello-ext", "version": "1.0", "api_version": "1.0"}),
        "scripts/hello.py": SCRIPT.format(title="Hello from git"),
        "install.py": "open('installed-marker.txt', 'w').write('ran')\n",
    }, "first")
    return repo


def url_of(repo: Path) -> str:
    return repo.resolve().as_uri()  # file:///...


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".installing-")] if folder.exists() else []


# --- install ----------------------------------------------------------------------------------------------------

def test_install_from_a_git_url_lists_it_runs_install_py_and_it_loads_after_restart(start_context, source_repo,
                                                                                    data_dir):
    context = start_context()
    done = install.install(context.extensions, context.options, url_of(source_repo))
    target = data_dir.resolve() / "extensions" / "hello-ext"
    assert done.name == "hello-ext" and done.path == target
    assert done.commit == git(source_repo, "rev-parse", "HEAD")
    assert (target / "scripts" / "hello.py").is_file() and (target / ".git").exists()
    assert (target / "installed-marker.txt").read_text() == "ran"  # install.py ran in the extension's folder
    assert leftovers(target.parent) == []
    assert "Installed 'hello-ext'" in done.message() and "restart" in done.message()

    listed = {item["name"]: item for item in context.extensions.api_list()}["hello-ext"]
    assert listed["status"] == "restart needed"
    assert listed["remote"] == url_of(source_repo) and listed["branch"] == "main"
    assert listed["commit_hash"] == done.commit
    assert "Hello from git" not in context.scripts.api_list()["txt2img"]  # not loaded in this run

    from paragoger.ui.extensions import extensions_table_html

    table = extensions_table_html(context)
    assert "hello-ext" in table and "restart needed" in table and done.commit[:8] in table

    restarted = start_context()
    assert restarted.extensions.get("hello-ext").status == "loaded"
    assert "hello from git" in restarted.scripts.api_list()["txt2img"]


def test_install_takes_a_branch_and_a_folder_name(start_context, source_repo, data_dir):
    git(source_repo, "checkout", "-q", "-b", "feature")
    commit_files(source_repo, {"FEATURE.txt": "on the branch\n"}, "feature work")
    git(source_repo, "checkout", "-q", "main")
    context = start_context()
    done = install.install(context.extensions, context.options, url_of(source_repo) + "/", branch="feature",
                           name="my-hello")
    assert done.path.name == "my-hello"
    assert (done.path / "FEATURE.txt").read_text() == "on the branch\n"
    assert context.extensions.get("my-hello") is not None


@pytest.mark.parametrize("url", ["ftp://example.com/ext.git", "ext::sh -c touch% /tmp/owned", "/tmp/some/folder",
                                 "--upload-pack=touch /tmp/owned", "", "c:\\ext"])
def test_urls_that_are_not_http_git_ssh_or_file_are_refused(start_context, url, data_dir):
    context = start_context()
    with pytest.raises(UserError) as refused:
        install.install(context.extensions, context.options, url)
    assert refused.value.key in ("extension_url_refused", "extension_url_missing")
    assert not (data_dir / "extensions").exists() or list((data_dir / "extensions").iterdir()) == []


@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", "a\\b", ".hidden", "_private", "x..y"])
def test_folder_names_that_leave_the_extensions_folder_or_would_never_load_are_refused(start_context, source_repo,
                                                                                      tmp_path, name):
    context = start_context()
    with pytest.raises(UserError, match="cannot be an extension folder name"):
        install.install(context.extensions, context.options, url_of(source_repo), name=name)
    assert not (tmp_path / "data" / "escaped").exists() and not (tmp_path / "escaped").exists()


def test_an_existing_folder_is_never_replaced(start_context, source_repo, data_dir):
    context = start_context()
    install.install(context.extensions, context.options, url_of(source_repo))
    (data_dir / "extensions" / "hello-ext" / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="already exists"):
        install.install(context.extensions, context.options, url_of(source_repo))
    assert (data_dir / "extensions" / "hello-ext" / "mine.txt").read_text() == "keep me"
    assert leftovers(data_dir / "extensions") == []


def test_git_failure_is_reported_with_gits_own_words_and_leaves_nothing_behind(start_context, tmp_path, data_dir):
    context = start_context()
    with pytest.raises(UserError) as failed:
        install.install(context.extensions, context.options, (tmp_path / "no-such-repo").as_uri())
    assert failed.value.key == "git_failed"
    assert "git clone failed" in str(failed.value) and "no-such-repo" in str(failed.value)
    assert leftovers(data_dir / "extensions") == [] and context.extensions.get("no-such-repo") is None


# --- update -----------------------------------------------------------------------------------------------------

def test_check_for_updates_and_update_pull_a_new_commit(start_context, source_repo, data_dir):
    context = start_context()
    done = install.install(context.extensions, context.options, url_of(source_repo))
    assert [(c.name, c.behind) for c in install.check_updates(context.extensions, context.options)] == \
           [("hello-ext", 0)]

    second = commit_files(source_repo, {"scripts/hello.py": SCRIPT.format(title="Hello again")}, "second")
    checks = install.check_updates(context.extensions, context.options)
    assert [(c.name, c.behind) for c in checks] == [("hello-ext", 1)]
    assert "1 new commit" in checks[0].message()
    assert git(done.path, "rev-parse", "HEAD") == done.commit  # checking changes nothing

    updated = install.update(context.extensions, context.options, "hello-ext")
    assert (updated.old, updated.new) == (done.commit, second)
    assert "Hello again" in (done.path / "scripts" / "hello.py").read_text()
    assert "updated" in updated.message() and "after a restart" in updated.message()
    again = install.update(context.extensions, context.options, "hello-ext")
    assert "already up to date" in again.message()

    assert "hello again" in start_context().scripts.api_list()["txt2img"]


def test_update_refuses_unknown_names_and_folders_that_are_not_git_checkouts(start_context, data_dir):
    (data_dir / "extensions" / "plain").mkdir(parents=True)
    context = start_context()
    with pytest.raises(UserError, match="not a git checkout"):
        install.update(context.extensions, context.options, "plain")
    with pytest.raises(UserError, match="No extension named"):
        install.update(context.extensions, context.options, "nope")
    assert install.check_updates(context.extensions, context.options) == []


# --- who may: listening beyond this machine -------------------------------------------------------------------

@pytest.mark.parametrize("flags, refused", [
    ([], False), (["--server-name", "localhost"], False), (["--server-name", "127.0.0.1"], False),
    (["--listen"], True), (["--share"], True), (["--server-name", "192.168.1.20"], True),
    (["--listen", "--enable-insecure-extension-access"], False),
])
def test_install_update_and_restart_are_refused_beyond_localhost_unless_allowed(flags, refused):
    options = parse_args(flags, env={})
    if refused:
        with pytest.raises(AccessRefusedError, match="--enable-insecure-extension-access") as err:
            install.check_access(options)
        assert err.value.status == 403
    else:
        install.check_access(options)


def test_listening_app_refuses_install_and_the_flag_allows_it(start_context, source_repo, data_dir):
    listening = start_context("--listen")
    with pytest.raises(AccessRefusedError, match="listens on 0.0.0.0"):
        install.install(listening.extensions, listening.options, url_of(source_repo))
    with pytest.raises(AccessRefusedError):
        install.update(listening.extensions, listening.options, "hello-ext")
    assert not (data_dir / "extensions" / "hello-ext").exists()
    allowed = start_context("--listen", "--enable-insecure-extension-access")
    assert install.install(allowed.extensions, allowed.options, url_of(source_repo)).name == "hello-ext"


def test_restart_route_is_refused_when_listening_and_unavailable_without_app_py(start_context, serve_app):
    listening = serve_app(start_context("--listen"))
    answer = httpx.post(listening + "/sdapi/v1/server-restart", timeout=30)
    assert answer.status_code == 403 and "--enable-insecure-extension-access" in answer.json()["detail"]
    local = serve_app(start_context())  # a server the tests started, not app.py: it cannot re-exec itself
    answer = httpx.post(local + "/sdapi/v1/server-restart", timeout=30)
    assert answer.status_code == 400 and "only the app started with app.py" in answer.json()["detail"]


def test_extensions_tab_shows_why_its_controls_are_off(start_context):
    from paragoger.ui.app import build_ui

    demo = build_ui(start_context("--share"))
    by_id = {getattr(block, "elem_id", None): block for block in demo.blocks.values()}
    assert "--enable-insecure-extension-access" in by_id["extensions_refused"].value
    for elem_id in ("extension_install_button", "extensions_update", "extensions_check",
                    "extensions_apply_restart"):
        assert by_id[elem_id].interactive is False, elem_id
    assert by_id["extensions_apply"].interactive is not False  # switching on/off for the next start stays


@pytest.mark.parametrize("flag", ["--disable-all-extensions", "--disable-extra-extensions"])
def test_disable_extension_flags_load_none(start_context, source_repo, flag):
    first = start_context()
    install.install(first.extensions, first.options, url_of(source_repo))
    context = start_context(flag)
    ext = context.extensions.get("hello-ext")
    assert ext.status == "disabled" and flag in ext.error
    assert "hello from git" not in context.scripts.api_list()["txt2img"]
    assert ext.enabled  # the saved choice is untouched: without the flag it loads again
    assert start_context().extensions.get("hello-ext").status == "loaded"


# --- restart for real: app.py as a subprocess -------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate, process, what: str, tries: int = 900):
    """Poll until ``predicate()`` is true (each try waits up to a second for an answer)."""
    for _ in range(tries):
        assert process.poll() is None, f"app exited with {process.returncode} while waiting for {what}"
        try:
            if predicate():
                return
        except httpx.TransportError:
            pass
        import time

        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what}")


def test_restart_waits_until_the_queue_is_idle():
    """What a restart waits for before the server goes down: no job running and none waiting."""
    import threading

    from paragoger.core.jobs import JobQueue
    from paragoger.core.payloads import WorkerCall

    release = threading.Event()
    queue = JobQueue(lambda job: release.wait(60))
    try:
        running, waiting = (queue.submit(WorkerCall(lambda job: None)) for _ in range(2))
        assert queue.wait_idle(timeout=0) is False
        release.set()
        assert queue.wait_idle(timeout=60) is True
        assert running.is_finished and waiting.is_finished
    finally:
        queue.stop()


@pytest.mark.slow
def test_restart_re_execs_the_app_and_loads_the_newly_enabled_extension(data_dir, source_repo, tmp_path):
    from paragoger.ext.loader import ExtensionManager

    extensions = data_dir / "extensions"
    extensions.mkdir(exist_ok=True)
    git(extensions, "clone", "-q", url_of(source_repo), "hello-ext")
    state = ExtensionManager([extensions], state_file=data_dir / "extensions.json", samplers=None,
                             builtin_scripts=False)
    state.set_enabled({"hello-ext": False})
    port = _free_port()
    log = (tmp_path / "app.log").open("w")
    env = {**os.environ, "COMMANDLINE_ARGS": ""}
    process = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--data-dir", str(data_dir), "--port",
                                str(port), "--nowebui"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/sdapi/v1", timeout=10) as api:
            def scripts():
                return api.get("/scripts").json()["txt2img"]

            _wait_for(lambda: api.get("/scripts").status_code == 200, process, "the first start")
            assert "hello from git" not in scripts()

            state.set_enabled({"hello-ext": True})  # what the tab's checkboxes save
            long_job = api.post("/txt2img", json={"prompt": "long", "steps": 150, "width": 512, "height": 512,
                                                  "async": True}).json()["job_id"]
            _wait_for(lambda: api.get(f"/jobs/{long_job}").json()["state"] == "running", process, "the job")
            answer = api.post("/server-restart")
            assert answer.status_code == 200 and "Restarting" in answer.json()["detail"]
            # Until the queue is idle the app keeps serving: progress and interrupt still reach the running job,
            # and new work is refused with a reason.
            assert api.get("/progress").json()["state"]["job"] == long_job
            refused = api.post("/txt2img", json={"prompt": "more", "steps": 1, "width": 64, "height": 64})
            assert refused.status_code == 503 and "restarting" in refused.json()["detail"]
            assert api.post("/interrupt").status_code == 200
            _wait_for(lambda: "hello from git" in scripts(), process, "the restarted app")
            assert process.poll() is None  # the same process, re-executed in place

            assert api.post("/server-stop").status_code == 200
            assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        log.close()
    assert "Restarting:" in (tmp_path / "app.log").read_text()


# --- in the page ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_install_through_the_extensions_tab(open_page, start_context, source_repo):
    from playwright.sync_api import expect

    page = open_page(start_context())
    page.click("#tab_extensions-button")
    page.click("#extensions_install_tab-button")
    page.fill("#extension_install_url input, #extension_install_url textarea", url_of(source_repo))
    page.click("#extension_install_button")
    expect(page.locator("#extension_install_result")).to_contain_text("Installed 'hello-ext'", timeout=60_000)
    expect(page.locator("#extension_install_result")).to_contain_text("Apply and restart")
    page.click("#extensions_installed_tab-button")
    expect(page.locator("#extensions_table")).to_contain_text("restart needed")
    expect(page.locator("#extensions_enabled")).to_contain_text("hello-ext")


@pytest.mark.slow
def test_apply_and_restart_from_the_extensions_tab_reloads_the_page_with_the_extension_on(data_dir, tmp_path):
    """Tick a switched-off extension, press Apply and restart: the app restarts itself and the page reloads by
    itself, showing the extension loaded and its script in the txt2img tab."""
    import shutil

    from playwright.sync_api import expect, sync_playwright

    from paragoger.ext.loader import ExtensionManager
    from tests.conftest import CHROMIUM_ARGS

    extensions = data_dir / "extensions"
    shutil.copytree(REPO / "extensions" / "example", extensions / "example")
    ExtensionManager([extensions], state_file=data_dir / "extensions.json", samplers=None,
                     builtin_scripts=False).set_enabled({"example": False})
    port = _free_port()
    log = (tmp_path / "app.log").open("w")
    process = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--data-dir", str(data_dir), "--port",
                                str(port)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "COMMANDLINE_ARGS": ""})
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(lambda: httpx.get(url + "sdapi/v1/scripts").status_code == 200, process, "the first start")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                                 args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            page.wait_for_selector("#txt2img_prompt textarea", timeout=60_000)
            page.click("#tab_extensions-button")
            expect(page.locator("#extensions_installed")).to_contain_text("disabled")
            page.locator("#extensions_enabled").get_by_label("example").check()
            page.evaluate("window.beforeRestart = true")
            page.click("#extensions_apply_restart")
            expect(page.locator("#extensions_result")).to_contain_text("Restarting", timeout=30_000)
            # the page reloads by itself once the new process answers
            page.wait_for_function("!window.beforeRestart && document.querySelector('#txt2img_prompt textarea')",
                                   timeout=180_000, polling=500)
            page.wait_for_timeout(500)
            page.click("#tab_extensions-button")
            expect(page.locator("#extensions_installed")).to_contain_text("loaded")
            browser.close()
        assert process.poll() is None
        assert "example stamp" in [s["name"] for s in httpx.get(url + "sdapi/v1/script-info").json()]
        # server-kill ends the process at once (A1111's route), with nothing waited for
        try:
            httpx.post(url + "sdapi/v1/server-kill", timeout=30)
        except httpx.TransportError:
            pass  # the process may be gone before the answer is sent
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        process.wait(30)
        log.close()
