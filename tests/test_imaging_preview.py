"""Final pixels identical to diffusers' pipelines; cheap previews from latents."""
import numpy as np
import pytest
import torch
from diffusers.image_processor import VaeImageProcessor
from PIL import Image

from paragoger.imaging.preview import SDXL_RGB_BIAS, SDXL_RGB_FACTORS, latents_to_preview, tensor_to_pil


def decoded_like_a_vae(dtype, batch=2, size=(24, 16)):
    generator = torch.Generator().manual_seed(0)
    values = torch.randn((batch, 3, *size), generator=generator) * 0.7
    # Values landing exactly between two 8-bit levels are where rounding order matters; include many of them,
    # and values beyond -1..1 that must clip.
    halves = (torch.arange(256, dtype=torch.float64) + 0.5) / 255 * 2 - 1
    values.view(-1)[: halves.numel()] = halves.float()
    values.view(-1)[-4:] = torch.tensor([-1.5, 1.5, -1.0, 1.0])
    return values.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_tensor_to_pil_matches_diffusers_bit_for_bit(dtype):
    decoded = decoded_like_a_vae(dtype)
    ours = tensor_to_pil(decoded)
    theirs = VaeImageProcessor().postprocess(decoded, output_type="pil")
    assert len(ours) == len(theirs) == 2
    for mine, reference in zip(ours, theirs):
        assert mine.mode == reference.mode == "RGB"
        assert np.array_equal(np.asarray(mine), np.asarray(reference))


def test_single_channel_output_becomes_grayscale_like_diffusers():
    decoded = decoded_like_a_vae(torch.float32, batch=1)[:, :1]
    ours = tensor_to_pil(decoded)[0]
    theirs = VaeImageProcessor().postprocess(decoded, output_type="pil")[0]
    assert ours.mode == theirs.mode == "L"
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_preview_has_final_image_size():
    preview = latents_to_preview(torch.zeros(1, 4, 64, 48), "sd1")
    assert preview.size == (48 * 8, 64 * 8) and preview.mode == "RGB"


def test_preview_applies_the_family_factors_and_bias():
    channels = torch.tensor([0.5, -0.25, 1.0, 0.1])
    latents = channels.view(4, 1, 1).expand(4, 8, 8).clone()
    preview = latents_to_preview(latents, "sdxl", scale=1)
    expected_rgb = channels @ torch.tensor(SDXL_RGB_FACTORS) + torch.tensor(SDXL_RGB_BIAS)
    expected = ((expected_rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).tolist()
    assert preview.getpixel((3, 3)) == tuple(expected)


def test_sd2_previews_like_sd1_and_sdxl_differs():
    latents = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(1))
    sd1 = latents_to_preview(latents, "sd1").tobytes()
    assert latents_to_preview(latents, "SD2").tobytes() == sd1
    assert latents_to_preview(latents, "sdxl").tobytes() != sd1


def test_half_precision_batch_previews_as_a_grid():
    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(2)).half()
    preview = latents_to_preview(latents, "sd1")
    assert isinstance(preview, Image.Image)
    assert preview.size == (2 * 64, 2 * 64)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="flux"):
        latents_to_preview(torch.zeros(4, 8, 8), "flux")
