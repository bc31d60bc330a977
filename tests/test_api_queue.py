"""The one queue under load: concurrent clients, arrival order, distinct outputs, no lost file, interrupt while
queued and while running, and a bounded queue answering 429."""
import json
import threading
import time

import httpx
import pytest
from PIL import Image

from paragoger.cli import parse_args
from paragoger.context import AppContext

BODY = {"prompt": "a red bicycle", "steps": 2, "width": 64, "height": 64, "sampler_name": "Euler"}
LONG = {**BODY, "steps": 150, "seed": 1}


def wait_until(predicate, timeout=60):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def server(app_context, serve_app):
    url = serve_app(app_context)
    with httpx.Client(base_url=url + "/sdapi/v1", timeout=180) as client:
        yield app_context, client


def block_the_worker(context, api):
    """An async long job that is running: what comes next waits behind it."""
    job_id = api.post("/txt2img", json={**LONG, "async": True}).json()["job_id"]
    wait_until(lambda: context.queue.current is not None and context.queue.current.progress.step >= 1)
    return job_id


def test_ten_concurrent_clients_all_finish_in_arrival_order_with_distinct_saved_pictures(server):
    context, api = server
    blocker = block_the_worker(context, api)
    responses: dict[int, httpx.Response] = {}

    def client(i):
        with httpx.Client(base_url=str(api.base_url), timeout=180) as own:
            responses[i] = own.post("/txt2img", json={**BODY, "seed": 1000 + i, "save_images": True})

    threads = []
    for i in range(10):   # arrival order is defined: each waits until the one before is in the queue
        thread = threading.Thread(target=client, args=(i,))
        thread.start()
        threads.append(thread)
        wait_until(lambda: context.queue.waiting_count() == i + 1)
    progress = api.get("/progress").json()
    assert progress["state"]["queue_size"] == 10
    api.delete(f"/jobs/{blocker}")
    for thread in threads:
        thread.join(180)
    assert sorted(responses) == list(range(10))
    assert all(r.status_code == 200 for r in responses.values())
    seeds = [json.loads(responses[i].json()["info"])["seed"] for i in range(10)]
    assert seeds == [1000 + i for i in range(10)]
    assert len({responses[i].json()["images"][0] for i in range(10)}) == 10
    # every picture saved, numbered in the order the jobs ran, which is the order they arrived in
    files = sorted((context.paths.outputs_dir / "txt2img-images").rglob("*.png"))
    assert len(files) == 10
    assert [int(f.stem.split("-")[1]) for f in files] == seeds
    assert [int(f.stem.split("-")[0]) for f in files] == sorted(int(f.stem.split("-")[0]) for f in files)
    for path in files:
        Image.open(path).load()
    assert context.queue.current is None and context.queue.waiting_count() == 0


def test_interrupt_acts_on_the_running_job_only_and_queued_jobs_can_be_cancelled(server):
    context, api = server
    blocker = block_the_worker(context, api)
    kept = api.post("/txt2img", json={**BODY, "seed": 3, "async": True}).json()["job_id"]
    dropped = api.post("/txt2img", json={**BODY, "seed": 4, "async": True}).json()["job_id"]
    assert api.delete(f"/jobs/{dropped}").json()["state"] == "cancelled"   # interrupt while queued
    assert api.post("/interrupt").status_code == 200                       # interrupt while running
    wait_until(lambda: api.get(f"/jobs/{kept}").json()["state"] == "done")
    blocked = api.get(f"/jobs/{blocker}").json()
    assert blocked["state"] == "done" and blocked["interrupted"] is True
    kept_report = api.get(f"/jobs/{kept}").json()
    assert kept_report["interrupted"] is False and json.loads(kept_report["result"]["info"])["seed"] == 3
    assert api.get(f"/jobs/{dropped}").json()["state"] == "cancelled"


def test_a_full_queue_answers_429_with_a_reason(data_dir, serve_app):
    context = AppContext(parse_args(["--data-dir", str(data_dir), "--queue-size", "2", "--nowebui"], env={}))
    try:
        api = httpx.Client(base_url=serve_app(context) + "/sdapi/v1", timeout=120)
        blocker = block_the_worker(context, api)
        waiting = [api.post("/txt2img", json={**BODY, "async": True}) for _ in range(2)]
        assert all(r.status_code == 202 for r in waiting)
        for body in ({**BODY, "async": True}, BODY):
            full = api.post("/txt2img", json=body)
            assert full.status_code == 429 and "queue is full" in full.json()["detail"]
        api.delete(f"/jobs/{blocker}")
        for r in waiting:
            job_id = r.json()["job_id"]
            wait_until(lambda: api.get(f"/jobs/{job_id}").json()["state"] == "done")
        assert api.post("/txt2img", json=BODY).status_code == 200
    finally:
        context.close()
