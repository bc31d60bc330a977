"""Localizations: A1111's JSON files (English text -> translated text), chosen with the "localization" setting.

A language's table is the union of ``localizations/<language>.json`` shipped with the app, the same file in the
data dir's ``localizations`` folder (a user's own, as in A1111) and every active extension's
``localizations/<language>.json``; later files win. Keys may be widget labels ("Sampling steps") or message ids
("size_not_multiple_of_8"), so one table translates the page and the errors it shows.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from paragoger.paths import PROJECT_ROOT

NO_LOCALIZATION = "None"
SHIPPED_DIR = PROJECT_ROOT / "localizations"


def localization_files(data_dir: Path, extension_files: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """Language name -> its files, in the order they apply."""
    found: dict[str, list[Path]] = {}
    for folder in dict.fromkeys([SHIPPED_DIR, Path(data_dir) / "localizations"]):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            found.setdefault(path.stem, []).append(path)
    for language, paths in extension_files.items():
        found.setdefault(language, []).extend(paths)
    return found


def load_table(files: list[Path]) -> dict[str, str]:
    """The merged table; a file that is not a JSON object of strings is skipped with a warning (the page is
    then partly English rather than broken)."""
    table: dict[str, str] = {}
    for path in files:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as err:
            print(f"Localization file {path} skipped: {err}", file=sys.stderr, flush=True)
            continue
        table.update({str(k): v for k, v in data.items() if isinstance(v, str)})
    return table
