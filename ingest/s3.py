"""Images with captions in an S3 bucket: paginated listing, streamed downloads in parallel."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from ingest.sources import IMAGE_SUFFIXES, Item, Source, parse_captions, read_captions
from pipeline.aws import error_code
from pipeline.errors import BackendError, InputError

log = logging.getLogger(__name__)

MAX_OBJECT_BYTES = 512 * 1024 * 1024  # larger objects are rejected, not loaded into memory
CHUNK = 1024 * 1024


def parse_s3_uri(uri: str, default_bucket: str = "") -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key); `s3:///key` and `s3://` use the default bucket."""
    if not uri.startswith("s3://"):
        raise InputError(f"{uri} is not an S3 URI: write s3://bucket/prefix.")
    bucket, _, key = uri[len("s3://") :].partition("/")
    bucket = bucket or default_bucket
    if not bucket:
        raise InputError(
            f"{uri} names no bucket: write s3://bucket/prefix, or set S3_BUCKET_NAME "
            "and write s3:///prefix."
        )
    return bucket, key


def _folder(prefix: str) -> str:
    # A prefix is a folder: `images` must not also match `images-old/...`.
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def list_keys(s3, bucket: str, prefix: str) -> list[str]:
    """Every key under the prefix, page by page (1,000 keys a page)."""
    from botocore.exceptions import BotoCoreError, ClientError

    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc)
        if code == "NoSuchBucket":
            raise InputError(f"The S3 bucket {bucket} does not exist.") from None
        raise BackendError(
            f"Listing s3://{bucket}/{prefix} failed ({code}): check AWS credentials, "
            "AWS_REGION and that the IAM policy allows s3:ListBucket on the bucket."
        ) from None
    return keys


def read_object(s3, bucket: str, key: str) -> bytes:
    """An object's bytes, streamed in chunks; raises LookupError with a reason."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = s3.get_object(Bucket=bucket, Key=key)
        if int(response.get("ContentLength") or 0) > MAX_OBJECT_BYTES:
            response["Body"].close()
            raise LookupError(f"larger than {MAX_OBJECT_BYTES // 2**20} MB")
        return b"".join(response["Body"].iter_chunks(CHUNK))
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc)
        reason = "file not found" if code in ("NoSuchKey", "404") else f"S3 {code}"
        raise LookupError(reason) from exc


def _captions_rows(s3, captions: str | Path, default_bucket: str) -> list[dict]:
    if isinstance(captions, str) and captions.startswith("s3://"):
        bucket, key = parse_s3_uri(captions, default_bucket)
        try:
            data = read_object(s3, bucket, key)
        except LookupError as exc:
            raise InputError(f"The captions file {captions} could not be read ({exc}).") from None
        return parse_captions(data.decode("utf-8-sig"), key)
    return read_captions(Path(captions))


def s3_source(
    s3: Any,
    uri: str,
    captions: str | Path | None = None,
    default_bucket: str = "",
    workers: int = 8,
) -> Source:
    """Images under an S3 prefix, with captions from a CSV/JSONL file (in S3 or local),
    `captions.csv`/`captions.jsonl` under the prefix, or a `.txt` object beside each image."""
    bucket, prefix = parse_s3_uri(uri, default_bucket)
    prefix = _folder(prefix)
    keys = list_keys(s3, bucket, prefix)
    name = f"s3://{bucket}/{prefix}"
    if captions is None:
        for candidate in ("captions.csv", "captions.jsonl"):
            if prefix + candidate in keys:
                captions = f"s3://{bucket}/{prefix}{candidate}"
                break

    def fetch(entry: tuple[str, str, dict, str | None]) -> Item:
        key, caption, meta, sidecar = entry
        source = f"s3://{bucket}/{key}"
        try:
            data = read_object(s3, bucket, key)
            if sidecar is not None:
                caption = read_object(s3, bucket, sidecar).decode("utf-8", "replace").strip()
        except LookupError as exc:
            return Item(source, None, caption, meta, problem=str(exc))
        return Item(source, data, caption.strip(), meta)

    if captions is not None:
        rows = _captions_rows(s3, captions, default_bucket)
        entries = [
            (
                prefix + row["path"].lstrip("/"),
                row["caption"],
                {k: v for k, v in row["meta"].items() if v not in (None, "")},
                None,
            )
            for row in rows
        ]
    else:
        present = set(keys)
        images = sorted(k for k in keys if PurePosixPath(k).suffix.lower() in IMAGE_SUFFIXES)
        entries = []
        for key in images:
            sidecar = str(PurePosixPath(key).with_suffix(".txt"))
            entries.append((key, "", {}, sidecar if sidecar in present else None))
    return Source(name=name, items=prefetch(fetch, entries, workers), total=len(entries))


def prefetch(fn: Callable, entries: Iterable, workers: int) -> Iterator:
    """fn over entries in order, with up to 2 x workers calls in flight (downloads overlap)."""
    with ThreadPoolExecutor(max(1, workers), "s3-get") as pool:
        pending: deque = deque()
        for entry in entries:
            pending.append(pool.submit(fn, entry))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
