"""The Parquet source in the Hugging Face ROCOv2 layout, read back and ingested for real."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ingest.runner import ingest
from ingest.sources import parquet_source
from pipeline.errors import InputError
from pipeline.store import MilvusStore


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8), mode="L").save(out, "PNG")
    return out.getvalue()


def write_rocov2(path, rows: list[dict]) -> None:
    """The Hub's layout: image struct {bytes, path}, image_id, caption, cui (list of strings)."""
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array([r["image"] for r in rows], type=image_type),
            "image_id": [r["image_id"] for r in rows],
            "caption": [r["caption"] for r in rows],
            "cui": pa.array([r["cui"] for r in rows], type=pa.list_(pa.string())),
        }
    )
    pq.write_table(table, path, row_group_size=2)


@pytest.fixture
def rocov2(tmp_path):
    rows = [
        {"image": {"bytes": png(i), "path": f"ROCOv2_{i}.jpg"}, "image_id": f"ROCOv2_{i}",
         "caption": f"CT scan number {i}.", "cui": ["C0040405"]}
        for i in range(5)
    ]  # fmt: skip
    rows.append({"image": {"bytes": None, "path": "gone.jpg"}, "image_id": "ROCOv2_gone",
                 "caption": "No bytes.", "cui": []})  # fmt: skip
    rows.append({"image": {"bytes": b"not an image", "path": "bad.jpg"}, "image_id": "ROCOv2_bad",
                 "caption": "Broken.", "cui": []})  # fmt: skip
    (tmp_path / "rocov2").mkdir()
    path = tmp_path / "rocov2" / "test-00000-of-00001.parquet"
    write_rocov2(path, rows)
    return path


def test_parquet_items_carry_bytes_caption_and_meta(rocov2):
    source = parquet_source(str(rocov2), batch_rows=3)  # batches smaller than the file
    assert source.total == 7 and source.name == "test-00000-of-00001"
    items = list(source.items)
    assert len(items) == 7
    first = items[0]
    assert first.data == png(0) and first.caption == "CT scan number 0."
    assert first.meta == {"image_id": "ROCOv2_0", "cui": ["C0040405"], "filename": "ROCOv2_0.jpg"}
    assert first.source.endswith("#ROCOv2_0")
    assert items[5].data is None and items[5].problem == "no image bytes in the row"
    assert len({i.source for i in items}) == 7


def test_parquet_ingest_adds_rejects_and_resumes(rocov2, lite_uri, embedder, tmp_path):
    store = MilvusStore(lite_uri, embedder.name, embedder.dim)
    first = ingest(parquet_source(str(rocov2)), embedder, store, progress=False)
    assert (first.seen, first.added, first.rejected) == (7, 5, 2)
    again = ingest(parquet_source(str(rocov2.parent)), embedder, store, progress=False)
    assert (again.added, again.skipped, again.rejected) == (0, 5, 2)
    (row,) = [r for r in store.rows() if r["meta"]["image_id"] == "ROCOv2_3"]
    assert row["caption"] == "CT scan number 3." and row["meta"]["cui"] == ["C0040405"]
    store.close()


def test_parquet_problems_are_sentences(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        parquet_source(str(tmp_path / "none.parquet"))
    (tmp_path / "fake.parquet").write_bytes(b"hello")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        parquet_source(str(tmp_path / "fake.parquet"))
    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "cols.parquet")
    with pytest.raises(InputError, match="needs an image column"):
        parquet_source(str(tmp_path / "cols.parquet"))


def test_the_hub_without_network_is_a_sentence():
    # conftest blocks every non-loopback socket, as on a machine without network.
    with pytest.raises(InputError, match="needs network access"):
        parquet_source("hf://datasets/eltorio/ROCOv2-radiology/data/test-*.parquet")
