"""The checkpoint list: what is found in the model folders, how it is named, hashed and looked up."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from types import SimpleNamespace

import pytest

from paragoger.errors import NotFoundError
from paragoger.model_manager import hashing, scanner
from paragoger.model_manager.hashing import HashCache
from paragoger.model_manager.library import ModelLibrary


def touch(path, content=None):
    """A file; its content is its name unless given, so every file has its own hash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(path.name.encode() if content is None else content)
    return path


@pytest.fixture
def model_folder(tmp_path, tiny_model_file):
    root = tmp_path / "Stable-diffusion"
    touch(root / "model10.safetensors")
    touch(root / "model2.safetensors")
    touch(root / "Anime" / "nested" / "deep.ckpt")
    touch(root / "model2.vae.safetensors")  # a VAE for model2, not a checkpoint
    touch(root / "model2.yaml")
    touch(root / "model2.png")
    touch(root / "notes.txt")
    shutil.copytree(tiny_model_file("sd1", "diffusers"), root / "diffusers" / "tiny-sd1")
    return root


def test_scanner_finds_nested_files_and_diffusers_folders(model_folder):
    found = scanner.list_checkpoints([model_folder])

    assert [c.name for c in found] == ["Anime/nested/deep.ckpt", "diffusers/tiny-sd1", "model2.safetensors",
                                       "model10.safetensors"]
    deep = found[0]
    assert deep.model_name == "deep" and deep.path == model_folder / "Anime" / "nested" / "deep.ckpt"
    folder = found[1]
    assert folder.is_diffusers_folder and folder.model_name == "tiny-sd1" and folder.title == "diffusers/tiny-sd1"


def test_the_first_folder_wins_when_two_hold_the_same_name(tmp_path):
    first, second = touch(tmp_path / "a" / "m.safetensors"), touch(tmp_path / "b" / "m.safetensors")

    (found,) = scanner.list_checkpoints([tmp_path / "a", tmp_path / "b", tmp_path / "missing"])

    assert found.path == first != second


def test_listing_does_not_hash_but_shows_known_hashes(tmp_path, model_folder, monkeypatch):
    cache = HashCache(tmp_path / "cache.json")
    known = cache.sha256(model_folder / "model2.safetensors")
    monkeypatch.setattr(hashing, "sha256_of", lambda path: pytest.fail("listing hashed a file"))

    found = {c.name: c for c in scanner.list_checkpoints([model_folder], cache)}

    assert found["model2.safetensors"].title == f"model2.safetensors [{known[:10]}]"
    unhashed = found["model10.safetensors"]
    assert unhashed.short_hash is None and unhashed.title == "model10.safetensors"


def test_hash_cache_computes_once(tmp_path, monkeypatch):
    path = touch(tmp_path / "m.safetensors", b"weights")
    calls = []
    real = hashing.sha256_of
    monkeypatch.setattr(hashing, "sha256_of", lambda p: calls.append(p) or real(p))

    first = HashCache(tmp_path / "cache.json").sha256(path)
    again = HashCache(tmp_path / "cache.json").sha256(path)  # a new app start reads the cache file

    assert first == again == hashlib.sha256(b"weights").hexdigest()
    assert len(calls) == 1


def test_hash_is_recomputed_when_the_file_changes(tmp_path):
    path = touch(tmp_path / "m.safetensors", b"old")
    cache = HashCache(tmp_path / "cache.json")
    old = cache.sha256(path)

    path.write_bytes(b"new weights")
    os.utime(path, (1_700_000_000, 1_700_000_000))

    assert cache.sha256(path) == hashlib.sha256(b"new weights").hexdigest() != old


def test_hash_cache_keeps_what_others_store_in_the_same_file(tmp_path):
    cache_file = tmp_path / "cache.json"
    cache_file.write_text(json.dumps({"hashes-addnet": {"lora/x": {"sha256": "abc"}}}), encoding="utf-8")

    HashCache(cache_file).sha256(touch(tmp_path / "m.ckpt"))

    stored = json.loads(cache_file.read_text(encoding="utf-8"))
    assert stored["hashes-addnet"] == {"lora/x": {"sha256": "abc"}}
    assert len(stored["paragoger-sha256"]) == 1


def test_a_corrupt_hash_cache_file_is_ignored(tmp_path):
    (tmp_path / "cache.json").write_text("{not json", encoding="utf-8")

    assert HashCache(tmp_path / "cache.json").short(touch(tmp_path / "m.ckpt", b"x")) == hashlib.sha256(
        b"x").hexdigest()[:10]


