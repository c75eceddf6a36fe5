"""MilvusStore on a real Milvus Lite file: schema, upsert, search, the embedder guard."""

from __future__ import annotations

import itertools

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
def store(lite_uri):
    s = MilvusStore(lite_uri, embedder_name="test-embedder", dim=16)
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


def test_reopen_keeps_rows_and_checks_embedder(lite_uri):
    rng = np.random.default_rng(3)
    s = MilvusStore(lite_uri, embedder_name="a", dim=16, collection="shared")
    s.upsert([record(i, unit(rng, 16)) for i in range(3)])
    s.flush()
    s.close()
    again = MilvusStore(lite_uri, embedder_name="a", dim=16, collection="shared")
    assert again.count() == 3
    assert len(again.search(unit(rng, 16), k=2)) == 2
    again.close()
    with pytest.raises(BackendError, match="holds vectors from embedder a"):
        MilvusStore(lite_uri, embedder_name="b", dim=16, collection="shared")


def test_has_dataset(store):
    rng = np.random.default_rng(4)
    store.upsert([record(0, unit(rng, 16))])
    assert store.has_dataset("test")
    assert not store.has_dataset("other")


def test_unreachable_server_is_a_backend_error():
    with pytest.raises(BackendError, match="did not answer"):
        MilvusStore("http://127.0.0.1:9", embedder_name="x", dim=8, timeout=2)
