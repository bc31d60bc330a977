"""X/Y/Z plot: one generation per combination of up to three axes' values, put into one labelled grid.

Axis values are typed as in A1111: a comma list (quotes keep a comma inside a value), and for numbers ranges:
``1-5`` (1, 2, 3, 4, 5), ``10-30 (+5)`` (10, 15, ..., 30), ``1-3 [5]`` (5 evenly spaced values from 1 to 3).
A seed of -1 is made random once, so every cell shares it (unless the axis is Seed; ``-1`` on the Seed axis
gives each value its own random seed). Prompt S/R replaces the axis's first value in the prompt (and the negative
prompt) with each value in turn. Every cell is checked before the first is generated: a bad axis text is a
ScriptError with the reason, and nothing is generated.

The grid (X across, Y down; with a Z axis one grid per Z value, side by side) is the first image of the result
and is saved with the first cell's infotext, which also carries "Script", "X Type", "X Values", ... as A1111's.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from PIL import Image

from paragoger.ext import api

TITLE = "X/Y/Z plot"
MAX_CELLS = 1000
_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*(?:\d+\.?\d*|\.\d+)"


# --- values --------------------------------------------------------------------------------------------------------

def split_list(text: str) -> list[str]:
    """Comma-separated values as A1111 reads them (CSV: quotes allowed), stripped, empty ones dropped."""
    text = str(text or "").strip()
    if not text:
        return []
    rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    return [value.strip() for row in rows for value in row if value.strip()]


def _number_range(item: str, number: str, convert: Callable[[str], Any], is_int: bool) -> list | None:
    item = item.strip()
    stepped = re.fullmatch(rf"({number})\s*-\s*({number})\s*(?:\(\s*({number})\s*\))?", item)
    if stepped:
        start, end = convert(stepped[1]), convert(stepped[2])
        step = convert(stepped[3]) if stepped[3] else (1 if end >= start else -1)
        if step == 0 or (end - start) * step < 0:
            raise api.ScriptError(f"'{item}' is an empty range: the step {step} does not lead from {start} "
                                  f"to {end}.")
        count = int(round((end - start) / step, 9)) + 1 if not is_int else (end - start) // step + 1
        if count > MAX_CELLS:
            raise api.ScriptError(f"'{item}' has {count} values; at most {MAX_CELLS}.")
        values = [start + i * step for i in range(count)]
        return values if is_int else [round(v, 8) for v in values]
    counted = re.fullmatch(rf"({number})\s*-\s*({number})\s*\[\s*(\d+)\s*\]?", item)
    if counted:
        start, end, count = convert(counted[1]), convert(counted[2]), int(counted[3])
        if not 1 <= count <= MAX_CELLS:
            raise api.ScriptError(f"'{item}' asks for {count} values; 1 to {MAX_CELLS} are possible.")
        if count == 1:
            return [start]
        values = [start + (end - start) * i / (count - 1) for i in range(count)]
        return [int(v) for v in values] if is_int else [round(v, 8) for v in values]
    return None


def _parse_numbers(text: str, pattern, convert, whole: bool, what: str) -> list:
    values: list = []
    for item in split_list(text):
        ranged = _number_range(item, pattern, lambda s: convert(s.replace(" ", "")), whole)
        if ranged is None:
            try:
                ranged = [convert(item.replace(" ", ""))]
            except ValueError:
                raise api.ScriptError(f"'{item}' is not {what}.") from None
        values += ranged
    return values


def parse_ints(text: str) -> list[int]:
    """``1-5``, ``10-30 (+5)``, ``1-3 [5]`` (truncated to whole numbers, as A1111) and plain numbers."""
    return _parse_numbers(text, _INT, int, True, "a whole number or a range like 1-5, 10-30 (+5) or 1-3 [5]")


def parse_floats(text: str) -> list[float]:
    """As ``parse_ints`` for decimal numbers: ``1-3 [5]`` gives 1.0, 1.5, 2.0, 2.5, 3.0."""
    return _parse_numbers(text, _FLOAT, float, False, "a number or a range like 1-5, 1-2 (+0.5) or 1-3 [5]")


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``512x768`` (width x height) or ``512`` (square)."""
    sizes = []
    for item in split_list(text):
        found = re.fullmatch(r"(\d+)\s*(?:[xX×*]\s*(\d+))?", item)
        if not found:
            raise api.ScriptError(f"'{item}' is not a size like 512x768 or 512.")
        width = int(found[1])
        sizes.append((width, int(found[2]) if found[2] else width))
    return sizes


