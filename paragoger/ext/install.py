"""Installing an extension from a git URL, updating installed ones, and the rule that says when either (and a
restart from the page or the API) is allowed. No Gradio here: the Extensions tab and the routes call these.

Install: a shallow ``git clone`` into a hidden temporary folder beside the target, then one rename to
``<first extensions folder>/<name>``, so a half-cloned folder is never seen as an extension. Then its install.py
runs as it would at start, and the extension is listed as "restart needed": it loads at the next start.
Update: ``git fetch`` and a fast-forward to the upstream branch; the new version loads at the next start.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from paragoger import messages
from paragoger.cli import listens_beyond_localhost
from paragoger.errors import AccessRefusedError, NotFoundError, UserError
from paragoger.ext import git

_SCP_LIKE = re.compile(r"^[\w.+-]+@[\w.-]+:(?!/)\S")  # git@host:owner/repo.git (ssh)


# --- the rule ---------------------------------------------------------------------------------------------------

def check_access(options) -> None:
    """The one place that decides whether installing, updating and restarting are allowed: refused (403) while
    the app listens beyond this machine, unless started with --enable-insecure-extension-access."""
    if options.enable_insecure_extension_access or not listens_beyond_localhost(options):
        return
    where = (messages.render("extension_access_where_share") if options.share
             else messages.render("extension_access_where_host", host=options.host))
    raise AccessRefusedError("extension_access_refused", where=where)


def access_refusal(options) -> str:
    """Why the controls are off, or "" when they are allowed (for the page)."""
    try:
        check_access(options)
    except UserError as err:
        return str(err)
    return ""


# --- names and URLs ---------------------------------------------------------------------------------------------

def check_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise UserError("extension_url_missing")
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in git.ALLOWED_PROTOCOLS or (not scheme and _SCP_LIKE.match(url)):
        return url
    raise UserError("extension_url_refused", url=url)


def name_from_url(url: str) -> str:
    path = urlsplit(url).path if "://" in url else url.partition(":")[2]
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last[:-4] if last.endswith(".git") else last


def check_name(name: str) -> str:
    name = (name or "").strip()
    bad = (not name or ".." in name or name.startswith((".", "_"))
           or any(sep and sep in name for sep in ("/", "\\", os.sep, os.altsep))
           or any(ord(ch) < 32 for ch in name))
    if bad:
        raise UserError("extension_name_invalid", name=name)
    return name


def _check_branch(branch: str | None) -> str | None:
    branch = (branch or "").strip() or None
    if branch is not None and (branch.startswith("-") or any(ch.isspace() or ord(ch) < 32 for ch in branch)):
        raise UserError("extension_branch_invalid", branch=branch)
    return branch


# --- install ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Installed:
    name: str
    path: Path
    commit: str
    status: str
    error: str   # install.py's failure with its output, or ""

    def message(self) -> str:
        if self.error:
            return messages.render("extension_install_script_failed", name=self.name, path=self.path,
                                   output=self.error)
        return messages.render("extension_installed", name=self.name, commit=self.commit[:8], path=self.path)


def install(manager, options, url: str, *, branch: str | None = None, name: str | None = None,
            timeout: float = git.TIMEOUT_S) -> Installed:
    """Clone ``url`` into the first extensions folder as ``name`` (default: from the URL) and run its
    install.py; it loads at the next start."""
    check_access(options)
    url = check_url(url)
    name = check_name(name or name_from_url(url))
    branch = _check_branch(branch)
    root = manager.dirs[0]
    target = root / name
    _refuse_existing(manager, name)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".installing-{name}-", dir=root))
    try:
        git.clone(url, staging, branch=branch, timeout=timeout)
        _refuse_existing(manager, name)  # something may have taken the name while git ran
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    ext = manager.add_installed(target)
    return Installed(name=name, path=target, commit=git.head(target), status=ext.status, error=ext.error)


def _refuse_existing(manager, name: str) -> None:
    for folder in manager.dirs:
        if (folder / name).exists():
            raise UserError("extension_exists", name=name, path=folder / name)


# --- updates ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UpdateCheck:
    name: str
    remote: str | None
    behind: int | None   # new commits upstream; None when the check failed
    error: str = ""

    def message(self) -> str:
        if self.error:
            return messages.render("extension_check_failed", name=self.name, reason=self.error)
        if self.behind:
            return messages.render("extension_has_news", name=self.name, count=self.behind, remote=self.remote)
        return messages.render("extension_no_news", name=self.name)


@dataclass(frozen=True)
class Updated:
    name: str
    old: str
    new: str

    def message(self) -> str:
        if self.old == self.new:
            return messages.render("extension_up_to_date", name=self.name, commit=self.new[:8])
        return messages.render("extension_updated", name=self.name, old=self.old[:8], new=self.new[:8])


def checkouts(manager) -> list:
    """The listed extensions that are git checkouts (the ones that can be updated from here)."""
    return [ext for ext in manager.extensions if git.is_checkout(ext.path)]


def check_updates(manager, options, *, timeout: float = git.TIMEOUT_S) -> list[UpdateCheck]:
    """Fetch every git checkout and say which have new commits upstream (nothing is changed in the folders)."""
    check_access(options)
    found = []
    for ext in checkouts(manager):
        checkout = git.info(ext.path)
        remote = checkout.remote if checkout else None
        try:
            found.append(UpdateCheck(ext.name, remote, git.fetch(ext.path, timeout=timeout)))
        except UserError as err:
            found.append(UpdateCheck(ext.name, remote, None, str(err)))
    return found


def update(manager, options, name: str, *, timeout: float = git.TIMEOUT_S) -> Updated:
    """Fetch and fast-forward one installed extension; the new version loads at the next start."""
    check_access(options)
    ext = manager.get(name)
    if ext is None:
        raise NotFoundError("extension_not_found", name=name)
    if not git.is_checkout(ext.path):
        raise UserError("extension_not_git", name=name, path=ext.path)
    old = git.head(ext.path)
    if git.fetch(ext.path, timeout=timeout):
        git.fast_forward(ext.path, timeout=timeout)
    new = git.head(ext.path)
    done = Updated(name, old, new)
    if old != new:
        ext.note = done.message()
    return done
