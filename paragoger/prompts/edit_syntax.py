"""Parse prompt-editing syntax into a tree of text, edits and cycles.

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
- A group directly followed by a stray bracket or colon (``[a:3]:``) is
  ambiguous in A1111's grammar, and which reading A1111 takes changes with
  Python's per-process hash seed.  Here the group always counts, one of the
  readings A1111 gives.

Unlike A1111, which stops at Python's recursion limit (about 150 levels),
nesting depth is unlimited: nothing here recurses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# lark's SIGNED_NUMBER, which A1111's grammar uses for ``when``.
_NUMBER = re.compile(r"[+-]?(?:\d+[eE][+-]?\d+|(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+)")
_SPACE = re.compile(r"\s*")

_ENDS_INSIDE = ")]:|"


@dataclass(frozen=True)
class Edit:
    """``[before:after:when]``; ``when`` as written, read by the scheduler."""

    before: tuple
    after: tuple
    when: str


@dataclass(frozen=True)
class Cycle:
    """``[a|b|c]``: one option per step, in turn."""

    options: tuple


class Unparseable(Exception):
    """The prompt is not valid prompt-editing syntax; it is used as plain text."""


def parse_edits(text: str) -> tuple:
    """The prompt as a flat tuple of ``str``, ``Edit`` and ``Cycle``; raises ``Unparseable``."""
    return _Parser(text).top_level()


class _Parser:
    """Parser for one prompt, without recursion.

    Every group is parsed before the top level, innermost first (in the order
    their closers appear), so parsing a group only looks up the groups inside
    it.  Openers without a partner are known not to be groups.
    """

    def __init__(self, text: str):
        self.text = text
        pairs, unmatched = _bracket_pairs(text)
        self.groups: dict[int, tuple[tuple, int] | None] = dict.fromkeys(unmatched)
        for opener in sorted(pairs, key=pairs.get):
            parse = self.round_group if text[opener] == "(" else self.square_group
            self.groups[opener] = parse(opener + 1)

    def top_level(self) -> tuple:
        text, nodes, i = self.text, [], 0
        while i < len(text):
            char = text[i]
            if char in "([":
                group = self.groups.get(i)
                if group is not None:
                    nodes.extend(group[0])
                    i = group[1]
                    continue
            if char in "()[]:":
                nodes.append(char)
                i += 1
            elif char == "|":
                raise Unparseable
            else:
                i = self.plain(i, nodes)
                if i < 0:
                    raise Unparseable
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

    def sequence(self, i: int) -> tuple[tuple, int] | None:
        """Text and groups up to the next bare ``)]:|``; None if something inside is malformed."""
        text, nodes = self.text, []
        while i < len(text) and text[i] not in _ENDS_INSIDE:
            if text[i] in "([":
                group = self.groups.get(i)
                if group is None:
                    return None
                nodes.extend(group[0])
                i = group[1]
            else:
                i = self.plain(i, nodes)
                if i < 0:
                    return None
        return tuple(nodes), i

    def round_group(self, i: int) -> tuple[tuple, int] | None:
        first = self.sequence(i)
        if first is None:
            return None
        inner, i = first
        parts = ["(", *inner]
        if self.at(i, ":"):
            second = self.sequence(i + 1)
            if second is None:
                return None
            parts += [":", *second[0]]
            i = second[1]
        if not self.at(i, ")"):
            return None
        return (*parts, ")"), i + 1

    def square_group(self, i: int) -> tuple[tuple, int] | None:
        first = self.sequence(i)
        if first is None:
            return None
        inner, i = first
        if self.at(i, "]"):
            return ("[", *inner, "]"), i + 1
        if self.at(i, "|"):
            return self.cycle(inner, i)
        if self.at(i, ":"):
            return self.edit(inner, i + 1)
        return None

    def cycle(self, first: tuple, i: int) -> tuple[tuple, int] | None:
        options = [first]
        while self.at(i, "|"):
            option = self.sequence(i + 1)
            if option is None:
                return None
            options.append(option[0])
            i = option[1]
        if not self.at(i, "]"):
            return None
        return (Cycle(tuple(options)),), i + 1

    def edit(self, first: tuple, i: int) -> tuple[tuple, int] | None:
        when = self.when(i)
        if when is not None:  # [to:when]
            return (Edit((), first, when[0]),), when[1]
        second = self.sequence(i)
        if second is None or not self.at(second[1], ":"):
            return None
        when = self.when(second[1] + 1)
        if when is None:
            return None
        return (Edit(first, second[0], when[0]),), when[1]

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


def _bracket_pairs(text: str) -> tuple[dict[int, int], list[int]]:
    """``({opener: its closer}, [openers that cannot start a group])``.

    Brackets pair like nested parentheses, escaped characters skipped.  A
    closer of the wrong kind spoils every opener still open around it (they
    all contain the broken group), as does the end of the text.
    """
    pairs: dict[int, int] = {}
    spoiled: list[int] = []
    open_at: list[int] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char in "([":
            open_at.append(i)
        elif char in ")]" and open_at:
            start = open_at.pop()
            if text[start] + char in ("()", "[]"):
                pairs[start] = i
            else:
                spoiled += [start, *open_at]
                open_at.clear()
        i += 1
    return pairs, spoiled + open_at
