"""Shared fixtures; and a guard that fails any test trying to reach beyond loopback."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
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