def _choose(value: str, choices: list[str], what: str, *, strict: bool = True) -> str:
    """The choice ``value`` names (case-insensitive); unknown names are an error when ``strict``, else passed on
    as typed (the generation check then decides: aliases, old combined sampler names)."""
    key = value.strip().casefold()
    for choice in choices:
        if choice.casefold() == key:
            return choice
    if strict:
        raise api.ScriptError(f"Unknown {what} '{value}'. Known: {', '.join(choices) or 'none'}.")
    return value.strip()


# --- axes ------------------------------------------------------------------------------------------------------------

@dataclass
class Axis:
    label: str                                  # the dropdown name (and the label in "Steps: 20")
    parse: Callable[[Any, str], list]           # (p, text) -> values
    apply: Callable[[dict, Any, Any], None]     # (changes, value, base request) -> fills ``changes``
    labelled: bool = True                       # "Steps: 20" (True) or just the value ("Euler a")
    aliases: tuple[str, ...] = ()
    choices: Callable[[Any], list[str]] | None = None
    expensive: bool = False                     # model loads: these axes change as rarely as possible
    show: Callable[[Any], str] | None = None    # how a value reads in the legend (default: as typed)

    def format(self, value: Any) -> str:
        if self.label == "Nothing":
            return ""
        if self.show is not None:
            value = self.show(value)
        elif isinstance(value, tuple):
            value = "x".join(str(v) for v in value)
        elif isinstance(value, float):
            value = round(value, 8)
        return f"{self.label}: {value}" if self.labelled else str(value)


def _set(name: str):
    def apply(changes: dict, value: Any, base) -> None:
        changes[name] = value
    return apply


def _set_size(changes: dict, value: tuple[int, int], base) -> None:
    changes["width"], changes["height"] = value


def _prompt_sr(changes: dict, value: str, base, search: str) -> None:
    changes["prompt"] = changes.get("prompt", base.prompt).replace(search, value)
    changes["negative_prompt"] = changes.get("negative_prompt", base.negative_prompt).replace(search, value)


def _parse_choice(choices: Callable[[Any], list[str]], what: str, strict: bool = True):
    def parse(p, text: str) -> list[str]:
        return [_choose(value, choices(p), what, strict=strict) for value in split_list(text)]
    return parse


def _parse_prompt_sr(p, text: str) -> list[str]:
    values = split_list(text)
    if values:
        search = values[0]
        if search not in p.request.prompt and search not in p.request.negative_prompt:
            raise api.ScriptError(f"Prompt S/R did not find '{search}' in the prompt or the negative prompt.")
    return values


def _parse_prompt_order(p, text: str) -> list[tuple[str, ...]]:
    """Every order of the listed prompt parts (A1111's "Prompt order"): 3 parts make 6 cells."""
    parts = split_list(text)
    missing = [part for part in parts if part not in p.request.prompt]
    if missing:
        raise api.ScriptError(f"Prompt order did not find '{missing[0]}' in the prompt.")
    return list(itertools.permutations(parts))


def _prompt_order(changes: dict, order: tuple[str, ...], base) -> None:
    """The prompt with the listed parts put into ``order``, each into the place where one of them stood."""
    rest = changes.get("prompt", base.prompt)
    gaps = []
    for part in sorted(order, key=rest.index):
        before, _, rest = rest.partition(part)
        gaps.append(before)
    changes["prompt"] = "".join(gap + part for gap, part in zip(gaps, order)) + rest


