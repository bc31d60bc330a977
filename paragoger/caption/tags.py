"""Booru tags as prompt text: which tags pass the threshold, in which order, and how each is written.

Pure text, no models: the tagger hands over ``{tag: score}`` and the settings decide the rest, with A1111's
setting names (deepbooru_*). Tags are written as the boorus spell them (``long_hair``) unless spaces are asked for;
face tags such as ``^_^`` or ``o_o`` keep their underscore, which is part of the face.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

_WORDISH = re.compile(r"[^\W\d_]{2}")       # two letters in a row: a word, not a face like ^_^ or o_o
_PROMPT_SPECIAL = re.compile(r"([\\()\[\]])")  # characters the prompt parser reads as emphasis


@dataclass(frozen=True)
class TagOptions:
    threshold: float = 0.5
    sort_alpha: bool = True
    use_spaces: bool = True
    escape: bool = True
    include_ranks: bool = False
    leave_out: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, options: Mapping[str, Any]) -> "TagOptions":
        leave_out = {_canonical(tag) for tag in str(options.get("deepbooru_filter_tags") or "").split(",")}
        return cls(threshold=float(options.get("interrogate_deepbooru_score_threshold", 0.5)),
                   sort_alpha=bool(options.get("deepbooru_sort_alpha", True)),
                   use_spaces=bool(options.get("deepbooru_use_spaces", True)),
                   escape=bool(options.get("deepbooru_escape", True)),
                   include_ranks=bool(options.get("interrogate_return_ranks", False)),
                   leave_out=frozenset(leave_out - {""}))


def _canonical(tag: str) -> str:
    """How a tag is compared with the leave-out list: trimmed, lower case, spaces as underscores."""
    return tag.strip().lower().replace(" ", "_")


def written_tag(tag: str, options: TagOptions) -> str:
    if options.use_spaces and _WORDISH.search(tag):
        tag = tag.replace("_", " ")
    if options.escape:
        tag = _PROMPT_SPECIAL.sub(r"\\\1", tag)
    return tag


def format_tags(scores: Mapping[str, float], options: TagOptions) -> str:
    """The tags scoring above the threshold, joined by ", ": alphabetical or best first, per ``options``."""
    chosen = [(tag, score) for tag, score in scores.items()
              if score > options.threshold and _canonical(tag) not in options.leave_out]
    if options.sort_alpha:
        chosen.sort(key=lambda item: item[0])
    else:
        chosen.sort(key=lambda item: (-item[1], item[0]))
    parts = []
    for tag, score in chosen:
        text = written_tag(tag, options)
        parts.append(f"({text}:{score:.3f})" if options.include_ranks else text)
    return ", ".join(parts)
