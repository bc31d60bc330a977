"""Prompt matrix: ``a cat|in a hat|on a mat`` makes every combination of the parts after the first
(``a cat``, ``a cat, in a hat``, ``a cat, on a mat``, ``a cat, in a hat, on a mat``) and puts them into one
labelled grid: the first half of the optional parts vary across, the rest down, as in A1111."""
from __future__ import annotations

import dataclasses
import random

from paragoger.ext import api

from .xyz_grid import labelled_grid

MAX_PARTS = 10


def combinations(text: str, *, at_start: bool = False, joiner: str = ", ") -> list[str]:
    """Every prompt the matrix makes, in A1111's order: combination ``i`` holds optional part ``j`` when bit
    ``j`` of ``i`` is set."""
    base, *parts = [part.strip() for part in text.split("|")]
    if len(parts) > MAX_PARTS:
        raise api.ScriptError(f"Prompt matrix: {len(parts)} optional parts make {2 ** len(parts)} images; "
                              f"at most {MAX_PARTS} parts.")
    prompts = []
    for index in range(2 ** len(parts)):
        chosen = [part for bit, part in enumerate(parts) if index >> bit & 1]
        pieces = chosen + [base] if at_start else [base] + chosen
        prompts.append(joiner.join(piece for piece in pieces if piece))
    return prompts


def axis_labels(parts: list[str], bits: list[int]) -> list[str]:
    """Labels for the cells along one side: the parts that side switches on, or "-" for none."""
    labels = []
    for index in range(2 ** len(bits)):
        on = [parts[bit] for position, bit in enumerate(bits) if index >> position & 1]
        labels.append(", ".join(on) or "-")
    return labels


class PromptMatrix(api.Script):
    title = "Prompt matrix"

    def ui(self, is_img2img):
        return {
            "put_at_start": api.Checkbox("Put variable parts at start of prompt", False),
            "different_seeds": api.Checkbox("Use different seed for each picture", False),
            "prompt_type": api.Dropdown("Select prompt", ["positive", "negative"], "positive"),
            "variations_delimiter": api.Dropdown("Select joining char", ["comma", "space"], "comma"),
            "margin_size": api.Slider("Grid margins (px)", 0, 500, 0, step=2),
        }

    def run(self, p, args):
        field = "negative_prompt" if args.get("prompt_type") == "negative" else "prompt"
        text = getattr(p.request, field)
        if "|" not in text:
            raise api.ScriptError(f"Prompt matrix: the {args.get('prompt_type') or 'positive'} prompt has no "
                                  f"'|' between parts.")
        joiner = " " if args.get("variations_delimiter") == "space" else ", "
        prompts = combinations(text, at_start=bool(args.get("put_at_start")), joiner=joiner)
        parts = [part.strip() for part in text.split("|")][1:]
        seed = p.request.seed if p.request.seed not in (None, -1) else random.randrange(0, 4294967295)
        for prompt in prompts[:1]:
            p.check(**{field: prompt})
        p.check_plan(self.title, len(prompts) * p.request.image_count)
        results = []
        for index, prompt in enumerate(prompts):
            if p.interrupted:
                break
            p.set_progress_text(f"Prompt matrix: {index + 1}/{len(prompts)}")
            extra = dict(p.request.extra_params)
            if index == 0:
                extra["Script"] = self.title
            results.append(p.generate(**{field: prompt}, seed=seed + (index if args.get("different_seeds") else 0),
                                      do_not_save_grid=True, extra_params=extra))
        if not results:
            raise api.ScriptError("Prompt matrix was interrupted before the first image.")
        images = [result.images[0].image for result in results] + [None] * (len(prompts) - len(results))
        across = list(range((len(parts) + 1) // 2))
        down = list(range(len(across), len(parts)))
        present = [image for image in images if image is not None]
        grid = labelled_grid(images, 2 ** len(across), max(i.width for i in present), max(i.height for i in present),
                             axis_labels(parts, across), axis_labels(parts, down) if down else [],
                             int(args.get("margin_size") or 0))
        first = results[0]
        grid_path = p.save_grid(grid, first.images[0].infotext)
        outputs = [dataclasses.replace(first.images[0], image=grid, path=grid_path)]
        outputs += [item for result in results for item in result.images]
        return dataclasses.replace(first, images=outputs, grid=None, grid_path=grid_path,
                                   interrupted=len(results) < len(prompts))
