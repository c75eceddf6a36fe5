"""TitanEmbedder against botocore's Stubber and real HTTP responses: request body, parsing for
every dimension, throttling with real retries, access denied, and ingest's rejects."""

from __future__ import annotations

import base64
import csv
import io
import json

import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from PIL import Image

from ingest.runner import ingest
from ingest.sources import Item, Source
from pipeline.embedders import PartialEmbedding, TitanEmbedder
from pipeline.errors import BackendError
from pipeline.store import MilvusStore
from tests.bedrock_stubs import BedrockHttp, aws_error, bedrock_client, stubbed_clients
from tests.test_ingest import noise_png

MODEL = "amazon.titan-embed-image-v1"


def body(payload: dict) -> StreamingBody:
    raw = json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def capture_bodies(client) -> list[dict]:
    """The InvokeModel bodies as the client built them (the Stubber still validates them)."""
    seen: list[dict] = []

    def hook(params, **kwargs):
        seen.append(json.loads(params["body"]))

    client.meta.events.register("before-parameter-build.bedrock-runtime.InvokeModel", hook)
    return seen


@pytest.mark.parametrize("dim", [256, 384, 1024])
def test_request_body_and_response_for_each_dimension(dim):
    client = bedrock_client()
    bodies = capture_bodies(client)
    # A large greyscale image: it must be shrunk to fit Titan and sent as RGB.
    image = Image.fromarray(
        np.random.default_rng(dim).integers(0, 255, (2600, 1300), dtype=np.uint8), mode="L"
    )
    raw = np.arange(1, dim + 1, dtype=np.float32)
    with Stubber(client) as stub:
        stub.add_response(
            "invoke_model",
            {"body": body({"embedding": raw.tolist()}), "contentType": "application/json"},
            {
                "modelId": MODEL,
                "body": ANY,
                "contentType": "application/json",
                "accept": "application/json",
            },
        )
        embedder = TitanEmbedder(stubbed_clients(client), MODEL, dim, workers=4)
        vectors = embedder.embed([image])
        stub.assert_no_pending_responses()
    assert embedder.name == f"titan-embed-image-v1-{dim}"
    assert vectors.shape == (1, dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0], raw / np.linalg.norm(raw), rtol=1e-6)
    (sent,) = bodies
    assert sent["embeddingConfig"] == {"outputEmbeddingLength": dim}
    data = base64.b64decode(sent["inputImage"])
    assert len(data) <= 5 * 1024 * 1024
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format in ("PNG", "JPEG") and max(decoded.size) <= 2048
    assert decoded.mode == "RGB" and decoded.size[1] == 2048


def test_wrong_length_is_a_per_image_failure():
    client = bedrock_client()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke_model",
            {"body": body({"embedding": [1.0] * 10}), "contentType": "application/json"},
        )
        with pytest.raises(PartialEmbedding) as err:
            TitanEmbedder(stubbed_clients(client), MODEL, 256).embed([Image.new("RGB", (64, 64))])
    assert err.value.failures == {0: "Titan returned 10 numbers, not 256"}
    assert "could not be embedded" in err.value.sentence


def test_access_denied_stops_with_a_sentence_naming_the_settings():
    client = bedrock_client()
    with Stubber(client) as stub:
        stub.add_client_error(
            "invoke_model", "AccessDeniedException", "not authorized", http_status_code=403
        )
        with pytest.raises(BackendError) as err:
            TitanEmbedder(stubbed_clients(client), MODEL, 1024).embed([Image.new("L", (64, 64))])
    assert not isinstance(err.value, PartialEmbedding)
    sentence = err.value.sentence
    assert "AccessDeniedException" in sentence and "bedrock:InvokeModel" in sentence
    assert "TITAN_MODEL_ID" in sentence and "us-east-1" in sentence


def test_throttled_to_the_end_is_a_per_image_failure_with_the_code():
    client = bedrock_client()
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", "ThrottlingException", "slow down", 429)
        with pytest.raises(PartialEmbedding) as err:
            TitanEmbedder(stubbed_clients(client), MODEL, 1024).embed([Image.new("L", (64, 64))])
    assert "ThrottlingException" in err.value.failures[0]


def test_botocore_retries_throttling_with_backoff():
    client = bedrock_client(max_attempts=3)
    answers = {
        1: aws_error(429, "ThrottlingException"),
        2: aws_error(503, "ServiceUnavailableException"),
    }
    stub = BedrockHttp(client, dim=384, plan=answers.get)
    vectors = TitanEmbedder(stubbed_clients(client), MODEL, 384).embed([Image.new("L", (64, 64))])
    assert len(stub.calls) == 3  # two failures retried, the third answered
    assert vectors.shape == (1, 384) and abs(np.linalg.norm(vectors[0]) - 1) < 1e-5


def images_source(count: int) -> Source:
    items = [
        Item(f"mem:{i}.png", noise_png(1000 + i, size=48), f"Caption {i}.") for i in range(count)
    ]
    return Source("mem", iter(items), count)


def test_ingest_with_titan_throttling_every_third_call_adds_every_image(lite_uri, tmp_path):
    client = bedrock_client(max_attempts=6, workers=8)
    stub = BedrockHttp(
        client,
        dim=256,
        plan=lambda n: aws_error(429, "ThrottlingException") if n % 3 == 0 else None,
    )
    embedder = TitanEmbedder(stubbed_clients(client), MODEL, 256, workers=8)
    store = MilvusStore(lite_uri, embedder.name, embedder.dim)
    summary = ingest(
        images_source(20),
        embedder,
        store,
        batch_size=10,
        progress=False,
        rejects_path=tmp_path / "rejects.csv",
    )
    assert (summary.seen, summary.added, summary.rejected) == (20, 20, 0)
    assert store.count() == 20
    throttled = sum(1 for n in range(1, len(stub.calls) + 1) if n % 3 == 0)
    assert throttled >= 6 and len(stub.calls) == 20 + throttled  # each throttle was retried
    store.close()


def test_ingest_rejects_images_that_fail_after_retries_with_the_code(lite_uri, tmp_path):
    client = bedrock_client(max_attempts=2, workers=4)
    failing = set()

    def plan(n):
        return aws_error(429, "ThrottlingException") if n in failing else None

    stub = BedrockHttp(client, dim=256, plan=plan)
    embedder = TitanEmbedder(stubbed_clients(client), MODEL, 256, workers=4)
    store = MilvusStore(lite_uri, embedder.name, embedder.dim)
    failing.update({1, 2})  # workers=1 path below makes the call order deterministic
    embedder.workers = 1
    summary = ingest(
        images_source(5),
        embedder,
        store,
        batch_size=5,
        progress=False,
        rejects_path=tmp_path / "rejects.csv",
    )
    assert len(stub.calls) == 6  # the first image: two attempts, both throttled
    assert (summary.seen, summary.added, summary.rejected) == (5, 4, 1)
    rows = list(csv.reader((tmp_path / "rejects.csv").open()))
    assert rows[1][0] == "mem:0.png" and "ThrottlingException" in rows[1][1]
    # A rerun picks the rejected image up again: nothing is lost.
    again = ingest(images_source(5), embedder, store, batch_size=5, progress=False)
    assert (again.added, again.skipped, again.rejected) == (1, 4, 0)
    assert store.count() == 5
    store.close()
