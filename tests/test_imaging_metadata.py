"""Infotext stored inside image files where A1111 stores it, and read back from every place A1111 reads it."""
import io
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin, features

from paragoger.imaging.metadata import (
    UNICODE_PREFIX,
    decode_user_comment,
    encode_user_comment,
    exif_with_user_comment,
    read_infotext,
    read_metadata,
    write_image,
)

INFOTEXT = "a cat, oil: painting\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 64x64"
CHINESE_INFOTEXT = "一只猫，油画风格 🐱\nNegative prompt: 模糊\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 64x64"


def encoded(image_format, infotext, image=None):
    buffer = io.BytesIO()
    write_image(image or Image.new("RGB", (64, 64), "teal"), buffer, image_format=image_format, infotext=infotext)
    return buffer.getvalue()


def png_chunks(data):
    """(type, payload) of every chunk in a PNG file."""
    chunks, position = [], 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunks.append((kind.decode("ascii"), data[position + 8:position + 8 + length]))
        position += 12 + length
    return chunks


def exif_user_comment_entry(exif_block):
    """(type, count) of the UserComment entry in a big-endian EXIF block."""
    position = exif_block.index(b"\x92\x86")
    return struct.unpack(">HI", exif_block[position + 2:position + 8])


def test_png_stores_infotext_in_parameters_text_chunk():
    chunks = png_chunks(encoded("PNG", INFOTEXT))
    assert ("tEXt", b"parameters\x00" + INFOTEXT.encode("latin-1")) in chunks
    assert [kind for kind, _ in chunks].index("tEXt") < [kind for kind, _ in chunks].index("IDAT")


def test_chinese_prompt_survives_png_save_and_read():
    data = encoded("PNG", CHINESE_INFOTEXT)
    kinds = [kind for kind, _ in png_chunks(data)]
    assert "iTXt" in kinds and "tEXt" not in kinds
    assert read_infotext(Image.open(io.BytesIO(data))) == CHINESE_INFOTEXT


def test_jpeg_keeps_infotext_in_exif_usercomment():
    image = Image.open(io.BytesIO(encoded("JPEG", CHINESE_INFOTEXT)))
    comment = image.getexif().get_ifd(0x8769)[0x9286]
    # What A1111 writes through piexif: the UNICODE header, then big-endian UTF-16.
    assert comment == b"UNICODE\x00" + CHINESE_INFOTEXT.encode("utf-16-be")
    # Typed UNDEFINED (7), not BYTE: piexif-based readers such as A1111's PNG Info need bytes.
    assert exif_user_comment_entry(image.info["exif"]) == (7, len(comment))
    assert read_infotext(image) == CHINESE_INFOTEXT


def test_webp_keeps_infotext_in_exif_usercomment():
    image = Image.open(io.BytesIO(encoded("WEBP", CHINESE_INFOTEXT)))
    assert image.format == "WEBP"
    assert image.getexif().get_ifd(0x8769)[0x9286].startswith(UNICODE_PREFIX)
    assert read_infotext(image) == CHINESE_INFOTEXT


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF support")
def test_avif_keeps_infotext_in_exif_usercomment():
    assert read_infotext(Image.open(io.BytesIO(encoded("AVIF", INFOTEXT)))) == INFOTEXT


def test_gif_keeps_infotext_in_comment():
    image = Image.new("P", (8, 8))
    assert read_infotext(Image.open(io.BytesIO(encoded("GIF", CHINESE_INFOTEXT, image)))) == CHINESE_INFOTEXT


def test_rgba_image_saved_as_jpeg_is_flattened_to_rgb():
    image = Image.open(io.BytesIO(encoded("JPEG", INFOTEXT, Image.new("RGBA", (16, 16), (255, 0, 0, 128)))))
    assert image.mode == "RGB"
    assert read_infotext(image) == INFOTEXT


def test_little_endian_usercomment_from_other_tools_is_read():
    block = exif_with_user_comment(INFOTEXT).replace(
        encode_user_comment(INFOTEXT), UNICODE_PREFIX + INFOTEXT.encode("utf-16-le"))
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG", exif=block)
    assert read_infotext(Image.open(buffer)) == INFOTEXT


def test_usercomment_decoding_accepts_every_character_code():
    assert decode_user_comment(encode_user_comment("日本語 text")) == "日本語 text"
    # Without a byte-order mark, ASCII characters (always present in an infotext's parameters line) reveal LE.
    assert decode_user_comment(UNICODE_PREFIX + "日本語 text".encode("utf-16-le")) == "日本語 text"
    assert decode_user_comment(UNICODE_PREFIX + "\ufeffabc".encode("utf-16-le")) == "abc"
    assert decode_user_comment(b"ASCII\x00\x00\x00plain") == "plain"
    assert decode_user_comment(b"\x00" * 8 + "utf8 ü".encode()) == "utf8 ü"
    assert decode_user_comment(b"JIS\x00\x00\x00\x00\x00" + "日本".encode("shift_jis")) == "日本"
    assert decode_user_comment(tuple(encode_user_comment("as ints"))) == "as ints"
    assert decode_user_comment(encode_user_comment("padded") + b"\x00\x00") == "padded"


def test_usercomment_written_by_plain_pillow_as_byte_type_is_read():
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = encode_user_comment(INFOTEXT)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG", exif=exif)
    assert read_infotext(Image.open(buffer)) == INFOTEXT


def test_png_exif_comment_takes_precedence_like_a1111():
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "old")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info, exif=exif_with_user_comment(INFOTEXT))
    assert read_infotext(Image.open(buffer)) == INFOTEXT


def test_comfyui_chunks_are_returned_raw_under_their_names():
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", '{"3": {"class_type": "KSampler"}}')
    info.add_text("workflow", '{"nodes": []}')
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    image = Image.open(buffer)
    assert read_metadata(image) == {"prompt": '{"3": {"class_type": "KSampler"}}', "workflow": '{"nodes": []}'}
    assert read_infotext(image) is None


def test_text_chunk_after_pixel_data_is_found():
    data = encoded("PNG", None)
    payload = b"tEXt" + b"parameters\x00" + INFOTEXT.encode("latin-1")
    chunk = struct.pack(">I", len(payload) - 4) + payload + struct.pack(">I", zlib.crc32(payload))
    iend = data.rindex(b"IEND") - 4
    assert read_infotext(Image.open(io.BytesIO(data[:iend] + chunk + data[iend:]))) == INFOTEXT


def test_image_without_metadata_has_no_infotext(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    assert read_infotext(path) is None
    assert read_metadata(str(path)) == {}


def test_reading_from_a_path_closes_the_file(tmp_path):
    path = tmp_path / "with.png"
    path.write_bytes(encoded("PNG", INFOTEXT))
    assert read_infotext(path) == INFOTEXT
    path.unlink()  # would fail on Windows if the file were still open
