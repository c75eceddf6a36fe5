"""The page with EMBEDDER=titan CAPTIONER=claude and a stubbed Bedrock client, served on loopback
and driven by gradio_client: neighbours, and RAG and classic captions streaming side by side."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from ingest.demo import item
from ingest.runner import ingest
from ingest.sources import demo_source
from pipeline.config import Settings
from pipeline.runtime import Runtime
from tests.bedrock_stubs import BedrockHttp, bedrock_client, converse_frames, stubbed_clients
from tests.serving import served as serve_page

RAG = ["Axial ", "CT ", "of the ", "head, ", "as in ", "the references."]
CLASSIC = ["Axial ", "CT ", "of the ", "head."]


class Behaviour:
    """What the stubbed Claude does next; a test may make the classic stream fail midway."""

    fail_classic = False

    def __call__(self, body: dict) -> list:
        prompt = body["messages"][0]["content"][1]["text"]
        if "<reference" in prompt:
            return RAG
        if self.fail_classic:
            return converse_frames(CLASSIC[:2], error=("throttlingException", "Rate exceeded"))
        return CLASSIC


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("bedrock-app")
    settings = Settings.from_mapping(
        {
            "MEDCAP_DATA_DIR": str(data),
            "EMBEDDER": "titan",
            "CAPTIONER": "claude",
            "TITAN_DIM": "256",
            "AWS_REGION": "us-east-1",
        }
    )
    client = bedrock_client()
    behaviour = Behaviour()
    stub = BedrockHttp(client, dim=256, captions=behaviour, delay=0.15)
    runtime = Runtime(settings, stubbed_clients(client))
    summary = ingest(
        demo_source(24), runtime.embedder, runtime.pipeline().store, batch_size=12, progress=False
    )
    assert summary.added == 24
    runtime.start()
    with serve_page(runtime) as url:
        gradio = Client(url, verbose=False)
        yield gradio, stub, behaviour, tmp_path_factory.mktemp("queries")
        gradio.close()
    runtime.pipeline().store.close()


def run(gradio: Client, folder: Path, k: int = 4) -> list[tuple]:
    query = item(100_002)
    path = folder / query.name
    path.write_bytes(query.image)
    job = gradio.submit(handle_file(str(path)), k, api_name="/caption")
    deadline = time.time() + 120
    while not job.done() and time.time() < deadline:
        time.sleep(0.05)
    job.result()
    return job.outputs()


def test_neighbours_and_both_captions_stream(served):
    gradio, stub, behaviour, folder = served
    behaviour.fail_classic = False
    before = len(stub.calls)
    outputs = run(gradio, folder)
    gallery, listing, rag, classic, status = outputs[-1]
    assert len(gallery) == 4 and listing.count("%") == 4
    assert rag == "".join(RAG) and classic == "".join(CLASSIC)
    assert "claude (global.anthropic.claude-sonnet-4-5" in status
    assert "titan-embed-image-v1-256" in status and "(24 images)" in status
    # Intermediate updates carried partial text in both panels: they streamed.
    partial_rag = {o[2] for o in outputs if o[2] and o[2] != rag}
    partial_classic = {o[3] for o in outputs if o[3] and o[3] != classic}
    assert partial_rag and partial_classic
    assert all(rag.startswith(p) for p in partial_rag)
    assert all(classic.startswith(p) for p in partial_classic)
    # The neighbours arrived before any caption text.
    assert any(len(o[0]) == 4 and not o[2] and not o[3] for o in outputs)
    # One Titan call for the query, two ConverseStream calls (RAG with references, classic).
    calls = [op for op, _ in stub.calls[before:]]
    assert calls.count("invoke") == 1 and calls.count("converse-stream") == 2


def test_a_failing_stream_ends_its_panel_and_the_rest_still_works(served):
    gradio, _, behaviour, folder = served
    behaviour.fail_classic = True
    try:
        gallery, _, rag, classic, _ = run(gradio, folder)[-1]
    finally:
        behaviour.fail_classic = False
    assert len(gallery) == 4 and rag == "".join(RAG)
    assert classic.startswith("".join(CLASSIC[:2]))
    assert "stopped part-way (throttlingException)" in classic
    # ... and the next request is whole again.
    assert run(gradio, folder)[-1][3] == "".join(CLASSIC)
