"""Textual-inversion embeddings: the file layouts people have, which ones a checkpoint is offered, and their
vectors in the prompt (in place of the name's tokens, never split across 75-token chunks, counted by the token
counter, both SDXL encoders fed), with the ``TI hashes`` infotext field."""
import hashlib
import os

import pytest
import torch

from paragoger.core.conditioning import PromptEncoder
from paragoger.model_manager.components import CheckpointInfo
from paragoger.model_manager.embeddings import Embedding, EmbeddingLibrary, ti_hashes_field
from paragoger.model_manager.hashing import HashCache
from paragoger.model_manager.loader import load_checkpoint
from tests.fixtures import networks as nf


def load(path):
    return load_checkpoint(CheckpointInfo(path=path, name=path.name, model_name=path.stem))


@pytest.fixture(scope="module")
def sd1(tiny_model_file):
    return load(tiny_model_file("sd1", "safetensors"))


@pytest.fixture(scope="module")
def sdxl(tiny_model_file):
    return load(tiny_model_file("sdxl", "safetensors"))


def token_vectors(components, words: str, encoder_index: int = 0) -> torch.Tensor:
    """The input vectors the checkpoint's own encoder gives ``words`` (what an embedding can copy)."""
    tokenizer = (components.tokenizer, components.tokenizer_2)[encoder_index]
    encoder = (components.text_encoder, components.text_encoder_2)[encoder_index]
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    core = getattr(encoder, "text_model", encoder)
    return core.embeddings.token_embedding.weight[ids].detach().clone()


def embedding(name, *vectors) -> Embedding:
    return Embedding(name=name, path=None, vectors=tuple(vectors))


def library_with(tmp_path, files: dict) -> EmbeddingLibrary:
    folder = tmp_path / "embeddings"
    for name, writer in files.items():
        writer(folder / name)
    return EmbeddingLibrary([folder], HashCache(tmp_path / "cache.json"))


def test_embedding_name_in_prompt_uses_its_vectors(sd1):
    red_cat = embedding("myemb", token_vectors(sd1, "red cat"))
    with_embedding = PromptEncoder(sd1, embeddings={"myemb": red_cat})
    # Its vectors are those of "red cat": the prompt then encodes exactly like the words themselves.
    assert torch.allclose(with_embedding.encode("a photo of myemb, at night").embeds,
                          PromptEncoder(sd1).encode("a photo of red cat, at night").embeds, atol=1e-6)
    assert list(with_embedding.used_embeddings) == ["myemb"]
    # Matched on tokens, so case and emphasis around it do not matter; its vectors take the emphasis weight.
    weighted = with_embedding.encode("a photo of (MyEmb:1.3), at night").embeds
    assert torch.allclose(weighted, PromptEncoder(sd1).encode("a photo of (red cat:1.3), at night").embeds, atol=1e-6)
    # Other vectors, other result; without the embedding, "myemb" is plain text.
    noise = embedding("myemb", nf.random_vectors(2, 32, seed=4))
    assert not torch.allclose(PromptEncoder(sd1, embeddings={"myemb": noise}).encode("a photo of myemb").embeds,
                              PromptEncoder(sd1).encode("a photo of myemb").embeds, atol=1e-3)
    assert PromptEncoder(sd1).used_embeddings == {}


@pytest.mark.parametrize("kind, clip_skip", [("sd1", 1), ("sd1", 2), ("sdxl", 1), ("sdxl", 2)])
def test_vector_path_equals_the_encoder_on_plain_tokens(kind, clip_skip, request):
    """The path chunks with embeddings take gives exactly what the encoder gives for the same plain tokens."""
    components = request.getfixturevalue(kind)
    encoder = PromptEncoder(components, clip_skip=clip_skip)
    for index, (tokenizer, text_encoder) in enumerate(zip(encoder.tokenizers, encoder.encoders)):
        chunk = tokenizer.chunks("a lighthouse on a cliff, oil painting")[0][0]
        ids, _ = tokenizer.ids_and_weights(chunk)
        with torch.no_grad():
            plain_hidden, plain_pooled = encoder._run_encoder(text_encoder, ids)
            hidden, pooled = encoder._run_encoder_with_vectors(text_encoder, ids, [], index)
        assert torch.equal(hidden, plain_hidden)
        assert (pooled is None and plain_pooled is None) or torch.equal(pooled, plain_pooled)


