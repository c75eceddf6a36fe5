"""Store faults, end to end: a store unreachable at start, and a real server killed mid-session
(SIGKILL) and started again, with the page served on loopback and driven by gradio_client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

import app
from ingest.demo import item
from pipeline.config import Settings
from pipeline.runtime import Runtime
from pipeline.store import import_pymilvus
from tests.milvus_server import MilvusServer, free_ports, running_server

ROOT = Path(__file__).resolve().parents[1]


def refresh_status(page) -> str:
    """Run the page's own on-load status handler, as a browser opening the page would."""
    (fn,) = [f.fn for f in page.fns.values() if getattr(f.fn, "__name__", "") == "refresh_status"]
    return fn()


def serve(runtime: Runtime):
    page = app.build(runtime)
    (port,) = free_ports(1)
    page.queue().launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True
    )
    return page, Client(f"http://127.0.0.1:{port}/", verbose=False)


def caption(client: Client, path: Path, k: int = 3):
    return client.predict(handle_file(str(path)), k, api_name="/caption")


@pytest.fixture
def query(tmp_path) -> Path:
    path = tmp_path / "query.png"
    path.write_bytes(item(100_004).image)  # held out of every demo collection
    return path


def test_app_starts_and_says_which_store_is_unreachable(tmp_path, model_dir, query):
    """`python app.py` with a server that is not there: the page is served all the same, and
    both the status line and a request name the store and what to check."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(model_dir)
    dead, port = free_ports(2)
    env = dict(
        os.environ,
        MEDCAP_DATA_DIR=str(data),
        EMBEDDER="local",
        MILVUS_URI=f"http://127.0.0.1:{dead}",
        MILVUS_TIMEOUT="3",
        GRADIO_SERVER_PORT=str(port),
    )
    log = (tmp_path / "app.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the page was never served"
                time.sleep(0.5)
        client = Client(url, verbose=False)
        with pytest.raises(Exception) as err:
            caption(client, query)
        message = str(err.value)
        assert f"The Milvus server at http://127.0.0.1:{dead}" in message
        assert "MILVUS_URI" in message and "Traceback" not in message
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert f"The Milvus server at http://127.0.0.1:{dead}" in (tmp_path / "app.log").read_text()


def test_status_line_names_the_unreachable_store(tmp_path, model_dir):
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(model_dir)
    (dead,) = free_ports(1)
    settings = Settings.from_mapping(
        {
            "MEDCAP_DATA_DIR": str(data),
            "EMBEDDER": "local",
            "MILVUS_URI": f"http://127.0.0.1:{dead}",
            "MILVUS_TIMEOUT": "3",
        }
    )
    runtime = Runtime(settings)
    runtime.start()  # logs the problem and returns: start-up never waits on the store
    page = app.build(runtime)
    status = refresh_status(page)
    assert status.startswith(f"The Milvus server at http://127.0.0.1:{dead} did not answer")
    assert "check that it is running and check MILVUS_URI and MILVUS_TOKEN" in status


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """A server of this module's own: killing the session's shared one would upset others."""
    with running_server(tmp_path_factory.mktemp("fault-server"), "the fault tests") as server:
        yield server


def wait_until_serving(
    server: MilvusServer, collection: str, dim: int, timeout: float = 180
) -> float:
    """Seconds until the restarted server has its collection loaded and answers a search."""
    client_cls = import_pymilvus().MilvusClient
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < timeout:
        try:
            client = client_cls(uri=server.uri, timeout=5)
            try:
                client.search(collection, data=[[0.0] * (dim - 1) + [1.0]], limit=1, timeout=10)
                return time.monotonic() - start
            finally:
                client.close()
        except Exception as exc:
            last = str(exc)
            time.sleep(1)
    raise AssertionError(f"the restarted server never served {collection}: {last}")


def test_server_killed_mid_session_then_back_without_restarting_the_app(
    own_server, tmp_path, model_dir, query
):
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(model_dir)
    settings = Settings.from_mapping(
        {
            "MEDCAP_DATA_DIR": str(data),
            "EMBEDDER": "local",
            "DEMO_COUNT": "24",
            "MILVUS_URI": own_server.uri,
            "MILVUS_COLLECTION": "fault_demo",
            "MILVUS_TIMEOUT": "10",
        }
    )
    runtime = Runtime(settings)
    runtime.start()
    deadline = time.monotonic() + 180
    while not runtime.demo.finished and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runtime.demo.finished and not runtime.demo.error
    page, client = serve(runtime)
    try:
        gallery, *_, status = caption(client, query)
        assert len(gallery) == 3 and "(24 images)" in status
        assert f"Milvus server ({own_server.uri})" in status

        own_server.kill()  # SIGKILL, the whole process group: a crash, not a clean stop
        started = time.monotonic()
        with pytest.raises(Exception) as err:
            caption(client, query)
        message = str(err.value)
        assert time.monotonic() - started < 60  # bounded by MILVUS_TIMEOUT, not hanging
        assert f"The Milvus server at {own_server.uri}" in message
        assert "check that it is running" in message and "Traceback" not in message
        assert message.count(". ") == 0  # one sentence
        assert "did not answer" in refresh_status(page)

        own_server.restart()
        wait_until_serving(own_server, "fault_demo", runtime.embedder.dim)
        gallery, *_, status = caption(client, query)  # the same app, never restarted
        assert len(gallery) == 3 and "(24 images)" in status
        assert "did not answer" not in refresh_status(page)
    finally:
        client.close()
        page.close()
