"""Shared fixtures; and a guard that fails any test trying to reach beyond loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# botocore would probe the EC2 metadata endpoint for credentials; tests never want that.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# The developer's own AWS setup must not turn `auto` into Bedrock: tests that want AWS set it.
for _name in [n for n in os.environ if n.startswith("AWS_") and n != "AWS_EC2_METADATA_DISABLED"]:
    del os.environ[_name]
os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise OSError(f"test tried to reach {host}: tests may only use loopback")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only  # type: ignore[method-assign]


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
