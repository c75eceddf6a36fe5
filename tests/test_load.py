"""Twenty concurrent clients on loopback for a bounded time: no server errors, all answered."""

from __future__ import annotations

import pytest

from benchmarks.load import corpus, drive
from tests.serving import demo_runtime, served


@pytest.fixture(scope="module")
def url(tmp_path_factory, model_dir):
    runtime = demo_runtime(tmp_path_factory.mktemp("loaddata"), model_dir)
    with served(runtime) as page_url:
        yield page_url


def test_twenty_clients_mixed_good_and_bad(url, tmp_path):
    files = corpus(tmp_path / "files")
    results = drive(url, files, clients=20, seconds=20)
    assert results.errors == []
    assert len(results.good_ms) >= 20 and len(results.bad_ms) >= 20
