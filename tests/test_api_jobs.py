"""Beyond A1111: job ids for txt2img/img2img (`"async": true`), their status, result and cancel; clients that
go away from a synchronous request leave no stuck job."""
import base64
import io
import json
import socket
import threading
import time

import httpx
import pytest
from PIL import Image

BODY = {"prompt": "a red bicycle", "steps": 3, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler"}
LONG = {**BODY, "steps": 150}


def wait_state(api, job_id, states, timeout=60, **params):
    deadline = time.time() + timeout
    while time.time() < deadline:
        report = api.get(f"/jobs/{job_id}", params=params).json()
        if report["state"] in states:
            return report
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}: {report}")


def wait_step(api, job_id, step=2, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        report = api.get(f"/jobs/{job_id}").json()
        if report["state"] == "running" and report["sampling_step"] >= step:
            return report
        time.sleep(0.05)
    raise AssertionError("the job never got going")


def test_async_txt2img_answers_a_job_id_and_later_the_same_body_as_the_synchronous_route(api):
    response = api.post("/txt2img", json={**BODY, "async": True})
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    report = wait_state(api, job_id, {"done"})
    assert report["progress"] == 1.0 and report["position"] == -1 and report["error"] is None
    result = report["result"]
    sync = api.post("/txt2img", json=BODY).json()
    assert set(result) == {"images", "parameters", "info"}
    assert result["images"] == sync["images"]  # same seed, same pixels, same infotext
    assert json.loads(result["info"])["infotexts"] == json.loads(sync["info"])["infotexts"]
    assert "async" not in result["parameters"]


def test_a_running_job_shows_progress_eta_and_preview_and_delete_interrupts_it(api):
    job_id = api.post("/txt2img", json={**LONG, "async": True}).json()["job_id"]
    report = wait_step(api, job_id)
    assert report["position"] == 0 and 0 < report["progress"] < 1 and report["sampling_steps"] == 150
    assert report["eta_relative"] >= 0 and report["result"] is None
    queued = api.post("/txt2img", json={**BODY, "async": True}).json()
    assert queued["state"] == "queued" and queued["position"] == 1
    assert api.get(f"/jobs/{queued['job_id']}").json()["position"] == 1
    assert api.delete(f"/jobs/{job_id}").status_code == 200
    report = wait_state(api, job_id, {"done"})
    assert report["interrupted"] is True
    assert json.loads(report["result"]["info"])["interrupted"] is True
    assert wait_state(api, queued["job_id"], {"done"})["result"]["images"]


def test_preview_is_sent_while_running(api):
    job_id = api.post("/txt2img", json={**LONG, "async": True}).json()["job_id"]
    deadline, preview = time.time() + 60, None
    while time.time() < deadline and preview is None:
        report = api.get(f"/jobs/{job_id}").json()
        preview = report["current_image"]
        if report["state"] != "running" and report["state"] != "queued":
            break
        time.sleep(0.05)
    api.delete(f"/jobs/{job_id}")
    if preview is None:
        pytest.skip("previews are off in the default settings")
    Image.open(io.BytesIO(base64.b64decode(preview))).load()
    assert api.get(f"/jobs/{job_id}", params={"skip_current_image": True}).json()["current_image"] is None


def test_deleting_a_waiting_job_removes_it_from_the_queue(api):
    running = api.post("/txt2img", json={**LONG, "async": True}).json()["job_id"]
    wait_step(api, running, 1)
    waiting = api.post("/txt2img", json={**BODY, "async": True}).json()["job_id"]
    report = api.delete(f"/jobs/{waiting}").json()
    assert report["state"] == "cancelled" and report["position"] == -1
    api.delete(f"/jobs/{running}")
    wait_state(api, running, {"done"})
    assert api.get(f"/jobs/{waiting}").json()["state"] == "cancelled"


def test_unknown_job_is_404_and_a_failed_job_reports_its_reason(api, app_context):
    assert api.get("/jobs/nope").status_code == 404
    assert api.delete("/jobs/nope").status_code == 404
    # refused before queueing: the async request itself answers 400
    response = api.post("/txt2img", json={**BODY, "width": 65, "async": True})
    assert response.status_code == 400 and "multiples of 8" in response.text
    # an unknown checkpoint in override_settings is refused before queueing too (the one check, core/checks.py)
    response = api.post("/txt2img", json={**BODY, "async": True,
                                          "override_settings": {"sd_model_checkpoint": "no-such-model"}})
    assert response.status_code == 404 and "no-such-model" in response.text
    # fails while running (a checkpoint file that cannot be read): the job reports why
    (app_context.paths.default_checkpoint_dir() / "broken.safetensors").write_bytes(b"not a model at all")
    app_context.library.refresh()
    response = api.post("/txt2img", json={**BODY, "async": True,
                                          "override_settings": {"sd_model_checkpoint": "broken.safetensors"}})
    report = wait_state(api, response.json()["job_id"], {"failed", "done"})
    assert report["state"] == "failed" and report["error"]["status"] == 400
    assert "broken.safetensors" in report["error"]["detail"]


def test_async_img2img(api):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="PNG")
    picture = base64.b64encode(buffer.getvalue()).decode()
    job_id = api.post("/img2img", json={**BODY, "init_images": [picture], "async": True}).json()["job_id"]
    result = wait_state(api, job_id, {"done"})["result"]
    assert len(result["images"]) == 1 and "init_images" not in result["parameters"]


AUTH = "Authorization: Basic " + base64.b64encode(b"me:pw").decode() + "\r\n"


def _raw_post(url: str, body: dict, auth: bool) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + (AUTH if auth else "").encode() + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


@pytest.mark.parametrize("auth", [False, True])
def test_a_client_that_disconnects_leaves_no_stuck_job(data_dir, serve_app, auth):
    from paragoger.cli import parse_args
    from paragoger.context import AppContext

    flags = ["--data-dir", str(data_dir), "--nowebui"] + (["--api-auth", "me:pw"] if auth else [])
    app_context = AppContext(parse_args(flags, env={}))
    try:
        _disconnect_check(app_context, serve_app(app_context), auth)
    finally:
        app_context.close()


def _disconnect_check(app_context, url, auth):
    api = httpx.Client(base_url=url + "/sdapi/v1", timeout=60, auth=("me", "pw") if auth else None)
    running_sock = _raw_post(url, LONG, auth)   # runs, then its client goes away
    deadline = time.time() + 60
    while app_context.queue.current is None or app_context.queue.current.progress.step < 1:
        assert time.time() < deadline
        time.sleep(0.05)
    running = app_context.queue.current
    waiting_sock = _raw_post(url, BODY, auth)   # waits behind it, then its client goes away
    while app_context.queue.waiting_count() < 1:
        assert time.time() < deadline
        time.sleep(0.05)
    waiting = app_context.queue._waiting[0]
    waiting_sock.close()
    running_sock.close()
    # the waiting job leaves the queue; the running one finishes (A1111 does too) and the worker goes on
    while not waiting.is_finished:
        assert time.time() < deadline
        time.sleep(0.05)
    assert waiting.state == "cancelled"
    assert running.wait(120) and running.state == "done"
    assert api.post("/txt2img", json=BODY).status_code == 200
    assert app_context.queue.current is None and app_context.queue.waiting_count() == 0
