"""The one place where settings choose the embedder, the captioner and the store."""

from __future__ import annotations

import logging

from pipeline.aws import AwsClients
from pipeline.captioners import Captioner, ClaudeCaptioner, ExtractiveCaptioner, OpenAICaptioner
from pipeline.config import Settings
from pipeline.embedders import Embedder, LocalEmbedder, TitanEmbedder
from pipeline.errors import BackendError
from pipeline.service import Pipeline
from pipeline.store import MilvusStore

log = logging.getLogger(__name__)


def _resolve(choice: str, cloud: str, offline: str, clients: AwsClients) -> str:
    """`auto` means the cloud piece when AWS is configured (checked once, in about a second)."""
    if choice != "auto":
        return choice
    return cloud if clients.available() else offline


def make_embedder(settings: Settings, clients: AwsClients | None = None) -> Embedder:
    """EMBEDDER=local|titan|auto (auto: Titan when AWS is configured, else local)."""
    clients = clients or AwsClients.from_settings(settings)  # cheap: no client is made yet
    if _resolve(settings.embedder, "titan", "local", clients) == "local":
        return LocalEmbedder(settings.model_dir)
    return TitanEmbedder(
        clients,
        settings.titan_model_id,
        settings.titan_dim,
        settings.workers,
    )


def make_captioner(settings: Settings, clients: AwsClients | None = None) -> Captioner:
    """CAPTIONER=extractive|claude|openai|auto (auto: Claude when AWS is configured)."""
    clients = clients or AwsClients.from_settings(settings)
    choice = _resolve(settings.captioner, "claude", "extractive", clients)
    if choice == "extractive":
        return ExtractiveCaptioner()
    if choice == "openai":
        if not (settings.openai_base_url and settings.openai_model):
            raise BackendError(
                "CAPTIONER=openai needs OPENAI_BASE_URL (for example "
                "http://127.0.0.1:11434/v1 for Ollama) and OPENAI_MODEL."
            )
        return OpenAICaptioner(
            settings.openai_base_url,
            settings.openai_model,
            settings.openai_api_key,
            settings.max_tokens,
            settings.temperature,
        )
    return ClaudeCaptioner(
        clients,
        settings.claude_model,
        settings.max_tokens,
        settings.temperature,
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


def build_pipeline(settings: Settings, clients: AwsClients | None = None) -> Pipeline:
    """Choose and connect every backend the settings name (one AwsClients for all of them)."""
    clients = clients or AwsClients.from_settings(settings)
    embedder = make_embedder(settings, clients)
    store = make_store(settings, embedder)
    return Pipeline(embedder, store, make_captioner(settings, clients), settings.max_image_pixels)
