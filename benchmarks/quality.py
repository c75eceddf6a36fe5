"""Modality precision@1 and @5 of the local embedder on held-out queries.

    python benchmarks/quality.py                         # the synthetic demo set
    python benchmarks/quality.py --folder ../shared/data/roco-dev --label modality \
        --group pmc_id --ignore unknown,mixed            # any folder with captions.csv

A thin front to `pipeline.evaluate` (the same split and exact search), printing retrieval
precision and embedding speed only; `python -m pipeline.evaluate` gives the full report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.sources import demo_source, folder_source
from pipeline.embedders import LocalEmbedder
from pipeline.evaluate import evaluate, rows_from_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="folder with captions.csv (default: demo)")
    parser.add_argument("--label", default="modality")
    parser.add_argument("--group", default="pmc_id")
    parser.add_argument("--ignore", default="unknown,mixed")
    parser.add_argument("--count", type=int, default=600, help="demo images")
    parser.add_argument("--model-dir", type=Path, default=Path("data/models"))
    args = parser.parse_args()

    if args.folder:
        # roco-dev's captions.csv names files relative to its images/ folder.
        images = args.folder / "images" if (args.folder / "images").is_dir() else args.folder
        source, name = folder_source(images, args.folder / "captions.csv"), args.folder.name
    else:
        source, name = demo_source(args.count), "demo (synthetic)"
    embedder = LocalEmbedder(args.model_dir)
    rows, _, dropped, seconds = rows_from_source(source, embedder, 50_000_000)
    report = evaluate(rows, name, embedder.name, k=5, group=args.group, labels=[args.label],
                      ignore=args.ignore.split(","))  # fmt: skip
    print(f"dataset          {name}")
    print(f"images           {len(rows)} embedded ({dropped} unreadable), "
          f"{len(rows) / seconds:.1f} images/s")  # fmt: skip
    for p in report.precision:
        print(f"queries          {p.queries} held out, corpus {report.corpus}")
        print(f"{p.label} P@1     {p.at1:.3f}")
        print(f"{p.label} P@5     {p.atk:.3f}")


if __name__ == "__main__":
    main()
