"""Pipeline: image bytes -> neighbours -> RAG and classic caption streams, with timings."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from PIL import Image

from pipeline.captioners import Captioner
from pipeline.embedders import Embedder
from pipeline.errors import InputError, MedcapError
from pipeline.images import decode
from pipeline.store import MilvusStore, Neighbour

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """The state of one request; the page redraws from each new one as the captions stream."""

    neighbours: tuple[Neighbour, ...] = ()
    rag: str = ""
    classic: str = ""
    rag_note: str = ""  # why the RAG panel stopped short, or is empty
    classic_note: str = ""
    rag_done: bool = False
    classic_done: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage

    @property
    def done(self) -> bool:
        return self.rag_done and self.classic_done


@dataclass(frozen=True)
class Status:
    """What the status line says: the live backends and the collection."""

    store: str
    collection: str
    count: int
    embedder: str
    captioner: str


_DONE = object()


class Pipeline:
    """The one path every request takes; the page, ingest and evaluation share its pieces."""

    def __init__(
        self,
        embedder: Embedder,
        store: MilvusStore,
        captioner: Captioner,
        max_pixels: int = 50_000_000,
    ) -> None:
        self.embedder = embedder
        self.store = store
        self.captioner = captioner
        self.max_pixels = max_pixels

    def status(self) -> Status:
        """The backends and collection size, for the status line."""
        return Status(
            store=self.store.location,
            collection=self.store.collection,
            count=self.store.count(),
            embedder=self.embedder.name,
            captioner=self.captioner.name,
        )

    def neighbours(self, image: Image.Image, k: int, exclude_id: str = "") -> list[Neighbour]:
        """The k nearest images in the collection (never the query itself)."""
        vector = self.embedder.embed([image])[0]
        return self.store.search(vector, k, exclude_id=exclude_id)

    def run(self, data: bytes, k: int = 5) -> Iterator[Answer]:
        """Yield ever-fuller answers: neighbours first, then both captions as they stream."""
        if not 1 <= k <= 10:
            raise InputError("The number of neighbours must be between 1 and 10.")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        decoded = decode(data, self.max_pixels)
        t1 = time.perf_counter()
        vector = self.embedder.embed([decoded.image])[0]
        t2 = time.perf_counter()
        found = self.store.search(vector, k, exclude_id=decoded.id)
        t3 = time.perf_counter()
        timings.update(decode=_ms(t0, t1), embed=_ms(t1, t2), search=_ms(t2, t3))
        answer = Answer(neighbours=tuple(found), timings=dict(timings))
        yield answer
        yield from self._generate(decoded.image, found, answer)

    def _generate(
        self, image: Image.Image, found: list[Neighbour], answer: Answer
    ) -> Iterator[Answer]:
        start = time.perf_counter()
        pieces: queue.Queue = queue.Queue()
        stop = threading.Event()
        streams: dict[str, Callable[[], Iterator[str]]] = {
            "rag": lambda: self.captioner.rag(image, found)
        }
        if self.captioner.classic_unavailable:
            answer = replace(
                answer, classic_note=self.captioner.classic_unavailable, classic_done=True
            )
        else:
            streams["classic"] = lambda: self.captioner.classic(image)
        for which, make in streams.items():
            threading.Thread(
                target=_pump, args=(which, make, pieces, stop), daemon=True, name=which
            ).start()
        pending = set(streams)
        try:
            while pending:
                which, piece = pieces.get()
                if piece is _DONE:
                    pending.discard(which)
                    answer = replace(answer, **{f"{which}_done": True})
                elif isinstance(piece, MedcapError):
                    answer = replace(answer, **{f"{which}_note": piece.sentence})
                else:
                    answer = replace(answer, **{which: getattr(answer, which) + piece})
                if not pending:
                    timings = dict(answer.timings, generate=_ms(start, time.perf_counter()))
                    answer = replace(answer, timings=timings)
                yield answer
        finally:
            stop.set()  # the reader went away: stop paying for tokens nobody will see


def _pump(
    which: str,
    make: Callable[[], Iterator[str]],
    pieces: queue.Queue,
    stop: threading.Event,
) -> None:
    try:
        for piece in make():
            if stop.is_set():
                break
            pieces.put((which, piece))
    except MedcapError as exc:
        pieces.put((which, exc))
    except Exception as exc:  # a backend bug must end its panel, not hang the page
        log.exception("%s caption failed", which)
        pieces.put((which, MedcapError(f"The {which} caption failed unexpectedly ({exc}).")))
    finally:
        pieces.put((which, _DONE))


def _ms(a: float, b: float) -> float:
    return round((b - a) * 1000, 1)
