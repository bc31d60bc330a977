"""Prompt editing and alternation: one prompt -> ``[[end_step, text], ...]``.

Syntax (A1111 facts, shared/reference/a1111-formats.md section 2):

- ``[from:to:when]`` shows ``from`` up to step ``when``, then ``to``;
  ``[to:when]`` adds ``to`` after ``when``; ``[from::when]`` removes it.
- ``[a|b|c]`` cycles a, b, c, a, ... one per step.
- ``(x)``, ``(x:y)`` and ``[x]`` are emphasis: their text, brackets included,
  is kept as it is for the attention parser; edits may sit inside them.

How A1111 reads ``when`` (its "new timelines", the default in 1.10.1):
a number written with a ``.`` is a fraction of the steps, any other number is
a step.  The old rule (``old_timelines=True``: below 1 a fraction, else a
step) is what images made before 1.6 used.  With ``hires_steps`` the steps
are the hires pass's: whole numbers count on from the first pass
(``[a:b:25]`` with 20 + 10 steps switches at hires step 5) and fractions run
from 1 to 2 (``.5`` is before the hires pass, ``1.5`` half way through it).

Which bracket groups count as syntax, stated as rules (each checked against
A1111's own outputs):

- A group is ``(...)`` or ``[...]`` whose insides are text and well-formed
  groups only.  Inside ``(...)`` at most one bare ``:``; inside ``[...]``
  either nothing, one or two bare ``:`` with the part after the last one a
  number (surrounding spaces allowed), or one or more ``|``.
- Outside every group, a bracket or colon that starts no well-formed group is
  plain text.  A ``|`` there, or a backslash at the very end or before a line
  break, makes the whole prompt unparseable.
- An unparseable prompt is one text for all steps, unchanged.  This is also
  why ``a [{b|d{:.5] c`` is plain text: A1111's own doctest for it, marked
  "not handling this right now", is stale.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Union

# lark's SIGNED_NUMBER, which A1111's grammar uses for ``when``.
_NUMBER = re.compile(r"[+-]?(?:\d+[eE][+-]?\d+|(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+)")
_SPACE = re.compile(r"\s*")

# Deeper nesting than this is treated as unparseable instead of recursing on.
_MAX_DEPTH = 100

_ENDS_INSIDE = ")]:|"


@dataclass(frozen=True)
class _Edit:
    before: tuple
    after: tuple
    when: str


@dataclass(frozen=True)
class _Cycle:
    options: tuple


_Node = Union[str, _Edit, _Cycle]


class _Unparseable(Exception):
    """The prompt is not valid prompt-editing syntax; it is used as plain text."""


def prompt_schedule(
    prompt: str,
    steps: int,
    hires_steps: int | None = None,
    old_timelines: bool = False,
) -> list[list]:
    """Return ``[[end_step, text], ...]``: ``text`` is used up to ``end_step``.

    ``steps`` is the sampling step count; for the hires pass pass the first
    pass's count as ``steps`` and the hires count as ``hires_steps`` (the
    schedule's steps are then hires steps).  Never raises for any text.
    """
    if hires_steps is None or old_timelines:
        total, whole_offset, fraction_offset = steps, 0, 0.0
    else:
        total, whole_offset, fraction_offset = hires_steps, steps, 1.0
    try:
        tree = _parse(prompt)
    except _Unparseable:
        return [[total, prompt]]

    def switch_step(when: str) -> int:
        return _switch_step(when, total, whole_offset, fraction_offset, old_timelines)

    ends = {total}
    for node in _walk(tree):
        if isinstance(node, _Edit):
            step = switch_step(node.when)
            if step >= 1:
                ends.add(step)
        elif isinstance(node, _Cycle):
            ends.update(range(1, total + 1))
    return [[end, _render(tree, end, switch_step)] for end in sorted(ends)]


def schedules_for(
    prompts: Iterable[str],
    steps: int,
    hires_steps: int | None = None,
    old_timelines: bool = False,
) -> dict[str, list[list]]:
    """Schedule each distinct prompt once; map prompt text -> schedule."""
    return {
        prompt: prompt_schedule(prompt, steps, hires_steps, old_timelines)
        for prompt in dict.fromkeys(prompts)
    }


def _switch_step(when: str, total: int, whole_offset: int, fraction_offset: float, old: bool) -> int:
    value = float(when)
    if old:
        value = value * total if value < 1 else value
    elif "." in when:
        value = (value - fraction_offset) * total
    else:
        value = value - whole_offset
    # A1111 crashes on an infinite ``when`` (1e999); here it means "never"/"always".
    if math.isinf(value):
        return total if value > 0 else -1
    return min(total, int(value))


def _render(tree: tuple, step: int, switch_step) -> str:
    pieces: list[str] = []

    def emit(nodes: tuple) -> None:
        for node in nodes:
            if isinstance(node, str):
                pieces.append(node)
            elif isinstance(node, _Edit):
                emit(node.before if step <= switch_step(node.when) else node.after)
            else:
                emit(node.options[(step - 1) % len(node.options)])

    emit(tree)
    return "".join(pieces)


def _walk(nodes: tuple):
    """Every edit and cycle, including those inside branches not shown."""
    for node in nodes:
        if isinstance(node, _Edit):
            yield node
            yield from _walk(node.before)
            yield from _walk(node.after)
        elif isinstance(node, _Cycle):
            yield node
            for option in node.options:
                yield from _walk(option)


class _Parser:
    """Recursive descent over one prompt; group results are memoised by position."""

    def __init__(self, text: str):
        self.text = text
        self.groups: dict[int, tuple | None] = {}

    def top_level(self) -> tuple:
        text, nodes, i = self.text, [], 0
        while i < len(text):
            char = text[i]
            if char in "([":
                group = self.group(i, 0)
                if group is not None:
                    nodes.extend(group[0])
                    i = group[1]
                    continue
            if char in "()[]:":
                nodes.append(char)
                i += 1
            elif char == "|":
                raise _Unparseable
            else:
                i = self.plain(i, nodes)
                if i < 0:
                    raise _Unparseable
        return tuple(nodes)

    def plain(self, i: int, nodes: list) -> int:
        """Append the text run at ``i``; return its end, or -1 on a dangling backslash."""
        text, start = self.text, i
        while i < len(text) and text[i] not in "()[]:|":
            if text[i] == "\\":
                if i + 1 >= len(text) or text[i + 1] == "\n":
                    return -1
                i += 1
            i += 1
        nodes.append(text[start:i])
        return i

    def sequence(self, i: int, depth: int) -> tuple[tuple, int] | None:
        """Text and groups up to the next bare ``)]:|``; None if something inside is malformed."""
        text, nodes = self.text, []
        while i < len(text) and text[i] not in _ENDS_INSIDE:
            if text[i] in "([":
                group = self.group(i, depth)
                if group is None:
                    return None
                nodes.extend(group[0])
                i = group[1]
            else:
                i = self.plain(i, nodes)
                if i < 0:
                    return None
        return tuple(nodes), i

    def group(self, start: int, depth: int) -> tuple[tuple, int] | None:
        """The group opening at ``start`` as (nodes, end), or None if it is not one."""
        if start not in self.groups:
            if depth >= _MAX_DEPTH:
                raise _Unparseable
            opener = self.text[start]
            parse = self.round_group if opener == "(" else self.square_group
            self.groups[start] = parse(start + 1, depth + 1)
        return self.groups[start]

    def round_group(self, i: int, depth: int) -> tuple[tuple, int] | None:
        first = self.sequence(i, depth)
        if first is None:
            return None
        inner, i = first
        parts = ["(", *inner]
        if self.at(i, ":"):
            second = self.sequence(i + 1, depth)
            if second is None:
                return None
            parts += [":", *second[0]]
            i = second[1]
        if not self.at(i, ")"):
            return None
        return (*parts, ")"), i + 1

    def square_group(self, i: int, depth: int) -> tuple[tuple, int] | None:
        first = self.sequence(i, depth)
        if first is None:
            return None
        inner, i = first
        if self.at(i, "]"):
            return ("[", *inner, "]"), i + 1
        if self.at(i, "|"):
            return self.cycle(inner, i, depth)
        if self.at(i, ":"):
            return self.edit(inner, i + 1, depth)
        return None

    def cycle(self, first: tuple, i: int, depth: int) -> tuple[tuple, int] | None:
        options = [first]
        while self.at(i, "|"):
            option = self.sequence(i + 1, depth)
            if option is None:
                return None
            options.append(option[0])
            i = option[1]
        if not self.at(i, "]"):
            return None
        return (_Cycle(tuple(options)),), i + 1

    def edit(self, first: tuple, i: int, depth: int) -> tuple[tuple, int] | None:
        when = self.when(i)
        if when is not None:  # [to:when]
            return (_Edit((), first, when[0]),), when[1]
        second = self.sequence(i, depth)
        if second is None or not self.at(second[1], ":"):
            return None
        when = self.when(second[1] + 1)
        if when is None:
            return None
        return (_Edit(first, second[0], when[0]),), when[1]

    def when(self, i: int) -> tuple[str, int] | None:
        """``\\s* NUMBER \\s* ]`` at ``i`` as (number, end after ``]``)."""
        i = _SPACE.match(self.text, i).end()
        number = _NUMBER.match(self.text, i)
        if number is None:
            return None
        i = _SPACE.match(self.text, number.end()).end()
        if not self.at(i, "]"):
            return None
        return number.group(0), i + 1

    def at(self, i: int, char: str) -> bool:
        return i < len(self.text) and self.text[i] == char


def _parse(text: str) -> tuple:
    return _Parser(text).top_level()
