"""The one queue that UI and API requests share: order, positions, interrupt, cancel, errors, a full queue; and
jobs that carry typed payloads, each naming its kind."""
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from paragoger.core.jobs import CANCELLED, DONE, FAILED, JobQueue
from paragoger.errors import QueueFullError, UserError


@dataclass(frozen=True)
class Work:
    """A payload for the queue's own tests: a value for the test's runner."""

    value: Any
    kind: ClassVar[str] = "work"


def test_jobs_run_one_at_a_time_in_arrival_order():
    order, running, overlap = [], [0], []
    lock = threading.Lock()

    def runner(job):
        with lock:
            running[0] += 1
            overlap.append(running[0])
        order.append(job.payload.value)
        with lock:
            running[0] -= 1
        return job.payload.value * 2

    queue = JobQueue(runner)
    jobs = [queue.submit(Work(i)) for i in range(10)]
    for job in jobs:
        assert job.wait(10)
    assert order == list(range(10))
    assert max(overlap) == 1
    assert [job.result for job in jobs] == [i * 2 for i in range(10)]
    assert all(job.state == DONE for job in jobs)


def test_waiting_jobs_report_their_position_and_can_be_cancelled():
    release = threading.Event()
    queue = JobQueue(lambda job: release.wait(10))
    first = queue.submit(Work("first"))
    while queue.current is not first:
        time.sleep(0.001)
    second, third = queue.submit(Work("second")), queue.submit(Work("third"))
    assert (queue.position(first), queue.position(second), queue.position(third)) == (0, 1, 2)
    queue.cancel(second)
    assert second.state == CANCELLED and queue.position(third) == 1
    release.set()
    assert third.wait(10) and third.state == DONE


def test_interrupt_reaches_only_the_running_job():
    started = threading.Event()

    def runner(job):
        if job.payload.value != "long":
            return "done"
        started.set()
        while not job.interrupted:
            time.sleep(0.001)
        return "stopped"

    queue = JobQueue(runner)
    running = queue.submit(Work("long"))
    started.wait(5)
    waiting = queue.submit(Work("short"))
    queue.cancel(running)
    assert running.wait(5) and running.result == "stopped"
    assert waiting.wait(5) and waiting.result == "done" and not waiting.interrupted
    queue.stop()


def test_a_failing_job_reports_its_error_and_the_worker_goes_on():
    def runner(job):
        if job.payload.value == "bad":
            raise UserError("size_not_multiple_of_8", width=1, height=1)
        if job.payload.value == "crash":
            raise RuntimeError("boom")
        return "ok"

    queue = JobQueue(runner)
    bad, crash, good = queue.submit(Work("bad")), queue.submit(Work("crash")), queue.submit(Work("good"))
    for job in (bad, crash, good):
        job.wait(5)
    assert bad.state == FAILED and "multiples of 8" in str(bad.error)
    assert crash.state == FAILED and "boom" in crash.error_trace
    assert good.state == DONE


def test_a_full_queue_refuses_with_queue_full():
    release = threading.Event()
    queue = JobQueue(lambda job: release.wait(10), max_waiting=2)
    first = queue.submit(Work(0))
    while queue.current is not first:
        time.sleep(0.001)
    queue.submit(Work(1))
    queue.submit(Work(2))
    with pytest.raises(QueueFullError) as err:
        queue.submit(Work(3))
    assert err.value.status == 429
    release.set()


def test_the_page_shows_a_waiting_request_its_place_and_the_job_running_meanwhile(app_context):
    from paragoger.core.payloads import GenerationJob
    from paragoger.core.request import GenerationRequest
    from paragoger.ui.generation import run_request

    running = app_context.queue.submit(GenerationJob(GenerationRequest(prompt="long", steps=150, width=64, height=64)))
    try:
        while running.progress.step < 1:
            running.wait(0.05)
        updates = run_request(app_context, GenerationRequest(prompt="next", steps=1, width=64, height=64))
        _, status_html, _ = next(updates)
        assert "In queue: position 1" in status_html
        assert "now running: txt2img, step" in status_html and "/150" in status_html
    finally:
        running.interrupt()
    job, *_ = list(updates)[-1]
    assert job.result.images


def test_a_job_names_the_kind_of_work_its_payload_carries(tmp_path):
    from paragoger.core.batch import BatchRequest
    from paragoger.core.extras import ExtrasRequest
    from paragoger.core.payloads import (CaptionJob, ExtrasJob, GenerationJob, Img2ImgBatchJob, ModelSwitch,
                                         WorkerCall)
    from paragoger.core.request import GenerationRequest

    queue = JobQueue(lambda job: None)
    payloads = [GenerationJob(GenerationRequest(mode="txt2img")), GenerationJob(GenerationRequest(mode="img2img")),
                ModelSwitch("model.safetensors"), ExtrasJob(ExtrasRequest()), CaptionJob("clip", None),
                Img2ImgBatchJob(BatchRequest(GenerationRequest(mode="img2img"), tmp_path, tmp_path)),
                WorkerCall(lambda job: None)]
    assert [queue.submit(payload).kind for payload in payloads] == [
        "txt2img", "img2img", "load-model", "extras", "caption", "img2img-batch", "call"]
    with pytest.raises(TypeError, match="GenerationRequest"):
        queue.submit(GenerationRequest())  # a bare request names no kind of work: it goes in a GenerationJob
    queue.stop()


def test_a_new_kind_of_work_plugs_in_with_one_handler_and_shows_its_kind_at_get_jobs(api, app_context):
    @dataclass(frozen=True)
    class Countdown:
        start: int
        kind: ClassVar[str] = "countdown"

    app_context.job_handlers.register(Countdown, lambda payload, job: list(range(payload.start, 0, -1)))
    job = app_context.queue.run(Countdown(3))
    assert job.state == DONE and job.result == [3, 2, 1]
    report = api.get(f"/jobs/{job.id}").json()
    assert (report["kind"], report["state"]) == ("countdown", "done")
    unknown = app_context.queue.run(Work(1))  # no handler registered: the job fails and says why
    assert unknown.state == FAILED and "no handler registered for Work jobs" in str(unknown.error)


def test_a_finished_model_switch_keeps_the_checkpoints_description_never_its_modules(app_context):
    from paragoger.model_manager.components import CheckpointInfo

    info = app_context.select_checkpoint(None)
    [job] = [job for job in app_context.queue.finished() if job.kind == "load-model"]
    assert isinstance(job.result, CheckpointInfo) and job.result is info  # kept for GET /jobs/{id}
    assert app_context.cache.current.info.title == info.title


def test_a_done_callback_runs_when_the_job_ends_and_a_failing_one_does_not_stop_the_queue():
    from paragoger.core.jobs import JobHandlers, JobQueue
    from paragoger.core.payloads import WorkerCall

    handlers = JobHandlers()
    handlers.register(WorkerCall, lambda call, job: call.fn(job))
    queue = JobQueue(handlers)
    try:
        gate, heard = threading.Event(), []
        job = queue.submit(WorkerCall(lambda job: gate.wait(5)))
        job.add_done_callback(lambda: heard.append("first"))
        job.add_done_callback(lambda: 1 / 0)  # e.g. an HTTP waiter whose event loop has closed
        assert heard == [] and not job.is_finished
        gate.set()
        assert job.wait(5)
        time.sleep(0.1)
        assert heard == ["first"]
        late = []
        job.add_done_callback(lambda: late.append(True))  # already finished: called at once
        assert late == [True]
        assert queue.run(WorkerCall(lambda job: "still working")).result == "still working"
    finally:
        queue.stop()
