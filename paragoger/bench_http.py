"""End to end, as a user's client sees it: the app started as a user starts it (app.py, its own process), asked
over HTTP, against diffusers' own StableDiffusionPipeline loading the same file in its own process.

Used by ``python -m paragoger.bench --http`` (speed) and ``--switch`` (checkpoint switches: the app's memory after
each and the time each takes). The two processes take turns, never run at once, so both get the same machine.
"""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPT, NEGATIVE = "a lighthouse on a cliff at dusk, oil painting", "blurry"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppProcess:
    """app.py in a child process with its own data folder, serving on a free loopback port."""

    def __init__(self, workdir: Path, ckpt_dir: Path, extra_flags: list[str] = ()):
        import httpx

        self.port = _free_port()
        self.log = open(workdir / "app.log", "w")  # noqa: SIM115  (closed in close())
        flags = ["--data-dir", str(workdir / "data"), "--ckpt-dir", str(ckpt_dir), "--port", str(self.port),
                 *extra_flags]
        self.process = subprocess.Popen([sys.executable, str(REPO / "app.py"), *flags], cwd=REPO,
                                        stdout=self.log, stderr=subprocess.STDOUT, env=_child_env())
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}/sdapi/v1", timeout=3600)
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py ended at start; see {self.log.name}")
            try:
                if self.client.get("/sd-models").status_code == 200 and self.client.get("/options").json().get(
                        "sd_model_checkpoint"):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("app.py did not load a checkpoint within 10 minutes")

    def txt2img(self, size: int, steps: int) -> float:
        body = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "sampler_name": "Euler", "steps": steps,
                "cfg_scale": 7, "width": size, "height": size, "seed": 1}
        started = time.perf_counter()
        answer = self.client.post("/txt2img", json=body)
        seconds = time.perf_counter() - started
        answer.raise_for_status()
        base64.b64decode(answer.json()["images"][0])
        return seconds

    def switch(self, title: str) -> float:
        started = time.perf_counter()
        self.client.post("/options", json={"sd_model_checkpoint": title}).raise_for_status()
        return time.perf_counter() - started

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class DiffusersProcess:
    """diffusers' StableDiffusionPipeline.from_single_file in a child process, answering one request per line."""

    def __init__(self, workdir: Path, checkpoint: Path):
        config = _diffusers_config_folder(workdir)
        self.process = subprocess.Popen([sys.executable, "-m", "paragoger.bench_http", "--diffusers-worker",
                                         str(checkpoint), str(config)], cwd=REPO, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=_child_env())
        self._read()  # "ready"

    def txt2img(self, size: int, steps: int) -> float:
        self.process.stdin.write(json.dumps({"size": size, "steps": steps}) + "\n")
        self.process.stdin.flush()
        return self._read()["seconds"]

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError("the diffusers process ended")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(60)


def _child_env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def _diffusers_config_folder(workdir: Path) -> Path:
    """The project's SD 1.5 config folder plus tokenizer files, so from_single_file needs no model hub."""
    from paragoger.model_manager import configs

    folder = workdir / "diffusers-sd15-config"
    if not folder.exists():
        shutil.copytree(configs.DIFFUSERS_CONFIGS / "sd15", folder)
        configs.clip_tokenizer().save_pretrained(folder / "tokenizer")
    return folder


def diffusers_worker(checkpoint: str, config: str) -> None:
    """The child side of DiffusersProcess: load once, then time each request (the pipeline call and the PNG
    file the user gets, as the app's answer includes its PNG)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_single_file(checkpoint, config=config, local_files_only=True,
                                                    safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        started = time.perf_counter()
        image = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=request["steps"], guidance_scale=7,
                     width=request["size"], height=request["size"],
                     generator=torch.Generator("cpu").manual_seed(1)).images[0]
        image.save(io.BytesIO(), format="PNG")
        print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)


def measure_http(model_path: Path, workdir: Path, *, size: int, steps: int, rounds: int) -> dict:
    """Median seconds per request over HTTP against diffusers in its own process, alternated."""
    app = AppProcess(workdir, model_path.parent)
    plain = DiffusersProcess(workdir, model_path)
    try:
        app.txt2img(size, steps), plain.txt2img(size, steps)  # warm-up: first calls build caches on both sides
        ours, theirs = [], []
        for _ in range(rounds):
            theirs.append(plain.txt2img(size, steps))
            ours.append(app.txt2img(size, steps))
        return {"http_size": size, "http_steps": steps, "http_rounds": rounds,
                "http_seconds_paragoger": round(statistics.median(ours), 3),
                "http_seconds_diffusers": round(statistics.median(theirs), 3),
                "http_ratio_paragoger_over_diffusers": round(statistics.median(ours) / statistics.median(theirs), 4),
                "http_app_rss_mb": round(app.rss_mb())}
    finally:
        app.close()
        plain.close()


def measure_switches(model_path: Path, workdir: Path, *, switches: int, keep: int) -> dict:
    """Two checkpoint files; POST /options alternating between them, a small txt2img after each: the app's RSS
    and the switch's seconds each time ("Checkpoints to keep in memory" = ``keep``)."""
    folder = workdir / "switch-checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    names = ["a" + model_path.suffix, "b" + model_path.suffix]
    for name in names:
        if (folder / name).exists():
            continue
        if model_path.stat().st_dev == folder.stat().st_dev:
            os.link(model_path, folder / name)  # same bytes, no second 2 GB on disk; the app sees two files
        else:
            shutil.copy(model_path, folder / name)
    app = AppProcess(workdir, folder)
    try:
        app.client.post("/options", json={"sd_checkpoints_limit": keep}).raise_for_status()
        rss, seconds = [], []
        for index in range(switches):
            seconds.append(round(app.switch(names[(index + 1) % 2]), 3))
            app.txt2img(64, 1)
            rss.append(round(app.rss_mb()))
        models = app.client.get("/memory").json()["models"]
        return {f"switch_keep{keep}_rss_mb": rss, f"switch_keep{keep}_seconds": seconds,
                f"switch_keep{keep}_checkpoints_loaded": sum(row["kind"] == "checkpoint" for row in models)}
    finally:
        app.close()


if __name__ == "__main__" and sys.argv[1:2] == ["--diffusers-worker"]:
    diffusers_worker(*sys.argv[2:4])
