"""Infotext: the generation parameters text A1111 stores in every image, written and read exactly as A1111 does.

Layout (lines joined by ``\\n``, whole text stripped)::

    <prompt, may span lines>
    Negative prompt: <negative prompt>      (only when the negative prompt is non-empty)
    Steps: 20, Sampler: DPM++ 2M, ...       (one line, always last)

Users paste these texts between A1111, Forge, SD.Next and this app, so every rule here is a compatibility rule,
not a style choice.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping

# A1111's own order for the fields it knows. Anything else (hires fix, inpaint, LoRA hashes, extension keys) follows
# in insertion order, then Version and User close the line. FP8 weight / Cache FP16 weight for LoRA /
# Token merging ratio hr are A1111 fields too; they sit where A1111 puts them.
INFOTEXT_FIELD_ORDER: tuple[str, ...] = (
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Image CFG scale",
    "Seed",
    "Face restoration",
    "Size",
    "Model hash",
    "Model",
    "FP8 weight",
    "Cache FP16 weight for LoRA",
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Denoising strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "Token merging ratio",
    "Token merging ratio hr",
    "Init image hash",
    "RNG",
    "Tiling",
)
INFOTEXT_TRAILING_FIELDS: tuple[str, ...] = ("Version", "User")

# What A1111 assumes when a key is missing from a pasted infotext (older images never wrote them).
PARSE_DEFAULTS: Mapping[str, str] = {
    "Clip skip": "1",
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": "32",
}

# Names as users see them (reference section 6). Used to split old combined names such as "DPM++ 2M Karras".
KNOWN_SAMPLERS: tuple[str, ...] = (
    "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a", "Euler",
    "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart", "DDIM", "PLMS", "UniPC", "LCM",
)
KNOWN_SCHEDULES: tuple[str, ...] = (
    "Automatic", "Uniform", "Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal",
    "Align Your Steps", "Simple", "Normal", "DDIM", "Beta",
)

# The reading pattern is A1111's: a key starts with a word character and may hold spaces, '-' and '/'; a value is
# either a JSON string (with escapes) or everything up to the next comma.
PARAM_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
NEGATIVE_PROMPT_PREFIX = "Negative prompt:"
# A last line with fewer pairs than this is prose (a prompt that happens to contain "a: b"), not parameters.
MIN_PAIRS_FOR_PARAMETERS_LINE = 3


def quote_value(value: object) -> str:
    """A value as A1111 writes it: JSON-quoted only when it contains ``,`` ``:`` or a newline (which would break
    the one-line ``key: value, ...`` layout), otherwise as is."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    try:
        return json.dumps(value, ensure_ascii=False)
    except TypeError:
        return json.dumps(text, ensure_ascii=False)


def unquote_value(value: str) -> str:
    """Undo ``quote_value``: a JSON string literal is decoded; anything else (or broken JSON) is kept verbatim."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def ordered_params(params: Mapping[str, object]) -> dict[str, object]:
    """``params`` in A1111's order: ``INFOTEXT_FIELD_ORDER`` first, then the other keys in insertion order, then
    Version and User. None values are kept (``format_infotext`` leaves them out), so callers can build the dict
    unconditionally."""
    known = [key for key in INFOTEXT_FIELD_ORDER if key in params]
    trailing = [key for key in INFOTEXT_TRAILING_FIELDS if key in params]
    placed = set(known) | set(trailing)
    extras = [key for key in params if key not in placed]
    return {key: params[key] for key in (*known, *extras, *trailing)}


def format_parameters_line(params: Mapping[str, object]) -> str:
    """The ``Steps: 20, Sampler: ...`` line, in the order given. A value equal to its key is written bare."""
    parts = [key if key == value else f"{key}: {quote_value(value)}" for key, value in params.items()
             if value is not None]
    return ", ".join(parts)


def format_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """The full infotext. ``params`` is written in the order given; pass it through ``ordered_params`` to get
    A1111's order when building it from scratch (a parsed dict is already in its original order)."""
    negative_line = f"\n{NEGATIVE_PROMPT_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_line}\n{format_parameters_line(params)}".strip()


def parse_parameters_line(line: str) -> dict[str, str]:
    """``key: value`` pairs of one parameters line; quoted values decoded, ``WxH`` values split into ``K-1``/``K-2``."""
    fields: dict[str, str] = {}
    for key, raw_value in PARAM_PAIR.findall(line):
        value = unquote_value(raw_value)
        size = IMAGE_SIZE.match(value)
        if size:
            fields[f"{key}-1"], fields[f"{key}-2"] = size.group(1), size.group(2)
        else:
            fields[key] = value
    return fields


