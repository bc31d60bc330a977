"""--download-default: streamed, checked against its sha256, never half-present (served here from loopback)."""
import functools
import hashlib
import http.server
import threading

import pytest

from paragoger.errors import ModelLoadError
from paragoger.model_manager.download import DownloadSpec, download


@pytest.fixture
def file_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_checks_sha256_and_reports_progress(tmp_path, file_server):
    served, url = file_server
    payload = bytes(range(256)) * 5000
    (served / "model.safetensors").write_bytes(payload)
    seen = []
    spec = DownloadSpec(url=f"{url}/model.safetensors", filename="model.safetensors",
                        sha256=hashlib.sha256(payload).hexdigest())
    path = download(spec, tmp_path / "models", progress=lambda done, total: seen.append((done, total)),
                    chunk_size=100_000)
    assert path.read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload)) and len(seen) > 1


def test_a_wrong_checksum_leaves_no_file_behind(tmp_path, file_server):
    served, url = file_server
    (served / "model.safetensors").write_bytes(b"tampered")
    spec = DownloadSpec(url=f"{url}/model.safetensors", filename="model.safetensors", sha256="0" * 64)
    with pytest.raises(ModelLoadError, match="sha256"):
        download(spec, tmp_path / "models", progress=lambda *a: None)
    assert list((tmp_path / "models").iterdir()) == []


def test_an_unreachable_url_is_a_clear_error(tmp_path, file_server):
    _, url = file_server
    spec = DownloadSpec(url=f"{url}/missing.safetensors", filename="missing.safetensors", sha256="0" * 64)
    with pytest.raises(ModelLoadError, match="Could not download"):
        download(spec, tmp_path / "models", progress=lambda *a: None)
    assert list((tmp_path / "models").iterdir()) == []
