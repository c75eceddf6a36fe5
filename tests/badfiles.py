"""The bad-input corpus: every file is generated here, none is a checked-in blob.

Each case names the file, builds its bytes, and says what the app must answer: either a
sentence containing some words (the user's to fix) or a caption (None: it must work).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

PATIENT_NAME = "Doe^Jane^Secret"
HTML = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>'
GPS_MARKER = "N51.5007"


@dataclass(frozen=True)
class Case:
    """One kind of input: its file name, a bytes factory, and the expected sentence words."""

    name: str
    make: Callable[[], bytes]
    words: str | None  # None: a caption is expected; else words the sentence must contain


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, format=fmt, **kw)
    return out.getvalue()


def _scan(size=(256, 256), mode="L", seed=0) -> Image.Image:
    """A plausible grey scan: a bright disc on a dark field with noise, so it embeds normally."""
    h, w = size[1], size[0]
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (min(h, w) / 3) ** 2
    rng = np.random.default_rng(seed)
    pixels = np.clip(disc * 160 + 40 + rng.normal(0, 12, (h, w)), 0, 255).astype(np.uint8)
    im = Image.fromarray(pixels, mode="L")
    return im if mode == "L" else im.convert(mode)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but carries almost no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"\0" * 64)


def _bomb() -> bytes:
    # A real, fully valid PNG of 8000 x 8000 zeros: 64 megapixels in a few tens of KB.
    return _save(Image.new("L", (8000, 8000)), "PNG", optimize=False)


def _corrupt_png() -> bytes:
    data = bytearray(_save(_scan(), "PNG"))
    mid = len(data) // 2
    data[mid : mid + 400] = bytes(400)  # zeros over compressed pixel data
    return bytes(data)


def _truncated(fmt: str, **kw) -> Callable[[], bytes]:
    def make() -> bytes:
        data = _save(_scan(mode="RGB" if fmt == "JPEG" else "L"), fmt, **kw)
        return data[: len(data) // 3]

    return make


def _cmyk_jpeg() -> bytes:
    return _save(_scan(mode="RGB").convert("CMYK"), "JPEG")


def _tiff16() -> bytes:
    arr = (np.asarray(_scan(), dtype=np.uint16) * 200).astype(np.uint16)
    return _save(Image.fromarray(arr, mode="I;16"), "TIFF")


def _tiff_float() -> bytes:
    arr = np.asarray(_scan(), dtype=np.float32) / 255.0 - 0.3
    return _save(Image.fromarray(arr, mode="F"), "TIFF")


def _palette_alpha() -> bytes:
    im = _scan().convert("P")
    return _save(im, "PNG", transparency=0)


def _animated(fmt: str) -> Callable[[], bytes]:
    def make() -> bytes:
        frames = [_scan(seed=i, mode="RGB") for i in range(3)]
        return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)

    return make


def _exif(orientation: int = 6, padding: int = 0) -> Callable[[], bytes]:
    def make() -> bytes:
        exif = Image.Exif()
        exif[0x0112] = orientation
        exif[0x010F] = "ACMEScannerCorp"
        gps = {2: (51.0, 30.0, 2.5), 1: "N", 4: (0.0, 7.0, 39.0), 3: "W"}
        exif[0x8825] = gps
        if padding:
            exif[0x927C] = b"x" * padding  # MakerNote: a huge EXIF block
        exif[0x9286] = GPS_MARKER  # UserComment carrying a recognisable marker
        return _save(_scan((320, 200), "RGB"), "JPEG", exif=exif.tobytes())

    return make


def dicom(
    frames: int = 1,
    pixels: bool = True,
    syntax: str | None = None,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = (300.0, 600.0),
) -> bytes:
    """A small CT-like DICOM with a patient name, optionally broken in a chosen way."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = "ID-123456"
    ds.InstitutionName = "General Hospital"
    ds.Modality = "CT"
    ds.StudyDescription = "CT HEAD WO CONTRAST"
    ds.BodyPartExamined = "HEAD"
    if pixels:
        rows = cols = 128
        stack = np.stack([np.asarray(_scan((cols, rows), seed=i), dtype=np.int16) * 8 - 1000
                          for i in range(frames)])  # fmt: skip
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        if window:
            ds.WindowCenter, ds.WindowWidth = window
        if frames > 1:
            ds.NumberOfFrames = frames
        data = (stack if frames > 1 else stack[0]).tobytes()
        if syntax is None:
            ds.PixelData = data
        else:  # a compressed syntax with a codestream no installed decoder can read
            from pydicom.encaps import encapsulate

            ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + data[:200]])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


CASES: list[Case] = [
    Case("empty.png", lambda: b"", "empty"),
    Case("zero-bytes.jpg", lambda: b"", "empty"),
    Case("notes.png", lambda: b"Patient notes: not an image at all.\n" * 20, "not an image"),
    Case(
        "page.png", lambda: b"<!doctype html><html><body><script>alert(1)</script>", "not an image"
    ),
    Case(
        "drawing.png",
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>',
        "not an image",
    ),
    Case("random.jpg", lambda: np.random.default_rng(1).bytes(5000), "not an image"),
    Case("truncated.png", _truncated("PNG"), "damaged or incomplete"),
    Case("corrupted.png", _corrupt_png, "damaged or incomplete"),
    Case("truncated.jpg", _truncated("JPEG", quality=95), "damaged or incomplete"),
    Case("truncated.gif", _truncated("GIF"), "damaged or incomplete"),
    Case("truncated.tif", _truncated("TIFF"), "damaged or incomplete"),
    Case("header-bomb.png", lambda: png_declaring(100_000, 100_000), "megapixels"),
    Case("real-bomb.png", _bomb, "megapixels"),
    Case("one-pixel.png", lambda: _save(Image.new("L", (1, 1), 128), "PNG"), "too small"),
    Case("line.png", lambda: _save(Image.new("L", (100_000, 1), 128), "PNG"), "too small"),
    Case("sliver.png", lambda: _save(_scan((4000, 40)), "PNG"), "long and thin"),
    Case("sixteen-bit.tif", _tiff16, None),
    Case("float.tif", _tiff_float, None),
    Case("cmyk.jpg", _cmyk_jpeg, None),
    Case("palette-alpha.png", _palette_alpha, None),
    Case("animated.gif", _animated("GIF"), None),
    Case("animated.webp", _animated("WEBP"), None),
    Case("rotated-exif.jpg", _exif(6), None),
    Case("huge-exif.jpg", _exif(1, padding=60_000), None),
    Case("scan.bmp", lambda: _save(_scan(), "BMP"), None),
    Case("scan.webp", lambda: _save(_scan(mode="RGB"), "WEBP"), None),
    Case("ct.dcm", lambda: dicom(), None),
    Case("ct-monochrome1.dcm", lambda: dicom(photometric="MONOCHROME1", window=None), None),
    Case("multi-frame.dcm", lambda: dicom(frames=5), None),
    Case("no-pixels.dcm", lambda: dicom(pixels=False), "no image"),
    Case("jpeg2000.dcm", lambda: dicom(syntax="1.2.840.10008.1.2.4.90"), "cannot be decoded"),
]