def test_embedding_is_never_split_across_chunks(sd1):
    three = embedding("myemb", token_vectors(sd1, "red cat eyes"))
    encoder = PromptEncoder(sd1, embeddings={"myemb": three})
    chunker = encoder.tokenizers[0]

    # 72 words + 3 vectors = 75: one chunk.
    chunks, total = chunker.chunks("cat " * 72 + "myemb")
    assert len(chunks) == 1 and total == 75 and chunks[0].fixes == [(72, three)]
    # 73 words + 3 vectors: the embedding does not fit, so it starts the next chunk whole.
    text = "cat " * 73 + "myemb"
    chunks, total = chunker.chunks(text)
    assert [c.fixes for c in chunks] == [[], [(0, three)]] and total == 76
    assert chunks[0].tokens[73:] == [chunker.end, chunker.end]
    assert encoder.token_count(text) == (76, 150)
    embeds = encoder.encode(text).embeds
    assert torch.allclose(embeds[:, 77:], PromptEncoder(sd1).encode("red cat eyes").embeds, atol=1e-6)
    assert torch.allclose(embeds[:, :77], PromptEncoder(sd1).encode("cat " * 73).embeds, atol=1e-6)

    # A comma backtrack moves the embedding along with the words after the comma.
    text = "cat " * 66 + ", dog myemb " + "bird " * 10
    chunks, total = chunker.chunks(text)
    assert total == 66 + 1 + 1 + 3 + 10
    assert [c.fixes for c in chunks] == [[], [(1, three)]]
    assert chunks[1].tokens[0] == chunker.tokenizer("dog", add_special_tokens=False)["input_ids"][0]


def test_token_counter_counts_the_vectors(sd1):
    eight = embedding("bad-hands-5", nf.random_vectors(8, 32))
    encoder = PromptEncoder(sd1, embeddings={"bad-hands-5": eight})
    assert PromptEncoder(sd1).token_count("bad-hands-5") == (5, 75)  # bad - hands - 5
    assert encoder.token_count("bad-hands-5") == (8, 75)
    assert encoder.token_count("a cat, bad-hands-5") == (3 + 8, 75)
    assert encoder.token_count("word " * 70 + "bad-hands-5") == (78, 150)


def test_a1111_pt_and_safetensors_embeddings_load(tmp_path):
    v768, v1024 = nf.random_vectors(2, 768, seed=1), nf.random_vectors(3, 1024, seed=2)
    clip_l, clip_g = nf.random_vectors(4, 768, seed=3), nf.random_vectors(4, 1280, seed=4)
    concept = nf.random_vectors(1, 768, seed=5)[0]
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    lib = library_with(tmp_path, {
        "a1111-style.pt": lambda p: nf.write_a1111_embedding(p, v768, step=1500),
        "sd2/emb-params.safetensors": lambda p: nf.write_safetensors_embedding(p, v1024),
        "negativeXL_D.safetensors": lambda p: nf.write_safetensors_embedding(p, clip_l, clip_g),
        "cat-toy.bin": lambda p: nf.write_diffusers_embedding(p, concept, "<cat-toy>"),
        "broken.pt": lambda p: p.write_bytes(b"not a pickle"),
        "evil.pt": lambda p: torch.save({"string_to_param": {"*": Payload()}}, p),
        "notes.txt": lambda p: p.write_text("ignored"),
    })
    entries = {e.name: e for e in lib.entries()}
    assert list(entries) == ["a1111-style", "broken", "cat-toy", "emb-params", "evil", "negativeXL_D"]
    summary = {n: (e.vectors, e.dims, e.families) for n, e in entries.items() if e.error is None}
    assert summary == {"a1111-style": (2, (768,), ("sd1",)), "emb-params": (3, (1024,), ("sd2",)),
                       "negativeXL_D": (4, (768, 1280), ("sdxl",)), "cat-toy": (1, (768,), ("sd1",))}
    a1111 = entries["a1111-style"]
    assert (a1111.step, a1111.checkpoint, a1111.checkpoint_name) == (1500, "e1441589a6", "v1-5-pruned")
    assert torch.equal(lib.get("a1111-style").vectors[0], v768)
    assert torch.equal(lib.get("emb-params").vectors[0], v1024)
    assert torch.equal(lib.get("negativeXL_D").vectors[0], clip_l)
    assert torch.equal(lib.get("negativeXL_D").vectors[1], clip_g)
    assert torch.equal(lib.get("cat-toy").vectors[0], concept[None])
    assert entries["broken"].error and lib.get("broken") is None
    assert "refused" in entries["evil"].error and "system" in entries["evil"].error and not marker.exists()


