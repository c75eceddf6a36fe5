"""Ingest killed with SIGKILL mid-run resumes on rerun: every input exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ingest.demo import write_folder
from pipeline.embedders import LocalEmbedder
from pipeline.images import content_id
from pipeline.store import MilvusStore

ROOT = Path(__file__).resolve().parents[1]


def run_ingest(folder: Path, data: Path) -> subprocess.Popen:
    env = {**os.environ, "MEDCAP_DATA_DIR": str(data), "EMBEDDER": "local", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", "folder", str(folder), "--batch-size", "8"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_sigkill_then_rerun_holds_every_input_once(tmp_path, model_dir):
    folder = tmp_path / "images"
    write_folder(folder, count=120)
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(model_dir)

    proc = run_ingest(folder, data)
    progress = ""
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        progress += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
        if "added=16" in progress or "added=24" in progress:  # some batches are in
            break
    assert proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    again = run_ingest(folder, data)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    assert "seen 120 = added" in out
    added = int(out.split("added ")[1].split()[0])
    skipped = int(out.split("skipped ")[1].split()[0])
    assert added + skipped == 120 and skipped >= 8  # the rerun kept what the first run wrote

    embedder = LocalEmbedder(data / "models")
    store = MilvusStore(str(data / "milvus.db"), embedder.name, embedder.dim)
    assert store.count() == 120
    ids = {content_id(p.read_bytes()) for p in folder.glob("*.png")}
    assert store.existing_ids(sorted(ids)) == ids
    store.close()
