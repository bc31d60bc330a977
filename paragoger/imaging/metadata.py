"""Infotext inside image files, stored where A1111 stores it so every tool that reads A1111 images reads ours.

- PNG: text chunk ``parameters`` (tEXt when the text is Latin-1, iTXt otherwise: Pillow's ``add_text`` picks).
- JPEG / WebP / AVIF: EXIF UserComment (tag 0x9286 in the Exif IFD) with the ``UNICODE\\0`` character-code header
  and big-endian UTF-16, which is what A1111 writes through piexif's ``UserComment.dump(..., encoding="unicode")``.
- GIF: the comment extension.

Reading accepts all of those, little-endian UTF-16 user comments from other tools, and ComfyUI/InvokeAI chunks.
"""
from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from PIL import Image, PngImagePlugin

log = logging.getLogger(__name__)

INFOTEXT_KEY = "parameters"
# Other apps' PNG chunks, returned verbatim by read_metadata so a later importer can translate them.
FOREIGN_TEXT_KEYS: tuple[str, ...] = ("prompt", "workflow", "invokeai_metadata")

EXIF_IFD_POINTER_TAG = 0x8769
USER_COMMENT_TAG = 0x9286
TIFF_TYPE_LONG = 4
TIFF_TYPE_UNDEFINED = 7

# EXIF 2.x Table 9 "character codes": the first 8 bytes of a UserComment say how the rest is encoded.
UNICODE_PREFIX = b"UNICODE\x00"
ASCII_PREFIX = b"ASCII\x00\x00\x00"
JIS_PREFIX = b"JIS\x00\x00\x00\x00\x00"
UNDEFINED_PREFIX = b"\x00" * 8

# A JPEG APP1 segment's length field is 16 bits and counts itself.
JPEG_MAX_EXIF_BYTES = 65533

EXTENSION_FORMATS: Mapping[str, str] = {
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "webp": "WEBP",
    "avif": "AVIF",
    "gif": "GIF",
}
EXIF_FORMATS = frozenset({"JPEG", "WEBP", "AVIF"})
# JPEG has no alpha or palette; A1111 converts such images to RGB before saving a .jpg.
JPEG_CONVERT_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "P", "PA"})


def image_format_for(extension: str) -> str:
    """Pillow's format name for a file extension (``"jpg"`` -> ``"JPEG"``); ValueError for unsupported ones."""
    try:
        return EXTENSION_FORMATS[extension.lower().lstrip(".")]
    except KeyError:
        raise ValueError(f"unsupported image extension {extension!r}; use one of {sorted(EXTENSION_FORMATS)}") from None


def encode_user_comment(text: str) -> bytes:
    """The UserComment value A1111 writes: ``UNICODE\\0`` then UTF-16 big-endian without a byte-order mark."""
    return UNICODE_PREFIX + text.encode("utf-16-be")


def decode_user_comment(data: bytes | tuple[int, ...] | list[int]) -> str:
    """Text of a UserComment value, whatever character code and UTF-16 byte order the writer used."""
    data = bytes(data)  # Pillow returns a tuple of ints when a writer typed the tag as BYTE
    prefix, body = data[:8], data[8:]
    if prefix == UNICODE_PREFIX:
        text = body.decode(_utf16_codec(body), errors="replace")
    elif prefix == JIS_PREFIX:
        text = body.decode("shift_jis", errors="replace")
    elif prefix in (ASCII_PREFIX, UNDEFINED_PREFIX):
        text = body.decode("utf-8", errors="ignore")
    else:
        # No known header: A1111 falls back to reading the whole value as UTF-8.
        text = data.decode("utf-8", errors="ignore")
    return text.rstrip("\x00")


def _utf16_codec(body: bytes) -> str:
    """piexif (A1111) writes big-endian; some Windows tools write little-endian. A byte-order mark decides when
    present; otherwise ASCII-range characters give it away: their zero byte comes first in big-endian."""
    if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return "utf-16"  # Python's utf-16 codec reads the mark and drops it
    zeros_at_even = body[0::2].count(0)
    zeros_at_odd = body[1::2].count(0)
    return "utf-16-le" if zeros_at_odd > zeros_at_even else "utf-16-be"


