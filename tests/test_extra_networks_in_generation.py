"""LoRA tags and embeddings in a real generation: applied for that generation only, written to the infotext
as A1111 writes them, listed by the API."""
import httpx
import numpy as np
import pytest
import torch

from paragoger.core.request import GenerationRequest
from tests.fixtures import networks


def request(prompt: str, **changes) -> GenerationRequest:
    return GenerationRequest(**{**dict(prompt=prompt, steps=3, width=64, height=64, seed=11, sampler_name="Euler",
                                       save_images=False), **changes})


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].image).astype(np.int16)


@pytest.fixture
def with_lora(app_context):
    networks.write_kohya_lora(app_context.paths.lora_dirs[-1] / "paper_cut.safetensors", "sd1")
    app_context.loras.refresh()
    return app_context


def test_lora_tag_changes_the_image_writes_its_hash_and_leaves_the_model_as_it_was(with_lora):
    engine = with_lora.engine
    plain = engine.generate(request("a fox"))
    unet = with_lora.cache.current.unet
    before = {name: tensor.clone() for name, tensor in unet.state_dict().items()}
    tagged = engine.generate(request("a fox <lora:paper_cut:0.8>"))
    assert np.abs(pixels(tagged) - pixels(plain)).max() > 0
    text = tagged.images[0].infotext
    assert text.startswith("a fox <lora:paper_cut:0.8>\n")
    assert 'Lora hashes: "paper_cut: ' in text
    assert all(torch.equal(before[name], tensor) for name, tensor in unet.state_dict().items())
    again = engine.generate(request("a fox"))
    assert np.array_equal(pixels(again), pixels(plain))


def test_embedding_name_in_the_prompt_is_used_and_hashed(app_context):
    width = app_context.engine.load_model(None, None, app_context.settings).text_encoder.config.hidden_size
    vectors = networks.random_vectors(2, width, seed=4)
    networks.write_a1111_embedding(app_context.paths.embeddings_dirs[-1] / "glowstyle.pt", vectors)
    app_context.embeddings.refresh()
    plain = app_context.engine.generate(request("a fox"))
    styled = app_context.engine.generate(request("a fox, glowstyle"))
    assert 'TI hashes: "glowstyle: ' in styled.images[0].infotext
    assert np.abs(pixels(styled) - pixels(plain)).max() > 0


def test_loras_and_embeddings_are_listed_and_refreshed_by_the_api(with_lora, serve_app):
    url = serve_app(with_lora) + "/sdapi/v1"
    loras = httpx.get(url + "/loras").json()
    assert [item["name"] for item in loras] == ["paper_cut"]
    networks.write_kohya_lora(with_lora.paths.lora_dirs[-1] / "second.safetensors", "sd1", seed=2)
    assert httpx.post(url + "/refresh-loras").status_code == 200
    assert sorted(item["name"] for item in httpx.get(url + "/loras").json()) == ["paper_cut", "second"]
    embeddings = httpx.get(url + "/embeddings").json()
    assert set(embeddings) == {"loaded", "skipped"}
    assert httpx.post(url + "/refresh-embeddings").status_code == 200
