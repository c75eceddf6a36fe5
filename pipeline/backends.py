"""The one place where settings choose the embedder, the captioner and the store."""

from __future__ import annotations

import logging

from pipeline.captioners import Captioner, ExtractiveCaptioner
from pipeline.config import Settings
from pipeline.embedders import Embedder, LocalEmbedder
from pipeline.errors import BackendError
from pipeline.service import Pipeline
from pipeline.store import MilvusStore

log = logging.getLogger(__name__)


def make_embedder(settings: Settings) -> Embedder:
    """EMBEDDER=local|titan|auto (auto: Titan when AWS is configured, else local)."""
    choice = settings.embedder
    if choice in ("local", "auto"):
        return LocalEmbedder(settings.model_dir)
    raise BackendError(f"EMBEDDER={choice} is not available in this build: use EMBEDDER=local.")


def make_captioner(settings: Settings) -> Captioner:
    """CAPTIONER=extractive|claude|openai|auto (auto: Claude when AWS is configured)."""
    choice = settings.captioner
    if choice in ("extractive", "auto"):
        return ExtractiveCaptioner()
    raise BackendError(
        f"CAPTIONER={choice} is not available in this build: use CAPTIONER=extractive."
    )


def make_store(settings: Settings, embedder: Embedder) -> MilvusStore:
    """Milvus Lite under the data directory, or the server at MILVUS_URI."""
    return MilvusStore(
        uri=settings.store_uri,
        embedder_name=embedder.name,
        dim=embedder.dim,
        collection=settings.collection,
        token=settings.milvus_token,
        db=settings.milvus_db,
        timeout=settings.milvus_timeout,
        hnsw_m=settings.hnsw_m,
        ef_construction=settings.hnsw_ef_construction,
        search_ef=settings.search_ef,
        consistency=settings.milvus_consistency,
    )


def build_pipeline(settings: Settings) -> Pipeline:
    """Choose and connect every backend the settings name."""
    embedder = make_embedder(settings)
    store = make_store(settings, embedder)
    return Pipeline(embedder, store, make_captioner(settings), settings.max_image_pixels)
