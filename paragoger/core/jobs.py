"""Jobs and the one queue that runs them: UI and API requests wait in the same line for the device.

A Job carries a typed payload (``core/payloads.py``: a generation, a model switch, extras, ...) and the kind that
payload names, its progress (what the progress bar and /sdapi/v1/progress show), its own interrupt and skip flags,
and finally its result or error. The JobQueue runs jobs one at a time on a worker thread; ``JobHandlers`` picks
the function that runs each payload type.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import InitVar, dataclass, field
from typing import Any, Callable, Protocol

from paragoger.errors import QueueFullError, UserError

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


class Payload(Protocol):
    """What a job carries (see ``core/payloads.py``): any object that names its kind of work."""

    @property
    def kind(self) -> str: ...


@dataclass
class Progress:
    """What a person watching the job sees. Updated by the engine from the worker thread."""

    job_no: int = 0            # which batch (n_iter) is being sampled, 0-based
    job_count: int = 1
    step: int = 0              # sampling step within the current batch
    steps: int = 0
    textinfo: str = ""
    preview: Any = None        # PIL image or None
    preview_id: int = 0        # increases with each new preview, so pollers send each one once

    def fraction(self) -> float:
        if self.steps <= 0 or self.job_count <= 0:
            return 0.0
        return min(1.0, (self.job_no + self.step / self.steps) / self.job_count)


@dataclass(eq=False)  # jobs are compared by identity: comparing requests (pictures) would be slow
class Job:
    """``payload``: the work (``core/payloads.py``); None only for a job made outside the queue to follow one
    generation's progress (``Engine.generate(request)``, the benchmark). ``Job(request=r)`` is the job of the
    generation ``r``: the same as ``Job(GenerationJob(r))``."""

    payload: Payload | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: Progress = field(default_factory=Progress)
    result: Any = None
    error: BaseException | None = None
    error_trace: str = ""
    interrupted: bool = False
    skipped: bool = False
    meta: dict = field(default_factory=dict)   # what the submitter needs later (e.g. the API body)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _callbacks: list = field(default_factory=list, repr=False)
    _callback_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    request: InitVar[Any] = None

    def __post_init__(self, request):
        if self.payload is None and request is not None:
            from paragoger.core.payloads import GenerationJob

            self.payload = GenerationJob(request)

    @property
    def kind(self) -> str:
        """What kind of work this is ("txt2img", "img2img", "load-model", "extras", ...), from the payload."""
        return self.payload.kind if self.payload is not None else ""

    # Control, called from any thread.
    def interrupt(self) -> None:
        self.interrupted = True

    def skip(self) -> None:
        self.skipped = True

    def take_skip(self) -> bool:
        """True once per skip request: the engine ends the current image and goes on with the batch."""
        if self.skipped:
            self.skipped = False
            return True
        return False

    # Progress, called by the engine.
    def set_steps(self, job_no: int, job_count: int, steps: int) -> None:
        self.progress.job_no, self.progress.job_count = job_no, job_count
        self.progress.step, self.progress.steps = 0, steps

    def set_step(self, step: int, preview=None) -> None:
        self.progress.step = step
        if preview is not None:
            self.progress.preview = preview
            self.progress.preview_id += 1

    def eta_seconds(self) -> float | None:
        fraction = self.progress.fraction()
        if self.started is None or fraction <= 0:
            return None
        elapsed = time.time() - self.started
        return max(0.0, elapsed / fraction - elapsed)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        """``fn()`` once the job has finished (at once when it already has), from the thread that finishes it:
        an HTTP route answers as soon as its job ends instead of polling."""
        with self._callback_lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        fn()

    def _finish(self) -> None:
        with self._callback_lock:
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn()
            except Exception:  # a waiter that went away (its event loop closed) must not stop the worker
                traceback.print_exc()

    @property
    def is_finished(self) -> bool:
        return self._done.is_set()


class JobHandlers:
    """Which function runs each payload type: ``register(GenerationJob, fn)``, where ``fn(payload, job)`` returns
    the job's result. Called with a job, it runs the handler of the job's payload type (the queue's runner)."""

    def __init__(self):
        self._handlers: dict[type, Callable[[Any, Job], Any]] = {}

    def register(self, payload_type: type, handler: Callable[[Any, Job], Any]) -> None:
        self._handlers[payload_type] = handler

    def __call__(self, job: Job) -> Any:
        handler = self._handlers.get(type(job.payload))
        if handler is None:
            raise TypeError(f"no handler registered for {type(job.payload).__name__} jobs")
        return handler(job.payload, job)


class JobQueue:
    """One worker thread per device, running ``runner(job)`` (usually a ``JobHandlers``) for each job in arrival
    order."""

    def __init__(self, runner: Callable[[Job], Any], *, max_waiting: int = 64, keep_finished: int = 200):
        self._runner = runner
        self._max_waiting = max_waiting
        self._waiting: deque[Job] = deque()
        self._finished: deque[Job] = deque(maxlen=keep_finished)
        self._jobs: dict[str, Job] = {}
        self._current: Job | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._refusal: UserError | None = None  # set while the app restarts: new jobs are refused with it
        self._worker = threading.Thread(target=self._work, name="paragoger-worker", daemon=True)
        self._worker.start()

    def submit(self, payload: Payload, meta: dict | None = None) -> Job:
        if not isinstance(getattr(payload, "kind", None), str):
            raise TypeError(f"a job carries a payload that names its kind (paragoger.core.payloads), "
                            f"not {type(payload).__name__}")
        job = Job(payload=payload, meta=dict(meta or {}))
        with self._cond:
            if self._refusal is not None:
                raise self._refusal
            if len(self._waiting) >= self._max_waiting:
                raise QueueFullError("queue_full", size=len(self._waiting))
            self._waiting.append(job)
            self._jobs[job.id] = job
            self._cond.notify_all()
        return job

    def run(self, payload: Payload, timeout: float | None = None) -> Job:
        """Submit and wait: the synchronous A1111 routes use this."""
        job = self.submit(payload)
        job.wait(timeout)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    @property
    def current(self) -> Job | None:
        return self._current

    def position(self, job: Job) -> int:
        """0 while running, 1.. while waiting (1 = next), -1 when finished."""
        with self._cond:
            if job is self._current:
                return 0
            try:
                return self._waiting.index(job) + 1
            except ValueError:
                return -1

    def finished(self) -> list[Job]:
        """Recently finished jobs, oldest first."""
        with self._cond:
            return list(self._finished)

    def waiting_count(self) -> int:
        with self._cond:
            return len(self._waiting)

    def cancel(self, job: Job) -> None:
        """A waiting job is removed; a running one is interrupted (it ends after the current step)."""
        with self._cond:
            if job in self._waiting:
                self._waiting.remove(job)
                job.state = CANCELLED
                job.finished = time.time()
                self._finished.append(job)
                job._finish()
                self._cond.notify_all()
                return
        job.interrupt()

    def refuse_new(self, error: UserError) -> None:
        """From now on ``submit`` raises ``error`` (a restart lets the jobs already here finish, takes no more)."""
        with self._cond:
            self._refusal = error

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job runs or waits (restart waits for this); False when ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._current is None and not self._waiting, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._waiting.popleft()
                self._current = job
            job.state, job.started = RUNNING, time.time()
            try:
                job.result = self._runner(job)
                job.state = DONE
            except UserError as err:
                job.error, job.state = err, FAILED
            except BaseException as err:  # the worker must survive anything a job does
                job.error, job.state, job.error_trace = err, FAILED, traceback.format_exc()
                traceback.print_exc()
            finally:
                job.finished = time.time()
                with self._cond:
                    self._current = None
                    self._finished.append(job)
                    # Forget old jobs so a long afternoon of requests does not grow memory.
                    keep = {j.id for j in self._finished} | {j.id for j in self._waiting}
                    for job_id in [k for k in self._jobs if k not in keep]:
                        del self._jobs[job_id]
                    self._cond.notify_all()  # wait_idle
                job._finish()
