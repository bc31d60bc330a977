"""The project's CLIP tokenizer files give the token ids CLIP itself gives."""
from __future__ import annotations

from pathlib import Path

import pytest
from open_clip.tokenizer import SimpleTokenizer, default_bpe

from paragoger.model_manager import configs
from paragoger.model_manager.clip_bpe import write_tokenizer_files

PROMPTS = [
    "a photo of a cat",
    "(masterpiece:1.2), best quality!!, 1girl; [red|blue] hair... <lora:add_detail:0.5>",
    "一只猫在月光下 的照片",
    "Café DÉJÀ vu — naïve 'quoted' \"double\" it's don't we'll",
    "  many   spaces\tand\nnewlines ",
    "emoji 🐱🔥 ok, ((((nested)))) [[x]] {a|b} AND c",
    "&amp; fish &lt;3",
    "ﬁ ligature ½ ２０２４",
    "UPPER lower MiXeD 123456 3.14159",
]


@pytest.fixture(scope="module")
def clip():
    return SimpleTokenizer()


@pytest.mark.parametrize("folder", ["sd15/tokenizer", "sd2/tokenizer", "sdxl-base/tokenizer_2"])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_token_ids_match_clips_own_tokenizer(clip, folder, prompt):
    tokenizer = configs.tokenizer_from_folder(configs.DIFFUSERS_CONFIGS / folder)

    ours = tokenizer(configs.clip_clean_text(prompt)).input_ids

    assert ours == [49406, *clip.encode(prompt), 49407]


def test_sd1_pads_with_end_of_text_and_sd2_with_exclamation_mark():
    sd1 = configs.tokenizer_from_folder(configs.DIFFUSERS_CONFIGS / "sd15" / "tokenizer")
    sd2 = configs.tokenizer_from_folder(configs.DIFFUSERS_CONFIGS / "sd2" / "tokenizer")

    assert sd1("a cat", padding="max_length").input_ids[:6] == [49406, 320, 2368, 49407, 49407, 49407]
    assert sd2("a cat", padding="max_length").input_ids[:6] == [49406, 320, 2368, 49407, 0, 0]
    assert len(sd2("a cat", padding="max_length").input_ids) == 77
    assert sd1.model_max_length == sd2.model_max_length == 77


def test_exclamation_marks_in_a_prompt_stay_one_token_with_the_sd2_tokenizer(clip):
    """Hugging Face's SD 2 tokenizer splits "!!" because its pad token "!" is registered as special; ours not."""
    sd2 = configs.tokenizer_from_folder(configs.DIFFUSERS_CONFIGS / "sd2" / "tokenizer")

    ids = sd2("wow!!").input_ids

    assert ids == [49406, *clip.encode("wow!!"), 49407] and len(ids) == 4


def test_committed_vocabulary_is_what_open_clips_bpe_file_gives(tmp_path):
    write_tokenizer_files(Path(default_bpe()), tmp_path)

    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / name).read_bytes() == (configs.CLIP_VOCAB_FOLDER / name).read_bytes(), name


def test_materialized_config_folder_loads_with_transformers(tmp_path):
    from transformers import CLIPTokenizer

    folder = configs.materialize(configs.DIFFUSERS_CONFIGS / "sdxl-base", tmp_path / "sdxl")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer_2", local_files_only=True)

    assert tokenizer("a cat").input_ids == [49406, 320, 2368, 49407]
    assert tokenizer.pad_token_id == 0


def test_configs_folder_stays_small():
    size = sum(p.stat().st_size for p in configs.CONFIGS_ROOT.rglob("*") if p.is_file())
    assert size < 5 * 1024 * 1024