AXES: list[Axis] = [
    Axis("Nothing", lambda p, text: [None], lambda changes, value, base: None),
    Axis("Seed", lambda p, text: parse_ints(text), _set("seed")),
    Axis("Var. seed", lambda p, text: parse_ints(text), _set("subseed"), aliases=("Variation seed",)),
    Axis("Var. strength", lambda p, text: parse_floats(text), _set("subseed_strength"),
         aliases=("Variation strength",)),
    Axis("Steps", lambda p, text: parse_ints(text), _set("steps")),
    Axis("CFG Scale", lambda p, text: parse_floats(text), _set("cfg_scale"), aliases=("CFG",)),
    Axis("Image CFG Scale", lambda p, text: parse_floats(text), _set("image_cfg_scale")),
    Axis("Prompt S/R", _parse_prompt_sr, None, labelled=False, aliases=("Prompt SR", "Prompt search/replace")),
    Axis("Prompt order", _parse_prompt_order, _prompt_order, labelled=False, show=", ".join),
    Axis("Sampler", _parse_choice(lambda p: p.sampler_names(), "sampler", strict=False), _set("sampler_name"),
         labelled=False, choices=lambda p: p.sampler_names()),
    Axis("Schedule type", _parse_choice(lambda p: p.schedule_names(), "schedule type"), _set("scheduler"),
         labelled=False, aliases=("Scheduler", "Schedule"), choices=lambda p: p.schedule_names()),
    Axis("Checkpoint name", _parse_choice(lambda p: p.checkpoint_names(), "checkpoint", strict=False),
         _set("checkpoint"), labelled=False, aliases=("Checkpoint", "Model"), choices=lambda p: p.checkpoint_names(),
         expensive=True),
    Axis("Denoising", lambda p, text: parse_floats(text), _set("denoising_strength"),
         aliases=("Denoising strength",)),
    Axis("Size", lambda p, text: parse_sizes(text), _set_size),
    Axis("Clip skip", lambda p, text: parse_ints(text), _set("clip_skip")),
    Axis("VAE", _parse_choice(lambda p: p.vae_names(), "VAE", strict=False), _set("vae"), labelled=False,
         choices=lambda p: p.vae_names(), expensive=True),
    # Hires. fix (they change the second pass; tick Hires. fix for them to show)
    Axis("Hires steps", lambda p, text: parse_ints(text), _set("hr_second_pass_steps")),
    Axis("Hires upscaler", _parse_choice(lambda p: p.upscaler_names(), "upscaler"), _set("hr_upscaler"),
         choices=lambda p: p.upscaler_names()),
    Axis("Hires sampler", _parse_choice(lambda p: p.sampler_names(), "sampler", strict=False),
         _set("hr_sampler_name"), choices=lambda p: p.sampler_names()),
]


# AUTOMATIC1111's API clients send the axis type as an index into its own dropdown, which differs between
# txt2img and img2img. Its first entries have kept their places since 1.6; later ones moved between versions,
# so only these are understood by number (anything else by name).
A1111_AXIS_INDEX = {
    "txt2img": ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "Hires steps", "CFG Scale", "Prompt S/R",
                "Prompt order", "Sampler", "Hires sampler", "Checkpoint name"],
    "img2img": ["Nothing", "Seed", "Var. seed", "Var. strength", "Steps", "CFG Scale", "Image CFG Scale",
                "Prompt S/R", "Prompt order", "Sampler", "Checkpoint name"],
}


def find_axis(name: Any, axes: list[Axis] = AXES, mode: str = "txt2img") -> Axis:
    """An axis by dropdown name or alias (case-insensitive), or by its number in AUTOMATIC1111's dropdown for
    ``mode`` (what its API clients send)."""
    if isinstance(name, int) or (isinstance(name, str) and name.strip().isdigit()):
        known = A1111_AXIS_INDEX.get(mode, A1111_AXIS_INDEX["txt2img"])
        index = int(name)
        if 0 <= index < len(known):
            name = known[index]
        else:
            raise api.ScriptError(f"X/Y/Z plot: axis number {index} is not one this app reads by number (0 to "
                                  f"{len(known) - 1}, AUTOMATIC1111's order); give the axis by name.")
    if name is None or str(name).strip() == "":
        return axes[0]
    else:
        key = str(name).strip().casefold()
        for axis in axes:
            if key in (axis.label.casefold(), *(alias.casefold() for alias in axis.aliases)):
                return axis
    names = ", ".join(axis.label for axis in axes)
    raise api.ScriptError(f"X/Y/Z plot has no axis '{name}'. Axes: {names}.")


