"""Ingest from S3 through moto's S3 with a real boto3 client: paginated listing, captions from
S3 or a local file, sidecars, the default bucket, rejects and idempotent reruns."""

from __future__ import annotations

import csv
import io
import json

import boto3
import pytest
from moto import mock_aws

from ingest.__main__ import main as ingest_main
from ingest.runner import ingest
from ingest.s3 import parse_s3_uri, s3_source
from pipeline.aws import client_config
from pipeline.errors import InputError
from pipeline.store import MilvusStore
from tests.test_aws import no_aws  # noqa: F401  (fixture)
from tests.test_ingest import noise_png

BUCKET = "medcap-test"


@pytest.fixture
def s3(no_aws):  # noqa: F811
    no_aws.setenv("AWS_ACCESS_KEY_ID", "testing")
    no_aws.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    no_aws.setenv("AWS_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", config=client_config("us-east-1"))
        client.create_bucket(Bucket=BUCKET)
        yield client


def put_dataset(s3, prefix: str = "roco/", count: int = 6) -> list[dict]:
    rows = []
    for i in range(count):
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}img/{i}.png", Body=noise_png(500 + i))
        rows.append({"filename": f"img/{i}.png", "caption": f"S3 image {i}.", "modality": "CT"})
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}img/bad.png", Body=b"not an image")
    rows.append({"filename": "img/bad.png", "caption": "Bad.", "modality": "CT"})
    rows.append({"filename": "img/gone.png", "caption": "Gone.", "modality": "CT"})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["filename", "caption", "modality"])
    writer.writeheader()
    writer.writerows(rows)
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}meta/captions.csv", Body=out.getvalue().encode())
    return rows


def test_parse_s3_uri_and_the_default_bucket():
    assert parse_s3_uri("s3://b/some/prefix") == ("b", "some/prefix")
    assert parse_s3_uri("s3:///some/prefix", "dflt") == ("dflt", "some/prefix")
    assert parse_s3_uri("s3://", "dflt") == ("dflt", "")
    with pytest.raises(InputError, match="S3_BUCKET_NAME"):
        parse_s3_uri("s3:///x")


def test_s3_ingest_with_captions_in_s3_twice(s3, lite_uri, embedder, tmp_path):
    put_dataset(s3)
    store = MilvusStore(lite_uri, embedder.name, embedder.dim)
    source = s3_source(s3, f"s3://{BUCKET}/roco", f"s3://{BUCKET}/roco/meta/captions.csv")
    assert source.total == 8
    first = ingest(source, embedder, store, batch_size=3, progress=False,
                   rejects_path=tmp_path / "rejects.csv")  # fmt: skip
    assert (first.seen, first.added, first.skipped, first.rejected) == (8, 6, 0, 2)
    reasons = dict(list(csv.reader((tmp_path / "rejects.csv").open()))[1:])
    assert reasons[f"s3://{BUCKET}/roco/img/gone.png"] == "file not found"
    assert "not an image" in reasons[f"s3://{BUCKET}/roco/img/bad.png"]
    again = s3_source(s3, f"s3://{BUCKET}/roco/", f"s3://{BUCKET}/roco/meta/captions.csv")
    second = ingest(again, embedder, store, batch_size=3, progress=False)
    assert (second.added, second.skipped, second.rejected) == (0, 6, 2)
    hits = store.search(embedder.embed([store_image(s3, "roco/img/2.png")])[0], k=6)
    assert {h.source.rsplit("/", 1)[-1] for h in hits} <= {f"{i}.png" for i in range(6)}
    assert all(h.meta["modality"] == "CT" for h in hits)
    store.close()


def store_image(s3, key):
    from PIL import Image

    return Image.open(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def test_listing_is_paginated_and_sidecars_work(s3, lite_uri, embedder):
    # 1,003 keys: more than one page of list_objects_v2.
    for i in range(1000):
        s3.put_object(Bucket=BUCKET, Key=f"many/filler/{i:04d}.json", Body=b"{}")
    for i in range(3):
        s3.put_object(Bucket=BUCKET, Key=f"many/z{i}.png", Body=noise_png(700 + i))
        s3.put_object(Bucket=BUCKET, Key=f"many/z{i}.txt", Body=f"Sidecar {i}.".encode())
    s3.put_object(Bucket=BUCKET, Key="many/zz-nocaption.png", Body=noise_png(799))
    s3.put_object(Bucket=BUCKET, Key="many-other/z9.png", Body=noise_png(798))  # not under many/
    pages = []
    s3.meta.events.register("after-call.s3.ListObjectsV2", lambda **kw: pages.append(1))
    source = s3_source(s3, f"s3://{BUCKET}/many", workers=2)
    assert len(pages) == 2 and source.total == 4
    store = MilvusStore(lite_uri, embedder.name, embedder.dim)
    summary = ingest(source, embedder, store, progress=False)
    assert (summary.added, summary.rejected) == (3, 1)
    assert summary.rejects == [(f"s3://{BUCKET}/many/zz-nocaption.png", "no caption")]
    store.close()


def test_cli_with_default_bucket_and_local_jsonl(s3, tmp_path, monkeypatch, capsys, model_dir):
    put_dataset(s3, prefix="ds/", count=4)
    lines = [json.dumps({"path": f"img/{i}.png", "text": f"Local {i}."}) for i in range(4)]
    captions = tmp_path / "caps.jsonl"
    captions.write_text("\n".join(lines))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDCAP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMBEDDER", "local")
    monkeypatch.setenv("S3_BUCKET_NAME", BUCKET)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "models").symlink_to(model_dir)
    assert ingest_main(["s3:///ds/", "--captions", str(captions), "--quiet"]) == 0
    assert "seen 4 = added 4 + skipped 0 + rejected 0" in capsys.readouterr().out
    # No --captions and no captions file or sidecars under ds/: every image is rejected.
    assert ingest_main(["s3:///ds/", "--quiet", "--workers", "3"]) == 0
    assert "seen 5 = added 0 + skipped 0 + rejected 5" in capsys.readouterr().out
    assert ingest_main([f"s3://no-such-bucket-{BUCKET}/x", "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
