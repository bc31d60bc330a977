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
With old timelines A1111 ignores the hires count and schedules over ``steps``.

Which brackets are syntax is decided in ``edit_syntax``.  Unlike A1111, an
infinite ``when`` (``1e999``) does not raise.
"""

from __future__ import annotations

import math
from typing import Iterable

from paragoger.prompts.edit_syntax import Cycle, Edit, Unparseable, parse_edits


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
        tree = parse_edits(prompt)
    except Unparseable:
        return [[total, prompt]]

    def switch_step(when: str) -> int:
        return _switch_step(when, total, whole_offset, fraction_offset, old_timelines)

    ends = {total}
    for node in _walk(tree):
        if isinstance(node, Edit):
            step = switch_step(node.when)
            if step >= 1:
                ends.add(step)
        elif isinstance(node, Cycle):
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
    # An explicit stack instead of recursion: nesting depth is the user's to choose.
    pieces: list[str] = []
    pending = list(reversed(tree))
    while pending:
        node = pending.pop()
        if isinstance(node, str):
            pieces.append(node)
        elif isinstance(node, Edit):
            pending.extend(reversed(node.before if step <= switch_step(node.when) else node.after))
        else:
            pending.extend(reversed(node.options[(step - 1) % len(node.options)]))
    return "".join(pieces)


def _walk(tree: tuple):
    """Every edit and cycle, including those inside branches not shown."""
    pending = list(tree)
    while pending:
        node = pending.pop()
        if isinstance(node, Edit):
            yield node
            pending.extend(node.before + node.after)
        elif isinstance(node, Cycle):
            yield node
            for option in node.options:
                pending.extend(option)
