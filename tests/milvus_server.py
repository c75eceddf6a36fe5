"""A real Milvus standalone server for the tests and benchmarks.

`milvus-server` (PyPI package `milvus`) runs Milvus 2.3 standalone with embedded etcd and local
storage. Every port it opens is given a free loopback port, so two runs on one machine never
collide, and its data lives in a directory of our choosing. It runs in its own process group:
the wrapper script does not pass SIGTERM on to the Milvus binary, so stopping signals the group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# The `milvus-server` options naming a port, besides --proxy-port (the one clients use).
_INTERNAL_PORTS = (
    "etcd-port",
    "root-coord-port",
    "proxy-internal-port",
    "query-coord-port",
    "query-node-port",
    "index-coord-port",
    "index-node-port",
    "data-coord-port",
    "data-node-port",
)


# Milvus advertises each component at the machine's first non-loopback address unless told
# otherwise; the tests keep all of its traffic on loopback (Milvus reads these from the
# environment: ROOTCOORD_IP is `rootCoord.ip`).
_LOOPBACK_ENV = {
    f"{role}_IP": "127.0.0.1"
    for role in (
        "ROOTCOORD",
        "PROXY",
        "QUERYCOORD",
        "QUERYNODE",
        "INDEXCOORD",
        "INDEXNODE",
        "DATACOORD",
        "DATANODE",
    )
}

# `milvus-server` itself, with one change: it checks that each port is free by binding it
# without SO_REUSEADDR, which fails for a minute after a crash (the dead server's connections
# sit in TIME_WAIT) and makes it quietly move to the next port. A restarted server must come
# back where its clients look for it, so the check binds the way the Milvus binary does.
_LAUNCHER = """
import socket, sys
import milvus

def try_bind_port(self, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return sock
    except OSError:
        sock.close()
        return None

milvus.MilvusServerConfig.try_bind_port = try_bind_port
sys.argv[0] = "milvus-server"
sys.exit(milvus.main())
"""


def executable() -> str | None:
    """Path of `milvus-server`, next to this interpreter or on PATH; None if not installed."""
    beside = Path(sys.executable).parent / "milvus-server"
    if beside.is_file():
        return str(beside)
    return shutil.which("milvus-server")


def unavailable_reason() -> str:
    """Why a server cannot run here ("" when it can)."""
    try:
        import milvus  # noqa: F401
    except ImportError as exc:
        return f"the PyPI package `milvus` is not importable ({exc}): pip install milvus"
    if executable() is None:
        return "`milvus-server` (from the PyPI package `milvus`) is not on PATH"
    if not sys.platform.startswith("linux") and sys.platform != "darwin":
        return f"`milvus-server` does not run on {sys.platform}"
    return ""


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports nobody listens on right now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class MilvusServer:
    """One `milvus-server` process group; start, kill (as a crash would), restart, stop."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.process: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.ports['proxy-port']}"

    def _pick_ports(self) -> None:
        names = ("proxy-port", *_INTERNAL_PORTS, "etcd-client", "etcd-peer")
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))

    def _write_etcd_config(self) -> Path:
        # Embedded etcd ignores --etcd-port and listens on 2379/2380 unless told otherwise,
        # which would make two servers on one machine collide.
        client, peer = self.ports["etcd-client"], self.ports["etcd-peer"]
        path = self.data_dir / "embedEtcd.yaml"
        path.write_text(
            f"listen-client-urls: http://127.0.0.1:{client}\n"
            f"advertise-client-urls: http://127.0.0.1:{client}\n"
            f"listen-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
            f"initial-cluster: default=http://127.0.0.1:{peer}\n"
        )
        return path

    def start(self, timeout: float = 240.0, attempts: int = 3) -> None:
        """Start on free ports and wait until a client can list collections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last = ""
        for attempt in range(attempts):
            if not self.ports or attempt:  # a port taken in the meantime: pick others
                self._pick_ports()
            self._spawn()
            try:
                self._wait_ready(timeout)
                return
            except RuntimeError as exc:
                last = str(exc)
                log.warning("milvus-server attempt %d failed: %s", attempt + 1, last)
                self.stop()
        raise RuntimeError(f"milvus-server did not start after {attempts} attempts: {last}")

    def restart(self, timeout: float = 240.0) -> None:
        """Start again on the same ports and data (after kill or stop)."""
        self._spawn()
        try:
            self._wait_ready(timeout)
        except RuntimeError:
            self.stop()
            raise

    def _spawn(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        args = [sys.executable, "-c", _LAUNCHER, "--data", str(self.data_dir / "milvus")]
        args += ["--proxy-port", str(self.ports["proxy-port"])]
        # Its default of 1800 s makes a SIGTERM wait half an hour for a query node that has
        # already lost its coordinator; 5 s is plenty for a test server holding a few rows.
        args += ["--extra-config", "common.gracefulStopTimeout=5"]
        # A killed server's sessions live on in etcd until their lease ends; a short lease
        # makes a restarted server take its collections back sooner.
        args += ["--extra-config", "common.session.ttl=10"]
        for name in _INTERNAL_PORTS:
            args += [f"--{name}", str(self.ports[name])]
        env = dict(os.environ, ETCD_CONFIG_PATH=str(self._write_etcd_config()), **_LOOPBACK_ENV)
        out = (self.data_dir / "server.log").open("ab")
        try:
            self.process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.data_dir,
                start_new_session=True,  # its own process group, so we can stop all of it
            )
        finally:
            out.close()
        log.info("milvus-server pid %d on %s", self.process.pid, self.uri)

    def _wait_ready(self, timeout: float) -> None:
        from pipeline.store import import_pymilvus

        MilvusClient = import_pymilvus().MilvusClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"milvus-server exited early; log tail:\n{self.log_tail()}")
            try:
                client = MilvusClient(uri=self.uri, timeout=3)
                try:
                    client.list_collections(timeout=3)
                finally:
                    client.close()
                return
            except Exception:
                time.sleep(1)
        tail = self.log_tail()
        raise RuntimeError(f"milvus-server not ready in {timeout:.0f} s; log tail:\n{tail}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.data_dir / "server.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def _group_alive(self) -> bool:
        if self.process is None:
            return False
        self.process.poll()  # reap the wrapper, or its zombie keeps the group "alive"
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _wait_gone(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self._group_alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def kill(self) -> None:
        """SIGKILL the whole server at once, as a crash or an OOM kill would."""
        self._signal_group(signal.SIGKILL)
        self._wait_gone(30)
        self.process = None

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group; SIGKILL it if it is not gone after `grace` seconds."""
        if self.process is None:
            return
        self._signal_group(signal.SIGTERM)
        if not self._wait_gone(grace):
            log.info("milvus-server still stopping after %.0f s: killing it", grace)
            self.kill()
        self.process = None


if __name__ == "__main__":  # by hand: python -m tests.milvus_server DIR
    import tempfile

    logging.basicConfig(level=logging.INFO)
    server = MilvusServer(Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()))
    t = time.perf_counter()
    server.start()
    print(f"ready at {server.uri} in {time.perf_counter() - t:.1f} s; Ctrl+C stops it")
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@contextlib.contextmanager
def running_server(folder: Path, purpose: str) -> Iterator[MilvusServer]:
    """A started server in `folder`, always stopped; skips the tests if none can run here."""
    import pytest

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no Milvus server for {purpose}: {reason}")
    server = MilvusServer(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
