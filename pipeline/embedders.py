"""The Embedder protocol and its implementations: local EfficientNet-Lite0, Titan on Bedrock."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from pipeline.aws import AwsClients, error_code, redact
from pipeline.errors import BackendError, InputError
from pipeline.images import encode

log = logging.getLogger(__name__)


class Embedder(Protocol):
    """Turns images into L2-normalised vectors of a fixed dimension."""

    name: str  # recorded on the collection; two embedders never share one
    dim: int

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return an (n, dim) float32 array of unit vectors.

        A remote embedder may raise PartialEmbedding: some rows failed, the others are good.
        """
        ...


class LocalEmbedder:
    """ImageNet-pretrained EfficientNet-Lite0 features, run by ONNX Runtime; no network.

    v2: the pooled head joined by two mid-level stages (1472 dims); v1 was the head alone.
    """

    name = "local-effnet-lite0-v2"
    dim = 1472

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self._net = None
        self._lock = threading.Lock()

    def _model(self):
        # Built on first use, not at import or construction: the ONNX build takes a second.
        with self._lock:
            if self._net is None:
                from pipeline.localnet import EfficientNetLite0

                self._net = EfficientNetLite0(self.model_dir)
            return self._net

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._model().features(images)


class PartialEmbedding(BackendError):
    """Some images of a batch could not be embedded: `vectors` holds the rest (zero rows for the
    failed ones) and `failures` maps each failed index to its reason."""

    def __init__(self, vectors: np.ndarray, failures: dict[int, str]) -> None:
        first = failures[min(failures)]
        if len(vectors) == 1:
            sentence = f"The image could not be embedded: {first}."
        else:
            sentence = f"{len(failures)} of {len(vectors)} images could not be embedded ({first})."
        super().__init__(sentence)
        self.vectors = vectors
        self.failures = failures


TITAN_MAX_EDGE = 2048
TITAN_MAX_BYTES = 5 * 1024 * 1024
# Errors no retry and no other image will fix: stop and tell the operator, don't reject images.
_FATAL_CODES = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "ResourceNotFoundException",
    "NoCredentialsError",
    "PartialCredentialsError",
    "EndpointConnectionError",
    "ConnectTimeoutError",
}


class TitanEmbedder:
    """Amazon Titan Multimodal Embeddings on Bedrock; a batch is embedded by concurrent calls."""

    def __init__(
        self,
        clients: AwsClients,
        model_id: str = "amazon.titan-embed-image-v1",
        dim: int = 1024,
        workers: int = 8,
    ) -> None:
        self.clients = clients
        self.model_id = model_id
        self.dim = dim
        self.workers = max(1, workers)
        # Model and dimension in the name: collections of two configurations never mix.
        short = model_id.rsplit("/", 1)[-1].removeprefix("amazon.").replace(":", "-")
        self.name = f"{short}-{dim}"

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        vectors = np.zeros((len(images), self.dim), dtype=np.float32)
        failures: dict[int, str] = {}
        if len(images) <= 1 or self.workers == 1:
            for i, image in enumerate(images):
                self._one_into(i, image, vectors, failures)
        else:
            with ThreadPoolExecutor(min(self.workers, len(images)), "titan") as pool:
                futures = [
                    pool.submit(self._one_into, i, image, vectors, failures)
                    for i, image in enumerate(images)
                ]
                try:
                    for future in futures:
                        future.result()
                except BackendError:
                    pool.shutdown(cancel_futures=True)  # a fatal error: don't bill the rest
                    raise
        if failures:
            raise PartialEmbedding(vectors, failures)
        return vectors

    def _one_into(self, i: int, image: Image.Image, vectors: np.ndarray, failures: dict) -> None:
        try:
            vectors[i] = self.embed_one(image)
        except ImageFailure as exc:
            failures[i] = str(exc)

    def embed_one(self, image: Image.Image) -> np.ndarray:
        """One InvokeModel call (botocore retries throttling); the unit vector."""
        from botocore.exceptions import BotoCoreError, ClientError

        rgb = image if image.mode == "RGB" else image.convert("RGB")
        try:
            # JPEG at quality 90: a tenth of PNG's encoding time, which is the CPU cost of
            # ingest with a remote embedder; the embedding does not see the difference.
            data, _fmt = encode(rgb, TITAN_MAX_EDGE, TITAN_MAX_BYTES, lossless=False)
        except InputError as exc:
            raise ImageFailure(exc.sentence) from None
        body = {
            "inputImage": base64.b64encode(data).decode("ascii"),
            "embeddingConfig": {"outputEmbeddingLength": self.dim},
        }
        try:
            response = self.clients.bedrock.invoke_model(
                modelId=self.model_id,
                body=json.dumps(body),
                contentType="application/json",
                accept="application/json",
            )
            payload = json.loads(response["body"].read())
        except (ClientError, BotoCoreError) as exc:
            raise self._failure(exc) from None
        except ValueError:
            raise ImageFailure("Titan returned a response that is not JSON") from None
        vector = np.asarray(payload.get("embedding") or [], dtype=np.float32)
        if vector.shape != (self.dim,):
            raise ImageFailure(f"Titan returned {vector.size} numbers, not {self.dim}")
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0:
            raise ImageFailure("Titan returned a zero or non-finite embedding")
        return vector / norm

    def _failure(self, exc: Exception) -> Exception:
        code = error_code(exc)
        message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", ""))
        log.warning("titan %s: %s", code, redact(message or str(exc)))
        if code in _FATAL_CODES or "model identifier" in message.lower():
            return BackendError(
                f"Titan on Bedrock refused the call ({code}): check AWS credentials and "
                f"AWS_REGION ({self.clients.region or 'unset'}), that the IAM policy allows "
                f"bedrock:InvokeModel, and that model access to {self.model_id} "
                "(TITAN_MODEL_ID) is enabled in that region."
            )
        attempts = self.clients.max_attempts
        return ImageFailure(f"Titan embedding failed: {code} (after up to {attempts} attempts)")


class ImageFailure(Exception):
    """One image could not be embedded; the reason goes to the rejects report."""
