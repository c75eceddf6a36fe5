"""MilvusStore: one collection per embedder over pymilvus' MilvusClient (Lite file or server)."""

from __future__ import annotations

import base64
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from pipeline.errors import BackendError, brief

log = logging.getLogger(__name__)

ID_LEN = 64  # hex SHA-256
CAPTION_LEN = 4096
SOURCE_LEN = 1024
THUMB_LEN = 65535
# An embedding this close to the query's is the query image itself, re-encoded on the way in.
SAME_IMAGE_SCORE = 0.9995


@dataclass(frozen=True)
class Record:
    """One row to write: an image's embedding and what the page shows about it."""

    id: str
    embedding: np.ndarray
    caption: str
    thumbnail: str  # base64 JPEG
    source: str
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Neighbour:
    """One search hit, with its cosine similarity."""

    id: str
    caption: str
    thumbnail: bytes
    source: str
    meta: dict
    score: float


def default_collection(embedder_name: str, dim: int) -> str:
    """medcap_<embedder>_<dim>, so vectors of two models never share a collection."""
    safe = "".join(c if c.isalnum() else "_" for c in embedder_name.lower())
    return f"medcap_{safe}_{dim}"


class MilvusStore:
    """The collection of captioned images, on Milvus Lite or a Milvus server."""

    def __init__(
        self,
        uri: str,
        embedder_name: str,
        dim: int,
        collection: str = "",
        token: str = "",
        db: str = "",
        timeout: float = 15.0,
        hnsw_m: int = 16,
        ef_construction: int = 200,
        search_ef: int = 64,
        consistency: str = "Strong",
    ) -> None:
        self.uri = uri
        self.embedder_name = embedder_name
        self.dim = dim
        self.collection = collection or default_collection(embedder_name, dim)
        self.timeout = timeout
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.search_ef = search_ef
        self.consistency = consistency
        self.is_lite = not uri.startswith(("http://", "https://", "tcp://"))
        self._client = self._connect(token, db)
        self._ensure_collection()

    @property
    def location(self) -> str:
        """Where the store lives, without secrets, for the status line."""
        if self.is_lite:
            return f"Milvus Lite ({self.uri})"
        return f"Milvus server ({_public(self.uri)})"

    def _connect(self, token: str, db: str):
        MilvusClient = import_pymilvus().MilvusClient

        if self.is_lite:
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
            # Milvus Lite serves in-process and logs a harmless "AllocTimestamp not implemented"
            # traceback on every open; keep it out of the operator's log.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            # Lite has no MVCC timestamp to hand out; the iterator's fallback is correct.
            logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
        # pymilvus logs a full traceback for every failed call and every failed reconnect (a
        # few hundred lines a second while a server is down); this class logs one line per
        # failure and turns it into a sentence instead.
        for name in ("pymilvus.decorators", "pymilvus.client.connection_manager"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        kwargs = {"uri": self.uri, "timeout": self.timeout}
        if token:
            kwargs["token"] = token
        if db:
            kwargs["db_name"] = db
        try:
            return MilvusClient(**kwargs)
        except Exception as exc:
            raise BackendError(self._unreachable(exc)) from exc

    def _unreachable(self, exc: Exception) -> str:
        detail = brief(exc)
        if self.is_lite:
            return (
                f"The Milvus Lite file {self.uri} could not be opened ({detail}); "
                "another process may be using it: stop it or set MILVUS_URI to another file."
            )
        where = f"The Milvus server at {_public(self.uri)}"
        lowered = detail.lower()
        if "not loaded" in lowered or "loading" in lowered:
            return (
                f"{where} is still loading collection {self.collection} ({detail}): "
                "try again in a moment."
            )
        if any(w in lowered for w in ("auth", "token", "credential", "permission", "denied")):
            return f"{where} refused the credentials ({detail}): check MILVUS_TOKEN."
        if "database" in lowered:
            return f"{where} has no such database ({detail}): check MILVUS_DB."
        return (
            f"{where} did not answer within {self.timeout:g} s ({detail}): "
            "check that it is running and check MILVUS_URI and MILVUS_TOKEN."
        )

    def _properties(self) -> dict[str, str]:
        # Collection properties survive a reopen (the schema description does not, on Lite).
        return {"medcap.embedder": self.embedder_name, "medcap.dim": str(self.dim)}

    def _ensure_collection(self) -> None:
        c = self._client
        try:
            if c.has_collection(self.collection, timeout=self.timeout):
                self._check_embedder(c.describe_collection(self.collection, timeout=self.timeout))
            else:
                self._create()
            c.load_collection(self.collection, timeout=self.timeout)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(self._unreachable(exc)) from exc

    def _check_embedder(self, info: dict) -> None:
        recorded = info.get("properties") or {}
        if any(recorded.get(k) != v for k, v in self._properties().items()):
            raise BackendError(
                f"Collection {self.collection} holds vectors from embedder "
                f"{recorded.get('medcap.embedder', 'unknown')} "
                f"({recorded.get('medcap.dim', '?')} dims), "
                f"not {self.embedder_name} ({self.dim} dims): set MILVUS_COLLECTION to another "
                "name or use the embedder it was built with."
            )

    def _create(self) -> None:
        DataType = import_pymilvus().DataType

        c = self._client
        schema = c.create_schema(auto_id=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_LEN)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("caption", DataType.VARCHAR, max_length=CAPTION_LEN)
        schema.add_field("thumbnail", DataType.VARCHAR, max_length=THUMB_LEN)
        schema.add_field("source", DataType.VARCHAR, max_length=SOURCE_LEN)
        schema.add_field("meta", DataType.JSON)
        index = c.prepare_index_params()
        index.add_index("embedding", **self._index_params())
        c.create_collection(
            self.collection,
            schema=schema,
            index_params=index,
            consistency_level="Strong",  # a just-ingested image is searchable at once
            properties=self._properties(),
            timeout=self.timeout,
        )
        log.info("created collection %s (%s, %d dims)", self.collection, self.uri, self.dim)

    def _index_params(self) -> dict:
        # HNSW on Lite and server alike: IVF on a small collection (the demo's 300 rows) probes
        # too few lists and loses about one neighbour in ten. benchmarks/store.py measures it.
        return {
            "index_type": "HNSW",
            "metric_type": "COSINE",
            "params": {"M": self.hnsw_m, "efConstruction": self.ef_construction},
        }

    def _search_params(self, k: int) -> dict:
        # HNSW needs ef >= the number of hits asked for.
        return {"metric_type": "COSINE", "params": {"ef": max(self.search_ef, k)}}

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, timeout=self.timeout, **kwargs)
        except BackendError:
            raise
        except Exception as exc:
            log.warning("milvus %s failed: %s", what, exc)
            raise BackendError(self._unreachable(exc)) from exc

    def upsert(self, records: Sequence[Record]) -> int:
        """Write rows (same id replaces); returns how many were written."""
        if not records:
            return 0
        rows = [
            {
                "id": r.id,
                "embedding": np.asarray(r.embedding, dtype=np.float32).tolist(),
                "caption": r.caption[:CAPTION_LEN],
                "thumbnail": r.thumbnail,
                "source": r.source[:SOURCE_LEN],
                "meta": r.meta,
            }
            for r in records
        ]
        self._call("upsert", self._client.upsert, self.collection, rows)
        return len(rows)

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of these ids the collection already holds."""
        ids = [i for i in ids if all(ch in "0123456789abcdef" for ch in i)]
        if not ids:
            return set()
        rows = self._call("get", self._client.get, self.collection, ids=ids, output_fields=["id"])
        return {row["id"] for row in rows}

    def search(self, vector: np.ndarray, k: int, exclude_id: str = "") -> list[Neighbour]:
        """The k most similar rows by cosine similarity, never the query image itself."""
        extra = 3  # room for the query image itself, in the collection under other bytes
        kwargs = {}
        if exclude_id and all(ch in "0123456789abcdef" for ch in exclude_id):
            kwargs["filter"] = f'id != "{exclude_id}"'
        hits = self._call(
            "search",
            self._client.search,
            self.collection,
            data=[np.asarray(vector, dtype=np.float32).tolist()],
            limit=k + extra,
            output_fields=["caption", "thumbnail", "source", "meta"],
            search_params=self._search_params(k + extra),
            consistency_level=self.consistency,
            **kwargs,
        )
        out = []
        for hit in hits[0] if hits else []:
            if hit["distance"] >= SAME_IMAGE_SCORE:
                continue
            entity = hit["entity"]
            out.append(
                Neighbour(
                    id=hit["id"],
                    caption=entity.get("caption", ""),
                    thumbnail=base64.b64decode(entity.get("thumbnail") or ""),
                    source=entity.get("source", ""),
                    meta=entity.get("meta") or {},
                    score=float(hit["distance"]),
                )
            )
        return out[:k]

    def count(self) -> int:
        """Rows in the collection."""
        if self.is_lite:  # exact on Lite, and about half the cost of count(*)
            stats = self._call("stats", self._client.get_collection_stats, self.collection)
            return int(stats.get("row_count", 0))
        # count(*), not the collection statistics: on a server those count a replaced row
        # twice (an upsert is a delete plus an insert) until compaction runs.
        rows = self._call(
            "count",
            self._client.query,
            self.collection,
            filter="",
            output_fields=["count(*)"],
            consistency_level=self.consistency,
        )
        return int(rows[0]["count(*)"]) if rows else 0

    def has_dataset(self, dataset: str) -> bool:
        """Whether any row's meta names this dataset (the page labels the demo as synthetic)."""
        safe = dataset.replace("\\", "").replace('"', "")
        rows = self._call(
            "query",
            self._client.query,
            self.collection,
            filter=f'meta["dataset"] == "{safe}"',
            output_fields=["id"],
            limit=1,
        )
        return bool(rows)

    def rows(self, batch_size: int = 1000) -> Iterator[dict]:
        """Every row with its embedding, caption, source and meta (no thumbnail), in batches."""
        fields = ["id", "embedding", "caption", "source", "meta"]
        it = self._call(
            "query",
            self._client.query_iterator,
            self.collection,
            batch_size=batch_size,
            output_fields=fields,
        )
        try:
            while batch := self._call("query", lambda timeout: it.next()):
                yield from batch
        finally:
            it.close()

    def flush(self) -> None:
        """Seal what was written so searches are fast and a restart keeps it."""
        self._call("flush", self._client.flush, self.collection)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing a dead connection must not mask the real error
            log.debug("closing milvus client failed", exc_info=True)


