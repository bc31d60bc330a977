"""From what the user typed to what is encoded, in A1111's order: styles, comments, extra-network tags, AND
split, then prompt-editing schedules. Pure text: the encoder turns each distinct scheduled text into tensors."""
from __future__ import annotations

from dataclasses import dataclass, field

from paragoger.prompts import extract_extra_networks, prompt_schedule, split_and, strip_comments


@dataclass(frozen=True)
class SubPrompt:
    """One ``AND`` part: its weight and its schedule ``[[end_step, text], ...]``."""

    weight: float
    schedule: list


@dataclass
class PreparedPrompts:
    prompt: str                      # after styles: what the infotext shows (tags kept, as A1111 writes it)
    negative_prompt: str
    positives: list[SubPrompt]
    negative: SubPrompt
    extra_networks: list = field(default_factory=list)   # ExtraNetworkCall from the positive prompt

    def texts(self) -> list[str]:
        """Every distinct text that has to be encoded, each once."""
        found = [text for part in [*self.positives, self.negative] for _, text in part.schedule]
        return list(dict.fromkeys(found))


def prepare_prompts(prompt: str, negative_prompt: str, *, steps: int, styles=None, style_names=(),
                    comments: bool = True, hires_steps: int | None = None) -> PreparedPrompts:
    """``hires_steps``: schedules for the hires fix's second pass of that many steps (``prompt_schedule``)."""
    if styles is not None and style_names:
        prompt = styles.apply(prompt, style_names)
        negative_prompt = styles.apply_negative(negative_prompt, style_names)
    text, negative_text = prompt, negative_prompt
    if comments:
        text, negative_text = strip_comments(text), strip_comments(negative_text)
    text, networks = extract_extra_networks(text)
    negative_text, _ = extract_extra_networks(negative_text)
    positives = [SubPrompt(weight, prompt_schedule(part, steps, hires_steps)) for part, weight in split_and(text)]
    negative = SubPrompt(1.0, prompt_schedule(negative_text, steps, hires_steps))
    return PreparedPrompts(prompt=prompt, negative_prompt=negative_prompt, positives=positives,
                           negative=negative, extra_networks=networks)
