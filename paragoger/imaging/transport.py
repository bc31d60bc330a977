"""Images in and out of the HTTP API: plain base64 PNG out (with the infotext kept), base64 or data URL in."""
from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, PngImagePlugin

from paragoger.errors import UserError


def encode_png_base64(image: Image.Image, infotext: str | None = None) -> str:
    """Plain base64 (no ``data:`` prefix), as A1111 answers; the PNG carries the infotext like a saved file."""
    pnginfo = None
    if infotext:
        pnginfo = PngImagePlugin.PngInfo()
        try:
            infotext.encode("latin-1")
            pnginfo.add_text("parameters", infotext)
        except UnicodeEncodeError:
            pnginfo.add_itxt("parameters", infotext)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image_base64(data: str, *, max_bytes: int = 50 * 1024 * 1024, max_pixels: int = 64 * 1024 * 1024,
                        field: str = "image") -> Image.Image:
    """A base64 string or data URL -> PIL image; broken input raises UserError (answered as 400)."""
    if not isinstance(data, str) or not data:
        raise UserError("bad_image", field=field, reason="empty")
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as err:
        raise UserError("bad_image", field=field, reason=f"not base64 ({err})") from None
    if len(raw) > max_bytes:
        raise UserError("image_too_large", field=field, limit=f"{max_bytes // (1024 * 1024)} MB")
    try:
        image = Image.open(io.BytesIO(raw))
        if image.width * image.height > max_pixels:
            raise UserError("image_too_large", field=field, limit=f"{max_pixels} pixels")
        image.load()
    except UserError:
        raise
    except Exception as err:  # Pillow raises many types for broken data
        raise UserError("bad_image", field=field, reason=f"not an image ({type(err).__name__})") from None
    return image
