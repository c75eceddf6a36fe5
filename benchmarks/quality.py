"""Modality precision@1 and @5 of the local embedder on held-out queries.

    python benchmarks/quality.py                         # the synthetic demo set
    python benchmarks/quality.py --folder ../shared/data/roco-dev --label modality \
        --group pmc_id --ignore unknown,mixed            # any folder with captions.csv

Queries are a stable 20% split (by group when --group is given, so one article or case never
sits on both sides), searched exactly (numpy) against the other 80%.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.embedders import LocalEmbedder
from pipeline.errors import InputError
from pipeline.evaluate import held_out, precision_at_k
from pipeline.images import decode


def demo_rows(count: int) -> list[tuple[bytes, str, str]]:
    from ingest.demo import generate

    return [(d.image, d.meta["modality"], d.name) for d in generate(count)]


def folder_rows(folder: Path, label: str, group: str, ignore: set[str]):
    with (folder / "captions.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    images = folder / "images" if (folder / "images").is_dir() else folder
    out = []
    for r in rows:
        if r[label] in ignore:
            continue
        out.append(((images / r["filename"]).read_bytes(), r[label], r.get(group) or r["filename"]))
    return out


def embed_all(embedder: LocalEmbedder, rows, batch: int = 32) -> tuple[np.ndarray, list[int]]:
    vectors, kept = [], []
    for start in tqdm(range(0, len(rows), batch), desc="embed", unit="batch"):
        images, idx = [], []
        for i in range(start, min(start + batch, len(rows))):
            try:
                images.append(decode(rows[i][0]).image)
                idx.append(i)
            except InputError:
                continue
        if images:
            vectors.append(embedder.embed(images))
            kept += idx
    return np.concatenate(vectors), kept


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
        rows = folder_rows(args.folder, args.label, args.group, set(args.ignore.split(",")))
        name = args.folder.name
    else:
        rows, name = demo_rows(args.count), "demo (synthetic)"
    embedder = LocalEmbedder(args.model_dir)
    t0 = time.perf_counter()
    vectors, kept = embed_all(embedder, rows)
    seconds = time.perf_counter() - t0
    labels = [rows[i][1] for i in kept]
    test = np.array([held_out(rows[i][2]) for i in kept])
    p = precision_at_k(
        vectors[test], [lab for lab, t in zip(labels, test, strict=True) if t],
        vectors[~test], [lab for lab, t in zip(labels, test, strict=True) if not t],
        k=5, label=args.label,
    )  # fmt: skip
    print(f"dataset          {name}")
    print(f"images           {len(kept)} embedded ({len(rows) - len(kept)} unreadable), "
          f"{len(kept) / seconds:.1f} images/s")  # fmt: skip
    print(f"queries          {p.queries} held out, corpus {int((~test).sum())}")
    print(f"{args.label} P@1     {p.at1:.3f}")
    print(f"{args.label} P@5     {p.atk:.3f}")


if __name__ == "__main__":
    main()
