"""Thumbs up/down on captions, appended to a JSON Lines file: no image bytes, no metadata."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.errors import InputError

RATINGS = ("up", "down")
PANELS = ("rag", "classic")
MAX_COMMENT = 1000


@dataclass(frozen=True)
class Feedback:
    """One rating of one caption."""

    image_id: str  # SHA-256 of the upload: lets ratings of one image be grouped, reveals nothing
    panel: str
    caption: str
    rating: str
    comment: str
    backends: dict[str, str]
    time: float = 0.0


class FeedbackLog:
    """Appends feedback as one JSON object per line; safe to share between request threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, item: Feedback) -> Feedback:
        """Validate and append; returns what was written."""
        if item.rating not in RATINGS:
            raise InputError("A rating is either thumbs up or thumbs down.")
        if item.panel not in PANELS:
            raise InputError("Feedback is for the RAG or the classic caption.")
        if not item.caption.strip():
            raise InputError("There is no caption to rate yet: caption an image first.")
        clean = Feedback(
            image_id=item.image_id,
            panel=item.panel,
            caption=item.caption,
            rating=item.rating,
            comment=" ".join(item.comment.split())[:MAX_COMMENT],
            backends=item.backends,
            time=item.time or time.time(),
        )
        line = json.dumps(asdict(clean), ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        return clean

    def read(self) -> list[Feedback]:
        """Every entry so far, oldest first."""
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [Feedback(**json.loads(line)) for line in lines if line.strip()]
