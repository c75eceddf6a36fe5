"""Gradio share links, asked for only once the page already serves locally.

Gradio's own `launch(share=True)` blocks start-up while it contacts its share service (up to
three 30-second timeouts, and a tunnel that never answers can block it for good) and explains a
failure in several lines. Here the page serves first; the link comes from the same Gradio
tunnel in the background, and a failure costs one line in the terminal, never the local page.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlparse, urlunparse

import gradio as gr
from gradio import networking

log = logging.getLogger(__name__)

TIMEOUT_S = 45.0


def open_share_link(page: gr.Blocks, timeout: float = TIMEOUT_S) -> threading.Thread:
    """Ask for a public link in the background; print it, or one line saying why there is none."""
    said = threading.Event()  # one failure line at most: from the tunnel or the timeout
    lock = threading.Lock()

    def say_once(line: str) -> None:
        with lock:
            if not said.is_set():
                said.set()
                print(line, flush=True)

    def attempt() -> None:
        try:
            address = networking.setup_tunnel(
                local_host=page.server_name,
                local_port=page.server_port,
                share_token=page.share_token,
                share_server_address=page.share_server_address,
                share_server_tls_certificate=page.share_server_tls_certificate,
            )
        except Exception as exc:  # any failure of an optional extra must leave the page up
            log.debug("share tunnel failed", exc_info=True)
            say_once(unavailable(reason(exc), page.local_url))
            return
        url = urlunparse((page.share_server_protocol, *urlparse(address)[1:]))
        page.share_url, page.share = url, True  # share mode: robots.txt now disallows crawlers
        with lock:  # even after the timeout line: a late link still works
            print(
                f"* Running on public URL: {url} (anyone with this link can use the page; "
                "set APP_AUTH to require a login)",
                flush=True,
            )

    def watch() -> None:
        worker = threading.Thread(target=attempt, name="share-tunnel", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            say_once(unavailable(f"no answer within {timeout:.0f} s", page.local_url))

    watcher = threading.Thread(target=watch, name="share-link", daemon=True)
    watcher.start()
    return watcher


def unavailable(why: str, local_url: str | None) -> str:
    """The one line printed when there is no share link."""
    return (
        f"* No share link: the share service could not be reached ({why}); "
        f"still serving locally at {local_url}"
    )


def reason(exc: BaseException) -> str:
    """One line from a tunnel failure: frpc's last log line, or the error and its cause."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    if exc.__cause__ is not None:
        cause = str(exc.__cause__).splitlines()
        text += f": {cause[0] if cause else type(exc.__cause__).__name__}"
    return text
