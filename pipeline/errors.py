"""The two kinds of error the product shows: the user's to fix and the operator's to fix."""

from __future__ import annotations


class MedcapError(Exception):
    """Base class: carries one sentence fit to show on the page."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


class InputError(MedcapError):
    """Something the user sent is wrong (bad file, unsupported format, too large)."""


class BackendError(MedcapError):
    """A backend (store, embedder, captioner) failed; the operator must fix a setting."""


def brief(exc: BaseException, limit: int = 100) -> str:
    """The first line of an exception's text, short enough to quote inside a sentence."""
    # pymilvus' MilvusException keeps the readable part in .message; str() is its repr.
    lines = str(getattr(exc, "message", "") or exc).strip().splitlines()
    text = lines[0].strip().rstrip(".:") if lines else ""
    return (text or type(exc).__name__)[:limit]
