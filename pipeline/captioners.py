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


LCS_MAX_TOKENS = 64  # ROUGE-L on longer captions costs more than it tells
NEAR_DUPLICATE = 0.9  # captions agreeing this much (ROUGE-L F1) count as one


def lcs_f1(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F1 of two token lists (longest common subsequence), without stemming."""
    a, b = a[:LCS_MAX_TOKENS], b[:LCS_MAX_TOKENS]
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))
        prev = row
    lcs = prev[-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def consensus(neighbours: Sequence[Neighbour]) -> Neighbour | None:
    """The caption the neighbours agree on most: ROUGE-L agreement weighted by similarity.

    Near-duplicate captions are merged first (their similarities add up, the closest one
    speaks for them), then each candidate's support is its own weight plus every other
    candidate's weight times their agreement: a minimum-Bayes-risk choice under ROUGE-L.
    """
    if not neighbours:
        return None
    toks = [tokens(n.caption) for n in neighbours]
    weights = [max(n.score, 0.0) for n in neighbours]
    agree: dict[tuple[int, int], float] = {}

    def f(i: int, j: int) -> float:
        key = (min(i, j), max(i, j))
        if key not in agree:
            agree[key] = lcs_f1(toks[i], toks[j])
        return agree[key]

    heads: list[int] = []  # one representative per group of near-duplicates, closest first
    mass: dict[int, float] = {}
    for i in sorted(range(len(neighbours)), key=lambda i: -neighbours[i].score):
        head = next((h for h in heads if f(h, i) >= NEAR_DUPLICATE), None)
        if head is None:
            heads.append(i)
            mass[i] = weights[i]
        else:
            mass[head] += weights[i]

    def support(i: int) -> float:
        # A caption's own weight counts once, so with two distinct neighbours the closer wins.
        return mass[i] + sum(mass[j] * f(i, j) for j in heads if j != i)

    return neighbours[max(heads, key=support)]


class ExtractiveCaptioner:
    """Offline: the consensus caption among the neighbours. It cannot see the image itself."""

    name = "extractive"
    classic_unavailable = CLASSIC_NEEDS_MODEL

    def rag(self, image: Image.Image, neighbours: Sequence[Neighbour]) -> Iterator[str]:
        best = consensus(neighbours)
        yield best.caption if best else NO_NEIGHBOURS

    def classic(self, image: Image.Image) -> Iterator[str]:
        yield CLASSIC_NEEDS_MODEL
