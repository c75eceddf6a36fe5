"""Where images with captions come from: a folder with a captions file or sidecars, or the demo."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
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


def folder_source(
    folder: Path, captions: Path | None = None, dicom_captions: bool = False
) -> Source:
    """Images under a folder with captions from a CSV/JSONL file or a `.txt` sidecar each.

    With `dicom_captions`, a DICOM file that has no caption otherwise gets one from its tags.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder.")
    if captions is None:
        found = [folder / n for n in ("captions.csv", "captions.jsonl") if (folder / n).is_file()]
        captions = found[0] if found else None
    if captions is not None:
        rows = read_captions(Path(captions))
        items = (_row_item(folder, row) for row in rows)
    else:
        images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        rows = images
        items = (_sidecar_item(p) for p in images)
    if dicom_captions:
        items = (_with_dicom_caption(item) for item in items)
    return Source(name=folder.name, items=items, total=len(rows))


DICOM_CAPTION_TAGS = ("Modality", "BodyPartExamined", "StudyDescription", "SeriesDescription")


def dicom_caption(data: bytes) -> str:
    """A caption from a DICOM file's descriptive tags (never its patient or institution tags)."""
    import pydicom

    if len(data) < 132 or data[128:132] != b"DICM":
        return ""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=list(
            DICOM_CAPTION_TAGS))  # fmt: skip
    except Exception:  # an unreadable file is rejected later, with the decoder's sentence
        return ""
    parts: list[str] = []
    for tag in DICOM_CAPTION_TAGS:
        value = " ".join(str(ds.get(tag, "") or "").split())
        if value and value.lower() not in (p.lower() for p in parts):
            parts.append(value)
    if len(parts) < 2:
        return "".join(parts)
    return f"{parts[0]}: {', '.join(parts[1:])}"  # e.g. "CT: HEAD, CT HEAD WO CONTRAST"


def _with_dicom_caption(item: Item) -> Item:
    if item.caption.strip() or item.data is None or item.problem:
        return item
    caption = dicom_caption(item.data)
    return replace(item, caption=caption, meta={**item.meta, "caption_from": "dicom tags"})


def pick_column(names: Iterable[str], candidates: Sequence[str]) -> str | None:
    """The first of the candidate column names present, matched case-insensitively."""
    by_lower = {n.lower(): n for n in names}
    return next((by_lower[c] for c in candidates if c in by_lower), None)


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
    path_col = pick_column(rows[0], PATH_COLUMNS)
    caption_col = pick_column(rows[0], CAPTION_COLUMNS)
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


# ------------------------------------------------------------------------------------ Parquet

PARQUET_IMAGE_COLUMNS = ("image", "img", "jpg", "png")
PARQUET_ID_COLUMNS = ("image_id", "id", "name")


def parquet_source(path: str, batch_rows: int = 64) -> Source:
    """Parquet in the Hugging Face Hub's ROCOv2 layout: an `image` struct {bytes, path}, a
    `caption` and an `image_id`; a file, a folder of files, or `hf://datasets/...` (network)."""
    import pyarrow.parquet as pq

    fs, files = _parquet_files(path)
    total = 0
    for f in files:
        try:
            total += pq.ParquetFile(f, filesystem=fs).metadata.num_rows
        except Exception as exc:  # pyarrow raises several types for a non-Parquet file
            raise InputError(f"{f} is not a readable Parquet file ({exc}).") from None
    schema = pq.ParquetFile(files[0], filesystem=fs).schema_arrow
    image_col = pick_column(schema.names, PARQUET_IMAGE_COLUMNS)
    caption_col = pick_column(schema.names, CAPTION_COLUMNS)
    if image_col is None or caption_col is None:
        raise InputError(
            f"{path} needs an image column ({', '.join(PARQUET_IMAGE_COLUMNS)}) holding bytes "
            f"and a caption column ({', '.join(CAPTION_COLUMNS)}); "
            f"it has {', '.join(schema.names)}."
        )
    id_col = pick_column(schema.names, PARQUET_ID_COLUMNS)
    name = path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".parquet")
    items = _parquet_items(fs, files, image_col, caption_col, id_col, batch_rows)
    return Source(name=name, items=items, total=total)


def _parquet_files(path: str):
    """(filesystem or None, the Parquet files): hf:// goes through huggingface_hub."""
    if path.startswith("hf://"):
        try:
            from huggingface_hub import HfFileSystem

            fs = HfFileSystem()
            found = sorted(fs.glob(path)) if any(c in path for c in "*?[") else [path]
            if len(found) == 1 and fs.isdir(found[0]):
                found = sorted(fs.glob(found[0].rstrip("/") + "/**/*.parquet"))
        except Exception as exc:
            raise InputError(
                f"Could not reach {path} on the Hugging Face Hub ({type(exc).__name__}): this "
                "needs network access (and HF_TOKEN for gated datasets); download the Parquet "
                "files and give their local path instead."
            ) from None
        if not found:
            raise InputError(f"No Parquet files at {path}.")
        return fs, found
    p = Path(path).expanduser()
    if p.is_dir():
        found = sorted(str(f) for f in p.rglob("*.parquet"))
        if not found:
            raise InputError(f"The folder {p} holds no .parquet files.")
        return None, found
    if not p.is_file():
        raise InputError(f"The Parquet file {p} does not exist.")
    return None, [str(p)]


def _parquet_items(fs, files, image_col, caption_col, id_col, batch_rows) -> Iterator[Item]:
    import pyarrow.parquet as pq

    for f in files:
        n = 0
        for batch in pq.ParquetFile(f, filesystem=fs).iter_batches(batch_size=batch_rows):
            for row in batch.to_pylist():
                yield _parquet_item(f, n, row, image_col, caption_col, id_col)
                n += 1


def _parquet_item(file: str, n: int, row: dict, image_col, caption_col, id_col) -> Item:
    image = row.pop(image_col)
    caption = str(row.pop(caption_col) or "").strip()
    data = image.get("bytes") if isinstance(image, dict) else image
    ident = row.get(id_col) if id_col else None
    source = f"{file}#{ident if ident else n}"
    meta = {k: v for k, v in row.items() if v not in (None, "", [])}
    if isinstance(image, dict) and image.get("path"):
        meta.setdefault("filename", image["path"])
    if not isinstance(data, bytes | bytearray) or not data:
        return Item(source, None, caption, meta, problem="no image bytes in the row")
    return Item(source, bytes(data), caption, meta)