def axis_from_extension(spec: api.XYZAxis) -> Axis:
    """An axis an extension registered: values parsed by kind, each put into a request field, a setting for
    that cell (override_settings) or an always-on script's argument."""
    if spec.choices is not None:
        choices = list(spec.choices)
        parse = _parse_choice(lambda p: choices, spec.label)
    else:
        convert = {"int": parse_ints, "float": parse_floats}.get(spec.kind)
        parse = (lambda p, text: convert(text)) if convert else (lambda p, text: split_list(text))

    def apply(changes: dict, value: Any, base) -> None:
        if spec.field:
            changes[spec.field] = value
        elif spec.setting:
            changes["override_settings"] = {**(base.override_settings or {}),
                                            **changes.get("override_settings", {}), spec.setting: value}
        else:
            scripts = {**(base.alwayson_scripts or {}), **changes.get("alwayson_scripts", {})}
            given = scripts.get(spec.script) or {}
            args = dict(given.get("args", given) if isinstance(given, dict) else {})
            scripts[spec.script] = {"args": {**args, spec.arg: value}}
            changes["alwayson_scripts"] = scripts

    return Axis(spec.label, parse, apply, labelled=spec.labelled, aliases=tuple(spec.aliases),
                choices=(lambda p: list(spec.choices)) if spec.choices is not None else None)


@dataclass
class PlannedAxis:
    axis: Axis
    text: str
    values: list

    @property
    def labels(self) -> list[str]:
        return [self.axis.format(value) for value in self.values]

    def apply(self, changes: dict, index: int, base) -> None:
        if self.axis.label == "Prompt S/R":
            _prompt_sr(changes, self.values[index], base, self.values[0])
        else:
            self.axis.apply(changes, self.values[index], base)


def plan_axis(p, letter: str, type_name: Any, text: Any, dropdown: Any = None, axes: list[Axis] = AXES, *,
              text_only: bool = False) -> PlannedAxis:
    """One axis's values, parsed and checked; ``text_only``: read the values box even for an axis with choices
    (A1111's "Use text inputs instead of dropdowns")."""
    axis = find_axis(type_name, axes, p.request.mode)
    if axis.label == "Nothing":
        return PlannedAxis(axis, "", [None])
    if isinstance(dropdown, (list, tuple)) and dropdown and axis.choices is not None and not text_only:
        text = ",".join('"' + str(v).replace('"', '""') + '"' for v in dropdown)
    text = str(text or "")
    try:
        values = axis.parse(p, text)
    except api.ScriptError as err:
        raise api.ScriptError(f"X/Y/Z plot, {letter} axis ({axis.label}): {err}") from None
    if not values:
        raise api.ScriptError(f"X/Y/Z plot, {letter} axis ({axis.label}): no values given.")
    planned = PlannedAxis(axis, text, values)
    if axis.choices is not None:    # names the app resolves itself (sampler aliases, checkpoint hashes)
        for index, value in enumerate(values):
            changes: dict = {}
            planned.apply(changes, index, p.request)
            try:
                p.check(**changes)
            except api.UserError as err:
                raise api.ScriptError(f"X/Y/Z plot, {letter} axis ({axis.label}): {err}") from None
    return planned


def _random_seed() -> int:
    return random.randrange(0, 4294967295)


# --- the grid ---------------------------------------------------------------------------------------------------------

