"""The vector store at scale, Milvus Lite and a real Milvus server side by side, as one table.

    python benchmarks/store.py [--sizes 10000 100000] [--backends lite server] [--queries 200]
    python benchmarks/store.py --app-start 10000      # only the app's start-up time

For each backend and size: insert rate (upsert + flush), the wait for the index to be built,
open + load time of the collection, search p50/p95 for k=5 through MilvusStore.search (the
page's path: with thumbnails and captions in the answer), recall@5 against exact search, and
exact numpy search over the same vectors as the floor. Rows carry what real rows carry: a
1280-d unit vector, a real radiology caption and a real ~5 KB base64 JPEG thumbnail. The
vectors are random but clustered (an embedding space has neighbourhoods; uniform random
vectors in 1280-d are all about equally far apart, which makes recall meaningless); queries
are rows plus noise, never rows themselves. Then `python app.py` is started on a 10k-row Lite
collection and timed to its first served page and its first answered request.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ingest.demo import item  # noqa: E402
from pipeline.embedders import LocalEmbedder  # noqa: E402
from pipeline.images import thumbnail_b64  # noqa: E402
from pipeline.store import SAME_IMAGE_SCORE, MilvusStore, Record, default_collection  # noqa: E402
from tests.milvus_server import MilvusServer, free_ports, unavailable_reason  # noqa: E402

DIM = 1280
K = 5
ROCO = ROOT.parent / "shared" / "data" / "roco-dev"


def realistic_rows(n_thumbs: int = 256) -> tuple[list[str], list[str], list[dict]]:
    """Captions, base64 thumbnails and meta to cycle through: ROCO's if present, else the demo's."""
    captions, thumbs, metas = [], [], []
    listing = ROCO / "captions.csv"
    if listing.is_file():
        with listing.open(newline="") as fh:
            for row in csv.DictReader(fh):
                captions.append(row["caption"])
                metas.append(
                    {
                        "dataset": "roco-bench",
                        "modality": row["modality"],
                        "license": row["license"],
                        "pmc_id": row["pmc_id"],
                    }
                )
                if len(thumbs) < n_thumbs:
                    with Image.open(ROCO / "images" / row["filename"]) as im:
                        thumbs.append(thumbnail_b64(im))
    else:
        for i in range(n_thumbs):
            demo = item(i)
            captions.append(demo.caption)
            metas.append({"dataset": "demo-bench", **demo.meta})
            with Image.open(__import__("io").BytesIO(demo.image)) as im:
                thumbs.append(thumbnail_b64(im))
    return captions, thumbs, metas


def clustered_unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    """n unit vectors in ~n/100 clusters (same-cluster cosine about 0.5, across about 0)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(10, n // 100), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, DIM), dtype=np.float32)
    step = 10_000
    for start in range(0, n, step):
        m = min(step, n - start)
        noise = rng.normal(size=(m, DIM)).astype(np.float32) / np.sqrt(DIM)
        block = centres[rng.integers(0, len(centres), m)] + noise
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def queries_near(vectors: np.ndarray, count: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = vectors[rng.integers(0, len(vectors), count)]
    noise = rng.normal(size=picks.shape).astype(np.float32) * (0.3 / np.sqrt(DIM))
    q = picks + noise
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def row_id(i: int) -> str:
    return hashlib.sha256(f"bench-{i}".encode()).hexdigest()


def fill(store: MilvusStore, vectors: np.ndarray, batch: int = 500) -> float:
    """Upsert every row and flush; returns rows per second."""
    captions, thumbs, metas = realistic_rows()
    start = time.perf_counter()
    for lo in range(0, len(vectors), batch):
        records = [
            Record(
                id=row_id(i),
                embedding=vectors[i],
                caption=captions[i % len(captions)],
                thumbnail=thumbs[i % len(thumbs)],
                source=f"bench/{i:07d}.jpg",
                meta=metas[i % len(metas)],
            )
            for i in range(lo, min(lo + batch, len(vectors)))
        ]
        store.upsert(records)
    store.flush()
    return len(vectors) / (time.perf_counter() - start)


def wait_for_index(store: MilvusStore, rows: int, timeout: float = 900) -> float:
    """Seconds until the server reports every row indexed (Lite builds as it seals)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        info = store._client.describe_index(store.collection, "embedding")
        if "indexed_rows" not in info or int(info["indexed_rows"]) >= rows:
            return time.perf_counter() - start
        time.sleep(0.5)
    return float("nan")


def percentiles(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


def exact_top(vectors: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ q
    scores[scores >= SAME_IMAGE_SCORE] = -2  # the store's rule: the query itself is not a hit
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def measure(open_store, vectors: np.ndarray, queries: np.ndarray) -> dict:
    """Fill, reopen, search: one row of the table."""
    store = open_store()
    rate = fill(store, vectors)
    index_s = wait_for_index(store, len(vectors))
    if store.is_lite:  # Lite keeps serving the file from this process: stop it, load for real
        store.close()
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(store.uri)
    else:  # the server keeps the collection loaded: release it, so the reopen loads it
        store._client.release_collection(store.collection)
        store.close()
    t = time.perf_counter()
    store = open_store()  # connect + load, as the app does at start
    open_s = time.perf_counter() - t
    t = time.perf_counter()
    store.search(queries[0], K)
    first_ms = (time.perf_counter() - t) * 1000
    for q in queries[1:6]:
        store.search(q, K)
    index_of = {row_id(i): i for i in range(len(vectors))}
    times, recalls = [], []
    for q in queries:
        t = time.perf_counter()
        hits = store.search(q, K)
        times.append((time.perf_counter() - t) * 1000)
        truth = set(exact_top(vectors, q, K).tolist())
        recalls.append(len(truth & {index_of[h.id] for h in hits}) / K)
    session = []
    store.consistency = "Session"  # what Strong costs: the same search, read-your-writes only
    for q in queries[:50]:
        t = time.perf_counter()
        store.search(q, K)
        session.append((time.perf_counter() - t) * 1000)
    store.consistency = "Strong"
    store.close()
    exact = []
    for q in queries:
        t = time.perf_counter()
        exact_top(vectors, q, K)
        exact.append((time.perf_counter() - t) * 1000)
    p50, p95 = percentiles(times)
    e50, e95 = percentiles(exact)
    return {
        "insert rows/s": rate,
        "index wait s": index_s,
        "open+load s": open_s,
        "1st search ms": first_ms,
        "p50 ms": p50,
        "p95 ms": p95,
        "Session p50": statistics.median(session),
        "recall@5": float(np.mean(recalls)),
        "numpy p50": e50,
        "numpy p95": e95,
    }


def app_start(rows: int, model_dir: Path, runs: int = 2) -> None:
    """`python app.py` on a Lite collection of `rows` rows: time to the page and to an answer."""
    from gradio_client import Client, handle_file

    embedder = LocalEmbedder(model_dir)
    embedder.embed([Image.new("RGB", (64, 64))])  # build the ONNX graph once, outside the timing
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        (data / "models").symlink_to(model_dir.resolve())
        collection = default_collection(embedder.name, embedder.dim)
        store = MilvusStore(str(data / "milvus.db"), embedder.name, embedder.dim, collection)
        fill(store, clustered_unit_vectors(rows, seed=3))
        store.close()
        # Milvus Lite keeps serving the file from this process after close: let the app have it.
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(data / "milvus.db"))
        query = Path(tmp) / "query.png"
        query.write_bytes(item(100_005).image)
        for run in range(runs):
            (port,) = free_ports(1)
            env = dict(
                os.environ,
                MEDCAP_DATA_DIR=str(data),
                EMBEDDER="local",
                GRADIO_SERVER_PORT=str(port),
            )
            env.pop("MILVUS_URI", None)
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "app.py"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                url = f"http://127.0.0.1:{port}/"
                while True:
                    try:
                        with urllib.request.urlopen(url, timeout=2):
                            break
                    except OSError:
                        time.sleep(0.05)
                page_s = time.perf_counter() - t0

                client = Client(url, verbose=False)

                gallery, *_, status = client.predict(
                    handle_file(str(query)), K, api_name="/caption"
                )
                print(status, file=sys.stderr)
                answer_s = time.perf_counter() - t0
                client.close()
                assert len(gallery) == K
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            print(
                f"app start, {rows} rows on Milvus Lite (run {run + 1}): page served "
                f"{page_s:.1f} s, first caption answered {answer_s:.1f} s (budget 5 s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--backends", nargs="+", default=["lite", "server"])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--app-start", type=int, default=10_000, help="rows; 0 skips it")
    parser.add_argument("--only-app-start", action="store_true")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "data" / "models")
    args = parser.parse_args()

    if not args.only_app_start:
        table = run_table(args)
        print_table(table)
    if args.app_start:
        app_start(args.app_start, args.model_dir)


def run_table(args) -> list[tuple[str, int, dict]]:
    table = []
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if "server" in args.backends:
                reason = unavailable_reason()
                if reason:
                    print(f"skipping the server: {reason}", file=sys.stderr)
                else:
                    server = MilvusServer(Path(tmp) / "server")
                    t = time.perf_counter()
                    server.start()
                    print(
                        f"milvus-server ready in {time.perf_counter() - t:.1f} s", file=sys.stderr
                    )
            for n in args.sizes:
                vectors = clustered_unit_vectors(n)
                queries = queries_near(vectors, args.queries)
                for backend in args.backends:
                    if backend == "server" and server is None:
                        continue
                    uri = str(Path(tmp) / f"lite{n}.db") if backend == "lite" else server.uri

                    def open_store(uri=uri, n=n):
                        return MilvusStore(uri, "bench", DIM, collection=f"bench_{n}", timeout=120)

                    print(f"{backend} {n} rows ...", file=sys.stderr, flush=True)
                    table.append((backend, n, measure(open_store, vectors, queries)))
        finally:
            if server is not None:
                server.stop()
    return table


def print_table(table: list[tuple[str, int, dict]]) -> None:
    cols = list(table[0][2]) if table else []
    print(f"{'backend':<8}{'rows':>8} " + " ".join(f"{c:>13}" for c in cols))
    for backend, n, row in table:
        cells = []
        for c in cols:
            v = row[c]
            cells.append(f"{v:>13.3f}" if c == "recall@5" else f"{v:>13.1f}")
        print(f"{backend:<8}{n:>8} " + " ".join(cells))
    print(
        f"search: MilvusStore.search, k={K}, consistency Strong (Session p50: the same with "
        "Session); numpy: exact cosine over the same float32 matrix; recall@5 vs numpy"
    )


if __name__ == "__main__":
    main()