def exif_with_user_comment(text: str) -> bytes:
    """A minimal EXIF block (``Exif\\0\\0`` + big-endian TIFF) holding only the UserComment, typed UNDEFINED.

    Built by hand because Pillow's ``Image.Exif`` types a bytes value as BYTE, and piexif-based readers (A1111's
    PNG Info) then get a tuple of ints instead of the comment.
    """
    comment = encode_user_comment(text)
    ifd0_offset = 8
    exif_ifd_offset = ifd0_offset + 2 + 12 + 4  # entry count, one entry, next-IFD pointer
    comment_offset = exif_ifd_offset + 2 + 12 + 4
    header = b"MM" + struct.pack(">HI", 42, ifd0_offset)
    ifd0 = struct.pack(">H", 1) + struct.pack(">HHII", EXIF_IFD_POINTER_TAG, TIFF_TYPE_LONG, 1, exif_ifd_offset)
    ifd0 += struct.pack(">I", 0)
    if len(comment) <= 4:  # TIFF stores values of up to 4 bytes inside the entry itself
        entry_value = comment.ljust(4, b"\x00")
        payload = b""
    else:
        entry_value = struct.pack(">I", comment_offset)
        payload = comment
    exif_ifd = struct.pack(">H", 1) + struct.pack(">HHI", USER_COMMENT_TAG, TIFF_TYPE_UNDEFINED, len(comment))
    exif_ifd += entry_value + struct.pack(">I", 0)
    return b"Exif\x00\x00" + header + ifd0 + exif_ifd + payload


def write_image(image: Image.Image, fp: BinaryIO, *, image_format: str, infotext: str | None,
                quality: int = 80, lossless: bool = False) -> None:
    """Encode ``image`` into ``fp`` as ``image_format`` ("PNG", "JPEG", ...) with ``infotext`` where A1111 puts it."""
    image_format = image_format.upper()
    options: dict[str, object] = {}
    if image_format == "PNG":
        if infotext:
            png_text = PngImagePlugin.PngInfo()
            png_text.add_text(INFOTEXT_KEY, infotext)  # tEXt if Latin-1 encodable, else iTXt
            options["pnginfo"] = png_text
    elif image_format in EXIF_FORMATS:
        options["quality"] = quality
        if image_format == "WEBP":
            options["lossless"] = lossless
        if image_format == "JPEG" and image.mode in JPEG_CONVERT_MODES:
            image = image.convert("RGB")
        if infotext:
            exif = exif_with_user_comment(infotext)
            if image_format == "JPEG" and len(exif) > JPEG_MAX_EXIF_BYTES:
                # Losing the picture over its metadata would be worse; PNG has no such limit.
                log.warning("Infotext too long for JPEG EXIF (%d bytes); saved without it. Use PNG.", len(exif))
            else:
                options["exif"] = exif
    elif image_format == "GIF" and infotext:
        options["comment"] = infotext.encode("utf-8")
    image.save(fp, format=image_format, **options)


def read_metadata(source: Image.Image | str | Path) -> dict[str, str]:
    """Every text this app understands from an image (an open image or a path): ``parameters`` (the infotext,
    from any storage above) and raw ``prompt``/``workflow``/``invokeai_metadata`` chunks when present."""
    if isinstance(source, Image.Image):
        return _metadata_of(source)
    with Image.open(source) as image:
        return _metadata_of(image)


def read_infotext(source: Image.Image | str | Path) -> str | None:
    """The A1111 infotext stored in an image, or None when it has none."""
    return read_metadata(source).get(INFOTEXT_KEY)


def _metadata_of(image: Image.Image) -> dict[str, str]:
    texts = _text_chunks(image)
    if not texts and image.format == "PNG":
        # Text chunks written after the pixel data only appear in ``info`` once the image is loaded.
        try:
            image.load()
        except OSError:
            pass
        texts = _text_chunks(image)
    comment = _exif_user_comment(image)
    # Same precedence as A1111: a non-empty EXIF comment wins over the PNG chunk; GIF/JPEG comments come last.
    if comment:
        texts[INFOTEXT_KEY] = comment
    elif INFOTEXT_KEY not in texts and image.info.get("comment"):
        raw = image.info["comment"]
        texts[INFOTEXT_KEY] = raw.decode("utf-8", errors="ignore") if isinstance(raw, bytes) else str(raw)
    return texts


def _text_chunks(image: Image.Image) -> dict[str, str]:
    return {key: str(image.info[key]) for key in (INFOTEXT_KEY, *FOREIGN_TEXT_KEYS)
            if isinstance(image.info.get(key), str)}


def _exif_user_comment(image: Image.Image) -> str | None:
    if "exif" not in image.info:
        return None
    try:
        value = image.getexif().get_ifd(EXIF_IFD_POINTER_TAG).get(USER_COMMENT_TAG)
    except Exception:  # a malformed EXIF block must not stop reading the rest  # noqa: BLE001
        return None
    if not value or isinstance(value, str):
        return value or None
    return decode_user_comment(value) or None
