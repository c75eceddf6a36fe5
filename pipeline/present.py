"""Turn answers and status into what the page shows: plain data, no Gradio import."""

from __future__ import annotations

import hashlib
import html
import io
import os
import tempfile
from pathlib import Path

from PIL import Image

from pipeline.service import Answer, Status

NOTICE = (
    "Captions here are machine-written, for research and teaching. "
    "They are not a diagnosis and must not guide patient care."
)
STAGES = ("decode", "embed", "search", "generate")


def gallery(answer: Answer, folder: Path) -> list[tuple[str, str]]:
    """(thumbnail file, 'score · caption') pairs for the neighbours gallery.

    Files, not images: Gradio rewrites an image's file on every send (the page re-sends the
    gallery with each caption piece) while a browser may be reading it; a file is copied once.
    """
    return [
        (str(thumbnail_file(n.thumbnail or _blank(), folder)), f"{percent(n.score)} · {n.caption}")
        for n in answer.neighbours
    ]


def thumbnail_file(jpeg: bytes, folder: Path) -> Path:
    """The thumbnail's bytes in a file named by their hash, written once and atomically."""
    path = folder / f"{hashlib.sha256(jpeg).hexdigest()[:32]}.jpg"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=folder, prefix=".thumb-")
        with os.fdopen(fd, "wb") as f:
            f.write(jpeg)
        os.replace(staging, path)
    return path


def _blank() -> bytes:
    out = io.BytesIO()
    Image.new("L", (8, 8)).save(out, format="JPEG")
    return out.getvalue()


def neighbour_list(answer: Answer) -> str:
    """Every neighbour's full caption with its score, readable without hovering."""
    if not answer.neighbours:
        return ""
    rows = [
        f"{i}. **{percent(n.score)}** {html.escape(n.caption)}"
        for i, n in enumerate(answer.neighbours, 1)
    ]
    return "\n".join(rows)


def percent(score: float) -> str:
    return f"{max(score, 0.0) * 100:.0f}%"


def caption_text(text: str, note: str) -> str:
    """A caption panel: the text so far, and the note that explains a gap, if any."""
    if text and note:
        return f"{text}\n\n[{note}]"
    return text or note


def status_line(status: Status | None, timings: dict[str, float], extra: str = "") -> str:
    """Live backends, the collection and its size, and per-stage timings in ms."""
    parts = []
    if status is not None:
        parts.append(
            f"**Store** {status.store} · **collection** `{status.collection}` "
            f"({status.count} images) · **embedder** {status.embedder} · "
            f"**captioner** {status.captioner}"
        )
    if extra:
        parts.append(extra)
    if timings:
        parts.append(
            "**Timings** " + " · ".join(f"{s} {timings[s]:.0f} ms" for s in STAGES if s in timings)
        )
    return "  \n".join(parts)
