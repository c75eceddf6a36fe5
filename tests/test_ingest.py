"""Ingest into a real Milvus Lite file: idempotent reruns, rejects, summaries that add up."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ingest.__main__ import main as ingest_main
from ingest.demo import item as demo_item
from ingest.runner import ingest
from ingest.sources import folder_source, read_captions
from pipeline.captioners import ExtractiveCaptioner
from pipeline.errors import InputError
from pipeline.images import content_id
from pipeline.service import Pipeline
from pipeline.store import MilvusStore


def noise_png(seed: int, size: int = 64) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8), mode="L")
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    rows = []
    for i in range(6):
        (d / f"img{i}.png").write_bytes(noise_png(i))
        rows.append({"filename": f"img{i}.png", "caption": f"Image number {i}.", "site": "A"})
    (d / "copy.png").write_bytes(noise_png(0))  # the same bytes as img0: one row, not two
    rows.append({"filename": "copy.png", "caption": "A copy.", "site": "A"})
    (d / "broken.png").write_bytes(b"not really a png")
    rows.append({"filename": "broken.png", "caption": "Broken.", "site": "B"})
    rows.append({"filename": "missing.png", "caption": "Missing.", "site": "B"})
    (d / "nocap.png").write_bytes(noise_png(99))
    rows.append({"filename": "nocap.png", "caption": "", "site": "B"})
    with (d / "captions.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["filename", "caption", "site"])
        writer.writeheader()
        writer.writerows(rows)
    return d


def test_folder_ingest_twice_adds_nothing_the_second_time(
    folder, milvus_target, embedder, tmp_path
):
    store = MilvusStore(
        milvus_target.uri, embedder.name, embedder.dim, collection=milvus_target.collection
    )
    first = ingest(folder_source(folder), embedder, store, batch_size=4, progress=False,
                   rejects_path=tmp_path / "rejects.csv")  # fmt: skip
    assert (first.seen, first.added, first.skipped, first.rejected) == (10, 6, 1, 3)
    assert first.seen == first.added + first.skipped + first.rejected
    reasons = dict(csv.reader((tmp_path / "rejects.csv").open()))
    assert set(reasons) == {"file", str(folder / "broken.png"), str(folder / "missing.png"),
                            str(folder / "nocap.png")}  # fmt: skip
    assert "not an image" in reasons[str(folder / "broken.png")]
    assert reasons[str(folder / "missing.png")] == "file not found"
    assert reasons[str(folder / "nocap.png")] == "no caption"
    second = ingest(folder_source(folder), embedder, store, batch_size=4, progress=False)
    assert (second.added, second.skipped, second.rejected) == (0, 7, 3)
    assert store.count() == 6
    hit = store.search(embedder.embed([Image.open(folder / "img2.png")])[0], k=6)
    metas = [h.meta for h in hit]
    assert all(m["site"] == "A" and m["format"] == "PNG" for m in metas)
    store.close()


def test_sidecar_captions(tmp_path, lite_uri, embedder):
    d = tmp_path / "side"
    d.mkdir()
    (d / "a.png").write_bytes(noise_png(1))
    (d / "a.txt").write_text("Sidecar caption.\n")
    (d / "b.png").write_bytes(noise_png(2))
    store = MilvusStore(lite_uri, embedder.name, embedder.dim)
    summary = ingest(folder_source(d), embedder, store, progress=False)
    assert (summary.added, summary.rejected) == (1, 1)
    assert summary.rejects == [(str(d / "b.png"), "no caption")]
    store.close()


def test_jsonl_captions_and_limit(tmp_path, lite_uri, embedder):
    d = tmp_path / "j"
    d.mkdir()
    lines = []
    for i in range(5):
        (d / f"{i}.png").write_bytes(noise_png(10 + i))
        lines.append(json.dumps({"path": f"{i}.png", "text": f"Caption {i}", "modality": "CT"}))
    (d / "meta.jsonl").write_text("\n".join(lines))
    store = MilvusStore(lite_uri, embedder.name, embedder.dim)
    summary = ingest(folder_source(d, d / "meta.jsonl"), embedder, store, limit=3, progress=False)
    assert summary.seen == 3 and summary.added == 3
    store.close()


def test_captions_file_needs_the_right_columns(tmp_path):
    bad = tmp_path / "c.csv"
    bad.write_text("name,words\na.png,hello\n")
    with pytest.raises(InputError, match="needs a file column"):
        read_captions(bad)


def test_cli_demo_and_folder(tmp_path, monkeypatch, capsys, model_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDCAP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMBEDDER", "local")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "models").symlink_to(model_dir)  # reuse the session's built graph
    assert ingest_main(["demo", "--count", "14", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "seen 14 = added 14 + skipped 0 + rejected 0" in out
    assert ingest_main(["demo", "--count", "14", "--quiet"]) == 0
    assert "added 0 + skipped 14" in capsys.readouterr().out
    assert ingest_main(["folder", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_ingest_command_then_search_from_another_process(
    milvus_target, embedder, tmp_path, model_dir
):
    """The path a user takes: `python -m ingest` in its own process, then the page searches at
    once (no wait, no restart) and finds what was just written."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(model_dir)
    env = dict(
        os.environ,
        MEDCAP_DATA_DIR=str(data),
        EMBEDDER="local",
        MILVUS_URI=milvus_target.uri,
        MILVUS_COLLECTION=milvus_target.collection,
    )
    done = subprocess.run(
        [sys.executable, "-m", "ingest", "demo", "--count", "12", "--quiet"],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "seen 12 = added 12 + skipped 0 + rejected 0" in done.stdout
    store = MilvusStore(
        milvus_target.uri, embedder.name, embedder.dim, collection=milvus_target.collection
    )
    pipeline = Pipeline(embedder, store, ExtractiveCaptioner())
    assert pipeline.status().count == 12
    query = demo_item(4)  # in the collection: found through its neighbours, never itself
    answer = list(pipeline.run(query.image, k=5))[-1]
    ingested = {content_id(demo_item(i).image) for i in range(12)}
    assert len(answer.neighbours) == 5
    assert {n.id for n in answer.neighbours} <= ingested - {content_id(query.image)}
    assert answer.rag in [n.caption for n in answer.neighbours]
    store.close()
