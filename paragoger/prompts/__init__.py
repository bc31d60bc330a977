"""A1111 prompt language, as pure text functions (no torch here).

Order A1111 applies them in: styles, comments, extra networks, ``AND``
split, scheduling, then attention on each scheduled text.
"""

from paragoger.prompts.attention import parse_attention, split_on_break
from paragoger.prompts.comments import strip_comments
from paragoger.prompts.composable import split_and
from paragoger.prompts.extra_networks import ExtraNetworkCall, extract_extra_networks, lora_weights
from paragoger.prompts.schedule import prompt_schedule, schedules_for
from paragoger.prompts.styles import PromptStyle, StyleStore

__all__ = [
    "ExtraNetworkCall",
    "PromptStyle",
    "StyleStore",
    "extract_extra_networks",
    "lora_weights",
    "parse_attention",
    "prompt_schedule",
    "schedules_for",
    "split_and",
    "split_on_break",
    "strip_comments",
]
