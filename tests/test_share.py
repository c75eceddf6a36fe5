"""Share links, tested on `python app.py` itself, with nothing leaving this machine.

Gradio's share service is pointed at a loopback port (GRADIO_SHARE_SERVER_ADDRESS), and its
tunnel client (frpc, normally downloaded into $HF_HOME) is a stand-in script that dials that
port the way frpc does and reports in frpc's words. The app process runs under the same
loopback-only socket guard as the tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from gradio.tunneling import BINARY_FILENAME

from tests.serving import free_port

REPO = Path(__file__).resolve().parents[1]

FRPC = '''#!{python}
"""Stand-in for Gradio's frpc: dial the share server, say what frpc would say."""
import os, socket, sys, time

args = sys.argv[1:]
server = args[args.index("--server_addr") + 1]
host, port = server.rsplit(":", 1)
assert host == "127.0.0.1", "the stand-in only ever dials loopback"
local = args[args.index("-l") + 1]
try:
    socket.create_connection((host, int(port)), timeout=5).close()
except OSError as exc:
    print(f"[W] [service.go:128] login to server failed: dial tcp {{server}}: {{exc}}", flush=True)
    sys.exit(1)
print(f"[I] [proxy_manager.go:144] start proxy success: http://127.0.0.1:{{local}}", flush=True)
parent = os.getppid()
while os.getppid() == parent:  # a tunnel lives as long as the app that opened it
    time.sleep(0.2)
'''

LAUNCH = (
    "import runpy, sys\n"
    "from tests.loopback import install_loopback_guard\n"
    "install_loopback_guard()\n"
    "sys.argv = ['app.py', *sys.argv[1:]]\n"
    "runpy.run_path('app.py', run_name='__main__')\n"
)


class App:
    """`python app.py` in a subprocess, its output collected line by line."""

    def __init__(self, tmp: Path, model_dir: Path, share_port: int, args=(), env=None) -> None:
        data, hf_home = tmp / "data", tmp / "hf"
        data.mkdir()
        (data / "models").symlink_to(model_dir)
        frpc = hf_home / "gradio" / "frpc" / BINARY_FILENAME
        frpc.parent.mkdir(parents=True)
        frpc.write_text(FRPC.format(python=sys.executable))
        frpc.chmod(0o755)
        self.port = free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("GRADIO_SHARE")}
        environ.update(
            MEDCAP_DATA_DIR=str(data),
            DEMO_COUNT="8",
            EMBEDDER="local",
            HF_HOME=str(hf_home),
            GRADIO_SERVER_PORT=str(self.port),
            GRADIO_SHARE_SERVER_ADDRESS=f"127.0.0.1:{share_port}",
            PYTHONUNBUFFERED="1",
            **(env or {}),
        )
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, *args],
            cwd=REPO,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, words: str, timeout: float = 180) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in list(self.lines):
                if words in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line with {words!r}; output:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def app_process(tmp_path, model_dir):
    started = []

    def start(share_port: int, args=(), env=None) -> App:
        started.append(App(tmp_path, model_dir, share_port, args, env))
        return started[-1]

    yield start
    for app in started:
        app.stop()


def test_share_flag_prints_the_public_link(app_process):
    with socket.socket() as share_server:  # the stand-in share service: accepts the dial
        share_server.bind(("127.0.0.1", 0))
        share_server.listen()
        app = app_process(share_server.getsockname()[1], args=["--share"])
        line = app.wait_for("Running on public URL")
    url = line.split("Running on public URL: ", 1)[1].split(" ", 1)[0]
    # The address the stand-in tunnel reported, under Gradio's share protocol (https).
    assert url.split("://", 1)[1] == f"127.0.0.1:{app.port}"
    assert "APP_AUTH" in line  # the link is public: the line says how to require a login
    # The stand-in tunnel leads back to this machine, so the "public" page can be fetched.
    assert httpx.get(f"http://127.0.0.1:{app.port}/", timeout=30).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{app.port}/robots.txt").text.endswith("Disallow: /")


def test_unreachable_share_service_costs_one_line_and_the_page_keeps_serving(app_process):
    closed = free_port()  # nobody listens here
    app = app_process(closed, env={"GRADIO_SHARE": "true"})
    app.wait_for("Running on local URL")
    app.wait_for("No share link")
    time.sleep(1)  # anything printed right after the outcome line would show up here
    failures = [line for line in app.lines if "share link" in line.lower()]
    assert len(failures) == 1, app.lines
    assert "connection refused" in failures[0].lower()
    assert not any("Traceback" in line for line in app.lines), app.lines
    assert app.proc.poll() is None  # still running ...
    page = httpx.get(f"http://127.0.0.1:{app.port}/", timeout=30)
    assert page.status_code == 200  # ... and still serving locally
    assert "Medical Image Captioning" in page.text
