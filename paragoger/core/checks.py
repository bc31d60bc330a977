"""One check for every request: the page, the API, extensions' services and scripts call ``RequestCheck.check``
before a generation is queued, and the engine calls the same check once more before it starts (a script may have
changed the request). A request that passes does not fail later for a reason known in advance.

In order, cheapest first (a 3 MB prompt is refused by its length before anything reads it):

1. numbers       every numeric field is a finite number (NaN and Infinity name the field)
2. ranges        ``GenerationRequest.validate``: sizes, steps, CFG, strength, hires options, img2img pictures
3. limits        the "Limits" settings: steps, pictures per request, pixels (also after the Hires. fix), prompt
                 length (characters first, then tokens of what will be encoded: styles applied, comments and
                 extra-network tags removed, each scheduled text)
4. names         output folders and other override_settings, styles, sampler and schedule type, the Hires. fix's
                 upscaler, sampler and schedule type, checkpoint and VAE, scripts and their arguments

Limits come from the app's settings, never from the request's ``override_settings``.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import fields
from typing import Callable

from paragoger.core import hires
from paragoger.core.prompting import prepare_prompts
from paragoger.core.request import GenerationRequest
from paragoger.errors import UserError

# A CLIP token is rarely more than a dozen characters; a text longer than this many characters per allowed token is
# refused without tokenizing it.
CHARACTERS_PER_TOKEN = 32
# Prompt editing makes one text per switch: all of them together may be this many times the characters of one.
MAX_SCHEDULED_TEXTS = 8

SEED_RANGE = (-(2**63), 2**63 - 1)
# Numeric fields of a GenerationRequest: name -> (int or float, None allowed)
NUMBER_FIELDS: dict[str, tuple[type, bool]] = {
    f.name: (int if f.type.startswith("int") else float, f.type.endswith("| None"))
    for f in fields(GenerationRequest) if f.type in ("int", "int | None", "float", "float | None")}


def setting_label(settings, key: str) -> str:
    spec = next((spec for spec in settings.specs() if spec.key == key), None)
    return f"{spec.label if spec else key} [{key}]"


def checked_numbers(request: GenerationRequest) -> GenerationRequest:
    """``request`` with every numeric field a finite int or float (whole floats in int fields become ints);
    UserError naming the first field that is not."""
    fixes = {}
    for name, (kind, optional) in NUMBER_FIELDS.items():
        value = getattr(request, name)
        if value is None and optional:
            continue
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            raise UserError("number_invalid", field=name, value=value)
        if kind is int and value != int(value):
            raise UserError("number_not_whole", field=name, value=value)
        if type(value) is not kind:
            fixes[name] = kind(value)
    request = request.copy(**fixes) if fixes else request
    for name in ("seed", "subseed"):  # what torch's generators take, with room for the batch's following seeds
        if not SEED_RANGE[0] <= getattr(request, name) <= SEED_RANGE[1]:
            raise UserError("number_out_of_range", field=name, value=getattr(request, name), low=SEED_RANGE[0],
                            high=SEED_RANGE[1])
    return request


class RequestCheck:
    """The one list of what a generation request must satisfy (see the module text). Built by the AppContext from
    the pieces it owns; ``resolve_scripts`` is attached once extensions are loaded (after the engine is built).

    ``count_tokens(texts) -> [tokens, ...]`` counts what the encoder will see; ``resolve_scripts(request)`` raises
    UserError for an unknown script or argument (``ext.scripts.resolve_script_request``)."""

    def __init__(self, *, settings, paths, samplers, upscalers, styles=None, library=None,
                 count_tokens: Callable[[list[str]], list[int]] | None = None,
                 resolve_scripts: Callable | None = None):
        self.settings, self.paths, self.samplers, self.upscalers = settings, paths, samplers, upscalers
        self.styles, self.library = styles, library
        self.count_tokens, self.resolve_scripts = count_tokens, resolve_scripts
        self.find_motion_module: Callable[[str], object] | None = None  # video.motion_modules library's find
        self.check_control_unit: Callable[[object], None] | None = None  # its model and preprocessor exist

    def check(self, request: GenerationRequest) -> GenerationRequest:
        """The request (numbers normalized) when it can run; UserError with the reason when it cannot."""
        request = checked_numbers(request)
        request.validate()
        self.check_limits(request)
        self.check_names(request)
        return request

    # 3. limits -------------------------------------------------------------------------------------------------
    def refuse(self, message_id: str, key: str, **params) -> UserError:
        return UserError(message_id, limit=self.settings[key], setting=setting_label(self.settings, key), **params)

    def check_limits(self, request: GenerationRequest) -> None:
        steps_limit = self.settings["limit_steps"]
        for name in ("steps", "hr_second_pass_steps"):
            if getattr(request, name) > steps_limit and (name == "steps" or hires.wanted(request)):
                raise self.refuse("limit_steps", "limit_steps", field=name, count=getattr(request, name))
        self.check_image_count(request.image_count)
        self.check_pixels(request.width, request.height)
        if request.animatediff is not None and request.animatediff.enable:
            request.animatediff.validate(max_frames=self.settings["limit_video_frames"])
        if hires.wanted(request):
            size = hires.request_size(request)
            self.check_pixels(size.width, size.height, message_id="limit_pixels_hires")
        self.check_prompts(request)

    def check_image_count(self, count: int, *, plan: str | None = None) -> None:
        """UserError when ``count`` pictures are more than one request may make (setting limit_images); ``plan``
        names a script whose generations together make them (X/Y/Z plot, Prompt matrix, ...)."""
        if count > self.settings["limit_images"]:
            if plan:
                raise self.refuse("limit_images_plan", "limit_images", count=count, script=plan)
            raise self.refuse("limit_images", "limit_images", count=count)

    def check_pixels(self, width: int, height: int, *, message_id: str = "limit_pixels", **params) -> None:
        """UserError when a ``width`` x ``height`` picture is over the "limit_image_pixels" setting (the
        Extras tab checks its upscaled pictures with this too)."""
        pixels = int(width) * int(height)
        if pixels > self.settings["limit_image_pixels"]:
            raise self.refuse(message_id, "limit_image_pixels", width=width, height=height, pixels=pixels, **params)

    def check_prompts(self, request: GenerationRequest) -> None:
        limit = self.settings["limit_prompt_tokens"]
        characters = limit * CHARACTERS_PER_TOKEN
        typed = {"prompt": request.prompt, "negative_prompt": request.negative_prompt}
        if hires.wanted(request):
            typed.update(hr_prompt=request.hr_prompt, hr_negative_prompt=request.hr_negative_prompt)
        for name, text in typed.items():
            if not isinstance(text, str):
                raise UserError("number_invalid", field=name, value=type(text).__name__)
            if len(text) > characters:
                raise self.refuse("limit_prompt_characters", "limit_prompt_tokens", field=name, count=len(text))
        if self.count_tokens is None:
            return
        known_styles = [name for name in request.styles if self.styles is not None and name in self.styles]
        pairs = [("prompt", "negative_prompt")] + ([("hr_prompt", "hr_negative_prompt")]
                                                   if hires.wanted(request) and (request.hr_prompt or
                                                                                 request.hr_negative_prompt) else [])
        for positive, negative in pairs:
            prompts = prepare_prompts(typed[positive] or request.prompt,
                                      typed[negative] or request.negative_prompt, steps=request.steps,
                                      styles=self.styles, style_names=known_styles,
                                      comments=self.settings["enable_prompt_comments"])
            named = [(positive, text) for part in prompts.positives for _, text in part.schedule]
            named += [(negative, text) for _, text in prompts.negative.schedule]
            distinct = list(dict.fromkeys(named))
            for name, text in distinct:
                if len(text) > characters:  # styles can make a text longer than what was typed
                    raise self.refuse("limit_prompt_characters", "limit_prompt_tokens", field=name,
                                      count=len(text))
            total = sum(len(text) for _, text in distinct)  # prompt editing: one text per switch
            if total > characters * MAX_SCHEDULED_TEXTS:
                raise self.refuse("limit_prompt_characters", "limit_prompt_tokens", field=positive, count=total)
            for (name, _), count in zip(distinct, self.count_tokens([text for _, text in distinct])):
                if count > limit:
                    raise self.refuse("limit_prompt_tokens", "limit_prompt_tokens", field=name, count=count)

    # 4. names --------------------------------------------------------------------------------------------------
    def check_names(self, request: GenerationRequest) -> None:
        overrides = dict(request.override_settings or {})
        self.paths.check_output_settings(overrides)  # a request never writes outside outputs/
        self.settings.with_overrides(overrides)      # every override a value its setting takes
        if self.styles is not None:
            unknown = [name for name in request.styles if name not in self.styles]
            if unknown:
                raise UserError("unknown_style", name=", ".join(unknown))
        self.samplers.resolve(request.sampler_name, request.scheduler)
        hires.check(request, self.samplers, self.upscalers)
        if self.library is not None:
            checkpoint = request.checkpoint or overrides.get("sd_model_checkpoint")
            if checkpoint:
                self.library.lookup_checkpoint(checkpoint)
            vae = request.vae if request.vae is not None else overrides.get("sd_vae")
            if vae is not None:
                self.library.find_vae(vae)
        if self.resolve_scripts is not None:
            self.resolve_scripts(request)
        for unit in request.controlnet_units if self.check_control_unit else ():
            if unit.enabled:
                try:
                    self.check_control_unit(unit)
                except UserError as err:  # sd-webui-controlnet's clients expect 400 for an unknown model, not 404
                    raise UserError(err.key, **err.params) from None
        video = request.animatediff
        if video is not None and video.enable and video.model not in ("", "None") and self.find_motion_module:
            try:
                self.find_motion_module(video.model)
            except UserError as err:  # the A1111 extension's clients expect 400 for an unknown module, not 404
                raise UserError(err.key, **err.params) from None
