"""Composable diffusion: ``a AND b:0.5`` -> ``[("a", 1.0), ("b", 0.5)]``.

A1111 facts: the prompt is split at every ``AND`` that is a whole, upper-case
word (brackets do not protect it).  Each part may end in ``:number``; the
number is that part's weight (default 1.0) and is removed along with the
spaces before it.  Trailing spaces of a part are dropped, leading ones kept.
A part with a final ``:number`` is weighted even without any ``AND``:
``cat:1.2`` is the text ``cat`` with weight 1.2.

Only the positive prompt is split (A1111 encodes the negative prompt whole).
"""

from __future__ import annotations

import re

_AND = re.compile(r"\bAND\b")
# Lazy text, then an optional ":number" and trailing spaces at the very end.
_TRAILING_WEIGHT = re.compile(r"^(.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$", re.S)


def split_and(prompt: str) -> list[tuple[str, float]]:
    """Return the ``(subprompt, weight)`` parts of ``prompt`` in order."""
    return [_weighted(part) for part in _AND.split(prompt)]


def unique_subprompts(prompts: list[str]) -> tuple[list[str], list[list[tuple[int, float]]]]:
    """Split a batch of prompts; share identical subprompts.

    Returns ``(texts, per_prompt)``: each distinct subprompt text once, and
    for every prompt its ``(index into texts, weight)`` pairs - the shape
    conditioning needs so each distinct text is encoded only once.
    """
    texts: list[str] = []
    index_of: dict[str, int] = {}
    per_prompt = []
    for prompt in prompts:
        pairs = []
        for text, weight in split_and(prompt):
            if text not in index_of:
                index_of[text] = len(texts)
                texts.append(text)
            pairs.append((index_of[text], weight))
        per_prompt.append(pairs)
    return texts, per_prompt


def _weighted(part: str) -> tuple[str, float]:
    match = _TRAILING_WEIGHT.match(part)
    text, weight = match.group(1), match.group(2)
    return text, float(weight) if weight is not None else 1.0
