"""Shared fixtures; and a guard that fails any test trying to reach beyond loopback."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.loopback import install_loopback_guard

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# botocore would probe the EC2 metadata endpoint for credentials; tests never want that.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# Gradio's file cache is shared by every process on the machine unless told otherwise.
_gradio_tmp = tempfile.mkdtemp(prefix="medcap-test-gradio-")
os.environ["GRADIO_TEMP_DIR"] = _gradio_tmp
atexit.register(shutil.rmtree, _gradio_tmp, ignore_errors=True)

# The developer's own AWS setup must not turn `auto` into Bedrock: tests that want AWS set it.
for _name in [n for n in os.environ if n.startswith("AWS_") and n != "AWS_EC2_METADATA_DISABLED"]:
    del os.environ[_name]
os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

install_loopback_guard()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX model cache for the whole session: the graph is built once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def embedder(model_dir: Path):
    from pipeline.embedders import LocalEmbedder

    return LocalEmbedder(model_dir)


@pytest.fixture
def lite_uri(tmp_path: Path) -> str:
    return str(tmp_path / "milvus.db")


@dataclass(frozen=True)
class MilvusTarget:
    """Where a test's collection lives: a Milvus Lite file or the session's real server."""

    kind: str  # "lite" or "server"
    uri: str
    collection: str


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory):
    """A real Milvus standalone server for the whole session, always stopped at the end."""
    from tests.milvus_server import running_server

    with running_server(tmp_path_factory.mktemp("milvus-server"), "the server tests") as server:
        yield server


@pytest.fixture(params=["lite", "server"])
def milvus_target(request: pytest.FixtureRequest, tmp_path: Path):
    """One fresh collection, on Milvus Lite and then on the real server; dropped afterwards."""
    collection = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "lite":
        yield MilvusTarget("lite", str(tmp_path / "milvus.db"), collection)
        return
    server = request.getfixturevalue("milvus_server")
    yield MilvusTarget("server", server.uri, collection)
    from pipeline.store import import_pymilvus

    MilvusClient = import_pymilvus().MilvusClient

    client = MilvusClient(uri=server.uri, timeout=30)
    try:  # keep the shared server small: every loaded collection costs it memory
        if server.process is not None and client.has_collection(collection):
            client.drop_collection(collection)
    finally:
        client.close()
