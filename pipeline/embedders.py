"""The Embedder protocol and its implementations: local EfficientNet-Lite0, Titan on Bedrock."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image


class Embedder(Protocol):
    """Turns images into L2-normalised vectors of a fixed dimension."""

    name: str  # recorded on the collection; two embedders never share one
    dim: int

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return an (n, dim) float32 array of unit vectors."""
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
