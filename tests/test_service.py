"""The Pipeline end to end on a real Milvus Lite file with the real local embedder."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from ingest.demo import item
from ingest.runner import ingest
from ingest.sources import demo_source
from pipeline.captioners import ExtractiveCaptioner
from pipeline.errors import InputError, MedcapError
from pipeline.images import content_id
from pipeline.service import Pipeline
from pipeline.store import MilvusStore


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, embedder):
    uri = str(tmp_path_factory.mktemp("svc") / "milvus.db")
    store = MilvusStore(uri, embedder.name, embedder.dim)
    summary = ingest(demo_source(35), embedder, store, progress=False)
    assert summary.added == 35
    yield Pipeline(embedder, store, ExtractiveCaptioner())
    store.close()


def test_run_streams_neighbours_then_captions(pipeline):
    answers = list(pipeline.run(item(100_003).image, k=4))
    first, last = answers[0], answers[-1]
    assert len(first.neighbours) == 4 and not first.rag and not first.done
    assert last.done and last.rag in [n.caption for n in last.neighbours]
    assert "CAPTIONER=claude" in last.classic_note and not last.classic
    assert set(last.timings) == {"decode", "embed", "search", "generate"}
    scores = [n.score for n in last.neighbours]
    assert scores == sorted(scores, reverse=True)


def test_held_out_query_finds_its_modality(pipeline):
    query = item(100_000)
    answer = list(pipeline.run(query.image, k=3))[-1]
    assert answer.neighbours[0].meta["modality"] == query.meta["modality"]


def test_query_in_collection_is_not_its_own_neighbour(pipeline):
    own = item(5)
    answer = list(pipeline.run(own.image, k=5))[-1]
    assert content_id(own.image) not in [n.id for n in answer.neighbours]
    # The same pixels under other bytes (re-encoded) are recognised too.
    buf = io.BytesIO()
    Image.open(io.BytesIO(own.image)).save(buf, format="PNG", compress_level=1)
    assert buf.getvalue() != own.image
    answer = list(pipeline.run(buf.getvalue(), k=5))[-1]
    assert content_id(own.image) not in [n.id for n in answer.neighbours]


def test_bad_input_and_bad_k(pipeline):
    with pytest.raises(InputError, match="empty"):
        list(pipeline.run(b"", k=3))
    with pytest.raises(InputError, match="between 1 and 10"):
        list(pipeline.run(item(1).image, k=11))


class Failing(ExtractiveCaptioner):
    """A captioner whose model fails mid-stream, as Bedrock throttling would."""

    classic_unavailable = None

    def classic(self, image):
        yield "A partial"
        raise MedcapError("The classic captioner was throttled: try again in a minute.")


def test_a_failing_caption_ends_its_panel_with_a_sentence(pipeline):
    failing = Pipeline(pipeline.embedder, pipeline.store, Failing())
    last = list(failing.run(item(100_004).image, k=3))[-1]
    assert last.done and last.rag and len(last.neighbours) == 3
    assert last.classic == "A partial"
    assert last.classic_note == "The classic captioner was throttled: try again in a minute."
