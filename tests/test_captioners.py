"""The extractive captioner: consensus by similarity-weighted agreement, honest notes."""

from __future__ import annotations

from PIL import Image

from pipeline.captioners import (
    CLASSIC_NEEDS_MODEL,
    NO_NEIGHBOURS,
    ExtractiveCaptioner,
    consensus,
    overlap_f1,
    tokens,
)
from pipeline.store import Neighbour


def nb(caption: str, score: float) -> Neighbour:
    return Neighbour(id=caption, caption=caption, thumbnail=b"", source="", meta={}, score=score)


def test_tokens_and_overlap():
    from collections import Counter

    assert tokens("Chest X-ray, 3.2 cm!") == ["chest", "x", "ray", "3", "2", "cm"]
    a, b = Counter(tokens("left lower lobe consolidation")), Counter(tokens("left lobe"))
    assert overlap_f1(a, b) == 2 * (2 / 4) * (2 / 2) / ((2 / 4) + (2 / 2))
    assert overlap_f1(a, Counter(["x"])) == 0.0


def test_consensus_prefers_the_caption_others_agree_with():
    found = [
        nb("Axial head CT showing a fracture.", 0.90),
        nb("Chest radiograph with right lower lobe consolidation.", 0.85),
        nb("Chest radiograph showing right lower lobe consolidation.", 0.84),
        nb("Chest radiograph: consolidation in the right lower lobe.", 0.80),
    ]
    assert "consolidation" in consensus(found).caption


def test_consensus_with_two_takes_the_closer():
    found = [nb("a b c", 0.9), nb("d e f", 0.5)]
    assert consensus(found).caption == "a b c"
    assert consensus([]) is None


def test_extractive_panels_say_what_they_are():
    cap = ExtractiveCaptioner()
    image = Image.new("L", (32, 32))
    assert "".join(cap.rag(image, [nb("Normal chest radiograph.", 0.9)])) == (
        "Normal chest radiograph."
    )
    assert "".join(cap.rag(image, [])) == NO_NEIGHBOURS
    assert cap.classic_unavailable == CLASSIC_NEEDS_MODEL
    assert "CAPTIONER=claude" in CLASSIC_NEEDS_MODEL


def test_lcs_f1_by_hand():
    from pipeline.captioners import lcs_f1

    # LCS of "a normal chest radiograph" and "normal chest radiograph of a child" is 3.
    a, b = tokens("a normal chest radiograph"), tokens("normal chest radiograph of a child")
    assert lcs_f1(a, b) == 2 * (3 / 4) * (3 / 6) / ((3 / 4) + (3 / 6))
    assert lcs_f1(a, a) == 1.0 and lcs_f1(a, []) == 0.0 and lcs_f1(a, ["x"]) == 0.0


def test_near_duplicates_pool_their_weight():
    # Two copies of one caption outweigh a closer, different one; the closer copy is shown.
    found = [
        nb("Axial CT of the head: subdural haematoma.", 0.95),
        nb("Chest radiograph: normal heart and lungs.", 0.90),
        nb("Chest radiograph: normal heart and lungs!", 0.89),
    ]
    best = consensus(found)
    assert best is found[1]
    # Alone, the different caption would have won on similarity.
    assert consensus(found[:2]) is found[0]
