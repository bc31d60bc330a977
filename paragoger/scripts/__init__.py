"""Built-in scripts, written against the public extension API (``paragoger.ext.api``) like any extension's."""
from __future__ import annotations


def builtin_scripts() -> list:
    """New instances of the built-in scripts, in Script dropdown order."""
    from .loopback import Loopback
    from .prompt_matrix import PromptMatrix
    from .prompts_from_file import PromptsFromFile
    from .xyz_grid import XYZPlot

    return [PromptMatrix(), PromptsFromFile(), XYZPlot(), Loopback()]
