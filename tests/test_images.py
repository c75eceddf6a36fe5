"""Decoding, normalisation, thumbnails and the sentences bad files get."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import InputError
from pipeline.images import content_id, decode, encode, thumbnail, to_8bit


def png_bytes(im: Image.Image, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, format="PNG", **kw)
    return out.getvalue()


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, format="JPEG", **kw)
    return out.getvalue()


def gradient(w: int = 64, h: int = 48) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)
    return Image.fromarray(np.tile(x, (h, 1)), mode="L")


def test_png_decodes_to_8bit_with_content_id():
    data = png_bytes(gradient())
    d = decode(data)
    assert d.image.mode == "L" and d.image.size == (64, 48)
    assert d.format == "PNG"
    assert d.id == content_id(data) and len(d.id) == 64


@pytest.mark.parametrize(
    "mode",
    ["I;16", "I", "F", "P", "RGBA", "LA", "CMYK", "1", "RGB"],
)
def test_every_mode_becomes_l_or_rgb(mode):
    base = gradient().convert("RGB") if mode in ("P", "RGBA", "CMYK", "RGB") else gradient()
    if mode in ("I;16", "I", "F"):
        im = Image.fromarray(np.asarray(gradient(), dtype=np.float32) * 200, mode="F")
        im = im if mode == "F" else im.convert("I") if mode == "I" else im.convert("I;16")
    else:
        im = base.convert(mode)
    out = to_8bit(im)
    assert out.mode in ("L", "RGB")
    assert out.size == (64, 48)
    assert np.asarray(out).std() > 10  # the gradient survived, not a flat image


def test_sixteen_bit_png_keeps_its_contrast():
    arr = (np.linspace(0, 4000, 64 * 48).reshape(48, 64)).astype(np.uint16)
    im = Image.fromarray(arr, mode="I;16")
    d = decode(png_bytes(im))
    pixels = np.asarray(d.image)
    assert pixels.min() < 10 and pixels.max() > 245


def test_palette_with_transparency_composites_on_black():
    im = Image.new("P", (32, 32), 0)
    im.putpalette([255, 255, 255] + [0, 0, 0] * 255)
    im.info["transparency"] = 0
    d = decode(png_bytes(im, transparency=0))
    assert np.asarray(d.image).max() == 0


def test_exif_orientation_is_applied():
    im = gradient(64, 32).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    d = decode(jpeg_bytes(im, exif=exif.tobytes()))
    assert d.image.size == (32, 64)


def test_metadata_is_stripped():
    im = gradient().convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "ACME Scanner"
    d = decode(jpeg_bytes(im, exif=exif.tobytes()))
    assert not d.image.info and len(d.image.getexif()) == 0


def test_gif_first_frame():
    frames = [Image.new("L", (32, 32), v) for v in (10, 200)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    d = decode(out.getvalue())
    assert d.image.size == (32, 32)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"hello, this is text not an image", "not an image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not an image"),
    ],
)
def test_non_images_get_a_sentence(data, words):
    with pytest.raises(InputError) as err:
        decode(data)
    assert words in err.value.sentence
    assert err.value.sentence.endswith(".")


def test_truncated_jpeg_gets_a_sentence():
    data = jpeg_bytes(Image.effect_noise((256, 256), 50).convert("RGB"))
    with pytest.raises(InputError, match="damaged or incomplete"):
        decode(data[: len(data) // 2])


def test_tiny_image_is_refused():
    with pytest.raises(InputError, match="too small"):
        decode(png_bytes(Image.new("L", (1, 1))))


def test_thin_image_is_refused():
    with pytest.raises(InputError, match="long and thin"):
        decode(png_bytes(Image.new("L", (2000, 20))))


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_huge_declared_dimensions_are_refused_before_decoding():
    # A valid PNG header declaring 100000 x 100000 pixels, with no real pixel data behind it.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"\0" * 64)
    with pytest.raises(InputError, match="megapixels"):
        decode(data, max_pixels=50_000_000)


def test_pixel_cap_is_a_setting():
    with pytest.raises(InputError, match="megapixels"):
        decode(png_bytes(gradient(2000, 1000)), max_pixels=1_000_000)


def test_thumbnail_is_small_jpeg():
    thumb = thumbnail(Image.effect_noise((512, 512), 40))
    im = Image.open(io.BytesIO(thumb))
    assert im.format == "JPEG" and max(im.size) <= 160
    assert len(thumb) < 20_000


def test_encode_respects_limits():
    im = Image.effect_noise((3000, 2000), 80).convert("RGB")
    data, fmt = encode(im, max_edge=1568, max_bytes=500_000)
    assert len(data) <= 500_000
    assert max(Image.open(io.BytesIO(data)).size) <= 1568
    assert fmt in ("png", "jpeg")
