"""A serving process's long-lived state: the pipeline, reconnected after a failure, and the
first-start build of the demo collection."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from PIL import Image

from ingest.demo import DEMO_DATASET
from pipeline.aws import AwsClients
from pipeline.backends import make_captioner, make_embedder, make_store
from pipeline.captioners import Captioner
from pipeline.config import Settings
from pipeline.embedders import LocalEmbedder
from pipeline.errors import BackendError
from pipeline.feedback import Feedback, FeedbackLog
from pipeline.service import Pipeline, Status

log = logging.getLogger(__name__)


@dataclass
class DemoBuild:
    """Progress of the first-start demo ingest, read by the page."""

    done: int = 0
    total: int = 0
    finished: bool = False
    error: str = ""


class Runtime:
    """Holds the pipeline for the page; connects on demand so a dead store never stops start-up."""

    def __init__(
        self,
        settings: Settings,
        clients: AwsClients | None = None,
        captioner: Captioner | None = None,
    ) -> None:
        self.settings = settings
        # One set of AWS clients for the process; tests hand in stubbed ones.
        self.clients = clients or AwsClients.from_settings(settings)
        self.embedder = make_embedder(settings, self.clients)
        # `captioner` overrides the settings' choice (tests and embedding applications).
        self.captioner = captioner or make_captioner(settings, self.clients)
        self.demo = DemoBuild(finished=True)
        self.feedback = FeedbackLog(settings.data_dir / "feedback.jsonl")
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()
        self._is_demo = False

    def pipeline(self) -> Pipeline:
        """The connected pipeline; raises BackendError with a sentence if the store is down."""
        with self._lock:  # one connect (and one collection load) at a time, however many ask
            if self._pipeline is None:
                store = make_store(self.settings, self.embedder)
                self._pipeline = Pipeline(
                    self.embedder, store, self.captioner, self.settings.max_image_pixels
                )
            return self._pipeline

    def record_feedback(
        self, image_id: str, panel: str, caption: str, rating: str, comment: str
    ) -> None:
        """Append a rating of a caption to DATA_DIR/feedback.jsonl with the live backends."""
        backends = {"embedder": self.embedder.name, "captioner": self.captioner.name}
        backends["store"] = "Milvus Lite" if self.settings.is_lite else "Milvus server"
        self.feedback.record(Feedback(image_id, panel, caption, rating, comment, backends))

    def reset(self) -> None:
        """Forget the connection after a backend failure; the next request reconnects."""
        with self._lock:
            if self._pipeline is not None:
                self._pipeline.store.close()
            self._pipeline = None

    def status(self) -> tuple[Status | None, str]:
        """The status, or None and the sentence saying why the store cannot be reached."""
        try:
            return self.pipeline().status(), ""
        except BackendError as exc:
            self.reset()
            return None, exc.sentence

    def notes(self) -> str:
        """What the page should say about the collection itself (synthetic, being built)."""
        if not self.demo.finished:
            return (
                f"Building the synthetic demo collection: {self.demo.done} of "
                f"{self.demo.total} images so far; results improve as it fills."
            )
        if self.demo.error:
            return f"The demo collection could not be built: {self.demo.error}"
        if self._is_demo:
            return (
                "The collection is the built-in **synthetic** demo set (drawn phantoms, not "
                "patients): add real images with `python -m ingest`."
            )
        return ""

    def start(self, background: bool = False) -> None:
        """Connect, warm the embedder, and build the demo collection if the collection is empty.

        With `background`, connecting (and loading the collection) happens on a thread so the
        page is served at once; a request that comes first waits for that one connect.
        """
        local = isinstance(self.embedder, LocalEmbedder)
        if local:  # a cloud embedder would bill a call for nothing
            threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()
        if background:
            threading.Thread(target=self._prepare, name="store-connect", daemon=True).start()
        else:
            self._prepare()

    def _prepare(self) -> None:
        local = isinstance(self.embedder, LocalEmbedder)
        try:
            pipeline = self.pipeline()
            empty = pipeline.store.count() == 0
        except BackendError as exc:
            log.error("%s", exc.sentence)
            return
        if empty and local and self.settings.auto_ingest_demo:
            self.demo = DemoBuild(total=self.settings.demo_count)
            self._is_demo = True
            threading.Thread(target=self._build_demo, name="demo-ingest", daemon=True).start()
            return
        try:  # a scan of every row's meta on Lite: kept off the connect path
            self._is_demo = pipeline.store.has_dataset(DEMO_DATASET)
        except BackendError as exc:
            log.warning("%s", exc.sentence)

    def _warm_up(self) -> None:
        # The first embedding loads the model (and builds its graph once per machine): pay for
        # it at start-up, not in the first user's request.
        try:
            self.embedder.embed([Image.new("RGB", (224, 224))])
        except Exception:
            log.warning("embedder warm-up failed", exc_info=True)

    def _build_demo(self) -> None:
        from ingest.runner import ingest
        from ingest.sources import demo_source

        demo = self.demo

        def progress(done: int) -> None:
            demo.done = done

        try:
            pipeline = self.pipeline()
            summary = ingest(
                demo_source(self.settings.demo_count),
                self.embedder,
                pipeline.store,
                on_progress=progress,
                rejects_path=self.settings.data_dir / "ingest-rejects.csv",
            )
            log.info("demo collection built: %s", summary.line())
        except BackendError as exc:
            demo.error = exc.sentence
        except Exception as exc:  # a failed build must not take the page down
            log.exception("demo ingest failed")
            demo.error = str(exc)
        finally:
            demo.finished = True