def test_sdxl_embedding_feeds_both_encoders(sdxl):
    red_cat = embedding("myemb", token_vectors(sdxl, "red cat", 0), token_vectors(sdxl, "red cat", 1))
    ours = PromptEncoder(sdxl, embeddings={"myemb": red_cat}).encode("a photo of myemb")
    words = PromptEncoder(sdxl).encode("a photo of red cat")
    assert ours.embeds.shape == (1, 77, 32 + 64)
    assert torch.allclose(ours.embeds, words.embeds, atol=1e-6)
    assert torch.allclose(ours.pooled, words.pooled, atol=1e-6)
    # Each half comes from its own vectors: changing clip_g changes only the second encoder's part.
    other_g = embedding("myemb", red_cat.vectors[0], nf.random_vectors(2, 64, seed=9))
    changed = PromptEncoder(sdxl, embeddings={"myemb": other_g}).encode("a photo of myemb")
    assert torch.allclose(changed.embeds[..., :32], words.embeds[..., :32], atol=1e-6)
    assert not torch.allclose(changed.embeds[..., 32:], words.embeds[..., 32:], atol=1e-3)
    assert not torch.allclose(changed.pooled, words.pooled, atol=1e-3)


def test_embedding_for_another_family_is_not_offered(sd1, sdxl, tmp_path):
    lib = library_with(tmp_path, {
        "tiny-sd1.pt": lambda p: nf.write_a1111_embedding(p, nf.random_vectors(2, 32)),
        "tiny-xl.safetensors": lambda p: nf.write_safetensors_embedding(p, nf.random_vectors(2, 32),
                                                                        nf.random_vectors(2, 64)),
        "real-sd15.pt": lambda p: nf.write_a1111_embedding(p, nf.random_vectors(2, 768)),
    })
    assert list(lib.for_components(sd1)) == ["tiny-sd1"]
    assert list(lib.for_components(sdxl)) == ["tiny-xl"]
    assert lib.skipped_for(sd1) == ["real-sd15", "tiny-xl"]
    # Handed one that does not fit anyway, the encoder leaves the name as plain text.
    everything = {e.name: lib.get(e.name) for e in lib.entries()}
    encoder = PromptEncoder(sdxl, embeddings=everything)
    assert list(encoder.embeddings) == ["tiny-xl"]
    assert torch.equal(encoder.encode("tiny-sd1").embeds, PromptEncoder(sdxl).encode("tiny-sd1").embeds)


def test_ti_hashes_field_format(sd1, tmp_path):
    lib = library_with(tmp_path, {
        "easy,negative.pt": lambda p: nf.write_a1111_embedding(p, nf.random_vectors(2, 32, seed=1)),
        "style.safetensors": lambda p: nf.write_safetensors_embedding(p, nf.random_vectors(1, 32, seed=2)),
    })
    encoder = PromptEncoder(sd1, embeddings=lib.for_components(sd1))
    encoder.encode("a castle, style")
    encoder.encode("easy,negative, blurry, style")
    assert list(encoder.used_embeddings) == ["style", "easy,negative"]

    def short(name):
        return hashlib.sha256(lib.get(name).path.read_bytes()).hexdigest()[:12]

    assert ti_hashes_field(encoder.used_embeddings, lib) == \
        f"style: {short('style')}, easynegative: {short('easy,negative')}"
    assert ti_hashes_field({}, lib) == ""
