"""Upscalers: picture enlargers by name (Lanczos, Nearest, ESRGAN-family model files through spandrel, and those
extensions register), used by the Extras tab, the hires fix and img2img alike."""
from paragoger.upscale.registry import Upscaler, UpscalerRegistry, builtin_upscalers

__all__ = ["Upscaler", "UpscalerRegistry", "builtin_upscalers"]
