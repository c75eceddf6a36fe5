"""Where images with captions come from: a folder with a captions file or sidecars, or the demo."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import InputError

IMAGE_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".dcm", ".dicom",
}  # fmt: skip
PATH_COLUMNS = ("filename", "file", "path", "image", "image_path", "file_name")
CAPTION_COLUMNS = ("caption", "text", "description", "report", "finding", "findings")


@dataclass(frozen=True)
class Item:
    """One candidate row: its bytes (None if unreadable), caption and what to keep in meta."""

    source: str
    data: bytes | None
    caption: str
    meta: dict = field(default_factory=dict)
    problem: str = ""  # set when the item is already known to be unusable


@dataclass(frozen=True)
class Source:
    """A sized stream of items, so the progress bar knows the total."""

    name: str
    items: Iterator[Item]
    total: int | None


def demo_source(count: int = 300, seed: int = 0) -> Source:
    """The built-in synthetic demo set."""
    from ingest.demo import DEMO_DATASET, generate

    items = (
        Item(source=f"demo:{d.name}", data=d.image, caption=d.caption, meta=dict(d.meta))
        for d in generate(count, seed)
    )
    return Source(name=DEMO_DATASET, items=items, total=count)


def folder_source(folder: Path, captions: Path | None = None) -> Source:
    """Images under a folder with captions from a CSV/JSONL file or a `.txt` sidecar each."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder.")
    if captions is None:
        found = [folder / n for n in ("captions.csv", "captions.jsonl") if (folder / n).is_file()]
        captions = found[0] if found else None
    if captions is not None:
        rows = read_captions(Path(captions))
        items = (_row_item(folder, row) for row in rows)
        return Source(name=folder.name, items=items, total=len(rows))
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return Source(name=folder.name, items=(_sidecar_item(p) for p in images), total=len(images))


def read_captions(path: Path) -> list[dict]:
    """Rows of a CSV or JSONL captions file, each with `path` and `caption` keys added."""
    if not path.is_file():
        raise InputError(f"The captions file {path} does not exist.")
    return parse_captions(path.read_text(encoding="utf-8-sig"), str(path))


def parse_captions(text: str, path: str) -> list[dict]:
    """Rows of captions-file text; `path` (its name) tells CSV from JSONL and names it in errors."""
    if path.lower().endswith((".jsonl", ".ndjson")):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise InputError(f"Line {n} of {path} is not valid JSON.") from None
    else:
        rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    if not rows:
        raise InputError(f"The captions file {path} has no rows.")
    columns = {k.lower(): k for k in rows[0]}
    path_col = next((columns[c] for c in PATH_COLUMNS if c in columns), None)
    caption_col = next((columns[c] for c in CAPTION_COLUMNS if c in columns), None)
    if path_col is None or caption_col is None:
        raise InputError(
            f"The captions file {path} needs a file column ({', '.join(PATH_COLUMNS)}) "
            f"and a caption column ({', '.join(CAPTION_COLUMNS)})."
        )
    return [
        {
            "path": str(r.get(path_col) or ""),
            "caption": str(r.get(caption_col) or ""),
            "meta": {k: v for k, v in r.items() if k not in (path_col, caption_col)},
        }
        for r in rows
    ]


def _row_item(folder: Path, row: dict) -> Item:
    path = folder / row["path"]
    meta = {k: v for k, v in row["meta"].items() if v not in (None, "")}
    if not row["path"] or not path.is_file():
        return Item(str(path), None, row["caption"], meta, problem="file not found")
    return Item(str(path), path.read_bytes(), row["caption"].strip(), meta)


def _sidecar_item(path: Path) -> Item:
    sidecar = path.with_suffix(".txt")
    caption = sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else ""
    return Item(str(path), path.read_bytes(), caption)
