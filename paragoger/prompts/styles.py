"""Prompt styles kept in an A1111 ``styles.csv``.

File facts (A1111 1.10.1): UTF-8, optionally with a byte-order mark; CSV with
a header row ``name,prompt,negative_prompt`` (old files: ``name,text``);
spaces after a delimiter are ignored; rows whose name starts with ``#`` are
skipped; the last row with a given name wins.  A1111 needs the header; this
store also reads a file without one (then the columns are name, prompt,
negative prompt), because the first row of such a file would otherwise be
eaten as a header.

Applying (``merge``): a style text containing ``{prompt}`` has every
``{prompt}`` replaced by the prompt as it is; otherwise the stripped prompt
and the stripped style text are joined by ``", "``, leaving out whichever is
empty.  Several styles apply in the order given, each to the previous result.

Extracting (reading an infotext back): a style is found in a prompt when its
prompt text is at the end of the stripped prompt (or, with ``{prompt}``, the
stripped prompt starts with the part before it and ends with the part after
it), and the same holds for its negative text in the negative prompt.  The
style text, and a ``", "`` left before it, is then removed.  Styles are
searched in file order, each used at most once, until none matches; the names
are returned in the order they were applied.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

PLACEHOLDER = "{prompt}"
_FIELDS = ("name", "prompt", "negative_prompt")


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def merge(style_text: str, prompt: str) -> str:
    """Apply one style text to a prompt."""
    if PLACEHOLDER in style_text:
        return style_text.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def apply_all(style_texts: Iterable[str], prompt: str) -> str:
    for style_text in style_texts:
        prompt = merge(style_text, prompt)
    return prompt


def remove_style_text(style_text: str, prompt: str) -> tuple[bool, str]:
    """Undo ``merge``: ``(True, prompt without the style)`` or ``(False, prompt)``."""
    stripped = prompt.strip()
    style = style_text.strip()
    if PLACEHOLDER in style:
        parts = style.split(PLACEHOLDER)
        # A1111 fails on a style with two placeholders; it simply never matches here.
        if len(parts) == 2:
            left, right = parts
            if stripped.startswith(left) and stripped.endswith(right):
                return True, stripped[len(left):len(stripped) - len(right)]
        return False, prompt
    if stripped.endswith(style):
        rest = stripped[:len(stripped) - len(style)]
        return True, rest[:-2] if rest.endswith(", ") else rest
    return False, prompt


class StyleStore:
    """The styles of one ``styles.csv``; create one per app and pass it around."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._styles: dict[str, PromptStyle] = {}
        self.reload()

    # -- reading -------------------------------------------------------------

    def reload(self) -> None:
        """Read the file again; a missing file means no styles.

        A file that cannot be read as UTF-8 CSV also gives no styles (as in
        A1111, which reports it and goes on); ``load_error`` says why, and
        saving refuses to overwrite it.
        """
        self.load_error: str | None = None
        try:
            table = _Table.parse(self._read_text())
        except (UnicodeDecodeError, csv.Error) as error:
            self.load_error = f"{self.path}: {error}"
            self._styles = {}
            return
        self._styles = {style.name: style for style in table.styles()}

    def names(self) -> list[str]:
        return list(self._styles)

    def get(self, name: str) -> PromptStyle | None:
        return self._styles.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._styles

    def __len__(self) -> int:
        return len(self._styles)

    # -- applying ------------------------------------------------------------

    def apply(self, prompt: str, names: Iterable[str]) -> str:
        """The prompt with the named styles applied in order (unknown names add nothing)."""
        return apply_all((self._style(name).prompt for name in names), prompt)

    def apply_negative(self, negative_prompt: str, names: Iterable[str]) -> str:
        return apply_all((self._style(name).negative_prompt for name in names), negative_prompt)

    def extract_styles(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """Find applied styles in a prompt pair: ``(names, prompt, negative_prompt)`` without them."""
        found: list[str] = []
        remaining = [style for style in self._styles.values() if style.prompt or style.negative_prompt]
        while True:
            for style in remaining:
                matched_prompt, new_prompt = remove_style_text(style.prompt, prompt)
                if not matched_prompt:
                    continue
                matched_negative, new_negative = remove_style_text(style.negative_prompt, negative_prompt)
                if not matched_negative:
                    continue
                prompt, negative_prompt = new_prompt, new_negative
                remaining.remove(style)
                found.append(style.name)
                break
            else:
                return found[::-1], prompt, negative_prompt

    # -- writing -------------------------------------------------------------

    def save_style(self, style: PromptStyle) -> None:
        """Add or replace one style in the file; every other row stays as it is.

        The file is read again first, so rows added by someone else, comment
        rows and extra columns survive.
        """
        table = _Table.parse(self._read_text())
        table.put(style)
        self._write(table.render())
        self.reload()

    def delete_style(self, name: str) -> None:
        table = _Table.parse(self._read_text())
        if table.remove(name):
            self._write(table.render())
        self.reload()

    def _read_text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            return ""

    def _style(self, name: str) -> PromptStyle:
        return self._styles.get(name) or PromptStyle(name)

    def _write(self, text: str) -> None:
        """Atomic: write a temporary file beside it, keep ``.bak`` as A1111 does, then replace."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8-sig", newline="") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            if self.path.exists():
                shutil.copyfile(self.path, f"{self.path}.bak")
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


@dataclass
class _Table:
    """The CSV as rows of cells, so saving one style rewrites nothing else."""

    header: list[str]
    rows: list[list[str]]

    @classmethod
    def parse(cls, text: str) -> "_Table":
        rows = [row for row in csv.reader(io.StringIO(text, newline=""), skipinitialspace=True) if row]
        if rows and "name" in _keys(rows[0]):
            return cls(rows[0], rows[1:])
        # No header: A1111 would take the first style for one; read it as data.
        return cls(list(_FIELDS), rows)

    def column(self, name: str) -> int | None:
        keys = _keys(self.header)
        if name == "prompt" and "prompt" not in keys and "text" in keys:
            name = "text"  # the old two-column format
        return keys.index(name) if name in keys else None

    def cell(self, row: list[str], name: str) -> str:
        index = self.column(name)
        return row[index] if index is not None and index < len(row) else ""

    def styles(self) -> list[PromptStyle]:
        return [
            PromptStyle(self.cell(row, "name"), self.cell(row, "prompt"), self.cell(row, "negative_prompt"))
            for row in self.rows
            if not self.cell(row, "name").startswith("#")
        ]

    def put(self, style: PromptStyle) -> None:
        for field_name in _FIELDS:
            if self.column(field_name) is None:
                self.header.append(field_name)
        same = [index for index, old in enumerate(self.rows) if self.cell(old, "name") == style.name]
        # A replaced row keeps its cells in columns A1111 does not know.
        row = list(self.rows[same[0]]) if same else []
        row += [""] * (len(self.header) - len(row))
        for field_name, value in zip(_FIELDS, (style.name, style.prompt, style.negative_prompt)):
            row[self.column(field_name)] = value
        if same:
            self.rows[same[0]] = row
            self.rows = [old for index, old in enumerate(self.rows) if index not in same[1:]]
        else:
            self.rows.append(row)

    def remove(self, name: str) -> bool:
        kept = [row for row in self.rows if self.cell(row, "name") != name]
        removed = len(kept) != len(self.rows)
        self.rows = kept
        return removed

    def render(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return buffer.getvalue()


def _keys(header: list[str]) -> list[str]:
    """Header cells as column keys (A1111 wants them lower case; accept any case)."""
    return [cell.strip().lower() for cell in header]
