"""`python -m ingest SOURCE`: add images with captions to the collection, resumably."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ingest.runner import ingest
from ingest.sources import Source, demo_source, folder_source, parquet_source
from pipeline.aws import AwsClients
from pipeline.backends import make_embedder, make_store
from pipeline.config import Settings
from pipeline.errors import MedcapError

EPILOG = """\
sources:
  demo                      the built-in synthetic demo set (--count images)
  folder DIR                images under DIR; captions from --captions FILE, DIR/captions.csv,
                            or a .txt file beside each image
  DIR                       same as `folder DIR`
  s3://BUCKET/PREFIX        objects under the prefix; captions from --captions (local or
                            s3://...), PREFIX/captions.csv|.jsonl, or a .txt object per image
  s3:///PREFIX, s3://       the same in the bucket S3_BUCKET_NAME names
  FILE.parquet              Parquet in the ROCOv2 layout (image struct with bytes, caption);
                            also hf://datasets/OWNER/NAME/PATH (globs allowed; needs network)

captions file: CSV or JSONL with a file column (filename, file, path, image) and a caption
column (caption, text, description); any other column is kept as metadata.

examples:
  python -m ingest demo --count 300
  python -m ingest folder ~/xrays --captions ~/xrays/captions.csv
  python -m ingest ~/xrays --limit 100 --batch-size 16
  python -m ingest s3://my-bucket/roco/ --captions s3://my-bucket/roco/captions.csv --workers 16
  python -m ingest "hf://datasets/eltorio/ROCOv2-radiology/data/test-*.parquet"

A rerun skips images already in the collection (ids are content hashes), so an interrupted
run resumes where it stopped. Files that cannot be added are listed in the rejects report.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Add captioned images to the collection the app searches.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="demo, folder, a folder path or s3://... (see below)")
    parser.add_argument("path", nargs="?", help="the folder, after `folder`")
    parser.add_argument("--captions", help="CSV or JSONL captions file (a path or s3://...)")
    parser.add_argument(
        "--dicom-captions",
        action="store_true",
        help="caption DICOM files that have none from their tags (Modality, BodyPartExamined, "
        "StudyDescription, SeriesDescription)",
    )
    parser.add_argument("--count", type=int, help="demo: how many images (default 300)")
    parser.add_argument("--collection", help="collection name (default medcap_<embedder>_<dim>)")
    parser.add_argument("--limit", type=int, help="stop after this many input images")
    parser.add_argument(
        "--batch-size", type=int, help="images per batch (32, or 4 x workers if larger)"
    )
    parser.add_argument(
        "--workers", type=int, help="concurrent remote embedding calls (WORKERS, default 8)"
    )
    parser.add_argument(
        "--rejects", type=Path, help="rejects report CSV (default DATA_DIR/ingest-rejects.csv)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def choose_source(
    args: argparse.Namespace, settings: Settings, clients: AwsClients | None = None
) -> Source:
    if args.source == "demo":
        return demo_source(args.count or settings.demo_count)
    if args.source.startswith("s3:"):
        from ingest.s3 import s3_source

        clients = clients or AwsClients.from_settings(settings)
        return s3_source(
            clients.s3, args.source, args.captions, settings.s3_bucket_name, settings.workers
        )
    if args.source.startswith("hf://") or args.source.lower().endswith(".parquet"):
        return parquet_source(args.source)
    folder = args.path if args.source == "folder" else args.source
    if not folder:
        raise MedcapError("`folder` needs a folder path: python -m ingest folder DIR")
    captions = Path(args.captions).expanduser() if args.captions else None
    return folder_source(Path(folder).expanduser(), captions, args.dicom_captions)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env().override(collection=args.collection, workers=args.workers)
        clients = AwsClients.from_settings(settings)  # one set for S3 and Bedrock
        source = choose_source(args, settings, clients)
        embedder = make_embedder(settings, clients)
        store = make_store(settings, embedder)
        rejects = args.rejects or settings.data_dir / "ingest-rejects.csv"
        summary = ingest(
            source,
            embedder,
            store,
            batch_size=args.batch_size or max(32, 4 * settings.workers),
            limit=args.limit,
            rejects_path=rejects,
            progress=not args.quiet,
            max_pixels=settings.max_image_pixels,
        )
        total = store.count()
        store.close()
    except MedcapError as exc:
        print(f"error: {exc.sentence}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume.", file=sys.stderr)
        return 130
    print(summary.line())
    print(f"collection {store.collection} now holds {total} images ({store.location})")
    if summary.rejected:
        print(f"rejects report: {rejects}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