def import_pymilvus() -> ModuleType:
    """pymilvus, imported once (it is heavy) without tripping over our own MILVUS_URI.

    At import pymilvus reads MILVUS_URI (from the environment and from `.env`) as the default
    server of its old ORM API and raises if it is not a URL; for us it may be a Milvus Lite file.
    """
    if "pymilvus" in sys.modules:
        return sys.modules["pymilvus"]
    saved = os.environ.get("MILVUS_URI")
    os.environ["MILVUS_URI"] = ""  # load_dotenv() does not override a variable already set
    try:
        import pymilvus
    finally:
        if saved is None:
            os.environ.pop("MILVUS_URI", None)
        else:
            os.environ["MILVUS_URI"] = saved
    _settle_scipy_check()
    return pymilvus


def _settle_scipy_check() -> None:
    # pymilvus checks for scipy.sparse on the first insert or search, loading it by hand with no
    # lock; two requests arriving together then see a half-initialised module and fail. Run the
    # check once here, in one thread, so it is settled before any request.
    try:
        from pymilvus.client.utils import SciPyHelper

        SciPyHelper._init()
    except (ImportError, AttributeError):  # another pymilvus version: nothing to settle
        log.debug("pymilvus has no SciPyHelper to settle")


def _public(uri: str) -> str:
    """The URI without any user:password in it, fit for a page or a log."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return uri
