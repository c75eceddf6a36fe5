"""Settings: one frozen dataclass, read once from the environment and an optional `.env` file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from dotenv import dotenv_values

from pipeline.errors import BackendError

EMBEDDERS = ("auto", "local", "titan")
CAPTIONERS = ("auto", "extractive", "claude", "openai")
TITAN_DIMS = (256, 384, 1024)
CONSISTENCY_LEVELS = ("Strong", "Bounded", "Session", "Eventually")
# Claude 3.5 Sonnet reached end of life on Bedrock (2026-03-01); a current Sonnet is the default.
DEFAULT_CLAUDE_MODEL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the offline defaults. See the README's table."""

    data_dir: Path = Path("data")
    milvus_uri: str = ""  # empty: Milvus Lite file `<data_dir>/milvus.db`
    milvus_token: str = field(default="", repr=False)
    milvus_db: str = ""
    collection: str = ""  # empty: medcap_<embedder>_<dim>
    milvus_timeout: float = 15.0  # seconds, for every Milvus call including the connect
    milvus_consistency: str = "Strong"  # Strong: a just-ingested image is found at once
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    search_ef: int = 64  # raised to k when k is larger
    embedder: str = "auto"
    captioner: str = "auto"
    top_k: int = 5
    max_image_pixels: int = 50_000_000
    demo_count: int = 300
    auto_ingest_demo: bool = True
    # AWS / Bedrock
    aws_region: str = ""
    titan_model_id: str = "amazon.titan-embed-image-v1"
    titan_dim: int = 1024
    claude_model_id: str = DEFAULT_CLAUDE_MODEL
    inference_profile_id: str = ""  # the seed's name; wins over claude_model_id when set
    max_tokens: int = 300
    temperature: float = 0.2
    s3_bucket_name: str = ""
    workers: int = 8  # concurrent calls to a remote embedder during ingest
    # OpenAI-compatible vision endpoint (Ollama, vLLM, ...)
    openai_base_url: str = ""
    openai_model: str = ""
    openai_api_key: str = field(default="", repr=False)
    # Serving
    server_name: str = "127.0.0.1"
    server_port: int = 7860
    share: bool = False
    app_auth: str = field(default="", repr=False)
    max_upload_mb: int = 20
    queue_concurrency: int = 4  # requests computed at once; the rest wait in the queue
    queue_size: int = 64  # waiting requests beyond this are turned away with a message

    @property
    def store_uri(self) -> str:
        """The Milvus URI: a server URL, or the Lite file under the data directory."""
        return self.milvus_uri or str(self.data_dir / "milvus.db")

    @property
    def is_lite(self) -> bool:
        return not self.store_uri.startswith(("http://", "https://", "tcp://", "grpc://"))

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def claude_model(self) -> str:
        return self.inference_profile_id or self.claude_model_id

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")):
        """Build settings from `.env` (if present) overlaid by the process environment."""
        merged: dict[str, str] = {}
        if dotenv is not None and dotenv.is_file():
            merged.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
        merged.update(os.environ if env is None else env)
        return cls.from_mapping(merged)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from a mapping of environment-style names (upper-case field names)."""
        aliases = {
            "aws_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
            "server_name": ("GRADIO_SERVER_NAME",),
            "server_port": ("GRADIO_SERVER_PORT", "PORT"),
            "share": ("GRADIO_SHARE",),
            "data_dir": ("MEDCAP_DATA_DIR", "DATA_DIR"),
            "collection": ("MILVUS_COLLECTION", "COLLECTION"),
            "hnsw_m": ("MILVUS_HNSW_M",),
            "hnsw_ef_construction": ("MILVUS_HNSW_EF_CONSTRUCTION",),
            "search_ef": ("MILVUS_SEARCH_EF",),
        }
        values: dict[str, object] = {}
        for f in fields(cls):
            for name in aliases.get(f.name, (f.name.upper(),)):
                raw = env.get(name, "").strip()
                if raw:
                    break
            if not raw:
                continue
            try:
                if f.type == "int":
                    values[f.name] = int(raw)
                elif f.type == "float":
                    values[f.name] = float(raw)
                elif f.type == "bool":
                    values[f.name] = _bool(raw)
                elif f.type == "Path":
                    values[f.name] = Path(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise BackendError(f"Setting {name}={raw!r} is not a valid {f.type}.") from exc
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse settings that cannot work, with a sentence naming the variable."""
        if self.embedder not in EMBEDDERS:
            raise BackendError(f"EMBEDDER must be one of {', '.join(EMBEDDERS)}.")
        if self.captioner not in CAPTIONERS:
            raise BackendError(f"CAPTIONER must be one of {', '.join(CAPTIONERS)}.")
        if self.titan_dim not in TITAN_DIMS:
            raise BackendError("TITAN_DIM must be 256, 384 or 1024.")
        if self.milvus_consistency not in CONSISTENCY_LEVELS:
            levels = ", ".join(CONSISTENCY_LEVELS)
            raise BackendError(f"MILVUS_CONSISTENCY must be one of {levels}.")
        if not 2 <= self.hnsw_m <= 2048 or not 1 <= self.hnsw_ef_construction <= 2**31 - 1:
            raise BackendError(
                "MILVUS_HNSW_M must be between 2 and 2048 and MILVUS_HNSW_EF_CONSTRUCTION positive."
            )
        if self.search_ef < 1 or self.milvus_timeout <= 0:
            raise BackendError("MILVUS_SEARCH_EF and MILVUS_TIMEOUT must be positive.")
        if not 1 <= self.top_k <= 10:
            raise BackendError("TOP_K must be between 1 and 10.")
        if self.queue_concurrency < 1 or self.queue_size < 1:
            raise BackendError("QUEUE_CONCURRENCY and QUEUE_SIZE must be at least 1.")
        if not 1 <= self.workers <= 64:
            raise BackendError("WORKERS must be between 1 and 64.")
        if self.app_auth and any(":" not in pair for pair in self.app_auth.split(",")):
            raise BackendError("APP_AUTH must look like user:password[,user2:password2].")

    def override(self, **values) -> Settings:
        """A copy with the given non-empty values (e.g. command-line flags) set, re-validated."""
        changed = replace(self, **{k: v for k, v in values.items() if v not in (None, "")})
        changed.validate()
        return changed

    def auth_pairs(self) -> list[tuple[str, str]]:
        """APP_AUTH as (user, password) pairs for Gradio's login."""
        pairs = [p.split(":", 1) for p in self.app_auth.split(",") if p.strip()]
        return [(u.strip(), pw) for u, pw in pairs]
