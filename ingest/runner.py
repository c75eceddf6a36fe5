"""The ingest loop: items -> decode -> embed -> upsert, in batches, resumable, with rejects."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from ingest.sources import Item, Source
from pipeline.embedders import Embedder, PartialEmbedding
from pipeline.errors import InputError
from pipeline.images import DecodedImage, decode, thumbnail_b64
from pipeline.store import MilvusStore, Record

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a run did; seen always equals added + skipped + rejected."""

    seen: int = 0
    added: int = 0
    skipped: int = 0
    rejected: int = 0
    seconds: float = 0.0
    rejects: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.seen / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"seen {self.seen} = added {self.added} + skipped {self.skipped} "
            f"+ rejected {self.rejected} in {self.seconds:.1f} s ({self.rate:.1f} images/s)"
        )


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def ingest(
    source: Source,
    embedder: Embedder,
    store: MilvusStore,
    batch_size: int = 32,
    limit: int | None = None,
    rejects_path: Path | None = None,
    progress: bool = True,
    max_pixels: int = 50_000_000,
    on_progress: Callable[[int], None] | None = None,
) -> Summary:
    """Add every new item of the source to the store; a rerun skips what is already there."""
    summary = Summary()
    start = time.perf_counter()
    items = islice(source.items, limit) if limit else source.items
    total = min(limit, source.total) if limit and source.total else (limit or source.total)
    seen_ids: set[str] = set()
    with (
        tqdm(total=total, desc=f"ingest {source.name}", unit="img", disable=not progress) as bar,
        ThreadPoolExecutor(1, "ingest-prepare") as prepare,
    ):
        # The next batch is decoded while this one is embedded: a remote embedder spends its
        # time waiting, and the CPU work of decoding and thumbnails fills that wait.
        pending: Future | None = None
        for batch in _batches(items, batch_size):
            upcoming = prepare.submit(_prepare, batch, store, seen_ids, max_pixels)
            if pending is not None:
                _finish(pending.result(), embedder, store, summary, seen_ids, bar, on_progress)
            pending = upcoming
        if pending is not None:
            _finish(pending.result(), embedder, store, summary, seen_ids, bar, on_progress)
    store.flush()
    summary.seconds = time.perf_counter() - start
    if rejects_path is not None:
        write_rejects(rejects_path, summary.rejects)
    return summary


@dataclass
class _Prepared:
    """A decoded batch: what to embed (with thumbnails), and what was rejected or skipped."""

    size: int
    todo: list[tuple[Item, DecodedImage, str]]
    skipped: int = 0
    rejects: list[tuple[str, str]] = field(default_factory=list)


def _prepare(
    batch: list[Item], store: MilvusStore, seen_ids: set[str], max_pixels: int
) -> _Prepared:
    out = _Prepared(size=len(batch), todo=[])
    ready = []  # (item, decoded) pairs worth embedding
    for item in batch:
        reason = item.problem or ("" if item.caption.strip() else "no caption")
        if not reason and item.data is None:
            reason = "unreadable file"
        if not reason:
            try:
                decoded = decode(item.data, max_pixels)
            except InputError as exc:
                reason = exc.sentence
        if reason:
            out.rejects.append((item.source, reason))
            continue
        if decoded.id in seen_ids:  # the same bytes twice in one run
            out.skipped += 1
            continue
        seen_ids.add(decoded.id)
        ready.append((item, decoded))
    present = store.existing_ids([d.id for _, d in ready])
    out.skipped += len(present)
    out.todo = [(item, d, thumbnail_b64(d.image)) for item, d in ready if d.id not in present]
    return out


def _finish(
    prepared: _Prepared,
    embedder: Embedder,
    store: MilvusStore,
    summary: Summary,
    seen_ids: set[str],
    bar: tqdm,
    on_progress: Callable[[int], None] | None,
) -> None:
    summary.seen += prepared.size
    summary.skipped += prepared.skipped
    summary.rejected += len(prepared.rejects)
    summary.rejects.extend(prepared.rejects)
    todo = prepared.todo
    if todo:
        try:
            vectors = embedder.embed([d.image for _, d, _ in todo])
        except PartialEmbedding as partial:  # a remote embedder lost some images after retries
            for i in sorted(partial.failures):
                item, decoded, _ = todo[i]
                seen_ids.discard(decoded.id)  # a later copy of the same bytes gets another try
                summary.rejected += 1
                summary.rejects.append((item.source, partial.failures[i]))
            keep = [i for i in range(len(todo)) if i not in partial.failures]
            todo, vectors = [todo[i] for i in keep], partial.vectors[keep]
        records = [
            Record(
                id=d.id,
                embedding=vec,
                caption=item.caption.strip(),
                thumbnail=thumb,
                source=item.source,
                meta={
                    **item.meta,
                    "format": d.format,
                    "width": d.image.width,
                    "height": d.image.height,
                },
            )
            for (item, d, thumb), vec in zip(todo, vectors, strict=True)
        ]
        summary.added += store.upsert(records)
    bar.update(prepared.size)
    bar.set_postfix(added=summary.added, skipped=summary.skipped, rejected=summary.rejected)
    if on_progress is not None:
        on_progress(summary.seen)


def write_rejects(path: Path, rejects: list[tuple[str, str]]) -> None:
    """The rejects report: one row per file that was not added, with the reason."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "reason"])
        writer.writerows(rejects)
