"""Nothing identifying is stored: DICOM patient tags and EXIF (GPS included) never reach a row."""

from __future__ import annotations

import base64
import csv
import json

from ingest.runner import ingest
from ingest.sources import folder_source
from pipeline.store import MilvusStore
from tests.badfiles import GPS_MARKER, PATIENT_NAME, _exif, dicom

# Long enough that no JPEG or base64 text holds one by chance.
IDENTIFYING = (PATIENT_NAME, "Jane^Secret", GPS_MARKER, "ACMEScannerCorp", "General Hospital",
               "ID-123456")  # fmt: skip


def test_stored_rows_carry_no_patient_name_or_exif(tmp_path, lite_uri, embedder):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ct.dcm").write_bytes(dicom())
    jpeg = _exif(6)()
    assert GPS_MARKER.encode() in jpeg and PATIENT_NAME.encode() in dicom()  # the bait is there
    (folder / "photo.jpg").write_bytes(jpeg)
    with (folder / "captions.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["filename", "caption"], ["ct.dcm", "Axial CT."], ["photo.jpg", "A photo."]])
    store = MilvusStore(lite_uri, embedder.name, embedder.dim)
    summary = ingest(folder_source(folder), embedder, store, progress=False)
    assert summary.added == 2
    rows = store._client.query(store.collection, filter='id != ""', output_fields=["*"])
    assert len(rows) == 2
    for row in rows:
        thumb = base64.b64decode(row["thumbnail"])
        assert thumb[:2] == b"\xff\xd8"  # a JPEG
        blob = repr(row).encode() + thumb
        for secret in IDENTIFYING:
            assert secret.encode() not in blob
        assert b"Exif" not in thumb
    store.close()


def test_no_patient_name_or_exif_in_any_bedrock_request(tmp_path):
    """Titan (ingest and query) and Claude (RAG and classic) see pixels only."""
    from pipeline.config import Settings
    from pipeline.runtime import Runtime
    from tests.bedrock_stubs import BedrockHttp, bedrock_client, stubbed_clients

    settings = Settings.from_mapping(
        {
            "MEDCAP_DATA_DIR": str(tmp_path / "data"),
            "EMBEDDER": "titan",
            "CAPTIONER": "claude",
            "TITAN_DIM": "256",
            "AWS_REGION": "us-east-1",
        }
    )
    client = bedrock_client()
    http = BedrockHttp(client, dim=256, captions=lambda body: ["A ", "caption."])
    runtime = Runtime(settings, stubbed_clients(client))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ct.dcm").write_bytes(dicom())
    (folder / "ct.txt").write_text("Axial CT.")
    (folder / "photo.jpg").write_bytes(_exif(6)())
    (folder / "photo.txt").write_text("A photo.")
    store = runtime.pipeline().store
    assert ingest(folder_source(folder), runtime.embedder, store, progress=False).added == 2
    for query in (dicom(frames=3), _exif(3)()):
        answer = list(runtime.pipeline().run(query, k=2))[-1]
        assert answer.rag == "A caption." and answer.classic == "A caption."
    operations = [op for op, _ in http.calls]
    assert operations.count("invoke") == 4 and operations.count("converse-stream") == 4
    for _, body in http.calls:
        blob = json.dumps(body).encode()
        for image in _images_in(body):
            blob += image
            assert b"Exif" not in image[:64] and b"GPS" not in image
        for secret in IDENTIFYING:
            assert secret.encode() not in blob
    store.close()


def _images_in(body: dict) -> list[bytes]:
    """Every image a Titan or Converse request body carries, decoded."""
    if "inputImage" in body:
        return [base64.b64decode(body["inputImage"])]
    return [
        base64.b64decode(part["image"]["source"]["bytes"])
        for message in body.get("messages", [])
        for part in message["content"]
        if "image" in part
    ]
