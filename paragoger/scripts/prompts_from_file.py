"""Prompts from file or textbox: one generation per line. A line is a plain prompt, or A1111's options:
``--prompt "a cat" --negative_prompt "blurry" --steps 20 --cfg_scale 7 --seed 1 --width 512 --height 512
--sampler_name "Euler a"``. Lines are all read (and an unknown option or bad value reported with its line
number) before the first generation."""
from __future__ import annotations

import dataclasses
import random
import shlex

from paragoger.ext import api


def _bool(value: str) -> bool:
    lowered = value.strip().casefold()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(value)


# A1111's option names -> (request field, type)
OPTIONS = {
    "prompt": ("prompt", str), "negative_prompt": ("negative_prompt", str), "styles": ("styles", list),
    "seed": ("seed", int), "subseed": ("subseed", int), "subseed_strength": ("subseed_strength", float),
    "seed_resize_from_w": ("seed_resize_from_w", int), "seed_resize_from_h": ("seed_resize_from_h", int),
    "sampler_name": ("sampler_name", str), "scheduler": ("scheduler", str), "batch_size": ("batch_size", int),
    "n_iter": ("n_iter", int), "steps": ("steps", int), "cfg_scale": ("cfg_scale", float),
    "width": ("width", int), "height": ("height", int), "sd_model": ("checkpoint", str),
    "clip_skip": ("clip_skip", int), "denoising_strength": ("denoising_strength", float),
    "do_not_save_grid": ("do_not_save_grid", bool), "do_not_save_samples": ("save_images", "not"),
}
IGNORED = {"outpath_samples", "outpath_grids", "prompt_for_display", "restore_faces", "tiling", "sampler_index"}


def parse_line(line: str) -> dict:
    """The request changes one line asks for; raises ValueError with the reason."""
    line = line.strip()
    if not line.startswith("--"):
        return {"prompt": line}
    try:
        words = shlex.split(line)
    except ValueError as err:
        raise ValueError(f"cannot be split into options ({err})") from None
    changes: dict = {}
    position = 0
    while position < len(words):
        word = words[position]
        if not word.startswith("--"):
            raise ValueError(f"'{word}' is not an option (options start with --)")
        name = word[2:]
        values = []
        position += 1
        while position < len(words) and not words[position].startswith("--"):
            values.append(words[position])
            position += 1
        if name in IGNORED:
            continue
        if name not in OPTIONS:
            raise ValueError(f"unknown option --{name}; known: "
                             + ", ".join(f"--{n}" for n in OPTIONS))
        field, kind = OPTIONS[name]
        if kind is list:
            changes[field] = values
            continue
        if not values:
            if kind in (bool, "not"):
                values = ["true"]
            else:
                raise ValueError(f"--{name} needs a value")
        text = " ".join(values)
        try:
            if kind == "not":
                changes[field] = not _bool(text)
            elif kind is bool:
                changes[field] = _bool(text)
            else:
                changes[field] = kind(text)
        except ValueError:
            raise ValueError(f"--{name} {text!r} is not a valid {getattr(kind, '__name__', 'flag')}") from None
    return changes


def parse_lines(text: str) -> list[dict]:
    jobs = []
    for number, line in enumerate(str(text or "").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            jobs.append(parse_line(line))
        except ValueError as err:
            raise api.ScriptError(f"Prompts from file, line {number}: {err}.") from None
    return jobs


class PromptsFromFile(api.Script):
    title = "Prompts from file or textbox"

    def ui(self, is_img2img):
        return {
            "checkbox_iterate": api.Checkbox("Iterate seed every line", False),
            "checkbox_iterate_batch": api.Checkbox("Use same random seed for all lines", False),
            "prompt_position": api.Dropdown("Insert prompts at the", ["start", "end"], "start"),
            "prompt_txt": api.Textbox("List of prompt inputs", "", lines=6),
        }

    def run(self, p, args):
        jobs = parse_lines(args.get("prompt_txt"))
        if not jobs:
            raise api.ScriptError("Prompts from file: no prompts given.")
        base_prompt = p.request.prompt.strip()
        seed = p.request.seed
        if (args.get("checkbox_iterate") or args.get("checkbox_iterate_batch")) and seed in (None, -1):
            seed = random.randrange(0, 4294967295)
        planned = []
        for number, changes in enumerate(jobs):
            changes = dict(changes)
            if "prompt" in changes and base_prompt:
                changes["prompt"] = (f"{changes['prompt']} {base_prompt}" if args.get("prompt_position") != "end"
                                     else f"{base_prompt} {changes['prompt']}")
            if "seed" not in changes and seed not in (None, -1):
                changes["seed"] = seed
                if args.get("checkbox_iterate"):
                    seed += (changes.get("batch_size", p.request.batch_size)
                             * changes.get("n_iter", p.request.n_iter))
            try:
                p.check(**changes)
            except api.UserError as err:
                raise api.ScriptError(f"Prompts from file, prompt {number + 1}: {err}") from None
            planned.append(changes)
        request = p.request
        pictures = sum(changes.get("batch_size", request.batch_size) * changes.get("n_iter", request.n_iter)
                       for changes in planned)
        p.check_plan(self.title, pictures)  # the whole plan against the limit
        results = []
        for number, changes in enumerate(planned):
            if p.interrupted:
                break
            p.set_progress_text(f"Prompts from file: {number + 1}/{len(planned)}")
            result = p.generate(**changes)
            results.append(result)
        if not results:
            raise api.ScriptError("Prompts from file was interrupted before the first image.")
        first = results[0]
        return dataclasses.replace(first, images=[item for r in results for item in r.images], grid=None,
                                   grid_path=None, interrupted=len(results) < len(planned))
