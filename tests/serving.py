"""Serve the real page in-process on a free loopback port, as `python app.py` would."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr

import app
from pipeline.config import Settings
from pipeline.runtime import Runtime


@dataclass
class Served:
    url: str
    page: gr.Blocks
    runtime: Runtime
    settings: Settings

    def close(self) -> None:
        self.page.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(data_dir: Path, env: dict[str, str] | None = None, demo_count: int = 42) -> Served:
    """Build the demo collection (small), then launch the page with the settings' options."""
    settings = Settings.from_mapping(
        {"MEDCAP_DATA_DIR": str(data_dir), "DEMO_COUNT": str(demo_count), "EMBEDDER": "local"}
        | (env or {})
    )
    settings = replace(settings, server_name="127.0.0.1", server_port=free_port(), share=False)
    runtime = Runtime(settings)
    runtime.start()
    deadline = time.time() + 180
    while not runtime.demo.finished and time.time() < deadline:
        time.sleep(0.2)
    page = app.build(runtime)
    app.configure_queue(page, settings).launch(
        **app.launch_options(settings), prevent_thread_lock=True, quiet=True
    )
    return Served(f"http://127.0.0.1:{settings.server_port}/", page, runtime, settings)
