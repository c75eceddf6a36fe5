"""Feedback goes to a JSON Lines file with the fields promised and nothing else."""

from __future__ import annotations

import json
import threading

import pytest

from pipeline.errors import InputError
from pipeline.feedback import Feedback, FeedbackLog


def item(**kw) -> Feedback:
    base = dict(
        image_id="ab" * 32,
        panel="rag",
        caption="Normal chest radiograph.",
        rating="up",
        comment="  good\n match ",
        backends={"embedder": "local", "captioner": "extractive"},
    )
    return Feedback(**{**base, **kw})


def test_record_appends_one_line_each(tmp_path):
    log = FeedbackLog(tmp_path / "fb" / "feedback.jsonl")
    log.record(item())
    log.record(item(rating="down", panel="classic", comment=""))
    lines = (tmp_path / "fb" / "feedback.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert set(first) == {"image_id", "panel", "caption", "rating", "comment", "backends", "time"}
    assert first["comment"] == "good match" and first["time"] > 0
    assert [f.rating for f in log.read()] == ["up", "down"]


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"rating": "meh"}, "thumbs"),
        ({"panel": "x"}, "RAG or the classic"),
        ({"caption": " "}, "no caption"),
    ],
)
def test_bad_feedback_gets_a_sentence(tmp_path, kw, words):
    with pytest.raises(InputError, match=words):
        FeedbackLog(tmp_path / "f.jsonl").record(item(**kw))


def test_concurrent_writers_never_interleave(tmp_path):
    log = FeedbackLog(tmp_path / "f.jsonl")
    threads = [
        threading.Thread(target=lambda: [log.record(item()) for _ in range(50)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log.read()) == 400
