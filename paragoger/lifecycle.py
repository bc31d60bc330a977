"""Restart and stop, as asked from the Extensions tab or POST /sdapi/v1/server-restart (-stop, -kill).

The AppContext owns one ServerControl; ``server.serve`` attaches the running uvicorn server to it. A request
marks what to do; the queue then takes no new jobs, and the server keeps serving while the jobs already queued
finish (so the page still shows their progress and Interrupt still reaches them). Once the queue is idle uvicorn
is told to exit: it stops accepting connections and lets the responses in flight finish. ``after_serve`` then,
for a restart, replaces this process with a fresh one started with the same interpreter and command line
(``os.execv``: same process id, same terminal).
Everything is built again from the flags: extensions switched on, installed or updated load now.
"""
from __future__ import annotations

import os
import sys
import threading
import time

from paragoger.errors import UnavailableError, UserError

RESTART, STOP = "restart", "stop"
ANSWER_GRACE_S = 1.5


class ServerControl:
    def __init__(self, queue=None):
        self.queue = queue  # the JobQueue that must be idle before the server goes down
        self.started_at = time.time()
        self.action: str | None = None
        self._server = None
        self._lock = threading.Lock()
        self._on_shutdown: list = []

    def attach(self, server) -> None:
        """``server``: the uvicorn.Server about to run (anything with ``should_exit``)."""
        self._server = server

    def on_shutdown(self, fn) -> None:
        """``fn()`` runs in the server's event loop when it starts shutting down (the page closes its
        never-ending streams there, so shutting down does not wait for them)."""
        self._on_shutdown.append(fn)

    def shutting_down(self) -> None:
        for fn in self._on_shutdown:
            fn()

    @property
    def can_restart(self) -> bool:
        return self._server is not None

    def request(self, action: str) -> None:
        """Ask the server to stop serving, then restart or stop (see ``after_serve``)."""
        if action not in (RESTART, STOP):
            raise ValueError(action)
        with self._lock:
            if self._server is None:
                raise UserError("restart_unavailable")
            first = self.action is None
            if self.action != STOP:  # a stop asked for wins over a restart
                self.action = action
        if not first:
            return
        if self.queue is None:
            self._server.should_exit = True
            return
        self.queue.refuse_new(UnavailableError("server_restarting_busy"))
        threading.Thread(target=self._exit_when_idle, name="paragoger-restart", daemon=True).start()

    def _exit_when_idle(self) -> None:
        if not self.queue.wait_idle(timeout=0):
            print(f"Waiting for running jobs to finish before the {self.action}…", flush=True)
        self.queue.wait_idle()
        # Let the answer to the click or request that asked for this reach the page first: the page's event
        # streams are closed as soon as shutting down starts, and without that answer the page would not know
        # to wait for the restarted app and reload.
        time.sleep(ANSWER_GRACE_S)
        self._server.should_exit = True

    def kill(self) -> None:
        """POST /sdapi/v1/server-kill: end the process at once, as A1111 does (nothing is waited for)."""
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    def after_serve(self, context) -> None:
        """Called once the server has stopped serving: wait for the queue, then restart or simply return."""
        if self.action is None:
            return
        context.queue.wait_idle()
        context.close()
        if self.action == RESTART:
            argv = [sys.executable, *sys.orig_argv[1:]]
            print("Restarting: " + " ".join(argv), flush=True)
            sys.stderr.flush()
            os.execv(sys.executable, argv)
