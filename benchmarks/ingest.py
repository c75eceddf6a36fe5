"""Ingest throughput with a remote embedder of 200 ms latency, against DESIGN.md's budget
(>= 0.8 x workers / latency images/s).

    python benchmarks/ingest.py [--latency 0.2] [--workers 1 4 8 16] [--images DIR]

The stand-in is the real TitanEmbedder and a real boto3 bedrock-runtime client; a `before-send`
handler (botocore's own hook, in place of the socket) sleeps for the latency and answers with a
Titan-shaped JSON body, so re-encoding, request building, signing, retries and parsing all run
as they would against AWS. Nothing leaves the process. Images: the ROCO dev sample if present
(real radiology JPEGs, `../shared/data/roco-dev`), else the synthetic demo set. Each run ingests
into a fresh Milvus Lite file with the real runner (`ingest.runner.ingest`). The "seed loop" row
does what the seed's notebook did: one image at a time, one call, one insert.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
import numpy as np
from botocore.awsrequest import AWSResponse
from urllib3 import HTTPResponse

from ingest.runner import ingest
from ingest.sources import Item, Source, demo_source
from pipeline.aws import AwsClients, client_config
from pipeline.embedders import TitanEmbedder
from pipeline.images import decode, thumbnail_b64
from pipeline.store import MilvusStore, Record

ROCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "roco-dev"
REGION = "us-east-1"
DIM = 1024


class SlowTitan:
    """before-send handler: wait `latency` seconds, answer with a unit-length embedding."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = 0
        self.lock = threading.Lock()
        vector = np.random.default_rng(0).standard_normal(DIM)
        self.body = json.dumps({"embedding": vector.tolist()}).encode()

    def __call__(self, request, **kwargs) -> AWSResponse:
        with self.lock:
            self.calls += 1
        time.sleep(self.latency)
        raw = HTTPResponse(io.BytesIO(self.body), preload_content=False, status=200)
        return AWSResponse(request.url, 200, {"content-type": "application/json"}, raw)


def titan(latency: float, workers: int) -> tuple[TitanEmbedder, SlowTitan]:
    session = boto3.Session(
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="benchmark-not-a-secret",
        region_name=REGION,
    )
    client = session.client("bedrock-runtime", config=client_config(REGION, workers))
    handler = SlowTitan(latency)
    client.meta.events.register("before-send.bedrock-runtime.InvokeModel", handler)
    clients = AwsClients(REGION, workers, bedrock=client)
    return TitanEmbedder(clients, dim=DIM, workers=workers), handler


def load_items(folder: Path | None, count: int) -> list[Item]:
    if folder is not None and (folder / "captions.csv").is_file():
        with (folder / "captions.csv").open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))[:count]
        return [
            Item(r["filename"], (folder / "images" / r["filename"]).read_bytes(), r["caption"])
            for r in rows
        ]
    return list(demo_source(count).items)


def seed_loop(items: list[Item], latency: float, store: MilvusStore) -> float:
    """One image at a time: decode, one InvokeModel, one insert (the seed notebook's loop)."""
    embedder, _ = titan(latency, 1)
    start = time.perf_counter()
    for item in items:
        decoded = decode(item.data)
        vector = embedder.embed_one(decoded.image)
        store.upsert(
            [Record(decoded.id, vector, item.caption, thumbnail_b64(decoded.image), item.source)]
        )
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per call (0.2)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--per-worker", type=int, default=32, help="images per worker (32)")
    parser.add_argument("--images", type=Path, default=ROCO, help="folder with captions.csv")
    parser.add_argument("--data", type=Path, default=Path("data"), help="scratch folder parent")
    args = parser.parse_args()

    most = max(48, args.per_worker * max(args.workers))
    items = load_items(args.images, most)
    origin = "ROCO dev sample" if items[0].source.endswith(".jpg") else "synthetic demo set"
    print(f"images: {origin}; stand-in latency {args.latency * 1000:.0f} ms per call;")
    print("TitanEmbedder + real boto3 client, a before-send handler in place of the network")
    print()
    row("run", "images", "seconds", "images/s", "target", "vs target")
    print("|---|--:|--:|--:|--:|--:|")
    # Not a temporary directory: Milvus Lite may still be building an index in the background
    # when the script ends, and would complain about a folder deleted under it.
    scratch = args.data / "bench-ingest"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    n = min(48, len(items))
    store = MilvusStore(str(scratch / "seed.db"), f"titan-embed-image-v1-{DIM}", DIM)
    rate = seed_loop(items[:n], args.latency, store)
    store.close()
    target = 0.8 / args.latency
    row("seed loop (1 at a time)", n, f"{n / rate:.1f}", f"{rate:.1f}", f"{target:.1f}",
        f"{rate / target:.2f}x")  # fmt: skip
    for workers in args.workers:
        n = min(len(items), max(48, args.per_worker * workers))
        embedder, handler = titan(args.latency, workers)
        store = MilvusStore(str(scratch / f"w{workers}.db"), embedder.name, embedder.dim)
        source = Source("bench", iter(items[:n]), n)
        summary = ingest(source, embedder, store, batch_size=max(32, 4 * workers), progress=False)
        store.close()
        assert summary.added == n and handler.calls == n, summary.line()
        target = 0.8 * workers / args.latency
        row(f"runner, {workers} workers", n, f"{summary.seconds:.1f}", f"{summary.rate:.1f}",
            f"{target:.1f}", f"{summary.rate / target:.2f}x")  # fmt: skip


def row(*cells) -> None:
    print(
        "| " + " | ".join(f"{c:<23}" if i == 0 else f"{c!s:>9}" for i, c in enumerate(cells)) + " |"
    )


if __name__ == "__main__":
    main()
