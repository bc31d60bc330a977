"""Prompt comments: ``#`` hides the rest of its line (A1111's "Enable comments").

A1111 facts (setting on by default):

- A line that starts with ``#`` is removed together with its line break
  (``"a\\n# note\\nb"`` -> ``"a\\nb"``).
- Elsewhere, ``#`` up to the end of its line is removed; the line break stays,
  and a comment on the last line leaves a line break behind
  (``"a # note"`` -> ``"a \\n"``).
- A prompt that is only a comment becomes ``"\\n"``.
- There is no escape: every ``#`` starts a comment.

Applied after styles and before extra networks are read, to the prompt, the
negative prompt and both hires prompts, and before counting tokens.
"""

from __future__ import annotations

import re

# Both rules replace a match with one "\n"; the first only matches a comment
# that fills a whole line (start of text or after a line break).
_WHOLE_LINE = re.compile(r"(^|\n)#[^\n]*(\n|$)")
_REST_OF_LINE = re.compile(r"#[^\n]*(\n|$)")


def strip_comments(text: str) -> str:
    """Remove ``#`` comments from ``text`` exactly as A1111 does."""
    return _REST_OF_LINE.sub("\n", _WHOLE_LINE.sub("\n", text))
