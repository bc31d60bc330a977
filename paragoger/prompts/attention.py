"""Emphasis: split one prompt text into ``[text, weight]`` runs.

Behaves like AUTOMATIC1111's attention parsing (facts in
shared/reference/a1111-formats.md, section 2):

- ``(x)`` multiplies by 1.1, ``[x]`` multiplies by ``1 / 1.1``,
  ``(x:1.5)`` multiplies by 1.5; nesting multiplies.
- ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` give the literal character; a lone
  backslash before anything else is dropped.
- Openers still open at the end apply to everything after them (all round ones
  first, then the square ones); closers with nothing to close are plain text.
- ``BREAK`` as a whole word becomes the run ``["BREAK", -1]``.
- Neighbouring runs of exactly equal weight merge; an empty prompt gives
  ``[["", 1.0]]``.

Weights are floats multiplied in the same order A1111 multiplies them, so
results match to the last bit (``1.5730000000000004``), which matters because
equal-weight merging compares floats exactly.
"""

from __future__ import annotations

import re

ROUND_MULTIPLIER = 1.1
# A multiplication by the reciprocal, not a division: the float results differ.
SQUARE_MULTIPLIER = 1 / 1.1

BREAK_RUN = ("BREAK", -1)

# One token per match, tried in this order: escapes, openers, a weighted
# closer, plain closers, a run of ordinary text, a lone colon.
_TOKEN = re.compile(
    r"""
    (?P<escape>\\[()\[\]\\]?)
  | (?P<open>[(\[])
  | (?P<weighted>:\s*(?P<weight>[+-]?[.\d]+)\s*\))
  | (?P<close>[)\]])
  | (?P<text>[^\\()\[\]:]+|:)
    """,
    re.VERBOSE,
)

_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_attention(text: str) -> list[list]:
    """Return the prompt as ``[text, weight]`` runs, A1111-compatible.

    Never raises.  One deliberate difference: A1111 fails on a weight such as
    ``(a:1.2.3)`` (``float('1.2.3')``); here its colon and digits stay plain
    text and the ``)`` closes as an ordinary 1.1 closer.
    """
    runs: list[list] = []
    open_round: list[int] = []
    open_square: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    def add_text(chunk: str) -> None:
        for index, part in enumerate(_BREAK.split(chunk)):
            if index:
                runs.append(list(BREAK_RUN))
            runs.append([part, 1.0])

    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        token = match.group(0)
        if kind == "escape":
            runs.append([token[1:], 1.0])
        elif kind == "open":
            (open_round if token == "(" else open_square).append(len(runs))
        elif kind == "weighted" and open_round:
            factor = _as_float(match.group("weight"))
            if factor is None:  # e.g. ":1.2.3)": text, then an ordinary closer
                add_text(token[:-1])
                factor = ROUND_MULTIPLIER
            scale_from(open_round.pop(), factor)
        elif token == ")" and open_round:
            scale_from(open_round.pop(), ROUND_MULTIPLIER)
        elif token == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_MULTIPLIER)
        else:
            add_text(token)

    for start in open_round:
        scale_from(start, ROUND_MULTIPLIER)
    for start in open_square:
        scale_from(start, SQUARE_MULTIPLIER)

    return _merge_equal_neighbours(runs) if runs else [["", 1.0]]


def _as_float(number: str) -> float | None:
    try:
        return float(number)
    except ValueError:
        return None


def _merge_equal_neighbours(runs: list[list]) -> list[list]:
    merged = [runs[0]]
    for run in runs[1:]:
        if merged[-1][1] == run[1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return merged


def split_on_break(runs: list[list]) -> list[list[list]]:
    """Split runs into the groups that BREAK separates (one group per chunk start).

    Only a run that is exactly ``["BREAK", -1]`` splits; a BREAK inside
    emphasis has a scaled weight and, as in A1111, is ordinary text.
    """
    groups: list[list[list]] = [[]]
    for run in runs:
        if run[0] == BREAK_RUN[0] and run[1] == BREAK_RUN[1]:
            groups.append([])
        else:
            groups[-1].append(run)
    return groups
