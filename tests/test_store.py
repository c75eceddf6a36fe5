"""MilvusStore on Milvus Lite and on a real Milvus server: schema, upsert, search, the guard."""

from __future__ import annotations

import itertools
import socket
import time

import numpy as np
import pytest

from pipeline.errors import BackendError
from pipeline.store import MilvusStore, Record, default_collection


def unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def record(i: int, vec: np.ndarray) -> Record:
    return Record(
        id=f"{i:064x}",
        embedding=vec,
        caption=f"caption {i}",
        thumbnail="",
        source=f"file{i}.png",
        meta={"dataset": "test", "modality": "ct" if i % 2 else "mri"},
    )


@pytest.fixture
def store(milvus_target):
    s = MilvusStore(milvus_target.uri, "test-embedder", 16, collection=milvus_target.collection)
    yield s
    s.close()


def test_collection_name_encodes_embedder_and_dim():
    assert default_collection("local-effnet-lite0", 1280) == "medcap_local_effnet_lite0_1280"


def test_upsert_search_count(store):
    rng = np.random.default_rng(0)
    vecs = [unit(rng, 16) for _ in range(20)]
    assert store.upsert([record(i, v) for i, v in enumerate(vecs)]) == 20
    store.flush()
    assert store.count() == 20
    hits = store.search(vecs[3] * 0.9 + unit(rng, 16) * 0.1, k=5)
    assert len(hits) == 5
    assert hits[0].id == f"{3:064x}"
    assert hits[0].caption == "caption 3" and hits[0].meta["modality"] == "ct"
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_upsert_is_idempotent(store):
    rng = np.random.default_rng(1)
    rows = [record(i, unit(rng, 16)) for i in range(5)]
    store.upsert(rows)
    store.upsert(rows)
    store.flush()
    assert store.count() == 5
    assert store.existing_ids([r.id for r in rows[:3]] + ["f" * 64]) == {r.id for r in rows[:3]}


def test_search_never_returns_the_query_itself(store):
    rng = np.random.default_rng(2)
    vecs = [unit(rng, 16) for _ in range(10)]
    store.upsert([record(i, v) for i, v in enumerate(vecs)])
    # By id: the query's own bytes are in the collection.
    hits = store.search(vecs[4], k=3, exclude_id=f"{4:064x}")
    assert f"{4:064x}" not in [h.id for h in hits] and len(hits) == 3
    # By embedding: the same image under other bytes (re-encoded) scores ~1.0.
    hits = store.search(vecs[4], k=3)
    assert f"{4:064x}" not in [h.id for h in hits]


def test_reopen_keeps_rows_and_checks_embedder(milvus_target):
    rng = np.random.default_rng(3)
    uri, name = milvus_target.uri, milvus_target.collection
    s = MilvusStore(uri, embedder_name="a", dim=16, collection=name)
    s.upsert([record(i, unit(rng, 16)) for i in range(3)])
    s.flush()
    s.close()
    again = MilvusStore(uri, embedder_name="a", dim=16, collection=name)
    assert again.count() == 3
    assert len(again.search(unit(rng, 16), k=2)) == 2
    again.close()
    with pytest.raises(BackendError, match="holds vectors from embedder a"):
        MilvusStore(uri, embedder_name="b", dim=16, collection=name)


def test_index_and_consistency_follow_the_settings(milvus_target):
    s = MilvusStore(
        milvus_target.uri,
        "test-embedder",
        16,
        collection=milvus_target.collection,
        hnsw_m=8,
        ef_construction=40,
        search_ef=4,
    )
    info = s._client.describe_collection(s.collection)
    assert info["consistency_level_name"] == "Strong"
    assert info["properties"]["medcap.embedder"] == "test-embedder"
    index = s._client.describe_index(s.collection, "embedding")
    assert index["index_type"] == "HNSW" and index["metric_type"] == "COSINE"
    if milvus_target.kind == "server":  # Lite's describe_index does not echo the parameters
        assert int(index["M"]) == 8 and int(index["efConstruction"]) == 40
    rng = np.random.default_rng(6)
    s.upsert([record(i, unit(rng, 16)) for i in range(30)])
    # ef (4) is below k + the room kept for the query itself: the store raises it to fit.
    assert len(s.search(unit(rng, 16), k=10)) == 10
    s.close()


def test_a_row_is_searchable_as_soon_as_it_is_written(milvus_target):
    """No flush, a second client: Strong consistency makes a just-ingested image findable."""
    rng = np.random.default_rng(7)
    writer = MilvusStore(milvus_target.uri, "e", 16, collection=milvus_target.collection)
    reader = MilvusStore(milvus_target.uri, "e", 16, collection=milvus_target.collection)
    writer.upsert([record(i, unit(rng, 16)) for i in range(10)])
    target = unit(rng, 16)
    writer.upsert([record(99, target)])
    hits = reader.search(target * 0.95 + unit(rng, 16) * 0.05, k=1)
    assert [h.id for h in hits] == [f"{99:064x}"]
    assert reader.existing_ids([f"{99:064x}"]) == {f"{99:064x}"}
    writer.close()
    reader.close()


def test_has_dataset(store):
    rng = np.random.default_rng(4)
    store.upsert([record(0, unit(rng, 16))])
    assert store.has_dataset("test")
    assert not store.has_dataset("other")


def test_unreachable_server_is_a_backend_error_within_the_timeout():
    start = time.monotonic()
    with pytest.raises(BackendError, match="did not answer") as err:
        MilvusStore("http://user:secret@127.0.0.1:9", embedder_name="x", dim=8, timeout=2)
    assert time.monotonic() - start < 30  # bounded by the timeout, not by pymilvus' retries
    assert "MILVUS_URI" in err.value.sentence and "secret" not in err.value.sentence


def test_a_server_that_accepts_but_never_answers_times_out():
    """A black hole (listening, never speaking gRPC) must not hang the caller."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen()
        uri = f"http://127.0.0.1:{hole.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(BackendError, match="did not answer within 2 s"):
            MilvusStore(uri, embedder_name="x", dim=8, timeout=2)
        assert time.monotonic() - start < 30
