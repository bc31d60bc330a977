"""git, run as a subprocess (never through a shell), for extensions that are git checkouts: clone, fetch,
fast-forward, and what a checkout is (remote, branch, commit).

git only speaks http(s), git, ssh and file here (``GIT_ALLOW_PROTOCOL``), never asks for a password on a terminal
(``GIT_TERMINAL_PROMPT=0``; ssh in batch mode), and every call has a timeout. A failure raises a UserError that
carries git's own stderr.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from paragoger.errors import UserError

ALLOWED_PROTOCOLS = ("http", "https", "git", "ssh", "file")
TIMEOUT_S = 300


@dataclass(frozen=True)
class GitInfo:
    remote: str | None
    branch: str | None
    commit: str
    commit_date: int | None  # seconds since the epoch

    @property
    def short(self) -> str:
        return self.commit[:8]


def _env() -> dict[str, str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": ":".join(ALLOWED_PROTOCOLS),
           "LC_ALL": "C"}
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def run(args: list[str], *, cwd: Path | None = None, action: str, timeout: float = TIMEOUT_S) -> str:
    """``git <args>``; its stdout, or a UserError naming ``action`` with git's stderr."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env=_env(), stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise UserError("git_missing") from None
    except subprocess.TimeoutExpired as err:
        raise UserError("git_timeout", action=action, seconds=int(timeout),
                        stderr=_text(err.stderr).strip()[-2000:]) from None
    if done.returncode != 0:
        raise UserError("git_failed", action=action, code=done.returncode,
                        stderr=(done.stderr or done.stdout or "").strip()[-2000:])
    return done.stdout


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def is_checkout(path: Path) -> bool:
    """A folder that is itself the top of a git checkout (not merely inside one, like the app's own repo)."""
    return (Path(path) / ".git").exists()


def clone(url: str, target: Path, *, branch: str | None = None, timeout: float = TIMEOUT_S) -> None:
    """A shallow clone of ``url`` into the (empty or missing) folder ``target``."""
    args = ["clone", "--depth", "1", "--no-recurse-submodules"]
    if branch:
        args.append(f"--branch={branch}")
    run([*args, "--", url, str(target)], action="clone", timeout=timeout)


def info(path: Path) -> GitInfo | None:
    """Remote, branch and commit of the checkout at ``path``; None when it is not a checkout or git cannot tell."""
    if not is_checkout(path):
        return None
    try:
        commit, _, date = run(["log", "-1", "--format=%H %ct"], cwd=path, action="log", timeout=30) \
            .strip().partition(" ")
        branch = run(["rev-parse", "--abbrev-ref", "HEAD"], cwd=path, action="rev-parse", timeout=30).strip()
        remotes = run(["remote"], cwd=path, action="remote", timeout=30).split()
        remote = None
        if remotes:
            name = "origin" if "origin" in remotes else remotes[0]
            remote = run(["remote", "get-url", name], cwd=path, action="remote", timeout=30).strip() or None
    except UserError:
        return None
    return GitInfo(remote=without_password(remote), branch=None if branch == "HEAD" else branch, commit=commit,
                   commit_date=int(date) if date.isdigit() else None)


def without_password(url: str | None) -> str | None:
    """``https://user:token@host/x`` -> ``https://user@host/x``: remotes are shown on the page and in the API."""
    if not url or "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}@{host}" if parts.username else host))


def fetch(path: Path, *, timeout: float = TIMEOUT_S) -> int:
    """Fetch the upstream of the current branch; how many commits it is ahead of the checkout."""
    run(["fetch", "--quiet"], cwd=path, action="fetch", timeout=timeout)
    return int(run(["rev-list", "--count", "HEAD..@{upstream}"], cwd=path, action="compare", timeout=30).strip())


def fast_forward(path: Path, *, timeout: float = TIMEOUT_S) -> None:
    """Move the checkout to its fetched upstream; refused by git when local commits or changes are in the way."""
    run(["merge", "--ff-only", "@{upstream}"], cwd=path, action="fast-forward", timeout=timeout)


def head(path: Path) -> str:
    return run(["rev-parse", "HEAD"], cwd=path, action="rev-parse", timeout=30).strip()
