"""The project's own offline model configs (``configs/`` at the repository root) and the CLIP tokenizers.

``configs/diffusers/<family>`` mirrors the layout of the official diffusers repositories (one subfolder per model
plus ``model_index.json``), with the real architectures' sizes. The tokenizer subfolders hold only
``tokenizer_config.json``: the vocabulary (2 MB) is stored once in ``configs/tokenizers/clip`` and combined here.
Nothing in this module reaches for a model hub.
"""
from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from transformers import CLIPTokenizer

CONFIGS_ROOT = Path(__file__).resolve().parents[2] / "configs"
DIFFUSERS_CONFIGS = CONFIGS_ROOT / "diffusers"
CLIP_VOCAB_FOLDER = CONFIGS_ROOT / "tokenizers" / "clip"

# Which config folder describes a (family, variant, prediction type). Variants other than inpainting share the
# base folder: the loader overrides in_channels from the weights anyway.
SD15, SD15_INPAINTING, SD2, SD2_BASE, SDXL_BASE = "sd15", "sd15-inpainting", "sd2", "sd2-base", "sdxl-base"


def config_folder_for(family: str, variant: str, prediction_type: str) -> Path:
    """The config folder a checkpoint of this kind starts from (SD 2.x v-prediction is the 768 model)."""
    if family == "sd1":
        name = SD15_INPAINTING if variant == "inpaint" else SD15
    elif family == "sd2":
        name = SD2 if prediction_type == "v_prediction" else SD2_BASE
    elif family == "sdxl":
        name = SDXL_BASE
    else:
        raise ValueError(f"unknown family {family!r}")
    return DIFFUSERS_CONFIGS / name


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def model_config(folder: Path, subfolder: str) -> dict:
    """A model's config.json (or the scheduler's scheduler_config.json) as a fresh dict the caller may change."""
    name = "scheduler_config.json" if subfolder == "scheduler" else "config.json"
    return read_json(Path(folder) / subfolder / name)


def _clip_vocabulary(folder: Path = CLIP_VOCAB_FOLDER) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = read_json(folder / "vocab.json")
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split()) for line in lines[1:] if line]
    return vocab, merges


def clip_tokenizer(pad_token: str = "<|endoftext|>", model_max_length: int = 77,
                   vocab_folder: Path = CLIP_VOCAB_FOLDER) -> CLIPTokenizer:
    """CLIP's tokenizer with the given pad token (SD 1.x: ``<|endoftext|>``; SD 2.x and SDXL's second: ``!``).

    The pad token is set after construction on purpose: passed to the constructor, ``!`` would become an "added
    special token" and every ``!!`` in a prompt would be split into single ``!`` tokens, which CLIP never does.
    (Hugging Face's own SD 2 tokenizer files have that flaw; tokenizers built here do not.)
    """
    vocab, merges = _clip_vocabulary(Path(vocab_folder))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
    if pad_token != tokenizer.pad_token:
        tokenizer.pad_token = pad_token
    return tokenizer


def tokenizer_from_folder(folder: Path) -> CLIPTokenizer:
    """The tokenizer a ``tokenizer``/``tokenizer_2`` folder describes.

    The folder's own vocab.json/merges.txt are used when it has them (a diffusers download), else the project's
    copy of CLIP's vocabulary; the pad token and length come from its tokenizer_config.json.
    """
    folder = Path(folder)
    settings = read_json(folder / "tokenizer_config.json")
    pad = settings.get("pad_token") or "<|endoftext|>"
    pad = pad["content"] if isinstance(pad, dict) else pad
    has_vocab = (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    return clip_tokenizer(pad_token=pad, model_max_length=int(settings.get("model_max_length") or 77),
                          vocab_folder=folder if has_vocab else CLIP_VOCAB_FOLDER)


def clip_clean_text(text: str) -> str:
    """Clean a prompt the way CLIP's own tokenizer does before encoding, so ids match it exactly.

    transformers' CLIPTokenizer no longer does this: ftfy's text repair (ligatures, full-width digits, mojibake),
    HTML entities unescaped twice (``&amp;`` -> ``&``), whitespace collapsed. Lower-casing is left to the tokenizer.
    """
    import ftfy  # a dependency of open-clip-torch; imported here so merely loading models does not need it

    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split())


def materialize(folder: Path, destination: Path) -> Path:
    """Copy a config folder to ``destination`` with complete tokenizer folders (vocab.json, merges.txt added).

    The result is a diffusers folder without weights, loadable by transformers/diffusers ``from_pretrained`` and
    usable as ``config=`` for diffusers' ``from_single_file``.
    """
    destination = Path(destination)
    shutil.copytree(folder, destination, dirs_exist_ok=True)
    for tokenizer_dir in destination.glob("tokenizer*"):
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(CLIP_VOCAB_FOLDER / name, tokenizer_dir / name)
    return destination
