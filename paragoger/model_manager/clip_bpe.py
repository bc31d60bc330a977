"""CLIP's BPE vocabulary in the two-file form transformers' ``CLIPTokenizer`` reads (vocab.json, merges.txt).

Every Stable Diffusion text encoder (OpenAI CLIP-L, OpenCLIP-H, OpenCLIP-bigG) uses the same BPE vocabulary that
OpenAI published with CLIP. open-clip-torch ships it as ``bpe_simple_vocab_16e6.txt.gz``: a header line, then merge
rules, most frequent first. CLIP keeps only the first 48,894 merges (49,152 - 256 - 2) and numbers the vocabulary
as: the 256 byte symbols, the same 256 with the end-of-word mark ``</w>``, one token per merge, then the start and
end tokens (ids 49406 and 49407). This module rebuilds exactly that numbering so the ids match CLIP's own tokenizer.

The derived files are committed under ``configs/tokenizers/clip``; ``configs/make_tokenizer.py`` regenerates them.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

CLIP_VOCAB_SIZE = 49408
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
# 49152 is the size of CLIP's merge table with bytes and specials included; see the module docstring.
_MERGE_COUNT = 49152 - 256 - 2


def byte_symbols() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable character table, in byte order 0..255.

    Printable Latin-1 bytes stand for themselves; the others are moved to code points from 256 upward, in order,
    so that every byte has a visible, whitespace-free symbol.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = 0
    table = {}
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + shifted)
            shifted += 1
    # CLIP lists the printable bytes first, then the shifted ones, each group in byte order.
    return [table[b] for b in printable] + [table[b] for b in range(256) if b not in printable]


def read_merges(bpe_gz: Path) -> list[tuple[str, str]]:
    """The merge rules CLIP uses, from open-clip's gzip file (first line is a version header)."""
    lines = gzip.open(bpe_gz, "rt", encoding="utf-8").read().split("\n")
    return [tuple(line.split()) for line in lines[1:1 + _MERGE_COUNT]]


def derive_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id, numbered the way CLIP numbers them."""
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [START_TOKEN, END_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"derived {len(vocab)} tokens, CLIP has {CLIP_VOCAB_SIZE}")
    return vocab


def write_tokenizer_files(bpe_gz: Path, folder: Path) -> None:
    """Write vocab.json and merges.txt (with the ``#version: 0.2`` header transformers expects)."""
    merges = read_merges(bpe_gz)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(derive_vocab(merges), ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [" ".join(m) for m in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
