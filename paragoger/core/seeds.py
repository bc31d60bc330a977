"""Seeds and the noise they make, the way A1111 makes it, so a seed gives the same starting latents.

- Seed -1 (or None) means random; the seed actually used goes into the infotext. Image i of a batch uses seed+i.
- Each image's noise is ``torch.randn`` of shape (C, H, W) in float32 from its own ``torch.Generator`` seeded
  with the image seed. On the CPU that equals diffusers' ``randn_tensor((1, C, H, W), generator=
  torch.Generator("cpu").manual_seed(seed))``, i.e. a diffusers pipeline given one CPU generator per image.
- RNG source "gpu" (A1111's default) draws on the CUDA device with a CUDA generator; "cpu" draws on the CPU
  (ComfyUI's and A1111's "CPU" setting). The two give *different* noise for the same seed, so an image made
  with A1111's default settings is only reproduced with "gpu" on an NVIDIA GPU. Without CUDA, "gpu" falls back
  to the CPU and leaves a note saying so. A1111's "NV" source (NVIDIA's generator emulated on any hardware) is
  not available here.
- Variation seed: the subseed's noise is blended in by spherical interpolation with strength s (0 = seed noise,
  1 = subseed noise).
- Seed resize from (h, w): the noise is made at that old size, then placed at the centre of the new size's noise
  (cropped at the centre when the old size is larger), so a composition found at one size survives at another.
- Ancestral and SDE samplers draw more noise at every step: ``step_generators`` gives per-image generators that
  go on from where the starting noise left off, as A1111 and diffusers' pipelines do.
"""
from __future__ import annotations

import random
from typing import Sequence

import torch

from paragoger import messages
from paragoger.errors import UserError

RNG_SOURCES = ("gpu", "cpu")
SEED_SPACE = 2**32          # A1111 draws random seeds below 2**32 and infotexts carry them as such
LATENT_SCALE = 8            # pixels per latent cell for SD 1.x, 2.x and SDXL


def resolve_seed(seed: int | None, rng: random.Random | None = None) -> int:
    """The seed to use: ``seed`` itself, or a random 32-bit one for -1 / None (pass ``rng`` to make it testable)."""
    if seed is None or int(seed) == -1:
        return (rng or random.Random()).randrange(SEED_SPACE)
    return int(seed)


def batch_seeds(seed: int, n: int) -> list[int]:
    """Seeds for the ``n`` images of a batch: seed, seed+1, ... (A1111's rule)."""
    return [int(seed) + i for i in range(n)]


def noise_device(source: str, device: torch.device | str | None = None) -> tuple[torch.device, str | None]:
    """Where noise for an RNG ``source`` is drawn, given the model's ``device``; plus a note when not as asked.

    "gpu" uses ``device`` when it is a CUDA device (or CUDA when ``device`` is None and one exists); anywhere
    else the noise is drawn on the CPU and the note says so.
    """
    kind = str(source).strip().lower()
    if kind not in RNG_SOURCES:
        raise UserError("unknown_rng_source", name=source, known=", ".join(s.upper() for s in RNG_SOURCES))
    if kind == "cpu":
        return torch.device("cpu"), None
    wanted = torch.device(device) if device is not None else None
    if wanted is not None and wanted.type == "cuda":
        return wanted, None
    if wanted is None and torch.cuda.is_available():
        return torch.device("cuda"), None
    return torch.device("cpu"), messages.render("rng_gpu_fallback")


def _noise_device_noted(source: str, device, notes: list[str] | None) -> torch.device:
    draw_on, note = noise_device(source, device)
    if note and notes is not None and note not in notes:
        notes.append(note)
    return draw_on


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device).manual_seed(int(seed))


def _randn(seed: int, shape: Sequence[int], device: torch.device) -> torch.Tensor:
    # Always float32, whatever the model's dtype: half-precision draws need not give the same numbers.
    return torch.randn(tuple(shape), generator=_generator(seed, device), device=device, dtype=torch.float32)


