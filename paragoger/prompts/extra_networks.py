"""Extra network tags: ``<lora:name:0.8>``, ``<hypernet:name:1>``, any ``<kind:args>``.

A1111 facts:

- A tag is ``<`` + a word (letters, digits, ``_``; any script) + ``:`` + one
  or more characters other than ``>`` + ``>``.  The arguments are split on
  every ``:``; ``<kind:>`` and ``<kind>`` are not tags.
- Each tag is replaced by nothing; the text around it, commas and spaces
  included, is left exactly as it was (``a, <lora:x:1>, b`` -> ``a, , b``).
- An argument ``key=value`` (exactly one ``=``) is named, any other is
  positional.
- LoRA: the first positional argument is the name; ``te`` is the second
  positional or ``te=``, default 1.0; ``unet`` is the third positional or
  ``unet=``, default the te weight; ``dyn`` is the fourth or ``dyn=``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TAG = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True)
class ExtraNetworkCall:
    """One tag: ``kind`` (``lora``, ``hypernet``, ...), ``name`` and ``args``.

    ``args`` are all ``:``-separated items after the kind, the name first, as
    written (strings).
    """

    kind: str
    name: str
    args: list[str] = field(default_factory=list)

    @property
    def positional(self) -> list[str]:
        return [arg for arg in self.args if len(arg.split("=")) != 2]

    @property
    def named(self) -> dict[str, str]:
        pairs = (arg.split("=") for arg in self.args)
        return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def extract_extra_networks(prompt: str) -> tuple[str, list[ExtraNetworkCall]]:
    """Remove every tag from ``prompt``; return the clean text and the tags in order."""
    calls: list[ExtraNetworkCall] = []

    def take(match: re.Match) -> str:
        args = match.group(2).split(":")
        calls.append(ExtraNetworkCall(match.group(1), args[0], args))
        return ""

    return _TAG.sub(take, prompt), calls


def lora_weights(call: ExtraNetworkCall) -> tuple[float, float]:
    """``(te, unet)`` multipliers of a lora tag.

    Raises ValueError for a weight that is not a number, as A1111 does
    (the caller reports the tag).
    """
    positional, named = call.positional, call.named
    te = float(positional[1]) if len(positional) > 1 else 1.0
    te = float(named.get("te", te))
    unet = float(positional[2]) if len(positional) > 2 else te
    unet = float(named.get("unet", unet))
    return te, unet


def lora_dyn_dim(call: ExtraNetworkCall) -> int | None:
    """The optional ``dyn`` rank limit of a lora tag (fourth positional or ``dyn=``)."""
    positional, named = call.positional, call.named
    if "dyn" in named:
        return int(named["dyn"])
    return int(positional[3]) if len(positional) > 3 else None


def lora_name(call: ExtraNetworkCall) -> str:
    """The network A1111 loads: the first positional argument."""
    positional = call.positional
    return positional[0] if positional else call.name
