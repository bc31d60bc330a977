"""FreeInit (Wu et al., 2023): sample, then start again from noise whose low frequencies (in time and space) come
from the result, so the video's layout and motion stay while the fine detail is sampled afresh. Each iteration
costs a whole sampling run; 3 iterations are the paper's default.

Between iterations the result z0 is noised to the last training timestep with the *first* iteration's noise
(``sqrt(a) z0 + sqrt(1 - a) noise``), its 3-D FFT low-pass part kept, and the high-pass part replaced by fresh
noise. The filters are the paper's: Butterworth (order 4), Gaussian, ideal and box, over the normalised distance
from the centre of the (frames, height, width) spectrum with the temporal axis scaled by ``ds / dt``.
"""
from __future__ import annotations

import math

import torch

FILTERS = ("butterworth", "gaussian", "ideal", "box")
BUTTERWORTH_ORDER = 4


def low_pass_filter(shape: tuple[int, int, int], method: str, ds: float, dt: float) -> torch.Tensor:
    """The (frames, height, width) low-pass mask, 1 at the lowest frequency (the spectrum is centred)."""
    frames, height, width = shape
    if method not in FILTERS:
        raise ValueError(f"unknown FreeInit filter {method!r}; known: {', '.join(FILTERS)}")
    if ds <= 0 or (method != "box" and dt <= 0):
        return torch.zeros(shape)

    def axis(n: int) -> torch.Tensor:
        return 2 * torch.arange(n, dtype=torch.float64) / n - 1

    if method == "box":  # a box of the stop frequencies' size around the centre
        mask = torch.zeros(shape, dtype=torch.float64)
        ct, ch, cw = frames // 2, height // 2, width // 2
        rt, rh, rw = round(ct * dt), round(ch * ds), round(cw * ds)
        mask[ct - rt:ct + rt, ch - rh:ch + rh, cw - rw:cw + rw] = 1.0
        return mask.float()
    t, h, w = torch.meshgrid(axis(frames), axis(height), axis(width), indexing="ij")
    distance2 = (ds / dt * t) ** 2 + h ** 2 + w ** 2
    if method == "gaussian":
        mask = torch.exp(-distance2 / (2 * ds ** 2))
    elif method == "ideal":
        mask = (distance2 <= ds * 2).double()
    else:
        mask = 1 / (1 + (distance2 / ds ** 2) ** BUTTERWORTH_ORDER)
    return mask.float()


def mix_frequencies(low_from: torch.Tensor, high_from: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``low_from``'s frequencies under the mask and ``high_from``'s elsewhere, over the last three dimensions."""
    dims = (-3, -2, -1)
    low = torch.fft.fftshift(torch.fft.fftn(low_from.float(), dim=dims), dim=dims)
    high = torch.fft.fftshift(torch.fft.fftn(high_from.float(), dim=dims), dim=dims)
    mask = mask.to(low_from.device)
    mixed = low * mask + high * (1 - mask)
    result = torch.fft.ifftn(torch.fft.ifftshift(mixed, dim=dims), dim=dims).real
    return result.to(low_from.dtype)


def reinitialise(result: torch.Tensor, first_noise: torch.Tensor, fresh_noise: torch.Tensor, *, alphas_cumprod,
                 init_noise_sigma: float, method: str, ds: float, dt: float) -> torch.Tensor:
    """The next iteration's starting latents ([1, C, F, h, w]) from the last result."""
    last = float(alphas_cumprod[-1])
    noised = math.sqrt(last) * result + math.sqrt(1 - last) * first_noise
    mask = low_pass_filter(tuple(result.shape[-3:]), method, ds, dt)
    return mix_frequencies(noised, fresh_noise, mask) * init_noise_sigma