def slerp(strength: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``low`` (strength 0) to ``high`` (strength 1) for one image's (C, H, W) noise.

    Like A1111, the vectors are taken along dim 1 (each column of H values, per channel and x), so variation
    seeds give A1111's images. When the two are (nearly) parallel the angle is 0/0 and plain linear
    interpolation is used instead.
    """
    low_dir = low / low.norm(dim=1, keepdim=True)
    high_dir = high / high.norm(dim=1, keepdim=True)
    cos = (low_dir * high_dir).sum(1)
    if cos.mean() > 0.9995:
        return low * (1.0 - strength) + high * strength
    angle = torch.acos(cos)
    sin = torch.sin(angle)
    w_low = (torch.sin((1.0 - strength) * angle) / sin).unsqueeze(1)
    w_high = (torch.sin(strength * angle) / sin).unsqueeze(1)
    return w_low * low + w_high * high


def _centred_span(new: int, old: int) -> tuple[int, int, int]:
    """(start in new, start in old, length) of the centred overlap along one axis.

    The offset is floored as A1111 does, so when shrinking by an odd amount the last row/column of the new
    noise keeps its own values.
    """
    shift = (new - old) // 2
    if shift >= 0:
        return shift, 0, old
    return 0, -shift, old + 2 * shift


def _paste_centred(patch: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
    dst_y, src_y, h = _centred_span(canvas.shape[1], patch.shape[1])
    dst_x, src_x, w = _centred_span(canvas.shape[2], patch.shape[2])
    out = canvas.clone()
    out[:, dst_y:dst_y + h, dst_x:dst_x + w] = patch[:, src_y:src_y + h, src_x:src_x + w]
    return out


def resized_shape(shape_chw: Sequence[int], seed_resize_from: tuple[int, int] | None,
                  latent_scale: int = LATENT_SCALE) -> tuple[int, ...]:
    """The latent shape the noise is first made at: ``seed_resize_from`` is (height, width) in *pixels*
    (A1111's seed_resize_from_h / _w; the infotext writes it as WxH); None or a value <= 0 means no resize."""
    shape = tuple(int(v) for v in shape_chw)
    if not seed_resize_from or min(seed_resize_from) <= 0:
        return shape
    height, width = (int(v) for v in seed_resize_from)
    return (shape[0], height // latent_scale, width // latent_scale)


def make_noise(shape_chw: Sequence[int], seeds: Sequence[int], *, subseeds: Sequence[int] | None = None,
               subseed_strength: float = 0.0, seed_resize_from: tuple[int, int] | None = None,
               device: torch.device | str | None = None, dtype: torch.dtype = torch.float32, source: str = "gpu",
               notes: list[str] | None = None, latent_scale: int = LATENT_SCALE) -> torch.Tensor:
    """Starting noise (N, C, H, W) for images with these ``seeds`` (see the module text for the rules).

    ``subseeds`` (one per image) and ``subseed_strength`` make variations; ``seed_resize_from`` is (height,
    width) in pixels. The noise is drawn where ``source`` says (``noise_device``), in float32, then moved to
    ``device`` (default: where it was drawn) as ``dtype``. When "gpu" noise has to be drawn on the CPU, a note is
    appended to ``notes`` (for the job's log / UI) if given.
    """
    draw_on = _noise_device_noted(source, device, notes)
    if subseeds is not None and len(subseeds) != len(seeds):
        raise ValueError(f"{len(seeds)} seeds but {len(subseeds)} subseeds")
    shape = tuple(int(v) for v in shape_chw)
    first_shape = resized_shape(shape, seed_resize_from, latent_scale)
    blend = subseeds is not None and subseed_strength != 0
    images = []
    for i, seed in enumerate(seeds):
        noise = _randn(seed, first_shape, draw_on)
        if blend:
            noise = slerp(float(subseed_strength), noise, _randn(subseeds[i], first_shape, draw_on))
        if first_shape != shape:
            # Outside the old area the image keeps the noise its seed gives at the new size.
            noise = _paste_centred(noise, _randn(seed, shape, draw_on))
        images.append(noise)
    return torch.stack(images).to(device=device if device is not None else draw_on, dtype=dtype)


def step_generators(seeds: Sequence[int], shape_chw: Sequence[int], *, source: str = "gpu",
                    device: torch.device | str | None = None, eta_noise_seed_delta: int = 0,
                    notes: list[str] | None = None) -> list[torch.Generator]:
    """One generator per image for the noise ancestral/SDE samplers draw at each step (``scheduler.step(...,
    generator=these)``; diffusers' ``randn_tensor`` draws image i's noise from generator i).

    Each is seeded with the image seed and moved past that image's starting noise, so the step noise continues
    the same stream as in A1111 and in a diffusers pipeline given one generator per image; it never repeats the
    starting noise. A non-zero ``eta_noise_seed_delta`` (A1111's ENSD setting) instead starts fresh generators at
    seed + delta, as A1111 does. Generators live where ``noise_device`` says; diffusers draws with CPU
    generators on the CPU and moves the noise, while CUDA generators need the latents on that CUDA device.
    """
    draw_on = _noise_device_noted(source, device, notes)
    shape = tuple(int(v) for v in shape_chw)
    generators = []
    for seed in seeds:
        if eta_noise_seed_delta:
            generators.append(_generator(int(seed) + int(eta_noise_seed_delta), draw_on))
            continue
        generator = _generator(seed, draw_on)
        # A1111 draws exactly one noise tensor of the final size from each image's generator before sampling
        # (with seed resize the old-size noise comes from a separate generator), so skip one such draw.
        torch.randn(shape, generator=generator, device=draw_on, dtype=torch.float32)
        generators.append(generator)
    return generators
