"""GenerationRequest: everything one generation needs, from the tab or the HTTP route to the saved file."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from paragoger.core import hires
from paragoger.errors import UserError
from paragoger.video.options import AnimateDiffOptions

MIN_SIZE, MAX_SIZE = 64, 4096
MAX_STEPS = 10000  # the most the setting limit_steps allows (default 500): the check refuses more (core/checks.py)
MAX_BATCH_SIZE, MAX_BATCH_COUNT = 16, 1000


@dataclass
class GenerationRequest:
    mode: str = "txt2img"
    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = field(default_factory=list)
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_w: int = 0
    seed_resize_from_h: int = 0
    sampler_name: str = "Euler a"
    scheduler: str = "Automatic"
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    clip_skip: int | None = None          # None: the setting CLIP_stop_at_last_layers
    checkpoint: str | None = None         # None: the loaded/selected checkpoint
    vae: str | None = None                # None: the setting sd_vae
    override_settings: dict[str, Any] = field(default_factory=dict)
    save_images: bool = True
    send_images: bool = True
    do_not_save_grid: bool = False
    extra_params: dict[str, Any] = field(default_factory=dict)   # extra infotext fields (scripts, extensions)
    # scripts (paragoger.ext.scripts): the Script dropdown's choice and its arguments (a list in UI order or a
    # dict by name), and arguments for always-on scripts ({title: {"args": list or dict}}), as A1111's API takes
    script_name: str | None = None
    script_args: Any = None
    alwayson_scripts: dict[str, Any] = field(default_factory=dict)
    # img2img, inpaint, outpaint, sketch (A1111's field names; ignored by txt2img)
    init_images: list[Any] = field(default_factory=list)       # PIL images
    mask: Any = None                                            # PIL image: white = regenerate
    resize_mode: int = 0                                        # imaging.resize.RESIZE_MODES index
    denoising_strength: float = 0.75
    image_cfg_scale: float | None = None                        # instruct-pix2pix only; None: 1.5 (A1111's)
    depth_map: Any = None                                       # PIL image for depth checkpoints: white = near
    mask_blur: int = 4
    inpainting_fill: int = 1                                    # 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool = False                              # "Only masked"
    inpaint_full_res_padding: int = 32
    inpainting_mask_invert: int = 0
    # txt2img's Hires. fix (A1111's field names; core.hires): a second pass at a higher resolution, at
    # denoising_strength (A1111's hires default is 0.7: the tab and the API route set it)
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str = hires.DEFAULT_UPSCALER                  # a latent mode or an upscaler's name
    hr_second_pass_steps: int = 0                               # 0: the same as steps
    hr_resize_x: int = 0                                        # 0 and 0: by hr_scale; one 0: keep the aspect
    hr_resize_y: int = 0
    hr_sampler_name: str | None = None                          # None / "Use same sampler": the first pass's
    hr_scheduler: str | None = None                             # None / "Use same scheduler": the first pass's
    hr_prompt: str = ""                                         # "": the same prompt
    hr_negative_prompt: str = ""
    hr_cfg: float | None = None                                 # None: the same CFG scale
    # video with a motion module (AnimateDiff; core.video): None for pictures
    animatediff: AnimateDiffOptions | None = None
    # ControlNet / T2I-Adapter units (paragoger.control.units.ControlUnit), sd-webui-controlnet's "args"
    controlnet_units: list[Any] = field(default_factory=list)

    def validate(self) -> "GenerationRequest":
        """Checks what can be checked without a model; raises UserError with the reason."""
        if self.width % 8 or self.height % 8:
            raise UserError("size_not_multiple_of_8", width=self.width, height=self.height)
        if not (MIN_SIZE <= self.width <= MAX_SIZE and MIN_SIZE <= self.height <= MAX_SIZE):
            raise UserError("size_out_of_range", low=MIN_SIZE, high=MAX_SIZE, width=self.width, height=self.height)
        if not 1 <= self.steps <= MAX_STEPS:
            raise UserError("steps_out_of_range", high=MAX_STEPS, steps=self.steps)
        if not (1 <= self.batch_size <= MAX_BATCH_SIZE and 1 <= self.n_iter <= MAX_BATCH_COUNT):
            raise UserError("batch_out_of_range", high_size=MAX_BATCH_SIZE, high_count=MAX_BATCH_COUNT)
        if not 0 <= self.cfg_scale <= 100:
            raise UserError("cfg_out_of_range", cfg=self.cfg_scale)
        if self.image_cfg_scale is not None and not 0 <= self.image_cfg_scale <= 100:
            raise UserError("image_cfg_out_of_range", value=self.image_cfg_scale)
        if hires.wanted(self):
            hires.validate(self, low=MIN_SIZE, high=MAX_SIZE, max_steps=MAX_STEPS)
        if self.mode == "img2img":
            if not self.init_images:
                raise UserError("init_image_missing")
            if not 0.0 <= self.denoising_strength <= 1.0:
                raise UserError("denoising_out_of_range", value=self.denoising_strength)
            if self.resize_mode not in (0, 1, 2, 3):
                raise UserError("resize_mode_unknown", value=self.resize_mode)
            if self.inpainting_fill not in (0, 1, 2, 3):
                raise UserError("inpainting_fill_unknown", value=self.inpainting_fill)
            if self.mask is not None and self.mask.size != self.init_images[0].size:
                raise UserError("mask_size_mismatch", mask=f"{self.mask.width}x{self.mask.height}",
                                image=f"{self.init_images[0].width}x{self.init_images[0].height}")
        return self

    @property
    def image_count(self) -> int:
        return self.batch_size * self.n_iter

    def copy(self, **changes) -> "GenerationRequest":
        return replace(self, **changes)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerationRequest":
        """Known keys are taken, unknown keys are ignored (as A1111's API does)."""
        names = cls.field_names()
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class GeneratedImage:
    image: Any            # PIL.Image
    seed: int
    subseed: int
    prompt: str
    negative_prompt: str
    infotext: str
    path: str | None = None


@dataclass
class GenerationResult:
    request: GenerationRequest
    images: list[GeneratedImage]
    grid: Any = None          # PIL.Image when a grid was made
    grid_path: str | None = None
    interrupted: bool = False
    videos: list = field(default_factory=list)        # video.files.SavedVideo per video
    scratch_dirs: list = field(default_factory=list)  # folders of videos written only for the answer (not saved)

    @property
    def infotexts(self) -> list[str]:
        return [item.infotext for item in self.images]

    @property
    def seeds(self) -> list[int]:
        return [item.seed for item in self.images]
