"""Median per-stage times of an offline request against the budgets in DESIGN.md.

    python benchmarks/latency.py [--count 300] [--queries 50]

Ingests the demo set from PNG files into a temporary Milvus Lite file, then times held-out queries:
decode, embed (also on a 512x512 image alone), search, and the whole request end to end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.demo import item, write_folder
from ingest.runner import ingest
from ingest.sources import folder_source
from pipeline.captioners import ExtractiveCaptioner
from pipeline.embedders import LocalEmbedder
from pipeline.images import decode
from pipeline.service import Pipeline
from pipeline.store import MilvusStore

BUDGETS_MS = {"embed 512x512": 15, "end to end": 100}


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--model-dir", type=Path, default=Path("data/models"))
    args = parser.parse_args()

    embedder = LocalEmbedder(args.model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        store = MilvusStore(str(Path(tmp) / "bench.db"), embedder.name, embedder.dim)
        # Ingest from files on disk, as users do: drawing the demo set is not ingest's cost.
        write_folder(Path(tmp) / "images", args.count)
        t = time.perf_counter()
        summary = ingest(folder_source(Path(tmp) / "images"), embedder, store, progress=False)
        ingest_s = time.perf_counter() - t
        pipeline = Pipeline(embedder, store, ExtractiveCaptioner())
        queries = [item(200_000 + i).image for i in range(args.queries)]
        img512 = decode(queries[0]).image.convert("RGB").resize((512, 512))
        for q in queries[:3]:  # warm-up: graph load, first search
            list(pipeline.run(q))
        stages: dict[str, list[float]] = {"decode": [], "embed": [], "search": []}
        end_to_end = []
        for q in queries:
            t = time.perf_counter()
            answer = list(pipeline.run(q))[-1]
            end_to_end.append((time.perf_counter() - t) * 1000)
            for s in stages:
                stages[s].append(answer.timings[s])
        embed512 = timed(lambda: embedder.embed([img512]), args.queries)
        store.close()

    print(f"collection: {summary.added} demo images; ingest {summary.rate:.0f} images/s "
          f"({ingest_s:.1f} s); {args.queries} held-out queries, medians in ms")  # fmt: skip
    rows = {**{s: statistics.median(v) for s, v in stages.items()},
            "embed 512x512": statistics.median(embed512),
            "end to end": statistics.median(end_to_end)}  # fmt: skip
    for name, value in rows.items():
        budget = BUDGETS_MS.get(name)
        verdict = (
            "" if budget is None else f"budget {budget} ms: {'ok' if value <= budget else 'OVER'}"
        )
        print(f"  {name:<14} {value:7.1f}   {verdict}")
    print(f"  ingest rate    {summary.rate:7.1f} images/s   budget 100/s: "
          f"{'ok' if summary.rate >= 100 else 'OVER'}")  # fmt: skip


if __name__ == "__main__":
    main()