def assemble(images: list, columns: int, cell_width: int, cell_height: int, margin: int = 0) -> Image.Image:
    """Images row by row into cells of one size (smaller ones centred), ``margin`` pixels between cells."""
    rows = max(1, -(-len(images) // columns))
    grid = Image.new("RGB", (columns * cell_width + (columns - 1) * margin,
                             rows * cell_height + (rows - 1) * margin), "#ffffff")
    for index, image in enumerate(images):
        if image is None:
            continue
        left = index % columns * (cell_width + margin) + (cell_width - image.width) // 2
        top = index // columns * (cell_height + margin) + (cell_height - image.height) // 2
        grid.paste(image.convert("RGB"), (left, top))
    return grid


def labelled_grid(images: list, columns: int, cell_width: int, cell_height: int, column_labels: list[str],
                  row_labels: list[str], margin: int = 0, legend: bool = True) -> Image.Image:
    grid = assemble(images, columns, cell_width, cell_height, margin)
    column_labels = column_labels if legend and any(column_labels) else []
    row_labels = row_labels if legend and any(row_labels) else []
    if not (column_labels or row_labels):
        return grid
    return api.annotate_grid(grid, cell_width=cell_width + margin, cell_height=cell_height + margin,
                             column_labels=column_labels, row_labels=row_labels,
                             font_size=max(10, (cell_width + cell_height) // 25))


def _cell_image(result):
    images = [item.image for item in result.images]
    if not images:
        return None
    return images[0] if len(images) == 1 else api.make_grid(images)


# --- the script -------------------------------------------------------------------------------------------------------

class XYZPlot(api.Script):
    title = TITLE

    def __init__(self):
        from paragoger.scripts.xyz_controlnet import CONTROLNET_AXES  # it builds on this module's Axis

        # this app's axes: the built-in ones, ControlNet's, then extensions' (``add_axis``)
        self.axes = [*AXES, *CONTROLNET_AXES]

    def add_axis(self, spec: api.XYZAxis) -> None:
        taken = {name.casefold() for axis in self.axes for name in (axis.label, *axis.aliases)}
        clash = [name for name in (spec.label, *spec.aliases) if name.casefold() in taken]
        if clash:
            raise ValueError(f"X/Y/Z axis name '{clash[0]}' is already taken")
        self.axes.append(axis_from_extension(spec))

    def ui(self, is_img2img):
        axis_names = [axis.label for axis in self.axes]
        # Names and order as A1111's script_args, so positional lists from its API clients line up.
        return {
            "x_type": api.Dropdown("X type", axis_names, "Seed"),
            "x_values": api.Textbox("X values", ""),
            "x_values_dropdown": api.Dropdown("X values (choices)", [], multiselect=True),
            "y_type": api.Dropdown("Y type", axis_names, "Nothing"),
            "y_values": api.Textbox("Y values", ""),
            "y_values_dropdown": api.Dropdown("Y values (choices)", [], multiselect=True),
            "z_type": api.Dropdown("Z type", axis_names, "Nothing"),
            "z_values": api.Textbox("Z values", ""),
            "z_values_dropdown": api.Dropdown("Z values (choices)", [], multiselect=True),
            "draw_legend": api.Checkbox("Draw legend", True),
            "include_lone_images": api.Checkbox("Include Sub Images", False),
            "include_sub_grids": api.Checkbox("Include Sub Grids", False),
            "no_fixed_seeds": api.Checkbox("Keep -1 for seeds", False),
            "vary_seeds_x": api.Checkbox("Vary seeds for X", False),
            "vary_seeds_y": api.Checkbox("Vary seeds for Y", False),
            "vary_seeds_z": api.Checkbox("Vary seeds for Z", False),
            "margin_size": api.Slider("Grid margins (px)", 0, 500, 0, step=2),
            "csv_mode": api.Checkbox("Use text inputs instead of dropdowns", False),
        }

    def plan(self, p, args) -> tuple[list[PlannedAxis], list[tuple[int, int, int, dict]]]:
        """The axes and every cell's request changes, each checked; raises ScriptError before any generation."""
        axes = [plan_axis(p, letter, args.get(f"{letter.lower()}_type"), args.get(f"{letter.lower()}_values"),
                          args.get(f"{letter.lower()}_values_dropdown"), self.axes,
                          text_only=bool(args.get("csv_mode"))) for letter in "XYZ"]
        xs, ys, zs = axes
        count = len(xs.values) * len(ys.values) * len(zs.values)
        if count > MAX_CELLS:
            raise api.ScriptError(f"X/Y/Z plot would make {count} images; at most {MAX_CELLS}.")
        base = p.request
        seed_axis = any(a.axis.label == "Seed" for a in axes)
        seed, subseed = base.seed, base.subseed
        if not args.get("no_fixed_seeds"):
            seed = _random_seed() if seed is None or int(seed) == -1 else int(seed)
            subseed = _random_seed() if subseed is None or int(subseed) == -1 else int(subseed)
            for planned in axes:
                if planned.axis.label == "Seed":
                    planned.values = [_random_seed() if v == -1 else v for v in planned.values]
        cells = []
        for iz in range(len(zs.values)):
            for iy in range(len(ys.values)):
                for ix in range(len(xs.values)):
                    changes: dict = {"seed": seed, "subseed": subseed, "do_not_save_grid": True}
                    for planned, index in ((xs, ix), (ys, iy), (zs, iz)):
                        planned.apply(changes, index, base)
                    if not seed_axis and int(changes["seed"]) != -1:
                        changes["seed"] = int(changes["seed"]) + (ix if args.get("vary_seeds_x") else 0) \
                            + (iy * len(xs.values) if args.get("vary_seeds_y") else 0) \
                            + (iz * len(xs.values) * len(ys.values) if args.get("vary_seeds_z") else 0)
                    cells.append((ix, iy, iz, changes))
        checked: set = set()
        for ix, iy, iz, changes in cells:
            key = repr(sorted((k, v) for k, v in changes.items() if k not in ("seed", "subseed", "prompt",
                                                                             "negative_prompt")))
            if key in checked:
                continue
            checked.add(key)
            try:
                p.check(**changes)
            except api.UserError as err:
                where = ", ".join(label for label in (xs.labels[ix], ys.labels[iy], zs.labels[iz]) if label)
                raise api.ScriptError(f"X/Y/Z plot cell ({where}): {err}") from None
        request = p.request
        pictures = sum(changes.get("batch_size", request.batch_size) * changes.get("n_iter", request.n_iter)
                       for _, _, _, changes in cells)
        p.check_plan(self.title, pictures)  # the whole plan against the limit
        return axes, cells

    def run(self, p, args):
        axes, cells = self.plan(p, args)
        xs, ys, zs = axes
        # Checkpoint and VAE axes change as rarely as possible: cells are generated grouped by them.
        expensive = [(i, planned) for i, planned in enumerate(axes) if planned.axis.expensive]
        order = sorted(range(len(cells)), key=lambda n: tuple(cells[n][i] for i, _ in reversed(expensive)))
        params = {"Script": TITLE}
        for letter, planned in zip("XYZ", axes):
            if planned.axis.label != "Nothing":
                params[f"{letter} Type"] = planned.axis.label
                params[f"{letter} Values"] = planned.text
        results: dict[int, Any] = {}
        interrupted = False
        for done, n in enumerate(order):
            if p.interrupted:
                interrupted = True
                break
            ix, iy, iz, changes = cells[n]
            p.set_progress_text(f"{TITLE}: {done + 1}/{len(cells)}")
            extra = dict(p.request.extra_params)
            if n == 0:
                extra.update(params)
            results[n] = p.generate(extra_params=extra, **changes)
            interrupted = interrupted or bool(getattr(results[n], "interrupted", False))
        if not results:
            raise api.ScriptError("X/Y/Z plot was interrupted before the first image.")

        images = [_cell_image(results[n]) if n in results else None for n in range(len(cells))]
        present = [image for image in images if image is not None]
        cell_width = max(image.width for image in present)
        cell_height = max(image.height for image in present)
        margin = int(args.get("margin_size") or 0)
        legend = bool(args.get("draw_legend", True))
        per_z = len(xs.values) * len(ys.values)
        sub_grids = [labelled_grid(images[iz * per_z:(iz + 1) * per_z], len(xs.values), cell_width, cell_height,
                                   xs.labels, ys.labels, margin, legend) for iz in range(len(zs.values))]
        if len(sub_grids) == 1:
            grid = sub_grids[0]
        else:
            width, height = max(g.width for g in sub_grids), max(g.height for g in sub_grids)
            grid = labelled_grid(sub_grids, len(sub_grids), width, height, zs.labels, [], margin, legend)

        first = results[min(results)]
        first_item = first.images[0]
        grid_path = p.save_grid(grid, first_item.infotext)
        outputs = [dataclasses.replace(first_item, image=grid, path=grid_path)]
        if args.get("include_sub_grids") and len(sub_grids) > 1:
            outputs += [dataclasses.replace(first_item, image=g, path=None) for g in sub_grids]
        if args.get("include_lone_images"):
            outputs += [item for n in sorted(results) for item in results[n].images]
        return dataclasses.replace(first, images=outputs, grid=None, grid_path=grid_path,
                                   interrupted=interrupted)
