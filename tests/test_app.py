"""The page served on loopback and driven through gradio_client, as an API user would."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from tests.serving import demo_runtime
from tests.serving import served as serve


@pytest.fixture(scope="module")
def served(tmp_path_factory, model_dir):
    runtime = demo_runtime(tmp_path_factory.mktemp("appdata"), model_dir)
    with serve(runtime) as url:
        client = Client(url, verbose=False)
        yield client, runtime.settings, runtime
        client.close()


def call(client: Client, path: Path | str, k: int = 5):
    return client.predict(handle_file(str(path)), k, api_name="/caption")


def test_demo_image_gets_neighbours_and_both_panels(served, tmp_path):
    from ingest.demo import item

    client, _settings, _ = served
    query = item(100_000)  # held out: not in the collection
    path = tmp_path / query.name
    path.write_bytes(query.image)
    gallery, listing, rag, classic, status = call(client, path, k=5)
    assert len(gallery) == 5
    for entry in gallery:
        assert Path(entry["image"]).stat().st_size > 300  # a real thumbnail file
        assert "%" in entry["caption"]
    assert rag and rag == rag.strip()
    assert "CAPTIONER=claude" in classic  # the offline captioner says what enables classic
    assert "(42 images)" in status and "extractive" in status and "search" in status
    assert "synthetic" in status
    assert listing.count("%") == 5


def test_top_k_is_honoured(served, tmp_path):
    from ingest.demo import item

    client, _, _ = served
    path = tmp_path / "q.png"
    path.write_bytes(item(100_001).image)
    assert len(call(client, path, k=1)[0]) == 1
    assert len(call(client, path, k=9)[0]) == 9


def test_an_image_in_the_collection_is_not_its_own_neighbour(served, tmp_path):
    from ingest.demo import item

    client, _, _ = served
    own = item(3)  # ingested at start-up
    path = tmp_path / own.name
    path.write_bytes(own.image)
    gallery, *_ = call(client, path, k=5)
    # Itself would score 100%; other images may share its caption, so compare scores.
    assert len(gallery) == 5
    assert not any(g["caption"].startswith("100%") for g in gallery)


def jpeg(size=(256, 256)) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(
        out, format="JPEG"
    )
    return out.getvalue()


BAD = {
    "empty.png": (b"", "empty"),
    "text.png": (b"just some text, not pixels", "not an image"),
    "truncated.jpg": (jpeg()[:2000], "damaged or incomplete"),
    "dot.png": (None, "too small"),
    "huge.png": ("huge", "megapixels"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_gets_one_sentence_and_server_keeps_serving(served, tmp_path, name):
    client, _, _ = served
    data, words = BAD[name]
    if data is None:
        buf = io.BytesIO()
        Image.new("L", (1, 1)).save(buf, format="PNG")
        data = buf.getvalue()
    elif data == "huge":
        import struct

        from tests.test_images import png_chunk

        header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
        data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"\0" * 64)
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(Exception) as err:
        call(client, path)
    message = str(err.value)
    assert words in message
    assert "Traceback" not in message
    # ... and the next good request is answered.
    from ingest.demo import item

    good = tmp_path / "good.png"
    good.write_bytes(item(100_002).image)
    assert len(call(client, good, k=3)[0]) == 3


def test_the_whole_bad_input_corpus_through_the_page_writes_nothing(served, tmp_path):
    """Every kind gets its sentence or a caption over HTTP; no file appears outside the cache."""
    from tests.badfiles import CASES

    client, settings, _ = served
    root = Path(__file__).resolve().parents[1]

    def files() -> set[str]:
        data = {str(p) for p in settings.data_dir.rglob("*") if "milvus.db" not in str(p)}
        return data | {p.name for p in root.iterdir()}

    before = files()
    for case in CASES:
        path = tmp_path / case.name
        path.write_bytes(case.make())
        if case.words is None:
            assert len(call(client, path, k=3)[0]) == 3, case.name
        else:
            with pytest.raises(Exception) as err:
                call(client, path, k=3)
            assert case.words in str(err.value), (case.name, str(err.value))
            assert "Traceback" not in str(err.value)
    assert files() - before == set()


def test_a_fifty_megabyte_upload_is_refused_and_the_page_keeps_serving(served, tmp_path):
    import httpx

    from ingest.demo import item

    client, settings, _ = served
    assert settings.max_upload_mb == 20  # the default
    big = io.BytesIO(b"\0" * (50 * 1024 * 1024))
    r = httpx.post(
        f"{client.src.rstrip('/')}/gradio_api/upload",
        files={"files": ("scan.png", big, "image/png")},
        timeout=60,
    )
    assert r.status_code == 413 and "20" in r.text
    good = tmp_path / "good.png"
    good.write_bytes(item(100_006).image)
    assert len(call(client, good, k=2)[0]) == 2
