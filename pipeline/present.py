"""Turn answers and status into what the page shows: plain data, no Gradio import."""

from __future__ import annotations

import html
import io

from PIL import Image

from pipeline.service import Answer, Status

NOTICE = (
    "Captions here are machine-written, for research and teaching. "
    "They are not a diagnosis and must not guide patient care."
)
STAGES = ("decode", "embed", "search", "generate")


def gallery(answer: Answer) -> list[tuple[Image.Image, str]]:
    """(thumbnail, 'score · caption') pairs for the neighbours gallery."""
    items = []
    for n in answer.neighbours:
        thumb = Image.open(io.BytesIO(n.thumbnail)) if n.thumbnail else Image.new("L", (8, 8))
        items.append((thumb, f"{percent(n.score)} · {n.caption}"))
    return items


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
