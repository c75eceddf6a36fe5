"""Bytes in, a validated and normalised image out; thumbnails and re-encoding for backends."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from pipeline.errors import InputError, brief

log = logging.getLogger(__name__)

ACCEPTED = "PNG, JPEG, WebP, TIFF, BMP, GIF or DICOM"
PIL_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
MIN_SIDE = 16
MAX_ASPECT = 20
THUMBNAIL_SIDE = 160


@dataclass(frozen=True)
class DecodedImage:
    """A decoded upload: 8-bit greyscale or RGB pixels with no metadata, and its content id."""

    image: Image.Image
    id: str
    format: str


def content_id(data: bytes) -> str:
    """The collection's primary key: SHA-256 of the file's bytes, so re-ingest is idempotent."""
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, max_pixels: int = 50_000_000) -> DecodedImage:
    """Decode and validate an uploaded file; raise InputError with one sentence if unusable."""
    if not data:
        raise InputError(f"The file is empty: upload a {ACCEPTED} image.")
    if len(data) > 132 and data[128:132] == b"DICM":
        image, fmt = _decode_dicom(data, max_pixels), "DICOM"
    else:
        image, fmt = _decode_pil(data, max_pixels)
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise InputError(
            f"The image is {width}x{height} pixels, too small to describe: "
            f"it needs at least {MIN_SIDE} pixels on each side."
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InputError(
            f"The image is {width}x{height} pixels, too long and thin to be a medical image: "
            f"the long side may be at most {MAX_ASPECT} times the short side."
        )
    return DecodedImage(image=image, id=content_id(data), format=fmt)


def _too_big(width: int, height: int, max_pixels: int) -> InputError:
    return InputError(
        f"The image is {width}x{height} pixels, more than the {max_pixels // 1_000_000} "
        "megapixels this app accepts: downscale it and try again."
    )


def _decode_pil(data: bytes, max_pixels: int) -> tuple[Image.Image, str]:
    not_image = InputError(f"This file is not an image this app can read: upload {ACCEPTED}.")
    fmt = "image"
    try:
        # Pillow's own decompression-bomb check is a process-wide setting; ours is per call,
        # before any pixel is decoded, so treat Pillow's warning as an error here too.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
            fmt = im.format or "image"
            if im.width * im.height > max_pixels:
                raise _too_big(im.width, im.height, max_pixels)
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # animated GIF/WebP, multi-page TIFF: the first frame
            im.load()
            im = ImageOps.exif_transpose(im) or im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"The image declares more pixels than this app accepts ({max_pixels // 1_000_000} "
            "megapixels at most): downscale it and try again."
        ) from None
    except InputError:
        raise
    except Image.UnidentifiedImageError:
        raise not_image from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(
            f"The {fmt} file is damaged or incomplete "
            f"and cannot be decoded ({brief(exc)}): upload the full file."
        ) from None
    return to_8bit(im), fmt


def to_8bit(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit L or RGB pixels; drops metadata by building a fresh image."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (0, 0, 0, 255))  # medical images sit on black
        im = Image.alpha_composite(base, rgba).convert("RGB")
    elif im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        im = Image.fromarray(window(np.asarray(im, dtype=np.float32)), mode="L")
    elif im.mode in ("1", "L"):
        im = im.convert("L")
    elif im.mode != "RGB":
        im = im.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV
    return Image.frombytes(im.mode, im.size, im.tobytes())


def window(pixels: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Map a float array to 0..255 between low and high (default: robust 0.5/99.5 percentiles)."""
    finite = pixels[np.isfinite(pixels)]
    if finite.size == 0:
        return np.zeros(pixels.shape, dtype=np.uint8)
    if low is None or high is None:
        low, high = np.percentile(finite, [0.5, 99.5])
        if high <= low:
            low, high = float(finite.min()), float(finite.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    out = np.nan_to_num((pixels - low) * scale, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(out, 0, 255).astype(np.uint8)


def _decode_dicom(data: bytes, max_pixels: int) -> Image.Image:
    import pydicom  # imported lazily: only DICOM uploads pay for it
    from pydicom.pixels import apply_modality_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many types for broken files
        raise InputError(f"The DICOM file could not be read ({brief(exc)}).") from None
    if "PixelData" not in ds:
        raise InputError("The DICOM file has no image in it (no pixel data): upload an image.")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > max_pixels:
        raise _too_big(cols, rows, max_pixels)
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        pixels = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax or "unknown"))
        log.info("DICOM pixel data not decodable: %s", brief(exc))
        raise InputError(
            f"This DICOM file's pixel data ({name}) cannot be decoded here: "
            "export it uncompressed or as PNG."
        ) from None
    if frames > 1:
        pixels = pixels[frames // 2]  # the middle frame is the most representative slice
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        return Image.fromarray(np.asarray(pixels[..., :3], dtype=np.uint8), mode="RGB")
    values = apply_modality_lut(pixels, ds).astype(np.float32)
    low = high = None
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        center = float(center[0] if isinstance(center, pydicom.multival.MultiValue) else center)
        width = float(width[0] if isinstance(width, pydicom.multival.MultiValue) else width)
        if width > 1:
            low, high = center - width / 2, center + width / 2
    grey = window(values, low, high)
    if photometric == "MONOCHROME1":
        grey = 255 - grey  # MONOCHROME1 stores bright as low values
    return Image.fromarray(grey, mode="L")


def thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE, quality: int = 80) -> bytes:
    """A small JPEG (a few KB) for the gallery; metadata-free by construction."""
    thumb = image.convert("RGB") if image.mode not in ("L", "RGB") else image.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def thumbnail_b64(image: Image.Image) -> str:
    """The thumbnail as base64 text, the form the collection stores it in."""
    return base64.b64encode(thumbnail(image)).decode("ascii")


def encode(
    image: Image.Image, max_edge: int, max_bytes: int, lossless: bool = True
) -> tuple[bytes, str]:
    """Re-encode for a backend within an edge and size limit: PNG if it fits (and `lossless`),
    else JPEG."""
    im = image.copy()
    if max(im.size) > max_edge:
        im.thumbnail((max_edge, max_edge), Image.Resampling.LANCZOS)
    if lossless:
        out = io.BytesIO()
        # Fastest zlib level: 5-6x quicker than the default for ~15% more bytes.
        im.save(out, format="PNG", compress_level=1)
        if out.tell() <= max_bytes:
            return out.getvalue(), "png"
    for quality in (90, 80, 70, 55, 40):
        out = io.BytesIO()
        im.convert("RGB" if im.mode != "L" else "L").save(out, format="JPEG", quality=quality)
        if out.tell() <= max_bytes:
            return out.getvalue(), "jpeg"
        im.thumbnail((int(im.width * 0.8), int(im.height * 0.8)), Image.Resampling.LANCZOS)
    raise InputError("The image could not be made small enough to send to the model.")
