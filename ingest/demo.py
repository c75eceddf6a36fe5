"""The built-in demo set: deterministic synthetic phantoms of seven modalities with known findings.

Each item is drawn from (seed, index) alone with numpy and Pillow, and its caption is written from
the same parameters, so the ground truth is exact. It lets a fresh checkout (no data, no account,
no network) show retrieval and captioning working, and is the quality fixture for the embedder
and the extractive captioner. Nothing here is a real patient.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter

DEMO_DATASET = "medcap-demo-synthetic"
MODALITIES: tuple[str, ...] = (
    "chest x-ray",
    "head ct",
    "brain mri",
    "abdominal ultrasound",
    "histology",
    "fundus",
    "dermoscopy",
)
LICENSE = "CC0-1.0"
CSV_FIELDS = ("filename", "caption", "modality", "finding", "location", "size_mm", "dataset",
              "license")  # fmt: skip


@dataclass(frozen=True)
class DemoItem:
    """One synthetic image (PNG bytes) with its caption and ground truth."""

    name: str
    image: bytes
    caption: str
    meta: dict


@dataclass(frozen=True)
class _Case:
    """What a drawing function drew, in words and numbers."""

    finding: str
    location: str | None
    size_mm: float | None
    caption: str


# ---------------------------------------------------------------------------------------------
# helpers: float32 arrays, 0 = black and 1 = white


def _grid(h: int, w: int, angle: float = 0.0, scale: float = 1.0) -> tuple[np.ndarray, ...]:
    """(y, x) patient coordinates: the shorter side spans [-1, 1] / scale, rotated by `angle`°."""
    s = min(h, w) / 2 * scale
    yy = (np.arange(h, dtype=np.float32)[:, None] - (h - 1) / 2) / s
    xx = (np.arange(w, dtype=np.float32)[None, :] - (w - 1) / 2) / s
    c, sn = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return c * yy - sn * xx, sn * yy + c * xx


def _ell(y, x, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> np.ndarray:
    """Normalised elliptic radius about (cy, cx): below 1 inside the ellipse."""
    dy, dx = y - cy, x - cx
    if angle:
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        dy, dx = c * dy - s * dx, s * dy + c * dx
    return np.sqrt((dy / ry) ** 2 + (dx / rx) ** 2)


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth noise of about unit spread with blobs roughly `cell` pixels across."""
    small = rng.standard_normal((h // cell + 2, w // cell + 2), dtype=np.float32)
    return np.asarray(Image.fromarray(small, "F").resize((w, h), Image.Resampling.BICUBIC))


def _f32(*values: float) -> np.ndarray:
    return np.array(values, np.float32)


def _pick(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def _say(rng: np.random.Generator, templates: tuple[str, ...], **fields) -> str:
    """One of several phrasings, so captions vary like real figure legends."""
    return _pick(rng, templates).format(**fields)


def _mm(pixels: float, spacing: float) -> float:
    """A drawn length in whole millimetres, exactly as the caption states it."""
    return float(max(1, round(pixels * spacing)))


def _size(size_mm: float | None, unit: str = "") -> str:
    """A size as a caption states it: "12 mm", or "4.5 cm" from 30 mm unless `unit` is given."""
    if size_mm is None:
        return ""
    unit = unit or ("cm" if size_mm >= 30 else "mm")
    return f"{size_mm / 10:.1f} cm" if unit == "cm" else f"{size_mm:.0f} mm"


def _a(size: str) -> str:
    """With its article: "a 12 mm", "an 8.0 cm", "an 11 mm"."""
    return ("an " if size[0] == "8" or size.split()[0] in ("11", "18") else "a ") + size


def _grey(a: np.ndarray, rng: np.random.Generator, noise: float, size: int = 1) -> Image.Image:
    """Window jitter and gamma, upsampling by `size` (smooth anatomy is drawn at lower resolution
    to save time) and full-resolution acquisition noise; an 8-bit greyscale image."""
    a = (a.astype(np.float32) - 0.5) * rng.uniform(0.9, 1.1) + 0.5 + rng.uniform(-0.04, 0.04)
    a = np.clip(a, 0, 1) ** np.float32(rng.uniform(0.9, 1.1))
    if size > 1:
        im = Image.fromarray(a, "F")
        a = np.asarray(im.resize((im.width * size, im.height * size), Image.Resampling.BICUBIC))
    a = a + rng.standard_normal(a.shape, dtype=np.float32) * np.float32(noise)
    return Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8), "L")


def _rgb(a: np.ndarray, rng: np.random.Generator, noise: float, size: int = 1) -> Image.Image:
    """Exposure jitter and sensor grain, then upsampling by `size`; an 8-bit RGB image."""
    grain = rng.standard_normal((*a.shape[:2], 1), dtype=np.float32) * np.float32(noise)
    a = np.clip(a * np.float32(rng.uniform(0.92, 1.06)) + grain, 0, 1) * 255 + 0.5
    im = Image.fromarray(a.astype(np.uint8), "RGB")
    return im.resize((im.width * size, im.height * size), Image.Resampling.BICUBIC)


def _mask(h: int, w: int, shapes: list[tuple[str, list, int]]) -> np.ndarray:
    """Rasterise ImageDraw shapes (kind, xy, fill 0..255) into a float mask in [0, 1]."""
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    for kind, xy, fill in shapes:
        if kind == "ellipse":
            draw.ellipse(xy, fill=fill)
        elif kind == "polygon":
            draw.polygon(xy, fill=fill)
        else:  # a polyline whose fill doubles as its width
            draw.line(xy, fill=255, width=fill, joint="curve")
    return np.asarray(im, dtype=np.float32) / 255


def _dots(xs, ys, rx, ry=None, fill=255) -> list[tuple[str, list, int]]:
    """Ellipses centred at (xs, ys) for _mask."""
    ry = rx if ry is None else ry
    xs, ys, rx, ry, fill = np.broadcast_arrays(xs, ys, rx, ry, fill)
    return [
        ("ellipse", [x - a, y - b, x + a, y + b], int(f))
        for x, y, a, b, f in zip(*(v.ravel() for v in (xs, ys, rx, ry, fill)), strict=True)
    ]


def _vessels(rng, y: float, x: float, angle: float, length: float, width: float, depth: int,
             curl: float = 0.0) -> list[tuple[str, list, int]]:  # fmt: skip
    """Polylines of a randomly branching vessel tree from (y, x) in pixels, for _mask."""
    out, stack = [], [(y, x, angle, length, width, depth, curl)]
    while stack:
        y, x, angle, length, width, depth, curl = stack.pop()
        pts = [(x, y)]
        for k, wobble in enumerate(rng.normal(0, 0.12, 6)):  # wanders, sheds thinner branches
            angle += curl + wobble
            y, x = y + length / 6 * math.sin(angle), x + length / 6 * math.cos(angle)
            pts.append((x, y))
            if depth and k in (1, 3):
                turn = rng.choice([-1, 1]) * rng.uniform(0.4, 0.9)
                stack.append((y, x, angle + turn, length * 0.6, width * 0.7, depth - 1, curl / 2))
        out.append(("line", pts, max(1, round(width))))
    return out


# ---------------------------------------------------------------------------------------------
# chest radiograph, PA view: drawn as projected thickness of ellipsoids


def _chest_xray(rng: np.random.Generator, variant: int) -> tuple[Image.Image, _Case]:
    findings = ("normal", "consolidation", "pleural effusion", "nodule", "cardiomegaly",
                "pneumothorax")  # fmt: skip
    finding = findings[variant % len(findings)]
    n, spacing = 256, 1.6  # drawn at 256 px, saved at 512 px (0.8 mm): a 41 cm detector
    scale = rng.uniform(0.9, 1.04)  # patient size
    px = n / 2 * scale  # drawn pixels per grid unit
    y, x = _grid(n, n, rng.uniform(-4, 4), scale)
    ax = np.abs(x)
    side = _pick(rng, ("right", "left"))
    sided = x * (-1 if side == "right" else 1) > 0  # the patient's right is the viewer's left
    lobes = {"right upper lobe": (-0.35, -0.42), "right middle lobe": (0.12, -0.25),
             "right lower lobe": (0.24, -0.45), "left upper lobe": (-0.3, 0.42),
             "left lower lobe": (0.24, 0.47)}  # fmt: skip
    lobe = _pick(rng, tuple(lobes))
    cy, cx = lobes[lobe]
    ctr = rng.uniform(0.58, 0.68) if finding == "cardiomegaly" else rng.uniform(0.42, 0.5)

    half = (0.22 + 0.74 / (1 + np.exp(-(y + 0.74) / 0.05))) * rng.uniform(0.9, 1.02)  # shoulders
    body = np.sqrt(np.clip(1 - (ax / half) ** 2, 0, 1))
    tilt = 0.05 / (1 + np.exp(x / 0.04))  # the right hemidiaphragm sits higher
    dome = 0.42 + 0.35 * ((ax - 0.4) / 0.3) ** 2 - tilt
    belly = 0.42 + 0.35 * np.clip((ax - 0.4) / 0.3, 0, None) ** 2 - tilt
    lung_d = _ell(y, ax, -0.05, 0.4, 0.62, 0.3)
    lungs = (lung_d < 1) & (y < dome)
    heart_w = ctr * 1.4  # the thorax is 1.4 grid units wide; two thirds of the heart lie left
    heart = _ell(y, x, 0.3, 0.15 * heart_w, 0.24 + 0.1 * (ctr - 0.45), heart_w / 2)
    heart = np.minimum(heart, _ell(y, x, -0.27, 0.12, 0.06, 0.07))  # with the aortic knob
    medi = np.maximum(
        np.clip((0.12 - ax) / 0.03, 0, 1) * (y < 0.35), np.clip((1 - heart) / 0.15, 0, 1)
    )
    medi = np.maximum(medi * (y < belly + 0.03), np.clip((y - belly) / 0.03, 0, 1))  # on the liver
    air = gaussian_filter(lungs * np.sqrt(np.clip(1 - lung_d**2, 0, 1)), 1.5) * (1 - medi)

    trees = []  # pulmonary vessels fan out from the hila
    for sgn in (-1, 1):
        for ang in np.linspace(-1.4, 1.4, 6) + rng.normal(0, 0.1, 6):
            ang = ang if sgn > 0 else math.pi - ang
            trees += _vessels(rng, n / 2 + 0.05 * px, n / 2 + sgn * 0.16 * px, ang, 0.3 * px, 3, 2)
    vessels = 0.12 * gaussian_filter(_mask(n, n, trees), 0.6)
    fluid = np.zeros_like(air)  # anything that replaces air: pus, fluid
    location, size, grade = None, None, ""
    if finding == "consolidation":
        r = rng.uniform(14, 27)
        size, location = _mm(2 * r, spacing), lobe
        patch = np.clip(2 - 2 * _ell(y, x, cy, cx, r / px, r / px * rng.uniform(0.8, 1.2)), 0, 1)
        fluid = gaussian_filter(patch * (0.75 + 0.25 * _noise(rng, n, n, 4)), 2) * lungs
    elif finding == "pleural effusion":
        grade = _pick(rng, ("small", "moderate", "large"))
        level = {"small": 0.27, "moderate": 0.13, "large": -0.1}[grade]
        top = level - 0.15 * np.clip((ax - 0.15) / 0.55, 0, 1) ** 2  # meniscus up the chest wall
        pleural_space = sided & (lung_d < 1.05) & (y < dome + 0.03)
        fluid, location = pleural_space * np.clip((y - top) / 0.06, 0, 1), side
    elif finding == "pneumothorax":
        rim = rng.uniform(9, 22)  # drawn pixels between the chest wall and the visceral pleura
        size, location, r = _mm(rim, spacing), side, rim / px
        lung = _ell(y, ax, -0.05 + 0.5 * r, 0.4 - 0.5 * r, 0.62 - 0.8 * r, 0.3 - 0.5 * r)
        space = lungs & sided & (lung >= 1)  # only air, no vessels, beyond the pleural line
        pleura = lungs & sided & (np.abs(lung - 1) < 0.02) & (ax > 0.3)
        vessels, air = vessels * ~space + 0.1 * pleura, air + 0.3 * space
    air = air * (1 - np.clip(fluid, 0, 1))

    a = 0.06 + 0.58 * body**0.7 - 0.45 * air + (air > 0.05) * vessels + 0.08 * fluid
    a = a + 0.08 * np.clip((0.07 - ax) / 0.01, 0, 1) * body * (1 + 0.1 * np.cos(y * 57))  # spine
    # posterior ribs arch laterally and down; fainter anterior ribs run down to the sternum
    post = np.clip((np.cos(2 * np.pi * (y + 0.1 * ax - 0.65 * ax**2) / 0.12) - 0.2) / 0.3, 0, 1)
    ant = np.clip((np.cos(2 * np.pi * (y + 0.45 * ax) / 0.13) - 0.4) / 0.6, 0, 1)
    cage = ((lung_d < 1.2) & (y < dome + 0.02)) * body * (1 - 0.8 * medi)
    a = a + cage * (0.07 * post + 0.04 * ant)
    t = np.clip(((ax - 0.06) * 0.56 - (y + 0.62) * 0.12) / 0.33, 0, 1)  # along each clavicle
    clav = np.hypot(ax - 0.06 - 0.56 * t, y + 0.62 + 0.12 * t - 0.04 * np.sin(np.pi * t))
    a = a + 0.16 * np.clip((0.03 - clav) / 0.01, 0, 1)
    a = a - 0.15 * ((_ell(y, x, 0.62, 0.38, 0.06, 0.1) < 1) & (y > dome + 0.02))  # gastric bubble
    if finding == "nodule":
        r = rng.uniform(2.5, 7)
        size, location = _mm(2 * r, spacing), lobe
        a = a + 0.25 * (_ell(y, x, cy, cx, r / px, r / px) < 1)
    image = _grey(gaussian_filter(a, 0.6), rng, rng.uniform(0.01, 0.025), size=2)

    view = _pick(rng, ("Chest radiograph (PA view)", "PA chest X-ray", "Frontal chest radiograph"))
    verb = _pick(rng, (" showing ", ": ", " demonstrates "))
    sz = _size(size)
    text = {
        "normal": ("Normal chest radiograph.", "{view}: normal study, clear lungs.",
                   "{view} within normal limits (cardiothoracic ratio {ctr:.2f})."),
        "consolidation": ("{view}{verb}{a_sz} consolidation in the {lobe}.",
                          "{view}{verb}{lobe} consolidation measuring {sz}."),
        "pleural effusion": ("{view}{verb}a {grade} {side} pleural effusion blunting the "
                             "costophrenic angle.",),
        "nodule": ("{view}{verb}{a_sz} pulmonary nodule in the {lobe}.",
                   "{view}{verb}a solitary pulmonary nodule, {sz}, in the {lobe}."),
        "cardiomegaly": ("{view}{verb}cardiomegaly (cardiothoracic ratio {ctr:.2f}).",),
        "pneumothorax": ("{view}{verb}a {side} pneumothorax with {a_sz} lateral rim.",),
    }[finding]  # fmt: skip
    text = _say(rng, text, view=view, verb=verb, sz=sz, a_sz=sz and _a(sz), lobe=lobe, side=side,
                grade=grade, ctr=ctr)  # fmt: skip
    return image, _Case(finding, location, size, text)


# ---------------------------------------------------------------------------------------------
# head CT and brain MRI: one axial slice of tissue labels, two contrasts

AIR, SCALP, SKULL, DIPLOE, CSF, GREY, WHITE, DEEP = range(8)
# lobe centres (y, |x|) on the slice, anterior up; arterial territories in degrees from the front
_LOBES = {"frontal": (-0.45, 0.25), "parietal": (0.15, 0.38), "temporal": (-0.1, 0.45),
          "occipital": (0.55, 0.2)}  # fmt: skip
_TERRITORIES = {"anterior cerebral artery": (0, 35), "middle cerebral artery": (50, 125),
                "posterior cerebral artery": (140, 175)}  # fmt: skip


def _axial_head(rng: np.random.Generator, n: int, shift: float = 0.0, zoom: float = 1.0):
    """Tissue labels of an axial slice through the ventricles; `shift` moves the midline."""
    scale = rng.uniform(0.88, 1.0) * zoom
    y, x = _grid(n, n, rng.uniform(-6, 6), scale)
    d = _ell(y, x, 0.0, 0.0, 0.86, 0.7)
    theta = np.arctan2(y, x)
    wiggle = _noise(rng, n, n, n // 12)
    cortex = 0.74 + 0.06 * np.abs(np.sin(theta * 8 + 2 * wiggle))  # inner edge of the ribbon
    sulci = (np.abs(np.sin(theta * 15 + 2.5 * wiggle)) < 0.09) & (d > cortex)
    sulci |= (np.abs(x) < 0.01) & (np.abs(y) > 0.4)  # interhemispheric fissure
    xs = np.abs(x - shift)
    ventricles = _ell(y, xs, -0.18, 0.08, 0.15, 0.055, 25) < 1  # frontal horns
    ventricles |= _ell(y, xs, 0.24, 0.15, 0.1, 0.04, -35) < 1  # atria
    ventricles |= _ell(y, x - shift, 0.02, 0, 0.07, 0.012) < 1  # third ventricle
    deep = (_ell(y, xs, 0.04, 0.14, 0.1, 0.06) < 1) | (_ell(y, xs, -0.12, 0.17, 0.09, 0.05, 20) < 1)
    labels = np.select(
        [d >= 1, d >= 0.955, np.abs(d - 0.93) < 0.007, d >= 0.905, (d >= 0.89) | sulci | ventricles,
         deep, d > cortex],
        [AIR, SCALP, DIPLOE, SKULL, CSF, DEEP, GREY], WHITE)  # fmt: skip
    return y, x, d, labels, n / 2 * scale


def _mass(rng: np.random.Generator, y, x, lobe: str, sx: float, r: float) -> np.ndarray:
    """Elliptic radius of a lobulated mass of radius r (grid units) in a lobe."""
    cy, cx = _LOBES[lobe]
    rr = _ell(y, x, cy, sx * cx, r, r * rng.uniform(0.75, 1.0), rng.uniform(0, 180))
    return rr * (1 + 0.08 * np.sin(3 * np.arctan2(y - cy, x - sx * cx) + rng.uniform(0, 6)))


def _territory(y, x, d, sx: float, name: str) -> np.ndarray:
    """A vascular territory on one side: a wedge of angles from the front, out to the cortex."""
    lo, hi = _TERRITORIES[name]
    theta = np.degrees(np.arctan2(sx * x, -y)) + 6 * np.sin(d * 25)  # wavy borders
    return (theta > lo) & (theta < hi) & (d > 0.35) & (d < 0.9)


def _side_lobe(rng: np.random.Generator) -> tuple[str, str, float]:
    side = _pick(rng, ("right", "left"))
    return side, _pick(rng, tuple(_LOBES)), -1.0 if side == "right" else 1.0


def _head_ct(rng: np.random.Generator, variant: int) -> tuple[Image.Image, _Case]:
    findings = ("normal", "haemorrhage", "subdural haematoma", "infarct")
    finding = findings[variant % len(findings)]
    n, spacing = 256, 0.9  # drawn at 256 px, saved at 512 px (0.45 mm): a 23 cm field of view
    side, lobe, sx = _side_lobe(rng)
    territory = _pick(rng, tuple(_TERRITORIES))
    location, size, shift = None, None, 0
    if finding == "haemorrhage":
        r = rng.uniform(6, 19)
        size, location = _mm(2 * r, spacing), f"{side} {lobe} lobe"
        shift = max(0, round((size - 18) * 0.3))  # midline shift in mm
    elif finding == "subdural haematoma":
        t = rng.uniform(5, 14)
        size, location = _mm(t, spacing), side
        shift = round(size * 0.6 + rng.uniform(0, 2))
    elif finding == "infarct":
        location = f"{side} {territory} territory"
    y, x, d, labels, px = _axial_head(rng, n, -sx * shift / spacing / (n / 2))  # away from mass
    a = _f32(0.0, 0.3, 1.0, 0.9, 0.24, 0.53, 0.46, 0.5)[labels]  # brain window: bone white
    brain = labels >= CSF
    if finding == "haemorrhage":  # fresh blood is bright, with a dark rim of oedema
        rr = _mass(rng, y, x, lobe, sx, r / px)
        a = np.where(brain & (rr < 1), 0.82, np.where(brain & (rr < 1.5), 0.38, a))
    elif finding == "subdural haematoma":  # a crescent between the brain and the skull
        inner = _ell(y, x + sx * t / px, 0.0, 0.0, 0.86 * 0.89, 0.7 * 0.89)
        a = np.where(brain & (x * sx > 0) & (inner > 1) & (np.abs(y) < 0.75), 0.78, a)
    elif finding == "infarct":
        a = np.where(_territory(y, x, d, sx, territory) & (labels > CSF), 0.38, a)
    a = a + 0.4 * (np.abs(_ell(y, x, 0.0, 0, 0.95, 0.8) - 1) < 0.012) * (y > 0.55)  # head holder
    a = a + 0.35 * (_ell(y, np.abs(x), 0.25, 0.15, 0.015, 0.015) < 1)  # calcified choroid plexus
    image = _grey(gaussian_filter(a, 0.5), rng, rng.uniform(0.02, 0.035), size=2)

    head = _pick(rng, ("Axial non-contrast CT of the head", "Non-contrast head CT (axial)",
                       "Axial CT brain without contrast"))  # fmt: skip
    shifted = f"with {shift} mm midline shift" if shift else "without midline shift"
    text = {
        "normal": ("Normal {low}.", "{head}: normal study, no haemorrhage or mass effect.",
                   "{head} within normal limits."),
        "haemorrhage": ("{head}: acute haemorrhage in the {location}, {sz}, {shifted}.",
                        "{head} showing {a_sz} acute intraparenchymal haemorrhage in the "
                        "{location} {shifted}."),
        "subdural haematoma": ("{head}: acute {side} subdural haematoma, {sz} thick, {shifted}.",),
        "infarct": ("{head}: hypodense infarct in the {location}.",
                    "{head} showing an established infarct in the {location}."),
    }[finding]  # fmt: skip
    sz = _size(size, "mm")
    text = _say(rng, text, head=head, low=head[0].lower() + head[1:], location=location, sz=sz,
                a_sz=sz and _a(sz), shifted=shifted, side=side)  # fmt: skip
    return image, _Case(finding, location, size, text)


def _brain_mri(rng: np.random.Generator, variant: int) -> tuple[Image.Image, _Case]:
    findings = ("normal", "tumour", "white-matter hyperintensities", "infarct")
    finding = findings[variant % len(findings)]
    n, spacing = 256, 0.8  # a 20 cm field of view on a 256 matrix
    seq = _pick(rng, ("T2-weighted", "FLAIR"))
    # T2: fluid bright, white matter darker than grey; FLAIR: fluid dark, lesions bright;
    # unlike CT the skull is dark and the scalp fat bright
    lut = (0.0, 0.65, 0.04, 0.35, 0.95, 0.55, 0.36, 0.47) if seq == "T2-weighted" else (
        0.0, 0.6, 0.04, 0.35, 0.06, 0.52, 0.38, 0.46)  # fmt: skip
    bright = 0.85 if seq == "T2-weighted" else 0.92
    side, lobe, sx = _side_lobe(rng)
    territory = _pick(rng, tuple(_TERRITORIES))
    y, x, d, labels, px = _axial_head(rng, n, zoom=1.12)
    a = _f32(*lut)[labels]
    location, size = None, None
    if finding == "tumour":  # heterogeneous core, darker rim, oedema spreading in white matter
        r = rng.uniform(8, 24)
        size, location = _mm(2 * r, spacing), f"{side} {lobe} lobe"
        rr = _mass(rng, y, x, lobe, sx, r / px)
        a = np.where((rr < 2.2) & (labels == WHITE), 0.5 * (bright + lut[WHITE]) + 0.1, a)
        core = bright - 0.2 + 0.15 * _noise(rng, n, n, 5)
        a = np.where(rr < 1, np.where(rr > 0.85, 0.45, core), a)
    elif finding == "white-matter hyperintensities":  # small bright foci around the ventricles
        location = "periventricular"
        k = int(rng.integers(10, 30))
        ang, rad = rng.uniform(0, 2 * np.pi, k), rng.uniform(0.22, 0.55, k)
        for a_, rad_, r_ in zip(ang, rad, rng.uniform(1.2, 3.2, k) / px, strict=True):
            spot = _ell(y, x, rad_ * math.sin(a_) * 0.9, rad_ * math.cos(a_) * 0.7, r_, r_ * 1.4)
            a = np.where((spot < 1) & (labels == WHITE), bright, a)
    elif finding == "infarct":
        location = f"{side} {territory} territory"
        a = np.where(_territory(y, x, d, sx, territory) & (labels > CSF), bright * 0.85, a)
    a = gaussian_filter(a, 0.7) * (1 + 0.08 * _noise(rng, n, n, 96))  # receive-coil bias field
    sigma = np.float32(rng.uniform(0.015, 0.035))  # magnitude images carry Rician noise
    a = np.hypot(a + sigma * rng.standard_normal(a.shape, np.float32),
                 sigma * rng.standard_normal(a.shape, np.float32))  # fmt: skip
    image = _grey(a, rng, 0.0)

    head = f"Axial {seq} MRI of the brain"
    text = {
        "normal": ("{head}: normal appearances.", "Normal brain MRI ({seq}, axial)."),
        "tumour": ("{head} showing {a_sz} tumour in the {location} with surrounding oedema.",
                   "{head}: {sz} heterogeneous tumour, {location}, with perilesional oedema."),
        "white-matter hyperintensities": ("{head}: multiple periventricular white-matter "
                                          "hyperintensities.",),
        "infarct": ("{head} showing a hyperintense infarct in the {location}.",),
    }[finding]  # fmt: skip
    sz = _size(size, "mm")
    text = _say(rng, text, head=head, seq=seq, location=location, sz=sz, a_sz=sz and _a(sz))
    return image, _Case(finding, location, size, text)


# ---------------------------------------------------------------------------------------------
# abdominal ultrasound: a curvilinear-probe sector of the liver with speckle


def _ultrasound(rng: np.random.Generator, variant: int) -> tuple[Image.Image, _Case]:
    findings = ("normal", "gallstone", "cyst", "liver mass")
    finding = findings[variant % len(findings)]
    H, W, spacing = 384, 512, 0.4  # 15 cm deep; geometry in output pixels, drawn every 2nd one
    yy = np.arange(0, H, 2, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(0, W, 2, dtype=np.float32)[None, :] + 0.5
    h, w = H // 2, W // 2
    apex, r0, r1 = -70.0, 90.0, 450.0  # the probe's virtual apex lies above the image
    r, th = np.hypot(xx - W / 2, yy - apex), np.arctan2(xx - W / 2, yy - apex)

    e = 0.5 * (1 + 0.06 * _noise(rng, h, w, 12))  # echogenicity: liver parenchyma
    e = np.where(r < r0 + 36, 0.3, e) + 0.4 * np.exp(-(((r - r0 - 12) / 3) ** 2))  # wall, fascia
    e = e + 0.35 * np.exp(-(((r - r0 - 38) / 3) ** 2))  # liver capsule
    for _ in range(int(rng.integers(1, 4))):  # hepatic and portal vein branches
        v = _ell(yy, xx, rng.uniform(150, 330), rng.uniform(120, 400), rng.uniform(6, 14),
                 rng.uniform(20, 60), rng.uniform(-60, 60))  # fmt: skip
        e = np.where(v < 1, 0.03, e) + 0.25 * (np.abs(v - 1.1) < 0.1)
    dia = np.hypot(xx - rng.uniform(100, 400), yy - 900) - rng.uniform(560, 600)
    e = np.where(dia < 0, 0.25, e) + 0.9 * np.exp(-((dia / 4) ** 2))  # diaphragm, lung below

    def behind(cy: float, cx: float, rad: float, gain: float) -> np.ndarray:
        """Shadowing (gain < 1) or enhancement (> 1) along the beam behind a round object."""
        rc, tc = math.hypot(cx - W / 2, cy - apex), math.atan2(cx - W / 2, cy - apex)
        return np.where((r > rc) & (np.abs(th - tc) < 0.85 * rad / rc), gain, 1.0)

    location, size, echo = None, None, ""
    if finding == "gallstone" or (finding == "normal" and rng.random() < 0.6):  # gallbladder
        gy, gx = rng.uniform(170, 230), rng.uniform(170, 340)
        gry, grx = rng.uniform(35, 50), rng.uniform(80, 110)
        g = _ell(yy, xx, gy, gx, gry, grx, rng.uniform(-20, 20))
        e = np.where(g < 1, 0.02, e) + 0.35 * (np.abs(g - 1.05) < 0.06)
    if finding == "gallstone":  # bright, in the dependent part, casting a shadow
        rs = rng.uniform(6, 17)
        size, location = _mm(2 * rs, spacing), "gallbladder"
        ky, kx = gy + gry - rs - 4, gx + rng.uniform(-0.4, 0.4) * grx
        e = np.where(_ell(yy, xx, ky, kx, rs, rs) < 1, 1.0, e * behind(ky, kx, rs, 0.12))
    elif finding in ("cyst", "liver mass"):
        rc = rng.uniform(14, 40)
        cy, cx = rng.uniform(150, 260), rng.uniform(150, 360)
        size = _mm(2 * rc, spacing)
        location = _pick(rng, ("right lobe of the liver", "left lobe of the liver",
                               "caudate lobe of the liver", "dome of the liver"))  # fmt: skip
        c = _ell(yy, xx, cy, cx, rc, rc * rng.uniform(0.9, 1.15))
        if finding == "cyst":  # anechoic, thin wall, bright behind
            e = np.where(c < 1, 0.02, e * behind(cy, cx, rc, 1.6)) + 0.3 * (np.abs(c - 1) < 0.05)
        else:  # solid, with a hypoechoic halo
            echo = _pick(rng, ("hyperechoic", "hypoechoic"))
            core = (0.85 if echo == "hyperechoic" else 0.28) * (1 + 0.15 * _noise(rng, h, w, 3))
            e = np.where(c < 1, core, np.where(c < 1.15, 0.18, e))

    # speckle: log-compressed envelope of blurred complex noise, elongated across the beam
    re, im = (gaussian_filter(rng.standard_normal((h, w), np.float32), (0.5, 1.0)) for _ in "ri")
    speckle = 1 + 0.3 * np.log(np.hypot(re, im) / 0.3 + 0.05)
    depth = np.clip((r - r0) / (r1 - r0), 0, 1)
    sector = (r > r0) & (r < r1) & (np.abs(th) < 0.52)
    a = gaussian_filter(e, 0.75) * speckle * (1 - 0.3 * depth) * rng.uniform(0.8, 1.0) * sector
    image = _grey(a, rng, 0.01, size=2)
    draw = ImageDraw.Draw(image)
    for k in range(int((r1 - r0) / 25) + 1):  # depth scale: a dot per centimetre
        draw.ellipse((W - 22, r0 + apex + 25 * k - 2, W - 18, r0 + apex + 25 * k + 2), fill=200)
    fy = r0 + apex + rng.uniform(120, 260)
    draw.polygon(((14, fy - 5), (14, fy + 5), (22, fy)), fill=220)  # focal zone marker

    view = _pick(rng, ("Abdominal ultrasound", "Right upper quadrant ultrasound",
                       "Transabdominal ultrasound"))  # fmt: skip
    text = {
        "normal": ("Normal {low} of the liver.", "{view}: normal liver echotexture, no focal "
                   "lesion."),
        "gallstone": ("{view} showing {a_sz} echogenic gallstone in the gallbladder with "
                      "posterior acoustic shadowing.", "{view}: cholelithiasis, {a_sz} "
                      "gallstone with acoustic shadow."),
        "cyst": ("{view}: {sz} anechoic simple cyst in the {location} with posterior acoustic "
                 "enhancement.",),
        "liver mass": ("{view} showing {a_sz} {echo} liver mass in the {location}.",),
    }[finding]  # fmt: skip
    sz = _size(size)
    text = _say(rng, text, view=view, low=view[0].lower() + view[1:], sz=sz, a_sz=sz and _a(sz),
                echo=echo, location=location)  # fmt: skip
    return image, _Case(finding, location, size, text)


# ---------------------------------------------------------------------------------------------
# H&E histology: stain concentrations turned into colour by the Beer-Lambert law


def _histology(rng: np.random.Generator, variant: int) -> tuple[Image.Image, _Case]:
    findings = ("normal", "carcinoma", "inflammation", "necrosis")
    finding = findings[variant % len(findings)]
    organ = _pick(rng, ("colon", "stomach", "breast", "lung"))
    h = w = 384
    # stroma: collagen bundles as noise smeared along a random direction, clefts between them
    fib = gaussian_filter(rng.standard_normal((h // 2 + 80,) * 2, np.float32), (0.6, 3.0)) / 0.15
    fib = Image.fromarray(fib, "F").rotate(rng.uniform(0, 180), Image.Resampling.BILINEAR)
    fib = fib.crop((40, 40, 40 + w // 2, 40 + h // 2))
    fib = np.asarray(fib.resize((w, h), Image.Resampling.BICUBIC))
    cyto, clear, nuclei = [], [], []  # shapes for the cytoplasm, empty space and nuclei masks
    ring = np.linspace(0, 2 * np.pi, 10, endpoint=False)

    def blobs(out: list, cx, cy, rx, ry, angle=0.0, fill=255) -> None:
        """Rotated ellipses, as 10-gons, all at once."""
        arrays = np.broadcast_arrays(cx, cy, rx, ry, angle, fill)
        cx, cy, rx, ry, angle, fill = (v.ravel() for v in arrays)
        c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
        u, v = rx[:, None] * np.cos(ring), ry[:, None] * np.sin(ring)
        pts = np.stack([cx[:, None] + c * u - s * v, cy[:, None] + s * u + c * v], -1)
        out += [
            ("polygon", p, int(f))
            for p, f in zip(pts.reshape(len(pts), -1).tolist(), fill, strict=True)
        ]

    if finding in ("normal", "inflammation"):  # crypts: lumen, epithelium, basal nuclei
        step = 78 if finding == "normal" else 120
        gy, gx = np.mgrid[0 : h + step : step * 0.87, -step / 2 : w + step : step]
        gx = gx + (np.arange(len(gx))[:, None] % 2) * step / 2  # staggered rows
        gx, gy = gx.ravel() + rng.normal(0, 6, gx.size), gy.ravel() + rng.normal(0, 6, gy.size)
        gr = rng.uniform(26, 34, gx.size)
        blobs(cyto, gx, gy, gr, gr * 0.9)
        blobs(clear, gx, gy, gr - 15, (gr - 15) * 0.85)
        t = np.linspace(0, 2 * np.pi, 30, endpoint=False) + rng.uniform(0, 1, (gx.size, 1))
        gx, gy, gr = gx[:, None], gy[:, None], gr[:, None]
        blobs(nuclei, gx + (gr - 4) * np.cos(t), gy + (gr - 4) * 0.9 * np.sin(t), 3.4, 1.8, t, 200)
        goblet = rng.random(t.shape) < 0.35  # mucin vacuoles of goblet cells
        bx, by = gx + (gr - 10) * np.cos(t), gy + (gr - 10) * 0.9 * np.sin(t)
        blobs(clear, bx[goblet], by[goblet], 3.5, 2.5, t[goblet], 200)
    k = 50  # spindle-shaped fibroblasts
    blobs(nuclei, rng.uniform(0, w, k), rng.uniform(0, h, k), 5, 1.4, rng.normal(0, 0.3, k), 170)
    if finding in ("carcinoma", "necrosis"):  # nests of crowded, pleomorphic, dark nuclei
        for _ in range(int(rng.integers(4, 7)) if finding == "carcinoma" else 3):
            nx, ny, nr = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(50, 90)
            blobs(cyto, nx, ny, nr, nr * rng.uniform(0.6, 1.0), rng.uniform(0, 3))
            k = int(nr * nr / 40)
            rad, t = nr * np.sqrt(rng.random(k)), rng.uniform(0, 2 * np.pi, k)
            blobs(nuclei, nx + rad * np.cos(t), ny + rad * np.sin(t) * 0.8, rng.uniform(4, 8, k),
                  rng.uniform(3, 6, k), rng.uniform(0, 3, k), rng.uniform(180, 255, k))  # fmt: skip
            k = int(rng.integers(1, 4))  # cribriform lumens
            blobs(clear, nx + rng.uniform(-20, 20, k), ny + rng.uniform(-20, 20, k), 7, 6)
    if finding == "inflammation":  # a dense infiltrate of small round lymphocytes
        k = int(rng.integers(700, 1100))
        nuclei += _dots(rng.uniform(0, w, k), rng.uniform(0, h, k), 3)

    cyto, clear = _mask(h, w, cyto), _mask(h, w, clear)
    hema = 1.5 * gaussian_filter(_mask(h, w, nuclei), 0.7) + 0.12 * cyto
    eosin = (0.36 + 0.1 * np.clip(fib, -2, 2)) * (1 - cyto) + 0.42 * cyto
    if finding == "necrosis":  # pale amorphous eosinophilic debris with nuclear dust
        dead = _ell(*np.mgrid[0:h, 0:w], rng.uniform(120, 260), rng.uniform(120, 260), 150, 170)
        dead = np.clip((1 - dead - 0.15 * _noise(rng, h, w, 30)) / 0.1, 0, 1)
        dust = _mask(h, w, _dots(rng.uniform(0, w, 600), rng.uniform(0, h, 600),
                                 rng.uniform(0.7, 1.8, 600), fill=230))  # fmt: skip
        hema = hema * (1 - dead) + 1.2 * gaussian_filter(dust, 0.6) * dead
        eosin = eosin * (1 - dead) + 0.55 * dead
    empty = 1 - np.clip(clear + 0.5 * (fib < -2.0), 0, 1)
    hv = _f32(0.62, 0.85, 0.33) * rng.uniform(0.85, 1.15)  # optical density per unit stain
    ev = _f32(0.05, 0.85, 0.35) * rng.uniform(0.85, 1.15)
    od = (hema * empty)[..., None] * hv + (eosin * empty + 0.03)[..., None] * ev
    image = _rgb(np.exp(-od), rng, 0.02)

    stain = _pick(rng, ("H&E-stained section", "Histology (H&E)", "Haematoxylin and eosin section"))
    text = {
        "normal": "{stain} of {organ} showing normal tissue with regular glands and bland nuclei.",
        "carcinoma": "{stain} of {organ}: invasive carcinoma with crowded, pleomorphic, "
        "hyperchromatic nuclei.",
        "inflammation": "{stain} of {organ} showing chronic inflammation with a dense "
        "lymphocytic infiltrate.",
        "necrosis": "{stain} of {organ}: extensive coagulative necrosis with nuclear debris.",
    }[finding]
    return image, _Case(finding, organ, None, text.format(stain=stain, organ=organ))


# ---------------------------------------------------------------------------------------------
# retinal fundus photograph


def _fundus(rng: np.random.Generator, variant: int) -> tuple[Image.Image, _Case]:
    findings = ("normal", "haemorrhages", "hard exudates", "cotton-wool spots",
                "glaucomatous cupping")  # fmt: skip
    finding = findings[variant % len(findings)]
    n = 224  # drawn at 224 px, saved at 448 px
    eye = _pick(rng, ("right", "left"))
    ex = 1.0 if eye == "right" else -1.0  # the disc is nasal: right of the image for a right eye
    y, x = _grid(n, n)
    dy, dx = rng.uniform(-0.08, 0.04), ex * rng.uniform(0.38, 0.46)
    my, mx = dy + 0.06, dx - ex * 0.6  # the macula lies ~2.5 disc diameters temporal to it

    rr = np.hypot(y, x)
    tone = _f32(0.85, 0.4, 0.17) * rng.uniform(0.85, 1.1, 3).astype(np.float32)
    mac = np.exp(-((y - my) ** 2 + (x - mx) ** 2) / (2 * 0.1**2))
    shade = 1 - 0.4 * rr**2 + 0.04 * _noise(rng, n, n, 6) - 0.3 * mac  # vignetting, choroid
    rgb = tone * shade[..., None] * (1 - _f32(0.0, 0.25, 0.3) * mac[..., None])
    start = (dy + 1) * n / 2, (dx + 1) * n / 2
    for width, dark in ((3.0, 0.55), (2.0, 0.35)):  # veins, then thinner and paler arteries
        trees = []
        for up in (-1, 1):  # temporal arcades curl round the macula; nasal vessels run straight
            temporal, nasal = up * math.pi / 2 + rng.normal(0, 0.1), up * (math.pi / 2 - 0.7 * ex)
            trees += _vessels(rng, *start, temporal, 150, width, 2, curl=up * ex * 0.22)
            trees += _vessels(rng, *start, nasal, 85, width * 0.8, 1)
        m = gaussian_filter(_mask(n, n, trees), 0.7)[..., None]
        rgb = rgb * (1 - m * _f32(dark * 0.45, dark, dark * 0.9))
    cdr = rng.uniform(0.7, 0.9) if finding == "glaucomatous cupping" else rng.uniform(0.2, 0.45)
    dd = np.hypot(y - dy, x - dx) / 0.1  # the optic disc, with its pale central cup
    disc = np.clip((1 - dd) / 0.15, 0, 1)[..., None]
    cup = np.clip((cdr - dd) / 0.1, 0, 1)[..., None]
    rgb = rgb * (1 - disc) + disc * (_f32(1.0, 0.78, 0.55) * (1 - cup) + cup * _f32(1, 0.95, 0.82))

    location = f"optic disc, {eye} eye" if finding == "glaucomatous cupping" else None
    if finding in ("haemorrhages", "hard exudates", "cotton-wool spots"):
        region, count, rad, colour, spread = {
            "haemorrhages": ("posterior pole", (6, 18), (1.5, 4), (0.45, 0.04, 0.03), 0.45),
            "hard exudates": ("macula", (15, 40), (0.8, 1.8), (1.0, 0.9, 0.45), 0.2),
            "cotton-wool spots": ("vascular arcades", (2, 6), (3.5, 7), (0.95, 0.92, 0.85), 0.2),
        }[finding]
        blur = 1.5 if finding == "cotton-wool spots" else 0.6  # fluffy versus crisp
        k = int(rng.integers(*count))
        along = 0.3 if finding == "cotton-wool spots" else 0.0  # above and below the macula
        py = (my + rng.normal(0, spread, k) * 0.7 + along * rng.choice([-1, 1], k) + 1) * n / 2
        px = (mx + rng.normal(0, spread, k) + ex * along + 1) * n / 2
        s = rng.uniform(*rad, k)
        m = gaussian_filter(_mask(n, n, _dots(px, py, s, s * 0.8)), blur)
        rgb = rgb * (1 - m[..., None]) + m[..., None] * _f32(*colour)
        location = f"{region}, {eye} eye"
    fov = np.clip((0.94 - rr) / 0.015, 0, 1)[..., None]  # the camera's round field of view
    image = _rgb(rgb * fov, rng, 0.01, size=2)

    photo = _pick(rng, ("Colour fundus photograph", "Fundus photograph", "Retinal fundus image"))
    text = {
        "normal": ("Normal {low} of the {eye} eye.", "{photo} of the {eye} eye: normal optic "
                   "disc (cup-to-disc ratio {cdr:.1f}), macula and vessels."),
        "haemorrhages": ("{photo} of the {eye} eye showing scattered dot-blot haemorrhages in "
                         "the posterior pole.",),
        "hard exudates": ("{photo} of the {eye} eye showing hard exudates clustered around the "
                          "macula.",),
        "cotton-wool spots": ("{photo} of the {eye} eye showing cotton-wool spots along the "
                              "vascular arcades.",),
        "glaucomatous cupping": ("{photo} of the {eye} eye showing glaucomatous cupping of the "
                                 "optic disc, cup-to-disc ratio {cdr:.1f}.",),
    }[finding]  # fmt: skip
    text = _say(rng, text, photo=photo, low=photo[0].lower() + photo[1:], eye=eye, cdr=cdr)
    return image, _Case(finding, location, None, text)


# ---------------------------------------------------------------------------------------------
# dermoscopy of a pigmented skin lesion


def _dermoscopy(rng: np.random.Generator, variant: int) -> tuple[Image.Image, _Case]:
    findings = ("benign naevus", "melanoma", "seborrhoeic keratosis")
    finding = findings[variant % len(findings)]
    h, w, spacing = 168, 224, 0.08  # drawn at 224x168, saved at 448x336: an 18 mm field
    y, x = _grid(h, w)
    site = _pick(rng, ("upper back", "lower back", "chest", "left forearm", "right thigh",
                       "left shoulder", "right calf"))  # fmt: skip
    tone = _f32(0.93, 0.72, 0.6) * rng.uniform(0.85, 1.03, 3).astype(np.float32)
    furrows = np.abs(np.sin(np.pi * ((x + y) / 0.12 + 0.4 * _noise(rng, h, w, 15)))) < 0.08
    skin = tone * (1 + 0.04 * _noise(rng, h, w, 5) - 0.06 * furrows)[..., None]

    # the lesion: a radius that wobbles with angle, a little when benign and a lot in melanoma
    r = rng.uniform(*{"benign naevus": (30, 55), "melanoma": (45, 75)}.get(finding, (38, 65)))
    size, rl = _mm(2 * r, spacing), r / (h / 2)
    cy, cx = rng.uniform(-0.1, 0.1), rng.uniform(-0.15, 0.15)
    rho, th = np.hypot(y - cy, x - cx), np.arctan2(y - cy, x - cx)
    wobble = {"benign naevus": 0.03, "melanoma": 0.16}.get(finding, 0.06)
    phase = rng.uniform(0, 2 * np.pi, 5)
    edge = rl * (
        1 + sum(wobble / math.sqrt(k) * np.cos(k * th + phase[k - 1]) for k in range(1, 6))
    )
    soft = 0.12 if finding == "benign naevus" else 0.04  # naevi fade out, the others stop sharply
    inside = np.clip((edge - rho) / (soft * rl), 0, 1)
    n1, n2 = _noise(rng, h, w, 7), _noise(rng, h, w, 20)
    p = rng.uniform(0.045, 0.06)  # pigment network: a warped grid of brown lines
    net = (np.abs(np.sin(np.pi * (x / p + 0.4 * n1))) < 0.3) | (
        np.abs(np.sin(np.pi * (y / p + 0.4 * n2))) < 0.3)  # fmt: skip

    if finding == "benign naevus":  # symmetric, one shade of brown, darker centre, even network
        centre = np.clip(1 - rho / rl, 0, 1)[..., None]
        col = _f32(0.62, 0.42, 0.3) * (1 - 0.35 * centre) * (1 - 0.15 * net)[..., None]
    elif finding == "melanoma":  # blotches of black, blue-white veil, regression and red
        col = _f32(0.45, 0.28, 0.2) * (1 - 0.3 * net * (n2 > 0))[..., None]
        for colour, cut in (((0.15, 0.09, 0.08), 0.4), ((0.5, 0.55, 0.66), 0.8),
                            ((0.82, 0.76, 0.74), 1.1), ((0.72, 0.38, 0.36), 1.1)):  # fmt: skip
            m = 0.85 * np.clip((_noise(rng, h, w, 30) - cut) / 0.5, 0, 1)[..., None]
            col = col * (1 - m) + m * _f32(*colour)
        streaks = (np.sin(th * 37) > 0.8) & (np.cos(th - rng.uniform(0, 2 * np.pi)) > 0.2)
        inside = np.maximum(inside, 0.8 * (streaks & (rho > 0.9 * edge) & (rho < 1.12 * edge)))
    else:  # seborrhoeic keratosis: waxy, cerebriform, milia-like cysts, comedo-like openings
        sulci = np.abs(np.sin(2 * np.pi * (x / 0.09 + 1.5 * n1))) < 0.25
        col = _f32(0.62, 0.47, 0.33) * (1 - 0.3 * sulci)[..., None]
        for colour in ((0.95, 0.92, 0.85), (0.25, 0.16, 0.1)):
            u, v = rng.normal(0, r / 2.5, (2, 15))
            dots = _mask(h, w, _dots(w / 2 + cx * h / 2 + u, h / 2 + cy * h / 2 + v,
                                     rng.uniform(1.2, 3, 15)))  # fmt: skip
            dots = gaussian_filter(dots, 0.5)[..., None]
            col = col * (1 - dots) + dots * _f32(*colour)

    rgb = skin * (1 - inside[..., None]) + col * inside[..., None]
    hairs = []
    for _ in range(int(rng.integers(0, 5))):  # a few smooth dark hairs
        ang = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.06, 25))
        pts = np.cumsum(np.stack([np.cos(ang), np.sin(ang)], 1) * 4, 0) + rng.uniform(0, w, 2)
        hairs.append(("line", list(map(tuple, pts)), 2))
    rgb = rgb * (1 - 0.75 * gaussian_filter(_mask(h, w, hairs), 0.4))[..., None]
    if rng.random() < 0.5:  # the dermatoscope's round field
        rgb = rgb * np.clip((1.3 - np.hypot(y, x * 0.9)) / 0.05, 0, 1)[..., None]
    image = _rgb(rgb, rng, 0.01, size=2)

    derm = _pick(rng, ("Dermoscopy", "Dermoscopic image", "Dermatoscopy"))
    text = {
        "benign naevus": ("{derm} of {a_sz} pigmented lesion on the {site}: benign naevus, "
                          "symmetric with a regular pigment network.",),
        "melanoma": ("{derm} of melanoma on the {site} ({sz}): asymmetric, multicoloured, with "
                     "blue-white veil and irregular streaks.",),
        "seborrhoeic keratosis": ("{derm}: seborrhoeic keratosis on the {site}, {sz}, with "
                                  "milia-like cysts and comedo-like openings.",),
    }[finding]  # fmt: skip
    sz = _size(size, "mm")
    text = _say(rng, text, derm=derm, sz=sz, a_sz=_a(sz), site=site)
    return image, _Case(finding, site, size, text)


# ---------------------------------------------------------------------------------------------
# public API

_DRAWERS = (_chest_xray, _head_ct, _brain_mri, _ultrasound, _histology, _fundus, _dermoscopy)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    # Huffman-only deflate (zlib strategy 2): noise leaves LZ77 little to find, so this is faster
    # and no larger. Pillow writes no time or text chunks, so the bytes are reproducible.
    image.save(buf, format="PNG", compress_level=9, compress_type=2)
    return buf.getvalue()


def item(index: int, seed: int = 0) -> DemoItem:
    """The demo item at `index`; it depends only on (seed, index)."""
    if index < 0 or seed < 0:
        raise ValueError("index and seed must be non-negative")
    n = len(MODALITIES)
    modality = MODALITIES[index % n]  # interleaved, so any prefix covers every modality evenly
    # index // n cycles the findings, so each modality shows all of them early on
    image, case = _DRAWERS[index % n](np.random.default_rng([seed, index]), index // n)
    meta = {
        "dataset": DEMO_DATASET,
        "synthetic": True,
        "modality": modality,
        "finding": case.finding,
        "location": case.location,
        "size_mm": case.size_mm,
        "index": index,
        "license": LICENSE,
    }
    name = f"demo-{index:04d}-{modality.replace(' ', '-')}.png"
    return DemoItem(name=name, image=_png(image), caption=case.caption, meta=meta)


def generate(count: int = 300, seed: int = 0) -> Iterator[DemoItem]:
    """Lazily yield the first `count` demo items."""
    if count < 0:
        raise ValueError("count must be non-negative")
    return (item(i, seed) for i in range(count))


def write_folder(out_dir: Path, count: int = 300, seed: int = 0) -> Path:
    """Write the PNGs and a captions.csv for the folder ingest; return the CSV's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "captions.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for it in generate(count, seed):
            (out_dir / it.name).write_bytes(it.image)
            row = {k: "" if v is None else v for k, v in it.meta.items()}
            writer.writerow({**row, "filename": it.name, "caption": it.caption})
    return csv_path
