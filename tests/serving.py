"""Serve the real page in-process on a free loopback port, over a small demo collection."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import app
from pipeline.captioners import Captioner
from pipeline.config import Settings
from pipeline.runtime import Runtime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_runtime(
    data: Path,
    model_dir: Path | None = None,
    count: int = 42,
    captioner: Captioner | None = None,
    env: dict[str, str] | None = None,
) -> Runtime:
    """A started runtime whose demo collection is fully built (so results are deterministic)."""
    if model_dir is not None and not (data / "models").exists():
        (data / "models").symlink_to(model_dir)
    settings = Settings.from_mapping(
        {"MEDCAP_DATA_DIR": str(data), "DEMO_COUNT": str(count), "EMBEDDER": "local"} | (env or {})
    )
    runtime = Runtime(settings, captioner=captioner)
    runtime.start()
    deadline = time.time() + 180
    while not runtime.demo.finished and time.time() < deadline:
        time.sleep(0.2)
    assert runtime.demo.finished and not runtime.demo.error
    return runtime


@contextmanager
def served(runtime: Runtime) -> Iterator[str]:
    """The page for this runtime, launched as `python app.py` would; yields its URL."""
    page = app.build(runtime)
    port = free_port()
    app.configure_queue(page, runtime.settings).launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        **app.launch_options(runtime.settings),
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        page.close()
