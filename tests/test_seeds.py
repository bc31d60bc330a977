"""Seeds and noise: A1111's rules, and equality with diffusers' own noise for CPU generators."""
from __future__ import annotations

import random

import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor

from paragoger.core.seeds import (
    batch_seeds,
    make_noise,
    noise_device,
    resolve_seed,
    slerp,
    step_generators,
)
from paragoger.errors import UserError

SHAPE = (4, 8, 12)   # C, H, W of a 64x96 px SD latent


def _cpu(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def test_minus_one_gives_a_random_seed():
    seeds = {resolve_seed(-1) for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= s < 2**32 for s in seeds)
    assert 0 <= resolve_seed(None) < 2**32
    assert resolve_seed(-1, random.Random(3)) == resolve_seed(-1, random.Random(3))
    assert resolve_seed(1234) == 1234 and resolve_seed(0) == 0


def test_image_i_of_a_batch_uses_seed_plus_i():
    assert batch_seeds(1000, 3) == [1000, 1001, 1002]
    noise = make_noise(SHAPE, batch_seeds(1000, 3), source="cpu")
    assert noise.shape == (3, *SHAPE)
    for i in range(3):
        alone = make_noise(SHAPE, [1000 + i], source="cpu")
        assert torch.equal(noise[i], alone[0])
    assert not torch.equal(noise[0], noise[1])


def test_noise_equals_diffusers_randn_tensor_for_cpu_generator():
    seeds = [42, 43, 2245042501]
    ours = make_noise(SHAPE, seeds, source="cpu")
    for i, seed in enumerate(seeds):
        theirs = randn_tensor((1, *SHAPE), generator=_cpu(seed))
        assert torch.equal(ours[i:i + 1], theirs)
    # ... and to a diffusers pipeline given one CPU generator per image.
    batch = randn_tensor((3, *SHAPE), generator=[_cpu(s) for s in seeds])
    assert torch.equal(ours, batch)
    # The model's dtype only changes the cast, not the numbers drawn.
    assert torch.equal(make_noise(SHAPE, seeds, source="cpu", dtype=torch.bfloat16), ours.to(torch.bfloat16))


def test_variation_strength_zero_gives_seed_noise_and_one_gives_subseed_noise():
    seed_noise = make_noise(SHAPE, [10, 11], source="cpu")
    sub_noise = make_noise(SHAPE, [77, 78], source="cpu")
    zero = make_noise(SHAPE, [10, 11], subseeds=[77, 78], subseed_strength=0.0, source="cpu")
    one = make_noise(SHAPE, [10, 11], subseeds=[77, 78], subseed_strength=1.0, source="cpu")
    half = make_noise(SHAPE, [10, 11], subseeds=[77, 78], subseed_strength=0.5, source="cpu")
    assert torch.equal(zero, seed_noise)
    assert torch.allclose(one, sub_noise, atol=1e-5)
    assert not torch.allclose(half, seed_noise) and not torch.allclose(half, sub_noise)
    # Spherical, not linear: the blend keeps the noise's scale (a linear mix at 0.5 shrinks it by ~0.7).
    assert half.std().item() == pytest.approx(seed_noise.std().item(), rel=0.1)
    with pytest.raises(ValueError):
        make_noise(SHAPE, [1, 2], subseeds=[3], subseed_strength=0.5, source="cpu")


def test_slerp_of_identical_noise_is_that_noise():
    noise = torch.randn(SHAPE, generator=_cpu(5))
    assert torch.allclose(slerp(0.3, noise, noise), noise)


def test_seed_resize_from_places_the_old_noise_at_the_centre():
    # New size 64x96 px = 8x12 latent; old size 32x48 px = 4x6 latent: old noise sits in the middle.
    grown = make_noise(SHAPE, [9], seed_resize_from=(32, 48), source="cpu")[0]
    old = make_noise((4, 4, 6), [9], source="cpu")[0]
    plain = make_noise(SHAPE, [9], source="cpu")[0]
    assert torch.equal(grown[:, 2:6, 3:9], old)
    outside = torch.ones(SHAPE, dtype=torch.bool)
    outside[:, 2:6, 3:9] = False
    assert torch.equal(grown[outside], plain[outside])   # the rest is the seed's noise at the new size
    # Old size larger (128x128 px = 16x16): the centre of the old noise is cropped out.
    shrunk = make_noise(SHAPE, [9], seed_resize_from=(128, 128), source="cpu")[0]
    big = make_noise((4, 16, 16), [9], source="cpu")[0]
    assert torch.equal(shrunk, big[:, 4:12, 2:14])
    # Odd difference (9x9 latent into 6x6): offsets are floored, the last row/column keeps the new noise.
    small = make_noise((4, 6, 6), [9], seed_resize_from=(72, 72), source="cpu")[0]
    nine = make_noise((4, 9, 9), [9], source="cpu")[0]
    assert torch.equal(small[:, :5, :5], nine[:, 2:7, 2:7])
    assert torch.equal(small[:, 5, :], make_noise((4, 6, 6), [9], source="cpu")[0][:, 5, :])
    # 0 or None means no resize.
    assert torch.equal(make_noise(SHAPE, [9], seed_resize_from=(0, 0), source="cpu")[0], plain)


def test_step_generators_continue_after_the_starting_noise_like_a_diffusers_pipeline():
    seeds = [5, 6]
    # A diffusers pipeline: one generator per image draws the latents, then the scheduler's step noise.
    pipeline_gens = [_cpu(s) for s in seeds]
    start = randn_tensor((2, *SHAPE), generator=pipeline_gens)
    pipeline_step_noise = randn_tensor((2, *SHAPE), generator=pipeline_gens)

    assert torch.equal(make_noise(SHAPE, seeds, source="cpu"), start)
    ours = step_generators(seeds, SHAPE, source="cpu")
    assert torch.equal(randn_tensor((2, *SHAPE), generator=ours), pipeline_step_noise)
    assert not torch.equal(pipeline_step_noise, start)   # never the starting noise again
    # ENSD: fresh generators at seed + delta.
    ensd = step_generators(seeds, SHAPE, source="cpu", eta_noise_seed_delta=31337)
    first_step_noise = randn_tensor((1, *SHAPE), generator=ensd[0])
    assert torch.equal(first_step_noise, randn_tensor((1, *SHAPE), generator=_cpu(5 + 31337)))


def test_ancestral_sampling_is_reproducible_with_step_generators():
    def run():
        scheduler = EulerAncestralDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                    beta_end=0.012)
        scheduler.set_timesteps(6)
        latents = make_noise(SHAPE, [3, 4], source="cpu") * scheduler.init_noise_sigma
        generators = step_generators([3, 4], SHAPE, source="cpu")
        for t in scheduler.timesteps:
            latents = scheduler.step(torch.zeros_like(latents), t, latents, generator=generators).prev_sample
        return latents
    assert torch.equal(run(), run())


