"""The Captioner protocol and its implementations: extractive consensus (offline) and models."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Protocol

from PIL import Image

from pipeline.store import Neighbour

NO_NEIGHBOURS = (
    "There are no images in the collection to compare with yet: "
    "add some with `python -m ingest` and try again."
)
CLASSIC_NEEDS_MODEL = (
    "The classic caption needs a vision model, which is not configured: "
    "set CAPTIONER=claude (with AWS credentials) or CAPTIONER=openai to enable it."
)


class Captioner(Protocol):
    """Writes captions as a stream of text pieces."""

    name: str
    # None when classic captions work; otherwise the sentence the classic panel shows instead.
    classic_unavailable: str | None

    def rag(self, image: Image.Image, neighbours: Sequence[Neighbour]) -> Iterator[str]:
        """Caption the image with the neighbours' captions as reference."""
        ...

    def classic(self, image: Image.Image) -> Iterator[str]:
        """Caption the image on its own."""
        ...


_WORD = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens, the unit of agreement between captions."""
    return _WORD.findall(text.lower())


def overlap_f1(a: Counter, b: Counter) -> float:
    """Unigram F1 between two bags of words (ROUGE-1 F without stemming)."""
    common = sum((a & b).values())
    if not common:
        return 0.0
    precision, recall = common / sum(a.values()), common / sum(b.values())
    return 2 * precision * recall / (precision + recall)


def consensus(neighbours: Sequence[Neighbour]) -> Neighbour | None:
    """The neighbour whose caption agrees most with the others, weighted by similarity."""
    if not neighbours:
        return None
    bags = [Counter(tokens(n.caption)) for n in neighbours]
    weights = [max(n.score, 0.0) for n in neighbours]

    def support(i: int) -> float:
        # A caption's own similarity counts once, so with two neighbours the closer one wins.
        return weights[i] + sum(
            weights[j] * overlap_f1(bags[i], bags[j]) for j in range(len(bags)) if j != i
        )

    return neighbours[max(range(len(neighbours)), key=support)]


class ExtractiveCaptioner:
    """Offline: the consensus caption among the neighbours. It cannot see the image itself."""

    name = "extractive"
    classic_unavailable = CLASSIC_NEEDS_MODEL

    def rag(self, image: Image.Image, neighbours: Sequence[Neighbour]) -> Iterator[str]:
        best = consensus(neighbours)
        yield best.caption if best else NO_NEIGHBOURS

    def classic(self, image: Image.Image) -> Iterator[str]:
        yield CLASSIC_NEEDS_MODEL