def test_checkpoints_are_found_by_title_name_stem_or_hash(tmp_path, model_folder):
    cache = HashCache(tmp_path / "cache.json")
    found = [scanner.with_hash(c, cache) for c in scanner.list_checkpoints([model_folder])]
    model2 = next(c for c in found if c.name == "model2.safetensors")
    sha = hashlib.sha256(b"model2.safetensors").hexdigest()
    assert model2.title == f"model2.safetensors [{sha[:10]}]"

    for query in (model2.title, "model2.safetensors", "model2", sha[:10], sha, "model2.safetensors [0123456789]"):
        assert scanner.find_checkpoint(found, query) is model2, query
    assert scanner.find_checkpoint(found, "Anime/nested/deep").name == "Anime/nested/deep.ckpt"
    assert scanner.find_checkpoint(found, "deep").name == "Anime/nested/deep.ckpt"
    assert scanner.find_checkpoint(found, "tiny-sd1").is_diffusers_folder
    assert scanner.find_checkpoint(found, "nothing like it") is None


def test_vaes_are_found_in_vae_folders_and_beside_checkpoints(tmp_path, model_folder):
    vae_folder = tmp_path / "VAE"
    touch(vae_folder / "vae-ft-mse-840000-ema-pruned.safetensors")
    touch(vae_folder / "sdxl" / "sdxl_vae.safetensors")
    touch(vae_folder / "readme.md")

    vaes = scanner.list_vaes([vae_folder], [model_folder])

    assert [v.name for v in vaes] == ["model2.vae.safetensors", "sdxl/sdxl_vae.safetensors",
                                      "vae-ft-mse-840000-ema-pruned.safetensors"]
    assert scanner.find_vae(vaes, "vae-ft-mse-840000-ema-pruned").path.parent == vae_folder
    assert scanner.find_vae(vaes, "sdxl_vae.safetensors").name == "sdxl/sdxl_vae.safetensors"


def make_library(tmp_path, checkpoint_dir):
    paths = SimpleNamespace(checkpoint_dirs=(checkpoint_dir,), vae_dirs=(tmp_path / "VAE",),
                            hash_cache_file=tmp_path / "cache.json",
                            default_checkpoint_dir=lambda: checkpoint_dir)
    return ModelLibrary(paths)


def test_library_finds_the_checkpoint_to_load_with_its_hash(tmp_path, tiny_checkpoint_dir):
    library = make_library(tmp_path, tiny_checkpoint_dir)

    info = library.find_checkpoint(None)  # nothing chosen yet: the first one

    assert info.name == "tiny-sd1.safetensors" and len(info.short_hash) == 10
    assert library.checkpoints()[0].title == info.title  # the list now shows the hash too
    assert library.find_checkpoint(info.title) == info


def test_library_explains_what_is_missing(tmp_path, tiny_checkpoint_dir):
    library = make_library(tmp_path, tiny_checkpoint_dir)
    with pytest.raises(NotFoundError) as error:
        library.find_checkpoint("sd_xl_base_1.0.safetensors")
    assert error.value.key == "checkpoint_not_found"
    with pytest.raises(NotFoundError) as error:
        library.find_vae("no-such-vae.safetensors")
    assert error.value.key == "vae_not_found"
    assert library.find_vae("Automatic") is None and library.find_vae("None") is None

    empty = make_library(tmp_path, tmp_path / "empty")
    with pytest.raises(NotFoundError) as error:
        empty.find_checkpoint(None)
    assert error.value.key == "no_checkpoint" and str(tmp_path / "empty") in str(error.value)


def test_library_refresh_sees_new_files(tmp_path, tiny_checkpoint_dir):
    library = make_library(tmp_path, tiny_checkpoint_dir)
    touch(tiny_checkpoint_dir / "new.safetensors")
    touch(tmp_path / "VAE" / "new-vae.safetensors")
    assert len(library.checkpoints()) == 1

    library.refresh()

    assert [c.name for c in library.checkpoints()] == ["new.safetensors", "tiny-sd1.safetensors"]
    assert library.vaes() == {"new-vae.safetensors": tmp_path / "VAE" / "new-vae.safetensors"}


def test_create_test_model_adds_a_loadable_checkpoint(tmp_path):
    from paragoger.model_manager.loader import load_checkpoint

    library = make_library(tmp_path, tmp_path / "Stable-diffusion")

    info = library.create_test_model()

    assert library.checkpoints() == [info] and info.name == "paragoger-tiny-sd1.safetensors"
    assert load_checkpoint(library.find_checkpoint(info.name)).family == "sd1"
