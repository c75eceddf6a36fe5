"""Held-out retrieval quality: a stable split, then precision@k of a label among neighbours."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def held_out(key: str, fraction: float = 0.2, salt: str = "medcap") -> bool:
    """Stable split by hash: the same key is always on the same side, on any machine."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True)
class Precision:
    """Precision@1 and @k of a label over held-out queries."""

    label: str
    queries: int
    at1: float
    atk: float
    k: int


def precision_at_k(
    queries: np.ndarray,
    query_labels: Sequence[str],
    corpus: np.ndarray,
    corpus_labels: Sequence[str],
    k: int = 5,
    label: str = "label",
) -> Precision:
    """Exact cosine search of unit vectors; share of the top 1 and top k with the query's label."""
    if len(queries) == 0 or len(corpus) == 0:
        return Precision(label, 0, float("nan"), float("nan"), k)
    sims = queries @ corpus.T
    k = min(k, corpus.shape[0])
    top = np.argsort(-sims, axis=1)[:, :k]
    corpus_labels = np.asarray(corpus_labels)
    hits = corpus_labels[top] == np.asarray(query_labels)[:, None]
    return Precision(label, len(queries), float(hits[:, 0].mean()), float(hits.mean()), k)