def split_sampler_and_schedule(sampler: str) -> tuple[str, str | None]:
    """Old infotexts name the schedule inside the sampler ("DPM++ 2M Karras"). Returns (sampler, schedule or None).
    Only splits when what remains is a known sampler, so "DDIM" or "DPM++ 2M SDE Heun" stay whole."""
    if sampler in KNOWN_SAMPLERS:
        return sampler, None
    samplers_by_folded = {name.casefold(): name for name in KNOWN_SAMPLERS}
    # Longest suffix first: "... SGM Uniform" must not be read as "... SGM" + "Uniform".
    for schedule in sorted(KNOWN_SCHEDULES, key=len, reverse=True):
        suffix = " " + schedule
        if sampler.casefold().endswith(suffix.casefold()):
            base = samplers_by_folded.get(sampler[: -len(suffix)].casefold())
            if base is not None:
                return base, schedule
    return sampler, None


def _with_schedule_split(fields: dict[str, str]) -> dict[str, str]:
    sampler, schedule = split_sampler_and_schedule(fields.get("Sampler", ""))
    if schedule is None:
        return fields
    result: dict[str, str] = {}
    for key, value in fields.items():
        if key == "Schedule type":
            continue  # re-placed right after Sampler below
        result[key] = sampler if key == "Sampler" else value
        if key == "Sampler":
            result["Schedule type"] = schedule
    return result


def parse_infotext(text: str, *, raw: bool = False) -> dict[str, str]:
    """Read an infotext the way A1111 pastes it: ``Prompt``, ``Negative prompt`` and every parameter as strings.

    Unless ``raw``: missing keys get ``PARSE_DEFAULTS`` and an old combined sampler name is split into Sampler and
    Schedule type. ``raw=True`` gives exactly what the text says, which ``split_parsed`` turns back into the same
    text.
    """
    *lines, last_line = text.strip().split("\n")
    if len(PARAM_PAIR.findall(last_line)) < MIN_PAIRS_FOR_PARAMETERS_LINE:
        lines.append(last_line)
        last_line = ""

    prompt = negative_prompt = ""
    in_negative = False
    for line in lines:
        line = line.strip()
        if not in_negative and line.startswith(NEGATIVE_PROMPT_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PROMPT_PREFIX):].strip()
        if in_negative:
            negative_prompt = _append_line(negative_prompt, line)
        else:
            prompt = _append_line(prompt, line)

    fields = parse_parameters_line(last_line)
    parsed = {"Prompt": prompt, "Negative prompt": negative_prompt, **fields}
    if raw:
        return parsed
    parsed = _with_schedule_split(parsed)
    for key, default in PARSE_DEFAULTS.items():
        parsed.setdefault(key, default)
    return parsed


def _append_line(text: str, line: str) -> str:
    # A1111 adds the newline only after non-empty text, so "Negative prompt:\nbad hands" reads as "bad hands".
    return line if text == "" else f"{text}\n{line}"


def split_parsed(parsed: Mapping[str, str], *, drop_defaults: bool = False) -> tuple[str, str, dict[str, str]]:
    """Turn a ``parse_infotext`` result back into ``(prompt, negative_prompt, params)`` for ``format_infotext``.

    ``K-1``/``K-2`` pairs become one ``WxH`` value at K-1's place. ``drop_defaults`` removes values equal to
    ``PARSE_DEFAULTS`` (undoing a non-raw parse); it also drops such a value that the text stated explicitly, which
    A1111 itself never writes for Clip skip 1 or RNG GPU.
    """
    params: dict[str, str] = {}
    for key, value in parsed.items():
        if key in ("Prompt", "Negative prompt"):
            continue
        if drop_defaults and PARSE_DEFAULTS.get(key) == value:
            continue
        base = key[:-2]
        if key.endswith("-1") and _is_size_half(parsed, base + "-1") and _is_size_half(parsed, base + "-2"):
            params[base] = f"{value}x{parsed[base + '-2']}"
        elif key.endswith("-2") and _is_size_half(parsed, base + "-1") and _is_size_half(parsed, key):
            continue
        else:
            params[key] = value
    return parsed.get("Prompt", ""), parsed.get("Negative prompt", ""), params


def _is_size_half(parsed: Mapping[str, str], key: str) -> bool:
    return str(parsed.get(key, "")).isdigit()