def test_gpu_source_without_cuda_falls_back_to_cpu_and_says_so():
    notes: list[str] = []
    noise = make_noise(SHAPE, [1], device="cpu", source="gpu", notes=notes)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; see test_gpu_source_draws_on_cuda")
    assert torch.equal(noise, make_noise(SHAPE, [1], source="cpu"))
    assert len(notes) == 1 and "CPU" in notes[0]
    step_generators([1], SHAPE, device="cpu", source="GPU", notes=notes)
    assert len(notes) == 1   # the same note is not repeated
    assert noise_device("CPU") == (torch.device("cpu"), None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_source_draws_on_cuda():
    notes: list[str] = []
    gpu = make_noise(SHAPE, [1], device="cuda", source="gpu", notes=notes)
    expected = torch.randn(SHAPE, generator=torch.Generator("cuda").manual_seed(1), device="cuda")
    assert notes == [] and gpu.device.type == "cuda"
    assert torch.equal(gpu[0], expected)
    assert not torch.equal(gpu.cpu(), make_noise(SHAPE, [1], source="cpu"))   # GPU noise is not CPU noise
    # With a CUDA device, diffusers draws from CUDA generators the same way.
    assert torch.equal(gpu, randn_tensor((1, *SHAPE), generator=torch.Generator("cuda").manual_seed(1),
                                         device=torch.device("cuda")))


def test_unknown_rng_source_is_a_user_error():
    with pytest.raises(UserError) as err:
        make_noise(SHAPE, [1], source="NV")
    assert err.value.key == "unknown_rng_source" and "GPU" in str(err.value)
